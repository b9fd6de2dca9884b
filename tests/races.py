"""Genuine races against a real PostgreSQL, for the concurrency tests; and threads released
together, and polling with a bound, for any test that needs them.

To make a race genuine (every request reads the current state before any of them writes), a
separate connection holds a lock that every writer needs; once all of them are waiting on it,
it lets go. Every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from tests.conftest import pg_connect


def in_threads(count: int, target: Callable[[int], Any], timeout: float = 30) -> list[Any]:
    """target(0..count-1) on `count` threads released together (a barrier); their results, all
    joined within `timeout` seconds. An exception in any of them fails the test."""
    barrier = threading.Barrier(count, timeout=min(timeout, 10))
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target(index)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(i,), name=f"client-{i}", daemon=True)
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not [thread.name for thread in threads if thread.is_alive()], "threads still running"
    assert not errors, errors
    return results


def poll(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.02) -> Any:
    """The first truthy value of `predicate` within `timeout` seconds, else its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def at_once(app, threads, call, *, started=None):
    """Run `call(client)` in `threads` threads, each with its own test client, released together.

    Returns each thread's (status, body). `started` is set once every thread is past the barrier.
    """
    barrier = threading.Barrier(threads, action=started.set if started else None, timeout=10)

    def run():
        client = app.test_client()
        barrier.wait()
        response = call(client)
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(run) for _ in range(threads)]
        return [future.result(timeout=30) for future in futures]


def wait_for_lock_waiters(url, count):
    """Block until `count` backends of this database are waiting on a lock (bounded)."""
    monitor = pg_connect(url)
    try:
        deadline = time.monotonic() + 10
        waiting = 0
        while time.monotonic() < deadline:
            with monitor.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                waiting = cursor.fetchone()[0]
            if waiting >= count:
                return
            time.sleep(0.01)
        raise AssertionError(f"only {waiting} of {count} requests reached the lock")
    finally:
        monitor.close()


@contextmanager
def gate(url, lock_sql, params=()):
    """Hold the lock `lock_sql` takes, on another connection; the function it yields releases
    the lock once that many requests wait for it."""
    holder = pg_connect(url, autocommit=False)
    try:
        with holder.cursor() as cursor:
            cursor.execute(lock_sql, params)

        def open_when_waiting(count):
            wait_for_lock_waiters(url, count)
            holder.rollback()

        yield open_when_waiting
    finally:
        holder.rollback()
        holder.close()


def gated_race(app, url, threads, call, lock_sql, params=()):
    started = threading.Event()
    # The gate is left first, so a failure here releases the lock before the threads are joined.
    with ThreadPoolExecutor(max_workers=1) as runner, gate(url, lock_sql, params) as open_gate:
        future = runner.submit(at_once, app, threads, call, started=started)
        assert started.wait(timeout=10)
        open_gate(threads)
        return future.result(timeout=30)
