"""The audit writer's spill bound, its own failures and its commits, in one process.

While the writer cannot write, what it has held AUDIT_SPILL_AFTER seconds is spilled once and
never written afterwards, even when the database is back a moment later; the counters stay exact
(handed over = written + spilled). An exception in the writer spills what it held, and the events
after it are written. A commit whose answer is lost writes its events once; an event taken out
while its commit is under way says, in its spilled line, that it may be in the table as well.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Connection, Engine, event, exc, select

from mita_app.audit import writer_of
from mita_app.audit.events import build
from mita_app.config import ConfigError, from_env
from mita_app.extensions import db
from mita_app.models import AuditEvent
from tests.conftest import build_app, dispose
from tests.pg_cluster import (
    PostgresCluster,
    pg_cluster,  # noqa: F401  (the fixture, used by `cluster`)
)
from tests.races import poll

BOUND = 2.0  # AUDIT_SPILL_AFTER in the outage test


@pytest.fixture
def cluster(pg_cluster: PostgresCluster) -> PostgresCluster:  # noqa: F811
    if not pg_cluster.running:
        pg_cluster.start()
    return pg_cluster


def synthetic(count: int, event_type: str = "test.spill") -> list[dict[str, Any]]:
    return [build(event_type, details={"n": n}) for n in range(count)]


def ids(events: list[dict[str, Any]]) -> set[str]:
    return {str(e["id"]) for e in events}


def submit(app: Flask, events: list[dict[str, Any]]) -> None:
    with app.app_context():
        writer_of(app).submit(events)


def stored(app: Flask) -> list[str]:
    """The id of every row in audit_events (a list: an id twice would show)."""
    with app.app_context():
        found = [str(i) for i in db.session.scalars(select(AuditEvent.id))]
        db.session.remove()
    return found


def spill_lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    lines = capfd.readouterr().err.splitlines()
    return [json.loads(line) for line in lines if line.startswith('{"audit_spill"')]


def in_the_writer() -> bool:
    return threading.current_thread().name == "audit-writer"


@contextlib.contextmanager
def writer_commits_held() -> Iterator[tuple[threading.Event, threading.Event]]:
    """(committing, release): the writer's commits wait (10 s at most) until `release` is set;
    `committing` says one is waiting. The listener goes only once the commit is through, not
    while the writer's commit runs the listeners."""
    committing, release = threading.Event(), threading.Event()

    def hold_the_commit(connection: Connection) -> None:
        if in_the_writer() and not release.is_set():
            committing.set()
            release.wait(10)

    event.listen(Engine, "commit", hold_the_commit)
    try:
        yield committing, release
    finally:
        release.set()
        event.remove(Engine, "commit", hold_the_commit)


@pytest.mark.postgres
def test_events_held_past_the_bound_while_the_database_is_down_are_spilled_once_not_written_later(
    cluster: PostgresCluster, capfd: pytest.CaptureFixture[str]
) -> None:
    app = build_app(
        cluster.new_database("mita_spill"),
        AUDIT_SPILL_AFTER=str(BOUND),
        AUDIT_FLUSH_INTERVAL="0.05",
        AUDIT_RETRY_MAX="0.2",
        DB_CONNECT_TIMEOUT="1",
    )
    try:
        writer = writer_of(app)
        warm = synthetic(2, "test.warm")
        submit(app, warm)
        assert writer.flush(10)
        capfd.readouterr()

        cluster.stop()
        try:
            held = synthetic(20)
            handed_over = time.monotonic()
            submit(app, held)
            seen: list[tuple[float, int]] = []  # (seconds since the hand-over, spilled)

            def all_spilled() -> bool:
                spilled = writer.snapshot()["spilled"]
                seen.append((time.monotonic() - handed_over, spilled))
                return bool(spilled == len(held))

            assert poll(all_spilled, BOUND + 10), writer.snapshot()
        finally:
            cluster.start()  # the database is back: a moment after the spill

        # Not one before its time (a count read before BOUND was taken before BOUND).
        assert [n for elapsed, n in seen if elapsed < BOUND] == [
            0 for elapsed, _ in seen if elapsed < BOUND
        ]
        assert any(elapsed >= BOUND / 2 for elapsed, n in seen if n == 0)
        after = synthetic(5, "test.after")
        submit(app, after)
        assert writer.flush(30), writer.snapshot()

        spills = spill_lines(capfd)
        assert sorted(s["id"] for s in spills) == sorted(ids(held))
        assert {s["audit_spill"] for s in spills} == {"held_too_long"}
        assert not [s for s in spills if s.get("possibly_written")]
        assert sorted(stored(app)) == sorted(ids(warm) | ids(after))  # `held` never written
        snapshot = writer.snapshot()
        assert (snapshot["written"], snapshot["spilled"]) == (7, 20)
        assert snapshot["retrying"] is False
        ready = app.test_client().get("/ready")
        audit = ready.get_json()["data"]["checks"]["audit"]
        assert audit["written"] + audit["spilled"] == len(warm) + len(held) + len(after)
    finally:
        dispose(app)


def test_events_taken_out_while_their_commit_is_under_way_are_spilled_as_possibly_written(
    app_factory: Callable[..., Flask], capfd: pytest.CaptureFixture[str]
) -> None:
    """A commit that hangs past the bound: its events are spilled (nothing may wait longer),
    and when the commit goes through after all, the row and the line name the same id."""
    app = app_factory(AUDIT_SPILL_AFTER="1", AUDIT_FLUSH_INTERVAL="0.05")
    writer = writer_of(app)
    submit(app, synthetic(1, "test.warm"))
    assert writer.flush(10)
    capfd.readouterr()
    with writer_commits_held() as (committing, release):
        batch = synthetic(5)
        submit(app, batch)
        assert committing.wait(10)
        assert poll(lambda: writer.snapshot()["spilled"] == len(batch), 10)
        release.set()
        assert poll(lambda: ids(batch) <= set(stored(app)), 10)

    spills = spill_lines(capfd)
    assert sorted((s["id"], s["audit_spill"], s["possibly_written"]) for s in spills) == sorted(
        (i, "held_too_long", True) for i in ids(batch)
    )
    later = synthetic(2, "test.later")
    submit(app, later)
    assert writer.flush(10)
    snapshot = writer.snapshot()
    # Counted once, as spilled: their rows are the ones the lines flag.
    assert (snapshot["written"], snapshot["spilled"]) == (3, 5)
    assert len(stored(app)) == len(set(stored(app))) == 8


def test_a_batch_whose_commit_answer_was_lost_is_written_once_and_not_spilled(
    app_factory: Callable[..., Flask], capfd: pytest.CaptureFixture[str]
) -> None:
    """The commit reached the database, its answer did not: the writer sends the batch again,
    and what the first commit wrote is neither written twice nor refused as a duplicate."""
    app = app_factory(AUDIT_FLUSH_INTERVAL="0.05", AUDIT_RETRY_MAX="0.1")
    writer = writer_of(app)
    lost: list[bool] = []

    def commit_then_lose_the_answer(connection: Connection) -> None:
        if in_the_writer() and not lost:
            lost.append(True)
            connection.connection.dbapi_connection.commit()  # type: ignore[union-attr]
            raise exc.OperationalError("COMMIT", None, Exception("server closed the connection"))

    event.listen(Engine, "commit", commit_then_lose_the_answer)
    try:
        batch = synthetic(5)
        submit(app, batch)
        assert writer.flush(10), writer.snapshot()
    finally:
        event.remove(Engine, "commit", commit_then_lose_the_answer)

    assert lost
    assert sorted(stored(app)) == sorted(ids(batch))
    assert spill_lines(capfd) == []
    snapshot = writer.snapshot()
    assert (snapshot["written"], snapshot["spilled"], snapshot["write_failures"]) == (5, 0, 1)


def test_abandon_spills_everything_at_once_even_from_inside_a_hand_over_it_interrupted(
    app_factory: Callable[..., Flask], capfd: pytest.CaptureFixture[str]
) -> None:
    """gunicorn's `worker_abort` calls `abandon` in a signal handler, a second before SIGKILL,
    on a thread that may be inside `submit` with the writer's locks held: everything not yet
    written is spilled there and then, without waiting for a commit that hangs."""
    app = app_factory(AUDIT_FLUSH_INTERVAL="0.05", AUDIT_BATCH_SIZE="5", AUDIT_SPILL_AFTER="60")
    writer = writer_of(app)
    with writer_commits_held() as (committing, release):
        in_hand = synthetic(5)
        submit(app, in_hand)
        assert committing.wait(10)
        queued = synthetic(7, "test.queued")
        submit(app, queued)
        abandoned = threading.Event()

        def interrupted_hand_over() -> None:
            with writer._lock, writer._events.mutex, writer.gate._lock:
                writer.abandon("worker_abort")
            abandoned.set()

        threading.Thread(target=interrupted_hand_over, daemon=True).start()
        assert abandoned.wait(5)  # the commit still hangs: nothing waited for it
        submit(app, synthetic(1, "test.late"))

        spills = spill_lines(capfd)
        assert sorted((s["audit_spill"], s["id"], s.get("possibly_written")) for s in spills) == (
            sorted(
                [("worker_abort", i, True) for i in ids(in_hand)]
                + [("worker_abort", i, None) for i in ids(queued)]
                + [("writer_stopped", spills[-1]["id"], None)]
            )
        )
        assert spills[-1]["event_type"] == "test.late"
        release.set()
        # The hung commit went through after all: its rows are the ones the lines flag.
        assert poll(lambda: ids(in_hand) <= set(stored(app)), 10)
    snapshot = writer.snapshot()
    assert (snapshot["written"], snapshot["spilled"]) == (0, 13)
    assert sorted(stored(app)) == sorted(ids(in_hand))


@pytest.mark.parametrize("failure", [RuntimeError("a bug in the writer"), SystemExit(1)])
def test_an_exception_in_the_writer_spills_what_it_held_and_later_events_are_written(
    app_factory: Callable[..., Flask],
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
) -> None:
    """The writer fails with a batch in its hand (a bug; even a stray sys.exit): it spills that
    batch and goes on, and the events it did not hold are written."""
    app = app_factory(AUDIT_FLUSH_INTERVAL="0.05")
    writer = writer_of(app)
    take = writer._take_batch
    failed: list[dict[str, Any]] = []

    def take_then_fail() -> list[dict[str, Any]]:
        batch = take()
        if batch and not failed:
            failed.extend(batch)
            raise failure
        return batch

    monkeypatch.setattr(writer, "_take_batch", take_then_fail)
    first = synthetic(10)
    submit(app, first)
    assert poll(lambda: writer.snapshot()["spilled"] == len(failed) > 0, 10)
    second = synthetic(5, "test.second")
    submit(app, second)
    assert writer.flush(10), writer.snapshot()

    spills = spill_lines(capfd)
    assert sorted(s["id"] for s in spills) == sorted(ids(failed))
    assert {s["audit_spill"] for s in spills} == {"writer_error"}
    assert sorted(stored(app)) == sorted((ids(first) - ids(failed)) | ids(second))
    snapshot = writer.snapshot()
    assert snapshot["running"] is True
    assert snapshot["written"] + snapshot["spilled"] == len(first) + len(second)


@pytest.mark.parametrize(
    "env",
    [
        {"AUDIT_SPILL_AFTER": "soon"},
        {"AUDIT_SPILL_AFTER": "nan"},
        {"AUDIT_SPILL_AFTER": "0"},
        {"AUDIT_SPILL_AFTER": "0.5"},  # under a second
        {"AUDIT_SPILL_AFTER": "2", "AUDIT_FLUSH_INTERVAL": "2"},  # within a healthy write
    ],
)
def test_a_spill_bound_a_healthy_writer_could_not_meet_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="AUDIT_SPILL_AFTER"):
        from_env(env, default_database_url="sqlite://")


def test_the_spill_bound_is_five_seconds_by_default() -> None:
    assert from_env({}, default_database_url="sqlite://")["AUDIT_SPILL_AFTER"] == 5.0
