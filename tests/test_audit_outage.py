"""The audit writer across a database outage, on a PostgreSQL server the test owns.

While the database is down, requests must not wait for it (recording only queues), the writer
keeps what it holds and retries, and after the restart every kept event is written exactly once.
What the bounded queue cannot hold goes to stderr as one JSON line per event: exactly those, no
event lost, none written and spilled both.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import pytest

from mita_app.audit import writer_of
from tests.conftest import build_app, dispose, pg_connect
from tests.pg_cluster import pg_cluster  # noqa: F401  (the fixture, used by `cluster`)

pytestmark = pytest.mark.postgres

# Not a speed test: far above a request's normal few milliseconds, below the connect timeout
# and a few backoff steps, so a request that waits for the writer or for a connection fails it.
REQUEST_BOUND = 0.5
# Writer settings for these tests: a short backoff cap so the writer notices the restart at once,
# every denial its own row (no flood control), so that each request can be traced, and a spill
# bound beyond any outage here (test_audit_spill.py is about that bound).
WRITER_ENV = {
    "AUDIT_RETRY_MAX": "0.2",
    "DB_CONNECT_TIMEOUT": "1",
    "AUDIT_BURST_LIMIT": "0",
    "AUDIT_SPILL_AFTER": "60",
}


@pytest.fixture
def cluster(pg_cluster):  # noqa: F811
    """The module's cluster, running at the start of each test even if the last one failed
    while it was stopped."""
    if not pg_cluster.running:
        pg_cluster.start()
    return pg_cluster


def stored_events(url):
    """(request_id, event_type) of every row in audit_events."""
    connection = pg_connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT request_id, event_type FROM audit_events")
            return cursor.fetchall()
    finally:
        connection.close()


def send_denied(client, count, label):
    """`count` requests with a garbage token, each its own request id; returns the ids.

    Each must answer 401 within REQUEST_BOUND, closing included: the event is handed to the
    writer's queue when the response is closed, so that is where a blocking queue would show.
    """
    sent = []
    for number in range(count):
        request_id = f"{label}-{number}-{uuid.uuid4().hex[:8]}"
        started = time.monotonic()
        with client.get(
            "/api/auth/session",
            headers={"Authorization": "Bearer garbage", "X-Request-ID": request_id},
        ) as response:
            status = response.status_code
        elapsed = time.monotonic() - started
        assert status == 401, response.get_json()
        assert elapsed < REQUEST_BOUND, f"request {request_id} took {elapsed:.3f} s"
        sent.append(request_id)
    return sent


def wait_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def spill_lines(capfd):
    """The audit spill lines written to stderr since the last call (log lines are skipped)."""
    spills = []
    for line in capfd.readouterr().err.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and "audit_spill" in item:
            spills.append(item)
    return spills


def test_requests_stay_fast_during_an_outage_and_every_event_is_written_once_after_restart(
    cluster,
):
    url = cluster.new_database("mita_outage")
    app = build_app(url, **WRITER_ENV)
    try:
        client = app.test_client()
        writer = writer_of(app)
        sent = send_denied(client, 3, "warm")
        assert writer.flush(timeout=10)
        assert writer.snapshot()["written"] == 3

        cluster.stop()
        sent += send_denied(client, 100, "down-a")
        # The writer has taken a batch and failed on it: it is retrying, not dropping.
        assert wait_until(lambda: writer.snapshot()["write_failures"] > 0, timeout=10)
        ready = client.get("/ready")
        assert ready.status_code == 503, ready.get_json()
        checks = ready.get_json()["error"]["checks"]
        assert checks["database"]["ok"] is False
        assert checks["audit"]["retrying"] is True
        # ... and requests made while it retries are as fast as before.
        sent += send_denied(client, 100, "down-b")
        during = writer.snapshot()
        assert during["retrying"] is True
        assert during["written"] == 3
        assert during["spilled"] == 0
        assert not writer.flush(timeout=0.3)  # still held, neither written nor given up

        cluster.start()
        assert writer.flush(timeout=30), writer.snapshot()
        stored = Counter(stored_events(url))
        assert stored == Counter({(request_id, "auth.denied"): 1 for request_id in sent})
        after = writer.snapshot()
        assert after["written"] == len(sent)
        assert after["spilled"] == 0
        assert after["retrying"] is False

        ready = client.get("/ready")
        assert ready.status_code == 200, ready.get_json()
        body = ready.get_json()["data"]
        assert body["status"] == "ok"
        assert body["checks"]["audit"]["retrying"] is False
    finally:
        dispose(app)


QUEUE_SIZE = 20
BATCH_SIZE = 5
FLOOD = 60


def test_a_full_queue_spills_exactly_the_overflowing_events_and_writes_the_rest_after_restart(
    cluster, capfd
):
    url = cluster.new_database("mita_outage")
    app = build_app(
        url, AUDIT_QUEUE_SIZE=str(QUEUE_SIZE), AUDIT_BATCH_SIZE=str(BATCH_SIZE), **WRITER_ENV
    )
    try:
        client = app.test_client()
        writer = writer_of(app)
        warm = send_denied(client, 1, "warm")
        assert writer.flush(timeout=10)
        capfd.readouterr()

        cluster.stop()
        flood = send_denied(client, FLOOD, "flood")
        # Spilling happens as the events are handed over, not later: all of it is out already.
        spills = spill_lines(capfd)
        assert writer.snapshot()["spilled"] == len(spills)

        cluster.start()
        assert writer.flush(timeout=30), writer.snapshot()
        spills += spill_lines(capfd)

        assert {spill["audit_spill"] for spill in spills} == {"queue_full"}
        assert {spill["event_type"] for spill in spills} == {"auth.denied"}
        spilled_ids = [spill["request_id"] for spill in spills]
        stored = stored_events(url)
        assert {event_type for _, event_type in stored} == {"auth.denied"}
        written_ids = [request_id for request_id, _ in stored]
        assert len(set(spilled_ids)) == len(spilled_ids), "an event was spilled twice"
        assert len(set(written_ids)) == len(written_ids), "an event was written twice"
        assert not set(spilled_ids) & set(written_ids), "an event was both spilled and written"
        assert set(spilled_ids) | set(written_ids) == set(warm + flood), "an event was lost"

        snapshot = writer.snapshot()
        assert snapshot["spilled"] == len(spilled_ids)
        # Kept: the full queue plus at most the one batch the retrying writer holds.
        kept = FLOOD - len(spilled_ids)
        assert QUEUE_SIZE <= kept <= QUEUE_SIZE + BATCH_SIZE
        assert snapshot["written"] == len(warm) + kept
        # Nothing is spilled while there is room: the first QUEUE_SIZE always fit.
        assert set(flood[:QUEUE_SIZE]) <= set(written_ids)
    finally:
        dispose(app)
