"""Every audit event is written or spilled, however a gunicorn worker ends while the database is
frozen: SIGTERM, recycling after `max_requests`, and gunicorn's timeout (SIGABRT, then SIGKILL
about a second later).

Each test runs one sync worker on a PostgreSQL cluster of its own, warms the writer up (its
connection is open), freezes every process of the cluster (SIGSTOP: the writer's next statement
waits for good, as on a hung server), makes requests whose events the writer cannot write, and
then ends the worker one way. After the cluster is thawed, the table and the spilled JSON lines
in gunicorn's log must hold each event exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import build_app, dispose, pg_connect, scratch_database
from tests.gunicorn_server import Server, access_entries, children_of, running_gunicorn
from tests.pg_cluster import (
    PostgresCluster,
    pg_cluster,  # noqa: F401  (the fixture, used by `cluster`)
)

pytestmark = pytest.mark.postgres

GRACEFUL_TIMEOUT = 4  # the master SIGKILLs a worker still there after this
# One worker, so that every request and event is its; each denial its own event (no flood
# control). The spill bound is far away: these tests are about how a worker ends, and the
# writer must still hold the events when it does. No client-side deadline and a long connect
# timeout: on the frozen cluster the writer (and a request) waits until the worker ends.
FROZEN_ENV = {
    "WEB_CONCURRENCY": "1",
    "GUNICORN_WORKER_CLASS": "sync",
    "GUNICORN_MAX_REQUESTS": "0",
    "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
    "AUDIT_SHUTDOWN_TIMEOUT": "1",  # the exit hook's budget for the writer: well within it
    "AUDIT_BURST_LIMIT": "0",
    "AUDIT_FLUSH_INTERVAL": "0.05",
    "AUDIT_SPILL_AFTER": "60",
    "DB_STATEMENT_TIMEOUT_MS": "0",
    "DB_CONNECT_TIMEOUT": "60",
    "RATELIMIT_ENABLED": "false",
}


@pytest.fixture
def cluster(pg_cluster: PostgresCluster) -> PostgresCluster:  # noqa: F811
    if not pg_cluster.running:
        pg_cluster.start()
    return pg_cluster


@pytest.fixture
def database(cluster: PostgresCluster) -> Iterator[str]:
    """A database of the test's own in the cluster, with the models' tables."""
    with scratch_database(cluster.url, "mita_spill") as url:
        dispose(build_app(url))
        yield url


def deny(server: Server, count: int, label: str) -> list[str]:
    """`count` requests with a garbage token (no database needed): each answered 401 and
    recording one `auth.denied` with its own request id, returned."""
    sent = []
    with requests.Session() as session:
        for number in range(count):
            request_id = f"{label}-{number}-{uuid.uuid4().hex[:8]}"
            response = session.get(
                server.url("/api/users/me"),
                headers={"Authorization": "Bearer garbage", "X-Request-ID": request_id},
                timeout=15,
            )
            assert response.status_code == 401, response.text
            sent.append(request_id)
    return sent


def stored_denials(url: str) -> Counter[str]:
    connection = pg_connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT request_id FROM audit_events WHERE event_type = 'auth.denied'")
            return Counter(request_id for (request_id,) in cursor.fetchall())
    finally:
        connection.close()


def spilled_lines(server: Server) -> list[dict[str, Any]]:
    spills = []
    for line in server.log().splitlines():
        if line.startswith('{"audit_spill"'):
            spills.append(json.loads(line))
    return spills


def wait_for(condition: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def warm_up(server: Server, url: str) -> list[str]:
    """A few events written: the writer has its connection open when the cluster freezes."""
    sent = deny(server, 3, "warm")
    assert wait_for(lambda: sum(stored_denials(url).values()) == 3, 15), server.log()
    return sent


def terminate(server: Server) -> None:
    os.kill(server.pid, signal.SIGTERM)
    server.process.wait(timeout=GRACEFUL_TIMEOUT + 10)


def assert_each_event_once(server: Server, url: str, sent: list[str], reasons: set[str]) -> int:
    """Each event sent is in the table or spilled, exactly once (a spilled event may also have
    a row only if its line says `possibly_written`); returns how many were spilled."""
    stored = stored_denials(url)
    spills = [s for s in spilled_lines(server) if s["event_type"] == "auth.denied"]
    spilled = Counter(s["request_id"] for s in spills)
    assert [rid for rid, n in stored.items() if n > 1] == [], "written twice"
    assert [rid for rid, n in spilled.items() if n > 1] == [], "spilled twice"
    flagged = {s["request_id"] for s in spills if s.get("possibly_written")}
    assert set(stored) & set(spilled) <= flagged, "written and spilled, with no word of it"
    lost = set(sent) - set(stored) - set(spilled)
    assert not lost, f"{len(lost)} of {len(sent)} events lost:\n{server.log()[-3000:]}"
    assert set(stored) | set(spilled) == set(sent)
    assert {s["audit_spill"] for s in spills} <= reasons
    return len(spilled)


def test_sigterm_while_the_database_is_frozen_spills_every_event_the_writer_holds(
    database: str, cluster: PostgresCluster, tmp_path: Path
) -> None:
    with running_gunicorn(database, tmp_path / "log", env=FROZEN_ENV) as server:
        sent = warm_up(server, database)
        with cluster.frozen():
            down = deny(server, 30, "down")
            time.sleep(0.5)  # the writer has taken a batch, and waits on the database with it
            terminate(server)
        sent += down

    assert server.process.returncode == 0, server.log()
    assert "SIGKILL" not in server.log()  # the worker stopped within the graceful timeout
    assert assert_each_event_once(server, database, sent, {"shutdown"}) == len(down)


def test_a_worker_recycled_while_the_database_is_frozen_spills_every_event_it_holds(
    database: str, cluster: PostgresCluster, tmp_path: Path
) -> None:
    env = {**FROZEN_ENV, "GUNICORN_MAX_REQUESTS": "20", "GUNICORN_MAX_REQUESTS_JITTER": "0"}
    with running_gunicorn(database, tmp_path / "log", env=env) as server:
        sent = warm_up(server, database)
        with cluster.frozen():
            # The first worker served /health and the warm-up: it leaves after 16 of these,
            # and the next one serves the rest until SIGTERM.
            down = deny(server, 30, "down")
            time.sleep(0.5)
            terminate(server)
        sent += down

    assert "Autorestarting worker" in server.log()
    assert len({entry["pid"] for entry in access_entries(server)}) == 2, server.log()
    assert assert_each_event_once(server, database, sent, {"shutdown"}) == len(down)


def test_a_worker_killed_for_its_timeout_while_the_database_is_frozen_spills_every_event(
    database: str, cluster: PostgresCluster, tmp_path: Path
) -> None:
    """gunicorn aborts a worker silent for `timeout` (SIGABRT, its `worker_abort` hook) and
    SIGKILLs it on its next round, a second or less later: no time to wait for anything."""
    env = {**FROZEN_ENV, "GUNICORN_TIMEOUT": "2"}
    with running_gunicorn(database, tmp_path / "log", env=env) as server:
        sent = warm_up(server, database)
        (worker,) = children_of(server.pid)
        with cluster.frozen():
            down = deny(server, 30, "down")
            time.sleep(0.5)
            # A login needs the database: the worker waits on it until gunicorn gives up on it.
            with contextlib.suppress(requests.RequestException):
                requests.post(
                    server.url("/api/auth/login"),
                    json={"email": "stuck@example.com", "password": "whatever it is"},
                    timeout=20,
                )
            assert wait_for(lambda: worker not in children_of(server.pid), 15), server.log()
        sent += down
        terminate(server)

    assert "WORKER TIMEOUT" in server.log()
    assert assert_each_event_once(server, database, sent, {"worker_abort"}) == len(down)
