"""AUTH_MODE=better-auth against local mode: the cost of an external auth server behind a warm
cache, and how fast the app answers 503 once the server hangs and the breaker is open.

Part 1 starts two gunicorn servers (2 sync workers each), each on a fresh PostgreSQL database of
its own: `local` (AUTH_MODE=local, the baseline, as auth_bench.py runs it) and `better-auth`
(AUTH_MODE=better-auth, AUTH_SERVER_URL the stand-in Better Auth server of tests/auth_server.py,
run here in this process in `delay` mode: every get-session call answers after 20 ms). wrk drives
/health and /api/auth/session on both in interleaved rounds: on `local` with an access token from
registering, on `better-auth` with `Authorization: Bearer <an opaque session token>` the stand-in
knows, after a warm-up that has filled the session cache of both workers. The judged figure is
better-auth's /api/auth/session req/s over local's, each normalised by the /health of its own
server and round (and raw). The stand-in counts its get-session calls during the timed runs.

Part 2 switches the stand-in to `hang`, sends requests with fresh tokens until the breaker of
each `better-auth` worker has opened (AUTH_SERVER_TIMEOUT=1, AUTH_BREAKER_FAILURES=3, and an
AUTH_BREAKER_RESET longer than the run), checks that both are open, then times /api/auth/session
with another fresh token: every answer must be a 503, with no get-session call meanwhile.

Run it through `bash bench/run.sh better_auth` (or `make bench`); bench/README.md explains the
figures. Reuses auth_bench.py (same folder) for the databases, the servers and wrk.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

import auth_bench as ab
import psycopg2
from auth_bench import DURATION, ROUNDS, WARMUP, BenchError, Result, Server, _log

LOCAL, EXTERNAL = "local", "better-auth"
MODES = (LOCAL, EXTERNAL)  # the order the servers start in (and run in, in odd rounds)
ENDPOINTS = (ab.HEALTH, ab.SESSION)
WORKERS = 2  # sync workers a server (auth_bench's WEB_CONCURRENCY)
UPSTREAM_DELAY = 0.02  # seconds the stand-in takes for each get-session call
SESSION_CACHE_TTL = 60.0  # AUTH_SESSION_CACHE_TTL: the app's default, set explicitly
SERVER_TIMEOUT = 1.0  # AUTH_SERVER_TIMEOUT: what each failing call costs while opening
BREAKER_FAILURES = 3  # AUTH_BREAKER_FAILURES: the default
BREAKER_RESET = 600.0  # AUTH_BREAKER_RESET: longer than any allowed run (load <= 600 s)
BREAKER_CONNECTIONS = int(os.environ.get("BENCH_BREAKER_CONNECTIONS", str(WORKERS)))
THROUGHPUT_TARGET = 0.9  # better-auth /api/auth/session req/s over local's
P99_TARGET_MS = 5.0  # p99 of the 503s with the breaker open
OPEN_WAIT = 60.0  # seconds the breakers get to open
FAST_MS = 100.0  # a fresh-token 503 faster than this did not wait for the auth server
BREAKER_ENDPOINT = f"{ab.SESSION} (breaker open)"
OPENED_LINE = "circuit auth-server: closed -> open"
UNAVAILABLE_LINE = "auth_unavailable: "  # the app's warning for each 503 it answers
DESCRIBED = {
    LOCAL: "AUTH_MODE=local: mita's own access token (the baseline, as auth_bench runs it)",
    EXTERNAL: (
        f"AUTH_MODE=better-auth: an opaque session token, checked with the stand-in"
        f" (get-session +{UPSTREAM_DELAY * 1000:g} ms), cached {SESSION_CACHE_TTL:g} s"
    ),
}


def database_name(mode: str) -> str:
    return f"{ab.DB_NAME}_{mode.replace('-', '_')}"


def _stand_in_module() -> Any:
    """tests/auth_server.py, from the repository root (it is not a package on the path)."""
    root = str(ab.ROOT)
    if root not in sys.path:
        sys.path.insert(1, root)  # after bench/ (auth_bench), before site-packages
    return importlib.import_module("tests.auth_server")


def _server_env(mode: str, database_url: str, stand_in_url: str) -> dict[str, str]:
    env = ab._app_env(database_url, None)  # local mode's AUTH_CACHE_TTL at its default
    for name in [name for name in env if name.startswith("AUTH_")]:
        del env[name]  # whatever this shell sets, only the settings below apply
    env["AUTH_MODE"] = mode
    if mode == EXTERNAL:
        env.update(
            AUTH_SERVER_URL=stand_in_url,
            AUTH_SESSION_CACHE_TTL=f"{SESSION_CACHE_TTL:g}",
            AUTH_SERVER_TIMEOUT=f"{SERVER_TIMEOUT:g}",
            AUTH_BREAKER_FAILURES=str(BREAKER_FAILURES),
            AUTH_BREAKER_RESET=f"{BREAKER_RESET:g}",
        )
    return env


def _request(server: Server, path: str, token: str) -> tuple[int, float, Any]:
    """(status, seconds, JSON body or None) of one GET with a bearer token."""
    request = urllib.request.Request(server.base + path)  # noqa: S310 - always http://127.0.0.1
    request.add_header("Authorization", f"Bearer {token}")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as error:
        status, raw = int(error.code), error.read()
    elapsed = time.perf_counter() - start
    try:
        return status, elapsed, json.loads(raw)
    except ValueError:
        return status, elapsed, None


def _log_offset(server: Server) -> int:
    return server.log_path.stat().st_size


def _log_lines(server: Server, offset: int = 0) -> list[str]:
    with server.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace").splitlines()


def _access(server: Server, path: str, offset: int) -> list[dict[str, Any]]:
    """The access-log entries of `path` written after `offset` (JSON lines with a duration)."""
    entries = []
    for line in _log_lines(server, offset):
        if line.startswith("{") and f'"path": "{path}"' in line:
            entry = json.loads(line)
            if "duration_ms" in entry:
                entries.append(entry)
    return entries


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _wrk(
    server: Server, path: str, token: str, seconds: int, connections: int, expect_status: int
) -> tuple[float, float, float, int]:
    threads = min(ab.THREADS, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-H", f"Authorization: Bearer {token}", server.base + path]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return ab.parse_wrk(done.stdout, expect_status=expect_status)


def timed_at(
    server: Server,
    path: str,
    token: str,
    round_no: int,
    *,
    connections: int,
    expect_status: int,
    seconds: int = DURATION,
) -> Result:
    """ab.timed at another connection count, without its retry: a response of another status
    than the expected one is a finding here, not noise."""
    workers, backends = ab._children(server.process.pid), ab._database_backends(server.database)
    app0, db0 = ab._cpu_ticks(workers), ab._cpu_ticks(backends)
    rps, p50, p99, total = _wrk(server, path, token, seconds, connections, expect_status)
    app_us = (ab._cpu_ticks(workers) - app0) * ab._TICK_US / total
    db_us = (ab._cpu_ticks(backends) - db0) * ab._TICK_US / total
    return Result(round_no, path, server.cache, rps, p50, p99, total, app_us, db_us)


# --- part 1: throughput with a warm cache --------------------------------------------------------


@dataclass
class Throughput:
    cells: dict[tuple[int, str, str], Result]  # (round, path, mode)
    upstream_calls: dict[tuple[int, str, str], int]  # get-session calls during each timed run
    warm_calls: int  # get-session calls while warming both workers' caches
    warmup_calls: int  # ... during the wrk warm-up that followed
    seconds: float  # wall time from the first warming call to the end of the last run


def _warm_both_workers(server: Server, token: str, stand_in: Any, session_path: str) -> int:
    """Concurrent requests until the stand-in has answered one get-session call per worker: a
    worker calls only while its cache misses, so WORKERS calls mean every worker's cache holds
    the token (for AUTH_SESSION_CACHE_TTL)."""
    deadline = time.monotonic() + 30
    with ThreadPoolExecutor(2 * WORKERS) as pool:
        while stand_in.calls(session_path) < WORKERS:
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the session cache of {WORKERS} workers did not fill within 30 s"
                    f" ({stand_in.calls(session_path)} get-session calls)"
                )
            batch = pool.map(lambda _: _request(server, ab.SESSION, token), range(2 * WORKERS))
            for status, _, body in batch:
                if status != 200:
                    raise BenchError(f"{ab.SESSION} on {EXTERNAL} answered {status}: {body}")
    return int(stand_in.calls(session_path))


def measure_throughput(
    servers: dict[str, Server], tokens: dict[str, str], stand_in: Any, session_path: str
) -> Throughput:
    """ROUNDS rounds; in each, every endpoint runs on both servers back to back (local first in
    odd rounds, better-auth first in even ones), so the figures compared are seconds apart."""
    start = time.monotonic()
    warm_calls = _warm_both_workers(servers[EXTERNAL], tokens[EXTERNAL], stand_in, session_path)
    _log(f"session cache warm on both {EXTERNAL} workers ({warm_calls} get-session calls)")
    for mode in MODES:
        for path in ENDPOINTS:  # each answers 200 to this token before it is timed
            status, _, body = _request(servers[mode], path, tokens[mode])
            if status != 200:
                raise BenchError(f"{path} on {mode} answered {status}: {body}")
    before = stand_in.calls(session_path)
    if WARMUP:
        for mode in MODES:
            for path in ENDPOINTS:
                ab._wrk_with_retry(servers[mode], path, tokens[mode], WARMUP)
    warmup_calls = stand_in.calls(session_path) - before
    cells: dict[tuple[int, str, str], Result] = {}
    calls: dict[tuple[int, str, str], int] = {}
    for round_no in range(1, ROUNDS + 1):
        for path in ENDPOINTS:
            for mode in MODES if round_no % 2 else MODES[::-1]:
                before = stand_in.calls(session_path)
                r = ab.timed(servers[mode], path, tokens[mode], DURATION, round_no)
                calls[round_no, path, mode] = stand_in.calls(session_path) - before
                _log(
                    f"round {round_no} {mode:11} {path:18} {r.rps:8.1f} req/s"
                    f"  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms"
                    f"  cpu/req app {r.app_cpu_us:5.0f} us  db {r.db_cpu_us:4.0f} us"
                    f"  get-session calls {calls[round_no, path, mode]}"
                )
                cells[round_no, path, mode] = r
    return Throughput(cells, calls, warm_calls, warmup_calls, time.monotonic() - start)


# --- part 2: the auth server hangs, the breaker is open ------------------------------------------


@dataclass
class Breaker:
    opening_requests: int = 0  # fresh-token requests sent until every worker's breaker opened
    opening_seconds: float = 0.0
    opened_lines: int = 0  # "closed -> open" transitions in the server's log
    burst: int = 0  # fresh-token requests of the check that followed
    burst_statuses: dict[int, int] = field(default_factory=dict)
    burst_slowest_ms: float = 0.0  # client side
    burst_server_ms: float = 0.0  # the slowest, per the access log
    burst_pids: set[int] = field(default_factory=set)
    burst_calls: int = 0  # get-session calls during that check
    ready_states: list[str] = field(default_factory=list)  # /ready's breaker state, each time
    workers: set[int] = field(default_factory=set)
    cells: dict[tuple[int, str], Result] = field(default_factory=dict)  # (round, endpoint)
    run_calls: int = 0  # get-session calls from the first warm-up to the last timed run
    run_statuses: dict[int, int] = field(default_factory=dict)  # on the path, per the log
    run_server_ms: list[float] = field(default_factory=list)  # their durations, per the log
    run_pids: set[int] = field(default_factory=set)
    run_warnings: int = 0  # "auth_unavailable" warning lines the app logged meanwhile
    ready_after: list[str] = field(default_factory=list)

    def open_everywhere(self) -> bool:
        return (
            self.opened_lines >= WORKERS
            and self.burst_statuses == {503: self.burst}
            and self.burst_server_ms < FAST_MS
            and self.burst_pids == self.workers
            and self.burst_calls == 0
            and all(state == "open" for state in self.ready_states)
        )


def _fresh_token(stand_in: Any) -> str:
    """A valid session the app has never seen: nothing cached, so each request must ask."""
    token = secrets.token_urlsafe(32)
    stand_in.add_session(token, user_id=f"bench-{token[:8]}", email=f"{token[:8]}@example.com")
    return token


def _ready_state(server: Server) -> str:
    document = ab._http("GET", server.base + "/ready")
    return str(document["data"]["checks"]["auth_server"]["breaker"]["state"])


def open_breakers(server: Server, stand_in: Any, session_path: str, b: Breaker) -> None:
    """Hang the stand-in, then send concurrent fresh-token requests (each waits out
    AUTH_SERVER_TIMEOUT, a failure) until the log shows every worker's breaker opened."""
    stand_in.set_mode("hang", path=session_path)
    start = time.monotonic()
    with ThreadPoolExecutor(2 * WORKERS) as pool:
        while True:
            b.opened_lines = sum(OPENED_LINE in line for line in _log_lines(server))
            if b.opened_lines >= WORKERS:
                break
            if time.monotonic() - start > OPEN_WAIT:
                raise BenchError(
                    f"{b.opened_lines} of {WORKERS} breakers opened in {OPEN_WAIT:g} s"
                    f" ({b.opening_requests} requests)"
                )
            tokens = [_fresh_token(stand_in) for _ in range(2 * WORKERS)]
            for status, _, body in pool.map(lambda t: _request(server, ab.SESSION, t), tokens):
                if status != 503:
                    raise BenchError(
                        f"with the auth server hung, {ab.SESSION} answered {status}: {body}"
                    )
            b.opening_requests += len(tokens)
    b.opening_seconds = time.monotonic() - start
    _log(
        f"breaker open on {b.opened_lines} workers after {b.opening_requests} requests"
        f" in {b.opening_seconds:.1f} s"
    )

    # Each worker has its own breaker: a burst of fresh tokens must be answered 503 at once by
    # every worker, without a call to the auth server (a closed breaker would wait 1 s).
    b.workers = set(ab._children(server.process.pid))
    offset, calls = _log_offset(server), stand_in.calls(session_path)
    tokens = [_fresh_token(stand_in) for _ in range(8 * WORKERS)]
    with ThreadPoolExecutor(2 * WORKERS) as pool:
        answers = list(pool.map(lambda t: _request(server, ab.SESSION, t), tokens))
    b.burst_calls = stand_in.calls(session_path) - calls
    b.burst = len(tokens)
    for status, _, _ in answers:
        b.burst_statuses[status] = b.burst_statuses.get(status, 0) + 1
    b.burst_slowest_ms = max(seconds for _, seconds, _ in answers) * 1000
    time.sleep(0.5)  # the access-log lines of the burst reach the file
    entries = _access(server, ab.SESSION, offset)
    b.burst_pids = {entry["pid"] for entry in entries}
    b.burst_server_ms = max((entry["duration_ms"] for entry in entries), default=0.0)
    b.ready_states = [_ready_state(server) for _ in range(4 * WORKERS)]
    _log(
        f"check: {b.burst} fresh tokens: {b.burst_statuses}, slowest {b.burst_slowest_ms:.1f} ms"
        f" (server side {b.burst_server_ms:.1f} ms), workers {sorted(b.burst_pids)} of"
        f" {sorted(b.workers)}, {b.burst_calls} get-session calls; /ready: {b.ready_states}"
    )
    if not b.open_everywhere():
        raise BenchError("the breaker is not open on every worker; see the check line above")


def measure_breaker(server: Server, stand_in: Any, session_path: str, b: Breaker) -> None:
    """ROUNDS rounds of /health and /api/auth/session with one fresh token (503 every time) at
    BENCH_BREAKER_CONNECTIONS, on the better-auth server with its breakers open."""
    token = _fresh_token(stand_in)
    status, _, body = _request(server, ab.SESSION, token)
    if status != 503:
        raise BenchError(f"{ab.SESSION} with the breaker open answered {status}: {body}")
    offset, calls = _log_offset(server), stand_in.calls(session_path)
    runs = ((ab.HEALTH, ab.HEALTH, 200), (BREAKER_ENDPOINT, ab.SESSION, 503))
    if WARMUP:
        for _, path, expect in runs:
            _wrk(server, path, token, WARMUP, BREAKER_CONNECTIONS, expect)
    for round_no in range(1, ROUNDS + 1):
        for name, path, expect in runs if round_no % 2 else runs[::-1]:
            r = timed_at(
                server,
                path,
                token,
                round_no,
                connections=BREAKER_CONNECTIONS,
                expect_status=expect,
            )
            _log(
                f"round {round_no} breaker open {name:34} {r.rps:8.1f} req/s"
                f"  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms"
                f"  cpu/req app {r.app_cpu_us:5.0f} us"
            )
            b.cells[round_no, name] = r
    b.run_calls = stand_in.calls(session_path) - calls
    time.sleep(0.5)  # the last access-log lines reach the file
    entries = _access(server, ab.SESSION, offset)
    for entry in entries:
        b.run_statuses[entry["status"]] = b.run_statuses.get(entry["status"], 0) + 1
    b.run_server_ms = [float(entry["duration_ms"]) for entry in entries]
    b.run_pids = {entry["pid"] for entry in entries}
    b.run_warnings = sum(UNAVAILABLE_LINE in line for line in _log_lines(server, offset))
    b.ready_after = [_ready_state(server) for _ in range(2 * WORKERS)]


# --- the run -------------------------------------------------------------------------------------


def run(workdir: Path, urls: dict[str, str]) -> tuple[Throughput, Breaker, list[str]]:
    module = _stand_in_module()
    session_path = module.SESSION_PATH
    stand_in = module.AuthServer().start()
    stand_in.set_mode("delay", path=session_path, seconds=UPSTREAM_DELAY)
    _log(f"stand-in Better Auth server on {stand_in.url}, get-session in delay mode")
    servers: dict[str, Server] = {}
    breaker = Breaker()
    problems: list[str] = []
    try:
        for mode in MODES:  # both stay up; only the one being timed gets traffic
            env = _server_env(mode, urls[mode], stand_in.url)
            servers[mode] = Server(mode, env, workdir, setting="auth", described="AUTH_MODE")
        for server in servers.values():
            server.wait_healthy()
        account = {"email": "bench@example.com", "password": "bench password 123"}
        registered = ab._http("POST", servers[LOCAL].base + "/api/auth/register", account)
        session_token = secrets.token_urlsafe(32)
        stand_in.add_session(session_token, user_id="bench-user", email="bench@example.com")
        tokens = {LOCAL: registered["data"]["access_token"], EXTERNAL: session_token}
        throughput = measure_throughput(servers, tokens, stand_in, session_path)
        open_breakers(servers[EXTERNAL], stand_in, session_path, breaker)
        measure_breaker(servers[EXTERNAL], stand_in, session_path, breaker)
    except BaseException:
        ab.show_logs(list(servers.values()))
        raise
    finally:
        for server in servers.values():
            server.stop()
        try:  # ends the handlers still hanging (one per failed call) and joins every thread
            stand_in.stop()
        except RuntimeError as error:
            problems.append(f"the stand-in did not stop cleanly: {error}")
        problems += [f"stand-in handler error: {error!r}" for error in stand_in.handler_errors]
    return throughput, breaker, problems


# --- the report ----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(t: Throughput, b: Breaker, problems: list[str], busy_before: float) -> bool:
    """Print the figures; False if a check failed (the figures would not mean what they say)."""
    cells = t.cells
    rounds = sorted({n for n, _, _ in cells})

    def ratio(n: int, path: str, mode: str) -> float:
        return cells[n, path, mode].rps / cells[n, ab.HEALTH, mode].rps

    print()
    print(
        f"wrk -t{ab.THREADS} -c{ab.CONNECTIONS} -d{DURATION}s x {len(rounds)} rounds,"
        f" gunicorn 2 sync workers each (GUNICORN_MAX_REQUESTS={ab.MAX_REQUESTS}), two servers,"
        f" each on a PostgreSQL database of its own; medians over the rounds"
    )
    print(f"machine busy before the run: {busy_before:.0%} of {os.cpu_count()} CPUs")
    print("servers (column `auth`):")
    for mode in MODES:
        print(f"  {mode:<12}{DESCRIBED[mode]}")
    print("/health: req/s ratio to /health of the same server and round (median, range);")
    print("app us, db us: CPU time per request of the gunicorn workers and PostgreSQL sessions;")
    print("calls: the stand-in's get-session calls during the timed runs (every round, summed)")
    print(
        f"{'endpoint':<20}{'auth':<13}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'/health':>9}  {'range':<11}{'app us':>7}{'db us':>7}{'calls':>7}"
    )
    for mode in MODES:
        for path in ENDPOINTS:
            runs = [cells[n, path, mode] for n in rounds]
            spread = [ratio(n, path, mode) for n in rounds]
            calls = sum(t.upstream_calls[n, path, mode] for n in rounds)
            print(
                f"{path:<20}{mode:<13}{median(r.rps for r in runs):>9.1f}"
                f"{median(r.p50_ms for r in runs):>8.2f}{median(r.p99_ms for r in runs):>8.2f}"
                f"{median(spread):>9.2f}  {min(spread):.2f}-{max(spread):<6.2f}"
                f"{median(r.app_cpu_us for r in runs):>7.0f}"
                f"{median(r.db_cpu_us for r in runs):>7.0f}{calls:>7}"
            )
    norm = [ratio(n, ab.SESSION, EXTERNAL) / ratio(n, ab.SESSION, LOCAL) for n in rounds]
    raw = [cells[n, ab.SESSION, EXTERNAL].rps / cells[n, ab.SESSION, LOCAL].rps for n in rounds]
    health = [cells[n, ab.HEALTH, EXTERNAL].rps / cells[n, ab.HEALTH, LOCAL].rps for n in rounds]
    print()
    print(f"{EXTERNAL} against {LOCAL}, {ab.SESSION}, same round (median over the rounds, range):")
    print(
        f"  normalised (each over its server's /health): {median(norm):.3f}"
        f"  ({min(norm):.2f}-{max(norm):.2f})"
    )
    print(f"  raw req/s: {median(raw):.3f}  ({min(raw):.2f}-{max(raw):.2f})")
    print(
        f"  /health raw req/s (how far two servers differ on a bare endpoint): {median(health):.3f}"
        f"  ({min(health):.2f}-{max(health):.2f})"
    )
    timed_calls = sum(t.upstream_calls[n, ab.SESSION, EXTERNAL] for n in rounds)
    timed_calls += sum(t.upstream_calls[n, ab.HEALTH, EXTERNAL] for n in rounds)
    # A warm cache makes no call; each worker's entry expires SESSION_CACHE_TTL after it was
    # filled (after the phase began), and its next request refills it: at most one call a
    # worker per TTL of the phase's wall time.
    expiries = WORKERS * math.floor(t.seconds / SESSION_CACHE_TTL)
    per_run = [t.upstream_calls[n, ab.SESSION, EXTERNAL] for n in rounds]
    print(
        f"  get-session calls of the stand-in: {t.warm_calls} warming the {WORKERS} workers'"
        f" caches, {t.warmup_calls} in the wrk warm-up, {timed_calls} in the timed {EXTERNAL}"
        f" runs ({ab.SESSION} per round: {per_run}); the phase lasted {t.seconds:.0f} s: at"
        f" most {expiries} refills (one a worker each time its {SESSION_CACHE_TTL:g} s entry"
        f" expires)"
    )

    print()
    print(
        f"breaker open: {EXTERNAL} server with AUTH_SERVER_TIMEOUT={SERVER_TIMEOUT:g} s,"
        f" AUTH_BREAKER_FAILURES={BREAKER_FAILURES}, AUTH_BREAKER_RESET={BREAKER_RESET:g} s;"
        f" the stand-in's get-session hangs"
    )
    print(
        f"  opening: {b.opening_requests} fresh-token requests (503 after the"
        f" {SERVER_TIMEOUT:g} s timeout, each a failure) in {b.opening_seconds:.1f} s;"
        f" '{OPENED_LINE}' in the log: {b.opened_lines} (one a worker)"
    )
    print(
        f"  open on every worker: {b.burst} more fresh tokens answered {b.burst_statuses},"
        f" slowest {b.burst_slowest_ms:.1f} ms (server side {b.burst_server_ms:.2f} ms), by"
        f" workers {sorted(b.burst_pids)} of {sorted(b.workers)}, {b.burst_calls} get-session"
        f" calls; /ready's breaker state {len(b.ready_states)} times: {sorted(set(b.ready_states))}"
    )
    print(
        f"wrk -t{min(ab.THREADS, BREAKER_CONNECTIONS)} -c{BREAKER_CONNECTIONS} -d{DURATION}s x"
        f" {len(rounds)} rounds on the {EXTERNAL} server, one fresh token; medians over the rounds"
    )
    print(
        f"{'endpoint':<36}{'status':>7}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"  {'p99 range':<13}{'app us':>7}"
    )
    for name, expect in ((ab.HEALTH, 200), (BREAKER_ENDPOINT, 503)):
        runs = [b.cells[n, name] for n in rounds]
        p99s = [r.p99_ms for r in runs]
        print(
            f"{name:<36}{expect:>7}{median(r.rps for r in runs):>9.1f}"
            f"{median(r.p50_ms for r in runs):>8.2f}{median(p99s):>8.2f}"
            f"  {min(p99s):.2f}-{max(p99s):<8.2f}{median(r.app_cpu_us for r in runs):>7.0f}"
        )
    served = sum(b.run_statuses.values())
    wrk_total = sum(b.cells[n, BREAKER_ENDPOINT].requests for n in rounds)
    server_side = (
        f"p50 {_percentile(b.run_server_ms, 0.5):.2f} ms,"
        f" p99 {_percentile(b.run_server_ms, 0.99):.2f} ms, max {max(b.run_server_ms):.2f} ms"
        if b.run_server_ms
        else "none"
    )
    print(
        f"  access log, {ab.SESSION} from the warm-up on: {served} requests ({wrk_total} timed by"
        f" wrk), statuses {b.run_statuses}, by workers {sorted(b.run_pids)}; server-side"
        f" duration {server_side}; 'auth_unavailable' warnings logged: {b.run_warnings}"
    )
    print(
        f"  get-session calls of the stand-in from the warm-up to the last run: {b.run_calls};"
        f" /ready's breaker state afterwards: {sorted(set(b.ready_after))}"
    )

    print()
    norm_ok, raw_ok = median(norm) >= THROUGHPUT_TARGET, median(raw) >= THROUGHPUT_TARGET
    print(
        f"target: {EXTERNAL} {ab.SESSION} (warm cache) over {LOCAL}: {median(norm):.3f}"
        f" normalised by /health (>= {THROUGHPUT_TARGET}) {_verdict(norm_ok)};"
        f" raw req/s {median(raw):.3f} (>= {THROUGHPUT_TARGET}) {_verdict(raw_ok)}"
    )
    p99 = median(b.cells[n, BREAKER_ENDPOINT].p99_ms for n in rounds)
    worst = max(b.cells[n, BREAKER_ENDPOINT].p99_ms for n in rounds)
    print(
        f"target: breaker open, p99 of the 503s {p99:.2f} ms (worst round {worst:.2f} ms)"
        f" (< {P99_TARGET_MS:g} ms) {_verdict(p99 < P99_TARGET_MS)}"
    )
    checks = [
        (
            f"warm cache: {timed_calls} get-session calls in the timed {EXTERNAL} runs"
            f" (<= {expiries}, the refills an expiring entry allows)",
            timed_calls <= expiries,
        ),
        ("breaker open on every worker before the timed run (see above)", b.open_everywhere()),
        (
            f"every {ab.SESSION} answer with the breaker open a 503 ({b.run_statuses}),"
            f" from every worker ({len(b.run_pids)} of {len(b.workers)}),"
            f" and still open after ({sorted(set(b.ready_after))})",
            set(b.run_statuses) == {503}
            and served >= wrk_total
            and b.run_pids == b.workers
            and set(b.ready_after) == {"open"},
        ),
        (f"no get-session call with the breaker open ({b.run_calls})", b.run_calls == 0),
        (
            "the stand-in stopped cleanly" + (f": {'; '.join(problems)}" if problems else ""),
            not problems,
        ),
    ]
    for what, ok in checks:
        print(f"check: {what}: {'OK' if ok else 'FAILED'}")
    return all(ok for _, ok in checks)


def main() -> int:
    if shutil.which("wrk") is None:
        _log("wrk is not installed: apt-get update && apt-get install -y wrk")
        return 2
    load = len(MODES) * len(ENDPOINTS) * (ROUNDS * DURATION + WARMUP)
    load += 2 * (ROUNDS * DURATION + WARMUP)  # the breaker-open runs
    if min(DURATION, ROUNDS, BREAKER_CONNECTIONS) < 1 or WARMUP < 0 or load > 600:
        # The local access token lasts 900 s (ACCESS_TOKEN_TTL) and the breaker stays open for
        # AUTH_BREAKER_RESET (600 s): stay well inside both.
        _log(f"BENCH_DURATION/ROUNDS/WARMUP add up to {load} s of load; keep it under 600 s")
        return 2
    if DURATION >= SESSION_CACHE_TTL:
        _log(f"BENCH_DURATION must be shorter than the session cache ({SESSION_CACHE_TTL:g} s)")
        return 2
    started = time.monotonic()
    busy = ab.settle_in()
    workdir = Path(tempfile.mkdtemp(prefix="mita-better-auth-bench-"))
    try:
        with ab.migrated_databases({mode: database_name(mode) for mode in MODES}) as urls:
            throughput, breaker, problems = run(workdir, urls)
    except (BenchError, OSError, subprocess.SubprocessError, psycopg2.Error) as error:
        _log(f"failed: {error}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = report(throughput, breaker, problems, busy)
    _log(f"the better_auth bench took {time.monotonic() - started:.0f} s ({load} s of it load)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
