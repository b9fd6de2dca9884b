"""The cost of the security audit log: the protected endpoints with audit off, on and on without
flood control in one run, and the audit writer's drain rate into PostgreSQL.

Part 1 starts three gunicorn servers (2 sync workers each), each on a fresh PostgreSQL database
of its own: `off` (AUDIT_ENABLED=false), `on` (the defaults: audit on with flood control, as
production runs; the state the targets judge) and `rows` (AUDIT_BURST_LIMIT=0: every denial its
own row, the worst case, reported for comparison only). wrk drives them from 127.0.0.1 in
interleaved rounds: /health (the baseline), /api/auth/session with a valid token, the same with
a garbage token (401 and an `auth.denied` event a request: the heaviest audit case) and
/api/users/me. Every figure is a ratio to /health of the same server and round; the audit cost of
an endpoint is its ratio on `on` (or `rows`) over its ratio on `off`, and its p99 there minus on
`off`. Afterwards each server's audit_events must account for the 401s its access log reports:
on `on`, auth.denied rows plus the counts of the auth.denied.suppressed rows; on `rows`, one
auth.denied row each; on `off`, nothing.

Part 2 times the writer alone, in this process: BENCH_DRAIN_EVENTS events built up front, then
from the first `submit` until `flush` returns, on a migrated database (indexes in place).

Run it through `bash bench/run.sh audit` (or `make bench`); bench/README.md explains the figures.
Reuses auth_bench.py (same folder) for the databases, the servers and wrk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import auth_bench as ab
import psycopg2
from auth_bench import DURATION, ROUNDS, WARMUP, BenchError, Result, Server, _log
from sqlalchemy.engine import make_url

DRAIN_EVENTS = int(os.environ.get("BENCH_DRAIN_EVENTS", "200000"))
DRAIN_REPEATS = int(os.environ.get("BENCH_DRAIN_REPEATS", "3"))
THROUGHPUT_TARGET = 0.95  # audit on / off, as ratios to /health: costs at most 5 %
P99_TARGET_MS = 1.0  # p99 with audit on minus without
DRAIN_TARGET = 20_000  # events/s into PostgreSQL
ROWS_WAIT = 60.0  # seconds the audit servers' writers get to write what they hold
SETTLE = 1.0  # seconds after a timed run of auth.denied events: the writer drains its rest
BAD_TOKEN = "bench-garbage-token"  # not JWT-shaped: refused before any signature check
USER_AGENT = "MITA/2.3.1 (iPhone; iOS 17.5.1; Scale/3.00) Alamofire/5.9.1"

# The three audit states, in the order the servers start (and run in odd rounds).
STATES = ("off", "on", "rows")
JUDGED = "on"  # what production runs: the only state the targets judge
AUDITED = ("on", "rows")  # the states that record events
SETTINGS = {
    "off": {"AUDIT_ENABLED": "false"},
    "on": {"AUDIT_ENABLED": "true"},  # flood control at its defaults (see _server_env)
    "rows": {"AUDIT_ENABLED": "true", "AUDIT_BURST_LIMIT": "0"},
}
DESCRIBED = {
    "off": "AUDIT_ENABLED=false: records nothing (the baseline)",
    "on": "the defaults: audit on, flood control on (what production runs; judged)",
    "rows": "AUDIT_BURST_LIMIT=0: every denial its own row (the worst case; informative only)",
}
ROLE = {"on": "judged", "rows": "informative only, not judged"}


def database_name(state: str) -> str:
    return f"{ab.DB_NAME}_{state}"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    bad_token: bool = False

    @property
    def expect_status(self) -> int:
        return 401 if self.bad_token else 200


HEALTH = Endpoint("/health", ab.HEALTH)
DENIED = Endpoint("/api/auth/session (bad token)", ab.SESSION, bad_token=True)
ENDPOINTS = (
    HEALTH,
    Endpoint("/api/auth/session", ab.SESSION),
    DENIED,
    Endpoint("/api/users/me", ab.ME),
)


@dataclass
class Events:
    """One server's bad-token requests against what its audit_events hold (after it stopped)."""

    sent: int  # bad-token requests wrk completed (+ the status probe)
    served: int  # 401s on /api/auth/session per the access log
    other_statuses: dict[int, int]  # any status on that path other than 200 and 401
    polled: int | None  # auth.denied rows + suppressed counts when the poll ended
    waited: float
    denied_rows: int  # auth.denied rows
    denied_matched: int  # ... whose request id is one of this server's 401s
    denied_not_401: int  # ... whose status is not 401
    suppressed_rows: int  # auth.denied.suppressed rows
    suppressed_count: int  # ... the sum of their details->>'count'
    suppressed_matched: int  # ... whose last_request_id is one of this server's 401s
    flood_settings: list[tuple[int, float]]  # (recorded_one_by_one, window_seconds) seen
    all_rows: int  # rows of every type
    writers: dict[str, int]  # the workers' last reports (audit_writers), summed
    spill_lines: int
    worker_boots: int

    @property
    def accounted(self) -> int:
        return self.denied_rows + self.suppressed_count


@dataclass
class HttpRun:
    cells: dict[tuple[int, str, str], Result]  # (round, endpoint name, audit state)
    events: dict[str, Events]  # per audit state


@dataclass(frozen=True)
class Drain:
    events: int
    seconds: float
    batches: int
    client_cpu: float  # this process's CPU seconds (every thread) over the drain
    db_cpu: float  # the writer's PostgreSQL session's CPU seconds

    @property
    def rate(self) -> float:
        return self.events / self.seconds


# --- part 1: the endpoints, in the three audit states --------------------------------------------


def _status(server: Server, path: str, token: str) -> int:
    request = urllib.request.Request(server.base + path)  # noqa: S310 - always http://127.0.0.1
    request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _query(database_url: str, sql: str, args: Any = ()) -> list[tuple[Any, ...]]:
    url = make_url(database_url)
    connection = psycopg2.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database,
        connect_timeout=5,
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def _accounted(database_url: str) -> int:
    """auth.denied rows plus the denials the auth.denied.suppressed rows count."""
    sql = (
        "SELECT count(*) FILTER (WHERE event_type = 'auth.denied')"
        " + coalesce(sum((details->>'count')::bigint)"
        " FILTER (WHERE event_type = 'auth.denied.suppressed'), 0)"
        " FROM audit_events"
    )
    return int(_query(database_url, sql)[0][0])


def _access_log(server: Server) -> tuple[set[str], dict[int, int], int, int]:
    """From a server's gunicorn log: the request ids of its 401s on /api/auth/session, every
    status on that path, the audit spill lines and the workers booted."""
    ids: set[str] = set()
    statuses: dict[int, int] = {}
    spilled = boots = 0
    with server.log_path.open(errors="replace") as log:
        for line in log:
            if "Booting worker" in line:
                boots += 1
            if '"audit_spill"' in line:
                spilled += 1
            if not line.startswith("{") or f'"path": "{ab.SESSION}"' not in line:
                continue
            entry = json.loads(line)
            if "duration_ms" not in entry:
                continue
            statuses[entry["status"]] = statuses.get(entry["status"], 0) + 1
            if entry["status"] == 401:
                ids.add(entry["request_id"])
    return ids, statuses, spilled, boots


def _token_for(endpoint: Endpoint, token: str) -> str:
    return BAD_TOKEN if endpoint.bad_token else token


def _server_env(state: str, database_url: str) -> dict[str, str]:
    env = ab._app_env(database_url, None, **SETTINGS[state])
    if state == "on":  # the defaults, whatever this shell sets
        env.pop("AUDIT_BURST_LIMIT", None)
        env.pop("AUDIT_BURST_WINDOW", None)
    return env


def _wait_for_events(
    urls: dict[str, str], expected: dict[str, int]
) -> dict[str, tuple[int, float]]:
    """Poll each audit server's database until its auth.denied rows plus suppressed counts reach
    `expected` (its 401s), for at most ROWS_WAIT s in all. On `on` the last flood window's
    summary comes when that window closes (AUDIT_BURST_WINDOW after it opened)."""
    start = time.monotonic()
    polled = {}
    for state, count in expected.items():
        rows = _accounted(urls[state])
        while rows < count and time.monotonic() - start < ROWS_WAIT:
            time.sleep(0.25)
            rows = _accounted(urls[state])
        polled[state] = rows, time.monotonic() - start
    return polled


def measure(
    servers: list[Server], tokens: dict[str, str]
) -> tuple[dict[tuple[int, str, str], Result], dict[str, int]]:
    """ROUNDS rounds; in each, every endpoint runs on the three servers back to back (off, on,
    rows in odd rounds, the reverse in even ones), so the figures an audit cost compares are
    seconds apart."""
    sent = dict.fromkeys(STATES, 0)
    for server in servers:
        token = tokens[server.cache]
        for endpoint in ENDPOINTS:
            status = _status(server, endpoint.path, _token_for(endpoint, token))
            if status != endpoint.expect_status:
                raise BenchError(f"{endpoint.name} answered {status}, not {endpoint.expect_status}")
            sent[server.cache] += endpoint.bad_token
            if WARMUP:
                *_, total = ab._wrk_with_retry(
                    server,
                    endpoint.path,
                    _token_for(endpoint, token),
                    WARMUP,
                    expect_status=endpoint.expect_status,
                )
                sent[server.cache] += total if endpoint.bad_token else 0
    cells: dict[tuple[int, str, str], Result] = {}
    for round_no in range(1, ROUNDS + 1):
        for endpoint in ENDPOINTS:
            for server in servers if round_no % 2 else servers[::-1]:
                r = ab.timed(
                    server,
                    endpoint.path,
                    _token_for(endpoint, tokens[server.cache]),
                    DURATION,
                    round_no,
                    expect_status=endpoint.expect_status,
                )
                _log(
                    f"round {round_no} audit {r.cache:4} {endpoint.name:30} {r.rps:8.1f} req/s"
                    f"  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms"
                    f"  cpu/req app {r.app_cpu_us:5.0f} us  db {r.db_cpu_us:4.0f} us"
                )
                cells[round_no, endpoint.name, server.cache] = r
                if endpoint.bad_token:
                    sent[server.cache] += r.requests
                    if server.cache in AUDITED:
                        time.sleep(SETTLE)
    return cells, sent


def _events(
    database_url: str,
    log: tuple[set[str], dict[int, int], int, int],
    sent: int,
    polled: tuple[int, float] | None,
) -> Events:
    """What one server's database holds, once the server has stopped."""
    ids, statuses, spill_lines, boots = log
    id_list = sorted(ids)
    (
        denied,
        denied_matched,
        denied_not_401,
        suppressed,
        suppressed_count,
        suppressed_matched,
        all_rows,
    ) = _query(
        database_url,
        "SELECT count(*) FILTER (WHERE event_type = 'auth.denied'),"
        " count(*) FILTER (WHERE event_type = 'auth.denied' AND request_id = ANY(%(ids)s)),"
        " count(*) FILTER (WHERE event_type = 'auth.denied' AND status IS DISTINCT FROM 401),"
        " count(*) FILTER (WHERE event_type = 'auth.denied.suppressed'),"
        " coalesce(sum((details->>'count')::bigint)"
        "  FILTER (WHERE event_type = 'auth.denied.suppressed'), 0),"
        " count(*) FILTER (WHERE event_type = 'auth.denied.suppressed'"
        "  AND details->>'last_request_id' = ANY(%(ids)s)),"
        " count(*)"
        " FROM audit_events",
        {"ids": id_list},
    )[0]
    settings = _query(
        database_url,
        "SELECT DISTINCT (details->>'recorded_one_by_one')::int,"
        " (details->>'window_seconds')::float"
        " FROM audit_events WHERE event_type = 'auth.denied.suppressed' ORDER BY 1, 2",
    )
    written, batches, failures, spilled = _query(
        database_url,
        "SELECT coalesce(sum(written), 0), coalesce(sum(batches), 0),"
        " coalesce(sum(write_failures), 0), coalesce(sum(spilled), 0) FROM audit_writers",
    )[0]
    return Events(
        sent=sent,
        served=statuses.get(401, 0),
        other_statuses={s: n for s, n in statuses.items() if s not in (200, 401)},
        polled=polled[0] if polled else None,
        waited=polled[1] if polled else 0.0,
        denied_rows=int(denied),
        denied_matched=int(denied_matched),
        denied_not_401=int(denied_not_401),
        suppressed_rows=int(suppressed),
        suppressed_count=int(suppressed_count),
        suppressed_matched=int(suppressed_matched),
        flood_settings=[(int(limit), float(window)) for limit, window in settings],
        all_rows=int(all_rows),
        writers={
            "written": int(written),
            "batches": int(batches),
            "write_failures": int(failures),
            "spilled": int(spilled),
        },
        spill_lines=spill_lines,
        worker_boots=boots,
    )


def run_http(workdir: Path, urls: dict[str, str]) -> HttpRun:
    servers: list[Server] = []
    try:
        for state in STATES:  # all stay up; only the one being timed gets traffic
            env = _server_env(state, urls[state])
            servers.append(Server(state, env, workdir, setting="audit", described="audit"))
        for server in servers:
            server.wait_healthy()
        account = {"email": "bench@example.com", "password": "bench password 123"}
        tokens = {  # one account a server, each in its own database
            server.cache: ab._http("POST", server.base + "/api/auth/register", account)["data"][
                "access_token"
            ]
            for server in servers
        }
        cells, sent = measure(servers, tokens)
        ids = {server.cache: _access_log(server)[0] for server in servers}
        _log("waiting for the writers of the audit servers (on, rows) to write the denials")
        polled = _wait_for_events(urls, {state: len(ids[state]) for state in AUDITED})
    except BaseException:
        ab.show_logs(servers)
        raise
    finally:
        for server in servers:
            server.stop()
    # Stopped: each worker flushed its queue (and on `on` its open flood windows' summaries) and
    # wrote its last report on the way out.
    events = {
        server.cache: _events(
            urls[server.cache], _access_log(server), sent[server.cache], polled.get(server.cache)
        )
        for server in servers
    }
    return HttpRun(cells=cells, events=events)


# --- part 2: the writer's drain rate -------------------------------------------------------------


def _synthetic_events(build: Any, count: int) -> list[dict[str, Any]]:
    """`count` auth.denied events as wide as the ones a request records."""
    events = []
    for _ in range(count):
        event = build(
            "auth.denied",
            details={"reason": "invalid_token", "detail": "The access token is malformed."},
        )
        event.update(
            request_id=uuid.uuid4().hex,
            ip="203.0.113.57",
            user_agent=USER_AGENT,
            method="GET",
            path=ab.SESSION,
            status=401,
        )
        events.append(event)
    return events


def _truncate(database_url: str) -> None:
    _query(database_url, "TRUNCATE audit_events")
    try:  # a checkpoint now rather than in the middle of a repetition
        _query(database_url, "CHECKPOINT")
    except psycopg2.Error as error:
        _log(f"no CHECKPOINT between repetitions ({type(error).__name__})")


def drain_rate(database_url: str, database: str) -> list[Drain]:
    """The writer thread's throughput into audit_events, DRAIN_REPEATS times."""
    sys.path.insert(0, str(ab.ROOT))
    from mita_app import create_app
    from mita_app.audit import writer_of
    from mita_app.audit.events import build

    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": ab.SECRET_KEY,
        "AUDIT_ENABLED": "true",
        "AUDIT_QUEUE_SIZE": str(DRAIN_EVENTS),
        "AUDIT_BATCH_SIZE": os.environ.get("AUDIT_BATCH_SIZE", "500"),
        "AUDIT_FLUSH_INTERVAL": os.environ.get("AUDIT_FLUSH_INTERVAL", "0.25"),
        "LOG_LEVEL": "WARNING",
    }
    app = create_app({"TESTING": True}, env=env)
    writer = writer_of(app)
    _log(f"building {DRAIN_EVENTS} events (not timed)")
    events = _synthetic_events(build, DRAIN_EVENTS)
    timeout = max(60.0, DRAIN_EVENTS / 2000)
    drains = []
    try:
        # Not timed: the writer's thread, connection and the table's pages come to life.
        writer.submit(events[: min(1000, DRAIN_EVENTS)])
        if not writer.flush(timeout):
            raise BenchError(f"the writer did not write its warm-up events in {timeout:g} s")
        for repetition in range(1, DRAIN_REPEATS + 1):
            _truncate(database_url)
            backends = ab._database_backends(database)
            before = writer.snapshot()
            cpu0, db0 = time.process_time(), ab._cpu_ticks(backends)
            start = time.perf_counter()
            writer.submit(events)
            flushed = writer.flush(timeout)
            seconds = time.perf_counter() - start
            cpu, db_ticks = time.process_time() - cpu0, ab._cpu_ticks(backends) - db0
            after = writer.snapshot()
            if not flushed:
                raise BenchError(f"the writer did not drain {DRAIN_EVENTS} events in {timeout:g} s")
            written = after["written"] - before["written"]
            lost = after["spilled"] - before["spilled"]
            rows = int(_query(database_url, "SELECT count(*) FROM audit_events")[0][0])
            if lost or written != DRAIN_EVENTS or rows != DRAIN_EVENTS:
                raise BenchError(
                    f"{DRAIN_EVENTS} events submitted: {written} written, {lost} spilled,"
                    f" {rows} rows in audit_events"
                )
            drain = Drain(
                events=written,
                seconds=seconds,
                batches=after["batches"] - before["batches"],
                client_cpu=cpu,
                db_cpu=db_ticks * ab._TICK_US / 1e6,
            )
            _log(
                f"drain {repetition}: {drain.rate:9.0f} events/s  {drain.seconds:6.2f} s"
                f"  {drain.batches} batches"
            )
            drains.append(drain)
    finally:
        writer.stop(timeout=10)
        with app.app_context():
            from mita_app.extensions import db

            db.engine.dispose()
    return drains


# --- the report ----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


CHECKED = {
    "off": "records nothing",
    "on": "auth.denied rows + suppressed counts = its 401s, every row's request id one of them,"
    " flood control acted",
    "rows": "one auth.denied row per 401, each with the request id of one of them",
}


def checks(state: str, e: Events) -> list[tuple[str, bool]]:
    """What must hold of one server's audit events: (what, whether it does)."""
    common = [
        (f"every bad-token response a 401 (others: {e.other_statuses})", not e.other_statuses),
        ("some bad-token requests served", e.served > 0),
        (
            f"nothing spilled ({e.writers['spilled']} reported, {e.spill_lines} log lines)",
            e.writers["spilled"] == 0 and e.spill_lines == 0,
        ),
    ]
    if state == "off":
        return [(f"no audit rows ({e.all_rows})", e.all_rows == 0), *common]
    denied = [
        (
            f"every auth.denied row has a 401's request id ({e.denied_matched} of {e.denied_rows})",
            e.denied_matched == e.denied_rows,
        ),
        (f"every auth.denied row has status 401 ({e.denied_not_401} not)", e.denied_not_401 == 0),
    ]
    if state == "on":
        return [
            (
                f"rows + suppressed counts = 401s ({e.accounted} against {e.served})",
                e.accounted == e.served,
            ),
            *denied,
            (
                f"every summary's last_request_id is a 401's"
                f" ({e.suppressed_matched} of {e.suppressed_rows})",
                e.suppressed_matched == e.suppressed_rows,
            ),
            ("flood control acted (an auth.denied.suppressed row)", e.suppressed_rows >= 1),
            *common,
        ]
    return [
        (f"one row per 401 ({e.denied_rows} against {e.served})", e.denied_rows == e.served),
        *denied,
        (f"no auth.denied.suppressed rows ({e.suppressed_rows})", e.suppressed_rows == 0),
        *common,
    ]


def report(run: HttpRun, drains: list[Drain], busy_before: float) -> bool:
    """Print the figures; False if an audit event went missing or astray."""
    cells = run.cells
    rounds = sorted({n for n, _, _ in cells})

    def ratio(n: int, name: str, state: str, field: str) -> float:
        value = getattr(cells[n, name, state], field)
        return value / getattr(cells[n, HEALTH.name, state], field)

    def norm(n: int, name: str, state: str) -> float:
        return ratio(n, name, state, "rps") / ratio(n, name, "off", "rps")

    def p99_delta(n: int, name: str, state: str) -> float:
        return cells[n, name, state].p99_ms - cells[n, name, "off"].p99_ms

    print()
    print(
        f"wrk -t{ab.THREADS} -c{ab.CONNECTIONS} -d{DURATION}s x {len(rounds)} rounds,"
        f" gunicorn 2 sync workers each (GUNICORN_MAX_REQUESTS={ab.MAX_REQUESTS}),"
        f" three servers, each on a PostgreSQL database of its own; medians over the rounds"
    )
    print(f"machine busy before the run: {busy_before:.0%} of {os.cpu_count()} CPUs")
    print("audit states (column `audit`):")
    for state in STATES:
        print(f"  {state:<5} {DESCRIBED[state]}")
    print("/health, p50/h, p99/h: req/s, p50 and p99 over those of /health, same server and round")
    print("app us, db us: CPU time per request of the gunicorn workers and PostgreSQL sessions")
    print(
        f"{'endpoint':<32}{'audit':<6}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'/health':>9}  {'range':<10}{'p50/h':>6}{'p99/h':>6}{'app us':>8}{'db us':>7}"
    )
    for state in STATES:
        for endpoint in ENDPOINTS:
            runs = [cells[n, endpoint.name, state] for n in rounds]
            spread = [ratio(n, endpoint.name, state, "rps") for n in rounds]
            print(
                f"{endpoint.name:<32}{state:<6}{median(r.rps for r in runs):>9.1f}"
                f"{median(r.p50_ms for r in runs):>8.2f}{median(r.p99_ms for r in runs):>8.2f}"
                f"{median(spread):>9.2f}  {min(spread):.2f}-{max(spread):<5.2f}"
                f"{median(ratio(n, endpoint.name, state, 'p50_ms') for n in rounds):>6.2f}"
                f"{median(ratio(n, endpoint.name, state, 'p99_ms') for n in rounds):>6.2f}"
                f"{median(r.app_cpu_us for r in runs):>8.0f}"
                f"{median(r.db_cpu_us for r in runs):>7.0f}"
            )

    for state in AUDITED:
        print()
        print(
            f"audit cost of `{state}` ({ROLE[state]}): {state} against off in the same round"
            " (median over the rounds, range)"
        )
        print(
            f"  {state}/off: req/s ratio to /health on `{state}` over the same on `off`;"
            f" raw: plain req/s; p99 +ms: p99 on `{state}` minus on `off`"
        )
        label = f"{state}/off"
        print(
            f"{'endpoint':<32}{label:>8}  {'range':<10}{'raw':>6}{'p99 +ms':>9}  {'range':<14}"
            f"throughput (>= {THROUGHPUT_TARGET:.2f})  p99 (<= +{P99_TARGET_MS:g} ms)"
            + ("" if state == JUDGED else "  [informative]")
        )
        for endpoint in ENDPOINTS:
            ratios = [norm(n, endpoint.name, state) for n in rounds]
            raw = [
                cells[n, endpoint.name, state].rps / cells[n, endpoint.name, "off"].rps
                for n in rounds
            ]
            p99 = [p99_delta(n, endpoint.name, state) for n in rounds]
            if endpoint is HEALTH:
                verdicts = "(the baseline; it pays the after-request hook too)"
                norm_text = f"{'-':>8}  {'':<10}"
            else:
                verdicts = (
                    f"{_verdict(median(ratios) >= THROUGHPUT_TARGET):<21}"
                    f"  {_verdict(median(p99) <= P99_TARGET_MS)}"
                )
                norm_text = f"{median(ratios):>8.3f}  {min(ratios):.2f}-{max(ratios):<5.2f}"
            print(
                f"{endpoint.name:<32}{norm_text}{median(raw):>6.3f}{median(p99):>+9.2f}"
                f"  {min(p99):+.2f}..{max(p99):<+8.2f}{verdicts}"
            )

    print()
    events = run.events
    print(f"audit events of {DENIED.name}: every 401 is an auth.denied event; on `on` a worker")
    print("records the first ones of each flood window one by one and counts the rest into one")
    print("auth.denied.suppressed row (a summary) when the window closes")
    print("  wrk: requests wrk completed, + 1 probe (those in flight when it stopped are not")
    print("    counted); 401s: per the server's access log; rows: auth.denied rows;")
    print("  summaries, counted: auth.denied.suppressed rows and the sum of their counts;")
    print("  polled: rows + counted when the poll ended, after `waited` s (before the stop);")
    print("  ids ok: rows and summaries whose (last) request id is one of the server's 401s;")
    print("  not 401: auth.denied rows of another status; all rows: every type (registration too)")
    print(
        f"{'audit':<6}{'wrk':>8}{'401s':>8}{'rows':>8}{'summaries':>10}{'counted':>9}"
        f"{'rows+cnt':>9}{'polled':>9}{'waited':>7}{'ids ok':>8}{'not 401':>8}{'all rows':>9}"
    )
    for state in STATES:
        e = events[state]
        polled = "-" if e.polled is None else str(e.polled)
        waited = "-" if e.polled is None else f"{e.waited:.1f}"
        print(
            f"{state:<6}{e.sent:>8}{e.served:>8}{e.denied_rows:>8}{e.suppressed_rows:>10}"
            f"{e.suppressed_count:>9}{e.accounted:>9}{polled:>9}{waited:>7}"
            f"{e.denied_matched + e.suppressed_matched:>8}{e.denied_not_401:>8}{e.all_rows:>9}"
        )
    for state in AUDITED:
        w = events[state].writers
        print(
            f"  `{state}` writers' last reports: written {w['written']} (every type) in"
            f" {w['batches']} batches, {w['write_failures']} write failures, {w['spilled']} spilled"
        )
    print(
        "  spill lines in the logs: "
        + ", ".join(f"{state} {events[state].spill_lines}" for state in STATES)
        + "; gunicorn workers booted (2 at start, more if recycled): "
        + ", ".join(f"{state} {events[state].worker_boots}" for state in STATES)
    )
    on = events[JUDGED]
    settings = ", ".join(f"{limit} per {window:g} s window" for limit, window in on.flood_settings)
    print(
        f"  flood control on `{JUDGED}` ({settings or 'no summary written'}, per worker and"
        f" source): {on.denied_rows} of {on.served} denials written one by one"
        f" ({on.denied_rows / max(on.served, 1):.2%}), the rest counted in"
        f" {on.suppressed_rows} summaries"
    )

    print()
    batch = drains[0].events / drains[0].batches if drains and drains[0].batches else 0
    print(
        f"audit writer drain rate: {DRAIN_EVENTS} auth.denied events submitted at once to one"
        f" writer in this process, timed from the first submit until flush returns"
        f" (batch size {os.environ.get('AUDIT_BATCH_SIZE', '500')}, {batch:.0f} events a batch"
        f" on average; audit_events truncated before each repetition, indexes in place)"
    )
    print("  client cpu: this process (every thread); db cpu: the writer's PostgreSQL session")
    print(
        f"{'repetition':>12}{'events/s':>11}{'seconds':>9}{'batches':>9}"
        f"{'client cpu':>12}{'db cpu':>8}"
    )
    for n, drain in enumerate(drains, 1):
        print(
            f"{n:>12}{drain.rate:>11.0f}{drain.seconds:>9.2f}{drain.batches:>9}"
            f"{drain.client_cpu / drain.seconds:>12.0%}{drain.db_cpu / drain.seconds:>8.0%}"
        )
    rate = median(d.rate for d in drains)
    per_event = median(d.client_cpu / d.events for d in drains) * 1e6
    db_per_event = median(d.db_cpu / d.events for d in drains) * 1e6
    print(f"  per event: {per_event:.1f} us of client CPU, {db_per_event:.1f} us of PostgreSQL CPU")

    print()
    print(
        f"targets judge `{JUDGED}` (the defaults, as production runs) against `off`; the `rows`"
        " lines show the worst case without flood control and judge nothing"
    )
    for state in AUDITED:
        tag = f"{state}, {'judged' if state == JUDGED else 'informative'}"
        for endpoint in ENDPOINTS[1:]:
            cost = median(norm(n, endpoint.name, state) for n in rounds)
            p99 = median(p99_delta(n, endpoint.name, state) for n in rounds)
            print(
                f"target: [{tag}] {endpoint.name} audit cost {1 - cost:+.1%} throughput"
                f" (<= 5%) {_verdict(cost >= THROUGHPUT_TARGET)},"
                f" p99 {p99:+.2f} ms (<= {P99_TARGET_MS:g} ms) {_verdict(p99 <= P99_TARGET_MS)}"
            )
    print(
        f"target: writer drain rate {rate:.0f} events/s (>= {DRAIN_TARGET})"
        f" {_verdict(rate >= DRAIN_TARGET)}"
    )
    complete = True
    for state in STATES:
        failed = [what for what, ok in checks(state, events[state]) if not ok]
        complete = complete and not failed
        verdict = "OK" if not failed else "FAILED: " + "; ".join(failed)
        print(f"check: {state:<4} {CHECKED[state]}: {verdict}")
    return complete


def main() -> int:
    if shutil.which("wrk") is None:
        _log("wrk is not installed: apt-get update && apt-get install -y wrk")
        return 2
    load = len(STATES) * len(ENDPOINTS) * (ROUNDS * DURATION + WARMUP)
    load += len(AUDITED) * ROUNDS * SETTLE
    if min(DURATION, ROUNDS, DRAIN_EVENTS, DRAIN_REPEATS) < 1 or WARMUP < 0 or load > 600:
        # Each server's access token lasts 900 s (ACCESS_TOKEN_TTL); stay well inside it.
        _log(
            f"BENCH_DURATION/ROUNDS/WARMUP add up to {load:g} s of load (keep it under 600 s);"
            " BENCH_DRAIN_EVENTS and BENCH_DRAIN_REPEATS must be at least 1"
        )
        return 2
    started = time.monotonic()
    busy = ab.settle_in()
    workdir = Path(tempfile.mkdtemp(prefix="mita-audit-bench-"))
    try:
        with ab.migrated_databases({state: database_name(state) for state in STATES}) as urls:
            http_start = time.monotonic()
            http = run_http(workdir, urls)
            drain_start = time.monotonic()
            # On `on`'s database, its events counted: each repetition truncates audit_events.
            drains = drain_rate(urls[JUDGED], database_name(JUDGED))
            drain_end = time.monotonic()
    except (BenchError, OSError, subprocess.SubprocessError, psycopg2.Error) as error:
        _log(f"failed: {error}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = report(http, drains, busy)
    _log(
        f"the audit bench took {time.monotonic() - started:.0f} s: setup"
        f" {http_start - started:.0f} s, requests {drain_start - http_start:.0f} s"
        f" ({load:g} s of it load), drain {drain_end - drain_start:.0f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
