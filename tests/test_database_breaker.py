"""A database that cannot be reached opens a breaker: requests that need it get a 503 at once
instead of each waiting out the connect timeout again, requests that never touch it are not held
up, and the breaker closes within one probe interval of the database coming back, with no
traffic needed. Against a PostgreSQL of the test's own, frozen with SIGSTOP or stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from flask import Flask

from mita_app.database_breaker import breaker_of
from tests.conftest import PASSWORD, build_app, dispose, pg_connect
from tests.gunicorn_server import migrated_postgres_database, running_gunicorn
from tests.pg_cluster import PostgresCluster, pg_cluster  # noqa: F401 (a fixture)
from tests.races import poll

pytestmark = pytest.mark.postgres

PROBE_INTERVAL = 0.5
CONNECT_TIMEOUT = 1


@pytest.fixture
def breaker_app(pg_cluster: PostgresCluster) -> Iterator[Flask]:  # noqa: F811
    app = build_app(
        pg_cluster.url,
        AUTH_CACHE_TTL="600",
        DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        DB_BREAKER_PROBE_INTERVAL=str(PROBE_INTERVAL),
        DB_LOCK_TIMEOUT_MS="200",
    )
    yield app
    dispose(app)


def signed_in(app: Flask, email: str) -> Callable[[], tuple[int, float]]:
    """GET /api/users/me as a new user: (status, seconds)."""
    client = app.test_client()
    registered = client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {registered.get_json()['data']['access_token']}"}

    def me() -> tuple[int, float]:
        started = time.monotonic()
        response = client.get("/api/users/me", headers=headers)
        elapsed = time.monotonic() - started
        if response.status_code == 503:
            assert response.get_json()["error"]["code"] == "service_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
        return response.status_code, elapsed

    assert me()[0] == 200
    return me


@pytest.mark.parametrize("fault", ["frozen", "stopped"])
def test_the_breaker_opens_answers_at_once_and_closes_within_a_probe_interval(
    breaker_app: Flask,
    pg_cluster: PostgresCluster,  # noqa: F811
    fault: str,
) -> None:
    me = signed_in(breaker_app, f"{fault}@example.com")
    breaker = breaker_of(breaker_app)
    outage = pg_cluster.frozen() if fault == "frozen" else pg_cluster.stopped()
    with outage:
        first = [me() for _ in range(3)]
        assert breaker.snapshot()["state"] == "open"
        after = [me() for _ in range(20)]
        ready = breaker_app.test_client().get("/ready")

    # The pre-ping gives up within DB_PING_TIMEOUT_MS, a new connection within the connect
    # timeout: together within the connect timeout and half a second.
    assert [status for status, _ in first + after] == [503] * 23
    assert max(seconds for _, seconds in first) < CONNECT_TIMEOUT + 0.5 + 0.3
    # Answered without a connect attempt: well under 50 ms each (the median, on a machine
    # that may be busy), and none anywhere near the connect timeout.
    quick = sorted(seconds for _, seconds in after)
    assert quick[len(quick) // 2] < 0.05
    assert quick[-1] < CONNECT_TIMEOUT / 2
    assert ready.status_code == 503
    assert ready.get_json()["error"]["checks"]["database"]["breaker"]["state"] == "open"

    # Back: the probe closes the breaker with no request needed.
    thawed = time.monotonic()
    assert poll(lambda: breaker.snapshot()["state"] == "closed")
    assert time.monotonic() - thawed < PROBE_INTERVAL + CONNECT_TIMEOUT + 0.5
    assert me()[0] == 200


def test_failures_that_are_not_an_outage_leave_the_breaker_closed(
    breaker_app: Flask,
    pg_cluster: PostgresCluster,  # noqa: F811
) -> None:
    """A statement that waited too long for a lock says nothing about whether the database
    can be reached: 503 for that request, and the breaker stays closed."""
    me = signed_in(breaker_app, "locked@example.com")
    locker = pg_connect(pg_cluster.url, autocommit=False)
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        assert [me()[0] for _ in range(5)] == [503] * 5
    finally:
        locker.rollback()
        locker.close()
    snapshot = breaker_of(breaker_app).snapshot()
    assert (snapshot["state"], snapshot["consecutive_failures"]) == ("closed", 0)
    assert me()[0] == 200


# --- a real server on its defaults ---------------------------------------------------------------


@dataclass
class Samples:
    """(started, seconds, status) of each request of one kind, from one or more threads."""

    rows: list[tuple[float, float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, started: float, seconds: float, status: int) -> None:
        with self.lock:
            self.rows.append((started, seconds, status))

    def p99(self, since: float = 0.0, until: float = float("inf")) -> float:
        times = sorted(seconds for started, seconds, _ in self.rows if since <= started < until)
        assert len(times) >= 20, len(times)
        return times[min(len(times) - 1, int(len(times) * 0.99))]


def hammer(
    url: str, headers: dict[str, str], samples: Samples, stop: threading.Event, pause: float
) -> None:
    with requests.Session() as http:
        while not stop.is_set():
            started = time.monotonic()
            try:
                status = http.get(url, headers=headers, timeout=15).status_code
            except requests.RequestException:
                status = 0
            samples.add(started, time.monotonic() - started, status)
            stop.wait(pause)


def test_a_frozen_database_does_not_hold_up_requests_that_do_not_need_it(
    pg_cluster: PostgresCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    """gunicorn on the default configuration; the database frozen for 15 s under load."""
    # Long enough for every worker's breaker to open. Each client thread keeps its connection,
    # so one worker may see a single thread's requests: one under way when the database froze
    # fails at the client deadline (6 s), each one after it at the ping and connect timeouts
    # (3.5 s): its third failure, and so its breaker, comes at about 13 s.
    freeze_for = 15.0
    with (
        migrated_postgres_database(pg_cluster.url) as url,
        running_gunicorn(
            url,
            tmp_path / "gunicorn.log",
            env={"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_THREADS": "8"},
        ) as server,
    ):
        registered = requests.post(
            server.url("/api/auth/register"),
            json={"email": "load@example.com", "password": PASSWORD},
            timeout=10,
        )
        token = registered.json()["data"]["access_token"]
        health, bad_token, needs_database = Samples(), Samples(), Samples()
        stop = threading.Event()
        me = server.url("/api/users/me")
        threads = [
            threading.Thread(target=hammer, args=(server.url("/health"), {}, health, stop, 0.01)),
            threading.Thread(
                target=hammer,
                args=(me, {"Authorization": "Bearer not-a-token"}, bad_token, stop, 0.01),
            ),
            *(
                threading.Thread(
                    target=hammer,
                    args=(me, {"Authorization": f"Bearer {token}"}, needs_database, stop, 0.005),
                )
                for _ in range(3)
            ),
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            with pg_cluster.frozen():
                frozen_at = time.monotonic()
                time.sleep(freeze_for)
            thawed_at = time.monotonic()
            time.sleep(3.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=20)

    during = [row for row in needs_database.rows if frozen_at <= row[0] < thawed_at]
    for started, seconds, status in during:  # a 503, unless it was answered after the thaw
        assert status == 503 or (status == 200 and started + seconds >= thawed_at)
    # Statements under way when it froze are bounded by the client deadline (DB_CLIENT_TIMEOUT_MS,
    # 6 s); requests sent later by the ping (0.5 s) and connect (3 s) timeouts; and once every
    # worker's breaker is open (after three such failures), they are answered at once.
    assert max(seconds for _, seconds, _ in during) < 6 + 1
    started_later = [seconds for started, seconds, _ in during if started > frozen_at + 0.1]
    assert max(started_later) < 3 + 0.5 + 0.5
    settled = sorted(seconds for started, seconds, _ in during if started > frozen_at + 10)
    assert settled
    assert settled[len(settled) // 2] < 0.05

    assert health.p99() < 0.1, health.p99()
    assert bad_token.p99() < 0.1, bad_token.p99()
    assert {status for _, _, status in bad_token.rows} == {401}

    answered = [started for started, _, status in needs_database.rows if status == 200]
    first_after = min(started for started in answered if started >= thawed_at)
    # One probe interval (1 s by default), plus a probe still waiting on the frozen server.
    assert first_after - thawed_at < 1.0 + 3 + 0.5
