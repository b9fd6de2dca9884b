"""The audit log under a real gunicorn on PostgreSQL, spoken to over HTTP.

Each test counts what its clients sent and what came back, builds from that the multiset of
(request id, event type) the audit table must hold, and compares it with the table: a lost, an
extra or a doubly written event fails it. Every request carries its own X-Request-ID, which the
app stores as the event's request_id.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import PASSWORD, pg_connect
from tests.gunicorn_server import (
    Server,
    access_entries,
    children_of,
    migrated_postgres_database,
    running_gunicorn,
    thread_count,
)
from tests.races import poll

pytestmark = pytest.mark.postgres

WRONG_PASSWORD = "not the password at all"
# What each kind of request answers when all is well, and the event that answer records.
EXPECTED = {
    "register": (201, "auth.register"),
    "login_ok": (200, "auth.login.succeeded"),
    "login_bad": (401, "auth.login.failed"),
    "refresh": (200, "auth.refresh"),
    "me": (200, None),
    "denied": (401, "auth.denied"),
}
# What only a worker killed or a writer that gave up leaves in the log.
UNCLEAN_SHUTDOWN = (
    "SIGKILL",
    "WORKER TIMEOUT",
    "exited with code",
    "Exception during worker exit",
    "audit writer did not finish",
    "audit_spill",
    "Traceback",
)
GRACEFUL_TIMEOUT = 10
# Events wait this long in a worker's queue before a batch is written: whatever a worker served
# in its last two seconds is still queued when it is told to exit, so only the exit hook's
# flush can save it.
SLOW_FLUSH = "2"


@dataclass(frozen=True)
class Exchange:
    kind: str
    request_id: str
    status: int | None  # None: no HTTP response at all
    seconds: float
    answered_at: float | None  # time.monotonic()
    echoed: str | None


class Recorder:
    """Sends requests for any number of client threads and keeps what happened to each."""

    def __init__(self, server: Server, label: str) -> None:
        self.server = server
        self.label = label
        self.exchanges: list[Exchange] = []
        self.in_flight = 0
        self.answered = 0
        self._lock = threading.Lock()

    def send(
        self,
        session: requests.Session,
        kind: str,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        json: Any = None,
        timeout: float = 5,
    ) -> requests.Response | None:
        request_id = f"{self.label}-{kind}-{uuid.uuid4().hex}"
        with self._lock:
            self.in_flight += 1
        started = time.monotonic()
        try:
            response = session.request(
                method,
                self.server.url(path),
                headers={"X-Request-ID": request_id, **(headers or {})},
                json=json,
                timeout=timeout,
            )
        except requests.RequestException:
            response = None
        finished = time.monotonic()
        exchange = Exchange(
            kind=kind,
            request_id=request_id,
            status=None if response is None else response.status_code,
            seconds=finished - started,
            answered_at=None if response is None else finished,
            echoed=None if response is None else response.headers.get("X-Request-ID"),
        )
        with self._lock:
            self.in_flight -= 1
            self.answered += response is not None
            self.exchanges.append(exchange)
        return response

    def register(self, session: requests.Session, email: str) -> dict[str, Any]:
        response = self.send(
            session,
            "register",
            "POST",
            "/api/auth/register",
            json={"email": email, "password": PASSWORD},
        )
        assert response is not None
        assert response.status_code == 201, response.text
        return response.json()["data"]

    def login(self, session: requests.Session, email: str, password: str) -> Any:
        kind = "login_ok" if password == PASSWORD else "login_bad"
        return self.send(
            session,
            kind,
            "POST",
            "/api/auth/login",
            json={"email": email, "password": password},
        )

    def garbage_bearer(self, session: requests.Session) -> Any:
        bearer = {"Authorization": f"Bearer garbage-{uuid.uuid4().hex}"}
        return self.send(session, "denied", "GET", "/api/users/me", headers=bearer)

    def answered_after(self, moment: float) -> list[Exchange]:
        return [e for e in self.exchanges if e.answered_at is not None and e.answered_at > moment]


def run_clients(count: int, client: Callable[[int], None], join_within: float = 60) -> None:
    """`count` threads running `client(number)`, released together; each must finish in time."""
    barrier = threading.Barrier(count)
    failures: list[BaseException] = []

    def body(number: int) -> None:
        try:
            barrier.wait(timeout=10)
            client(number)
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)

    threads = [threading.Thread(target=body, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + join_within
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], "client threads still running"
    assert not failures, failures


def query(url: str, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    connection = pg_connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall()
    finally:
        connection.close()


def stored_events(url: str) -> Counter[tuple[str, str]]:
    return Counter(query(url, "SELECT request_id, event_type FROM audit_events"))


def writer_rows(url: str) -> list[dict[str, Any]]:
    columns = ("pid", "queue_depth", "written", "write_failures", "spilled", "last_error")
    rows = query(url, f"SELECT {', '.join(columns)} FROM audit_writers")  # noqa: S608
    return [dict(zip(columns, row, strict=True)) for row in rows]


def assert_wrong_answers_none(recorder: Recorder) -> None:
    wrong = [
        e for e in recorder.exchanges if e.status is not None and e.status != EXPECTED[e.kind][0]
    ]
    assert wrong == []
    misechoed = [e for e in recorder.exchanges if e.status is not None and e.echoed != e.request_id]
    assert misechoed == []


# What flood control may count instead of writing one by one (mita_app/audit/bursts.py): every
# denial, and a failed login on an account the burst of bad passwords has locked.
GATED = ("auth.denied", "auth.login.failed")


def suppressed(url: str, event_type: str) -> int:
    """Events of `event_type` flood control counted instead of writing one by one."""
    sql = "SELECT details FROM audit_events WHERE event_type = %s"
    return sum(details["count"] for (details,) in query(url, sql, f"{event_type}.suppressed"))


def assert_audited_exactly(recorder: Recorder, url: str) -> None:
    """Every answered request's event is stored once; a request that got no answer may or may
    not have been served, so its event may be there (once); nothing else may be. Denials past
    flood control's limit (and failed logins on a locked account) are counted instead: the
    counts make up for exactly those rows."""
    stored = stored_events(url)
    for event_type in GATED:
        stored.pop((None, f"{event_type}.suppressed"), None)
    expected: Counter[tuple[str, str]] = Counter()
    maybe: Counter[tuple[str, str]] = Counter()
    for exchange in recorder.exchanges:
        event_type = EXPECTED[exchange.kind][1]
        if event_type is not None:
            (maybe if exchange.status is None else expected)[exchange.request_id, event_type] += 1
    missing = expected - stored
    extra = stored - expected - maybe
    doubled = {key: count for key, count in stored.items() if count > 1}
    for event_type in GATED:
        without_row = sum(n for key, n in missing.items() if key[1] == event_type)
        unanswered = sum(n for key, n in maybe.items() if key[1] == event_type)
        counted = suppressed(url, event_type)
        assert without_row <= counted <= without_row + unanswered, (
            f"{without_row} {event_type} events have no row, and flood control counted {counted}"
        )
    missing_others = [key for key in missing if key[1] not in GATED]
    assert not missing_others, f"{len(missing_others)} events of answered requests are missing"
    assert not extra, f"{len(extra)} rows no request of this test explains: {list(extra)[:5]}"
    assert not doubled, f"events written more than once: {list(doubled.items())[:5]}"


def assert_statuses_recorded(recorder: Recorder, url: str) -> None:
    """Each stored event carries the status its request was answered with."""
    answered = {e.request_id: e.status for e in recorder.exchanges if e.status is not None}
    stored = dict(query(url, "SELECT request_id, status FROM audit_events"))
    assert {rid: status for rid, status in stored.items() if rid in answered} == {
        rid: answered[rid] for rid in stored if rid in answered
    }


def assert_writers_clean(url: str) -> list[dict[str, Any]]:
    rows = writer_rows(url)
    assert rows
    assert [r for r in rows if r["spilled"] or r["write_failures"] or r["last_error"]] == []
    return rows


def terminate(server: Server) -> tuple[int, float]:
    """SIGTERM the master as a deploy does; its exit code and how long it took."""
    signalled = time.monotonic()
    os.kill(server.pid, signal.SIGTERM)
    code = server.process.wait(timeout=GRACEFUL_TIMEOUT + 10)
    return code, time.monotonic() - signalled


def assert_clean_exit(server: Server, code: int, seconds: float) -> None:
    assert code == 0, server.log()
    # The master SIGKILLs the workers still alive when the graceful timeout runs out: one that
    # stopped in time was never killed, whatever made it into the log before the master left.
    assert seconds < GRACEFUL_TIMEOUT, server.log()
    log = server.log()
    assert [marker for marker in UNCLEAN_SHUTDOWN if marker in log] == [], log


@pytest.fixture
def database(pg_url: str) -> Iterator[str]:
    """A migrated database of this test's own, so the audit table holds only its events."""
    with migrated_postgres_database(pg_url) as url:
        yield url


def test_sixteen_threads_on_one_pooled_connection_never_wait_on_the_audit_writer(
    database: str, tmp_path: Path
) -> None:
    """The set-up that once deadlocked: a gthread worker whose request pool holds one
    connection, under 16 concurrent clients. The writer has its own connection, so every
    request is answered promptly and every event lands once. (Also: gthread is served and
    audited.)"""
    clients, per_client = 16, 20
    env = {
        "WEB_CONCURRENCY": "1",
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_THREADS": "16",
        "DB_POOL_SIZE": "1",
        "DB_MAX_OVERFLOW": "0",
        "RATELIMIT_ENABLED": "false",
        "GUNICORN_MAX_REQUESTS": "0",
    }
    with running_gunicorn(database, tmp_path / "log", env=env) as server:
        recorder = Recorder(server, "pool1")

        def client(number: int) -> None:
            with requests.Session() as session:
                email = f"pool-{number}-{uuid.uuid4().hex[:8]}@example.com"
                pair = recorder.register(session, email)
                for step in range(per_client - 1):
                    kind = ("login_ok", "refresh", "me")[step % 3]
                    if kind == "login_ok":
                        response = recorder.login(session, email, PASSWORD)
                    elif kind == "refresh":
                        body = {"refresh_token": pair["refresh_token"]}
                        response = recorder.send(
                            session, kind, "POST", "/api/auth/refresh", json=body
                        )
                    else:
                        bearer = {"Authorization": f"Bearer {pair['access_token']}"}
                        response = recorder.send(
                            session, kind, "GET", "/api/users/me", headers=bearer
                        )
                    # A stuck or failing server ends the loop at once; the asserts say why.
                    if response is None or response.status_code != EXPECTED[kind][0]:
                        return
                    if kind != "me":
                        pair = response.json()["data"]

        run_clients(clients, client)

        exchanges = recorder.exchanges
        assert [e for e in exchanges if e.status is None] == []
        assert_wrong_answers_none(recorder)
        slowest = max(exchanges, key=lambda e: e.seconds)
        assert slowest.seconds <= 2.0, slowest
        assert len(exchanges) == clients * per_client
        # Written while the server runs, not only when it stops.
        emitted = sum(1 for e in exchanges if EXPECTED[e.kind][1] is not None)
        assert poll(lambda: sum(stored_events(database).values()) >= emitted, 10)
        code, seconds = terminate(server)

    assert_clean_exit(server, code, seconds)
    assert_audited_exactly(recorder, database)
    assert_statuses_recorded(recorder, database)
    (writer,) = assert_writers_clean(database)
    assert writer["written"] == emitted


def burst(recorder: Recorder, clients: int, per_client: int, stop: threading.Event) -> None:
    """Logins (right and wrong password) and garbage bearers from `clients` threads, each with
    an account of its own, until `stop`, `per_client` requests, or the first unanswered one."""
    with requests.Session() as session:
        victim = f"victim-{uuid.uuid4().hex[:8]}@example.com"
        recorder.register(session, victim)
        emails = [f"burst-{n}-{uuid.uuid4().hex[:8]}@example.com" for n in range(clients)]
        for email in emails:
            recorder.register(session, email)

    def client(number: int) -> None:
        # Sync workers close every connection after the answer: no keep-alive to gain.
        with requests.Session() as session:
            for step in range(per_client):
                if stop.is_set():
                    return
                match step % 3:
                    case 0:
                        response = recorder.login(session, emails[number], PASSWORD)
                    case 1:  # the victim gets locked out; it still answers 401 and records
                        response = recorder.login(session, victim, WRONG_PASSWORD)
                    case _:
                        response = recorder.garbage_bearer(session)
                if response is None:
                    return

    run_clients(clients, client)


def test_sigterm_mid_burst_loses_no_event_of_an_answered_request(
    database: str, tmp_path: Path
) -> None:
    """A deploy: the master gets SIGTERM while requests are in flight. It stops within the
    graceful timeout, no worker is killed, and every answered request's event is stored."""
    env = {
        "WEB_CONCURRENCY": "2",
        "GUNICORN_WORKER_CLASS": "sync",
        "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
        "GUNICORN_MAX_REQUESTS": "0",
        "AUDIT_FLUSH_INTERVAL": SLOW_FLUSH,
        "RATELIMIT_ENABLED": "false",
    }
    clients, answered_before_signal = 8, 150
    with running_gunicorn(database, tmp_path / "log", env=env) as server:
        recorder = Recorder(server, "deploy")
        stop = threading.Event()
        load = threading.Thread(target=burst, args=(recorder, clients, 500, stop), daemon=True)
        load.start()
        # Bounded, and cut short if the load gives up early (then the next assert says so).
        poll(lambda: recorder.answered >= answered_before_signal or not load.is_alive(), 30, 0.005)
        assert recorder.answered >= answered_before_signal, server.log()
        answered_at_signal = recorder.answered  # each of these requests records one event
        stored_at_signal = sum(stored_events(database).values())
        in_flight_at_signal = recorder.in_flight
        signalled_at = time.monotonic()
        code, seconds = terminate(server)
        stop.set()
        load.join(30)
        assert not load.is_alive()

    assert_clean_exit(server, code, seconds)
    # The signal landed mid-burst: requests were on their way, and some were answered after
    # it, by workers already told to stop.
    assert in_flight_at_signal > 0
    assert recorder.answered_after(signalled_at)
    # ... and events were still waiting in the writers' queues: only the exit hook wrote them.
    assert stored_at_signal < answered_at_signal
    assert_wrong_answers_none(recorder)
    assert_audited_exactly(recorder, database)
    assert_statuses_recorded(recorder, database)
    assert_writers_clean(database)


def test_workers_recycled_by_max_requests_write_every_event_before_they_go(
    database: str, tmp_path: Path
) -> None:
    """A worker replaced after `max_requests` leaves through the same exit hook: what its writer
    still holds is written, for each of the several workers the run goes through."""
    env = {
        "WEB_CONCURRENCY": "2",
        "GUNICORN_WORKER_CLASS": "sync",
        "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
        "GUNICORN_MAX_REQUESTS": "40",
        "GUNICORN_MAX_REQUESTS_JITTER": "0",
        "AUDIT_FLUSH_INTERVAL": SLOW_FLUSH,
        "RATELIMIT_ENABLED": "false",
    }
    with running_gunicorn(database, tmp_path / "log", env=env) as server:
        recorder = Recorder(server, "recycle")
        burst(recorder, clients=6, per_client=50, stop=threading.Event())
        code, seconds = terminate(server)

    assert_clean_exit(server, code, seconds)
    # The listening socket stays open while a worker is replaced: nothing goes unanswered.
    assert [e for e in recorder.exchanges if e.status is None] == []
    assert_wrong_answers_none(recorder)
    served_by = {e["pid"] for e in access_entries(server)}
    assert len(served_by) > 2, server.log()
    stored = stored_events(database)
    assert_audited_exactly(recorder, database)
    assert_statuses_recorded(recorder, database)
    writers = assert_writers_clean(database)
    # Each worker's writer reported once more as it stopped, after its last batch.
    assert served_by <= {w["pid"] for w in writers}
    assert sum(w["written"] for w in writers) == sum(stored.values())


@pytest.mark.parametrize("preload", ["false", "true"])
def test_the_audit_writer_runs_in_each_worker_and_never_in_the_master(
    database: str, tmp_path: Path, preload: str
) -> None:
    """With or without the app preloaded in the master, the writer `/ready` reports on and every
    writer that reports to `audit_writers` live in a worker; the master has no thread but its
    own."""
    env = {
        "WEB_CONCURRENCY": "2",
        "GUNICORN_WORKER_CLASS": "sync",
        "GUNICORN_PRELOAD": preload,
        "GUNICORN_MAX_REQUESTS": "0",
    }
    # gunicorn.conf.py turns off gunicorn's control socket, whose thread would otherwise run in
    # the master: any second thread there would be the app's.
    with running_gunicorn(database, tmp_path / "log", env=env) as server:
        workers = children_of(server.pid)
        assert len(workers) == 2, server.log()
        reported: dict[str, dict[str, Any]] = {}  # request id -> checks.audit

        def ask(_: int) -> None:
            with requests.Session() as session:
                for _ in range(10):
                    request_id = f"ready-{uuid.uuid4().hex}"
                    headers = {"X-Request-ID": request_id}
                    response = session.get(server.url("/ready"), headers=headers, timeout=5)
                    assert response.status_code == 200, response.text
                    reported[request_id] = response.json()["data"]["checks"]["audit"]

        # Rounds of concurrent clients until both sync workers have answered.
        for _ in range(5):
            run_clients(4, ask)
            if {audit["pid"] for audit in reported.values()} == workers:
                break
        assert {audit["pid"] for audit in reported.values()} == workers
        assert all(audit["running"] for audit in reported.values())

        # The process that answered is the one whose writer it reported.
        def served_by() -> dict[str, int]:
            entries = access_entries(server)
            return {e["request_id"]: e["pid"] for e in entries if e["request_id"] in reported}

        answered = poll(lambda: len(served_by()) == len(reported) and served_by(), 5)
        assert answered, server.log()
        assert {rid: audit["pid"] for rid, audit in reported.items()} == answered

        def writer_pids() -> set[int]:
            return {row["pid"] for row in writer_rows(database)}

        assert poll(lambda: writer_pids() == workers, 15), writer_pids()
        assert server.pid not in writer_pids()
        # Still the same two workers: none was replaced while we looked.
        assert children_of(server.pid) == workers
        assert thread_count(server.pid) == 1
