"""Least-connections accepting against a real gunicorn: connections a client opens at once
(a load generator, a proxy filling its pool) are spread evenly over the workers of mita's
default worker class, also across recycling; connections that all went to one worker while the
other could not take any are spread once it can; and neither a killed nor a stalled worker makes
the others keep a client waiting.

gthread accepts greedily: with it, 16 connections opened at once mostly landed 16/0 to 13/3 on
two workers (and 14/2/0 or so on three), and a kept-alive connection stays where it landed.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mita_app.worker_balance import SHED_PAUSE
from tests.gunicorn_server import (
    Server,
    children_of,
    connections_per_worker,
    holders,
    migrated_sqlite_database,
    running_gunicorn,
)

HOST = "127.0.0.1"
CONNECTIONS = 16
REPETITIONS = 6
SPREAD = 2  # the most connections one worker may hold beyond another
SETTLE = 0.3  # seconds for a worker just forked to be polling the listener
PROMPT = 0.5  # seconds within which a new connection must be answered
REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def served(port: int, count: int) -> tuple[list[socket.socket], bool]:
    """`count` connections opened at once, each with one GET /health sent on it at once (as a
    load generator does), answered 200 and kept open; and whether any answer said the server
    will close its connection (its worker is being recycled)."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.sendall(REQUEST)
        socks.append(sock)
    closing = False
    for sock in socks:
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        assert response.status == 200
        closing |= response.will_close
    return socks, closing


def close_all(server: Server, socks: list[socket.socket]) -> None:
    """Close the connections and wait until the workers have closed their ends."""
    for sock in socks:
        sock.close()
    deadline = time.monotonic() + 5
    while sum(connections_per_worker(server.port, server.pid).values()):
        assert time.monotonic() < deadline, connections_per_worker(server.port, server.pid)
        time.sleep(0.02)


def split(server: Server) -> list[int]:
    return sorted(connections_per_worker(server.port, server.pid).values(), reverse=True)


def even(counts: list[int]) -> bool:
    return counts[0] - counts[-1] <= SPREAD


def holder(server: Server, sock: socket.socket) -> int:
    """The PID of the worker holding the other end of `sock`."""
    held = holders(f"sport = :{server.port} and dport = :{sock.getsockname()[1]}")
    assert len(held) == 1, held
    return held[0]


def answered_in(port: int) -> tuple[socket.socket, float]:
    """A new connection with a GET /health on it, and the seconds until its 200."""
    started = time.monotonic()
    (sock,), _ = served(port, 1)
    return sock, time.monotonic() - started


@contextlib.contextmanager
def gunicorn(tmp_path: Path, workers: int, **env: str) -> Iterator[Server]:
    url = migrated_sqlite_database(tmp_path)
    args = ["--workers", str(workers)]
    with running_gunicorn(url, tmp_path / "log", env=env, args=args) as server:
        time.sleep(SETTLE)
        yield server


@pytest.mark.parametrize("workers", [2, 3])
def test_connections_opened_at_once_are_spread_evenly_over_the_workers(tmp_path, workers):
    with gunicorn(tmp_path, workers) as server:
        splits = []
        for _ in range(REPETITIONS):
            socks, _ = served(server.port, CONNECTIONS)
            splits.append(split(server))
            close_all(server, socks)
    assert all(len(counts) == workers and even(counts) for counts in splits), splits


def test_recycled_workers_still_share_the_connections_evenly(tmp_path):
    env = {"GUNICORN_MAX_REQUESTS": "40", "GUNICORN_MAX_REQUESTS_JITTER": "0"}
    with gunicorn(tmp_path, 2, **env) as server:
        first = children_of(server.pid)
        seen = set(first)
        splits_after_recycling = []
        deadline = time.monotonic() + 60
        while len(seen) < 5 or len(splits_after_recycling) < 4:
            assert time.monotonic() < deadline, (seen, splits_after_recycling)
            socks, closing = served(server.port, CONNECTIONS)
            counts = split(server)
            close_all(server, socks)
            if closing:  # a worker is stopping, and its replacement is not there yet
                wait_for_replacements(server)
                seen |= children_of(server.pid)
            elif seen != first:
                splits_after_recycling.append(counts)
    assert all(len(counts) == 2 and even(counts) for counts in splits_after_recycling), (
        splits_after_recycling
    )


def wait_for_replacements(server: Server) -> None:
    """Until every worker that is being recycled is gone and its replacement is polling."""
    deadline = time.monotonic() + 20
    while True:
        log = server.log()
        # Each of a recycled worker's threads may say so: one line each, not one per worker.
        recycled = {int(pid) for pid in re.findall(r"\[(\d+)\] \[INFO\] Autorestarting", log)}
        exited = {int(pid) for pid in re.findall(r"Worker exiting \(pid: (\d+)\)", log)}
        workers = children_of(server.pid)
        if recycled <= exited and len(workers) == 2 and not workers & exited:
            break
        assert time.monotonic() < deadline, log
        time.sleep(0.02)
    time.sleep(SETTLE)


def test_a_killed_worker_does_not_keep_new_connections_waiting(tmp_path):
    with gunicorn(tmp_path, 2) as server:
        socks, _ = served(server.port, 8)
        assert even(split(server)), split(server)
        victim = holder(server, socks[0])
        # The victim holds nothing and the survivor four: a count the victim left behind
        # would have the survivor leave every new connection to it.
        for sock in [sock for sock in socks if holder(server, sock) == victim]:
            socks.remove(sock)
            sock.close()
        deadline = time.monotonic() + 5
        while connections_per_worker(server.port, server.pid).get(victim):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(victim, signal.SIGKILL)
        seconds = []
        for _ in range(8):
            sock, took = answered_in(server.port)
            socks.append(sock)
            seconds.append(took)
        assert max(seconds) < PROMPT, seconds
        close_all(server, socks)

        # Its replacement takes its share.
        deadline = time.monotonic() + 20
        while victim in children_of(server.pid) or len(children_of(server.pid)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(SETTLE)
        socks, _ = served(server.port, CONNECTIONS)
        counts = split(server)
        close_all(server, socks)
    assert even(counts), counts


def test_a_stalled_worker_holding_fewer_does_not_keep_new_connections_waiting(tmp_path):
    with gunicorn(tmp_path, 2) as server:
        # Both hold nothing, so each new connection finds the stalled one holding fewer.
        stalled = min(children_of(server.pid))
        os.kill(stalled, signal.SIGSTOP)
        try:
            socks, seconds = [], []
            for _ in range(8):
                sock, took = answered_in(server.port)
                socks.append(sock)
                seconds.append(took)
            held = connections_per_worker(server.port, server.pid)
        finally:
            os.kill(stalled, signal.SIGCONT)
        close_all(server, socks)
    assert held[stalled] == 0, held
    assert max(seconds) < PROMPT, seconds


def test_connections_piled_on_one_worker_are_shed_to_the_other_once_it_takes_them(tmp_path):
    with gunicorn(tmp_path, 2) as server:
        stalled = min(children_of(server.pid))
        os.kill(stalled, signal.SIGSTOP)
        try:
            # A pool of kept-alive connections, each connecting again when the server closes it.
            pool = [http.client.HTTPConnection(HOST, server.port, timeout=5) for _ in range(16)]
            health(pool)
            piled = connections_per_worker(server.port, server.pid)
        finally:
            os.kill(stalled, signal.SIGCONT)
        time.sleep(SHED_PAUSE)
        for _ in range(3):
            health(pool)
        counts = split(server)
        for connection in pool:
            connection.close()
    assert piled[stalled] == 0, piled
    assert even(counts), counts


def health(pool: list[http.client.HTTPConnection]) -> None:
    """A GET /health on each connection of the pool, in turn."""
    for connection in pool:
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        assert response.status == 200
