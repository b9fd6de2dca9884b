"""The resilience run: what clients see while one dependency fails, a phase per fault.

Each phase starts a fresh gunicorn serving mita (its default configuration, AUTH_MODE=local or
better-auth) on a PostgreSQL cluster of the run's own (tests/pg_cluster.py: a throwaway cluster
it may stop and freeze; the shared server is never touched), with the stand-in Better Auth server
of tests/auth_server.py for the auth-server faults. A few client threads send a steady mix of
requests (/health, a protected route with a warm credential, bad tokens, requests that record
audit events) for a few seconds, the fault is applied, undone, and the load goes on until every
valid credential is served again (or a bound). Then the server stops (its audit writers flush)
and the phase's audit rows and spilled lines are matched to the answers by request id.

It prints a table per fault and a summary, writes a PNG per fault (latency over time, the fault
shaded), each phase's samples (CSV) and gunicorn log, into the output directory. Everything runs
on 127.0.0.1, and every process it starts is stopped by PID, also on Ctrl-C or failure.

    .venv/bin/python -m bench.resilience [--out DIR] [--phase NAME]... [--env NAME=VALUE]...

(or `make resilience`). The faults are in resilience_faults.py, the client threads in
resilience_load.py, the audit accounting in resilience_audit.py, the tables and plots in
resilience_report.py; bench/README.md explains the figures.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg2
import pytest
import requests

from bench import resilience_audit, resilience_report
from bench.resilience_faults import EXTERNAL, LOCAL, PHASES, Dependencies, Phase
from bench.resilience_load import Kind, Load, Prepared
from bench.resilience_report import PhaseResult
from tests.auth_server import AuthServer
from tests.conftest import free_port, pg_connect
from tests.gunicorn_server import stop
from tests.pg_cluster import PostgresCluster, temporary_cluster

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_OUT = ROOT / "bench" / "results" / "resilience"
SECRET_KEY = "resilience-only-secret-key-0123456789abcdef0123456789"
PASSWORD = "resilience password 123"
ME, LOGIN, LOGOUT, REGISTER = (
    "/api/users/me",
    "/api/auth/login",
    "/api/auth/logout",
    "/api/auth/register",
)
ACCOUNTS = 6  # local users the logins take turns with (per-email rate limits stay far away)
CLIENT_TIMEOUT = 10.0  # seconds a client waits for an answer (the mobile app allows 8)
RECOVERY_LIMIT = 12.0  # seconds after the fault the load goes on waiting for a recovery
WARM_REQUESTS = 8  # requests with the warm credential before the load: both workers cache it
DEFAULT_LOCK_TIMEOUT_MS = 3000  # mita's DB_LOCK_TIMEOUT_MS

# The audit event each answer records (mita_app/auth/guard.py, service.py, api/limits.py,
# api/auth.py); an answer not listed records none (a 503: nothing happened).
PROTECTED_EVENTS = {401: "auth.denied", 403: "auth.denied", 429: "auth.rate_limited"}
LOGIN_EVENTS = {200: "auth.login.succeeded", 401: "auth.login.failed", 429: "auth.rate_limited"}
LOGOUT_EVENTS = {**PROTECTED_EVENTS, 200: "auth.logout", 204: "auth.logout"}


class BenchError(RuntimeError):
    """The run could not measure what it claims to; the message says why."""


_STARTED = time.monotonic()


def _log(message: str) -> None:
    print(
        f"resilience: [{time.monotonic() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True
    )


@dataclass(frozen=True)
class Settings:
    out: Path
    app: Path  # the mita checkout to serve (gunicorn's and the migrations' directory)
    before: float  # seconds of load before the fault
    fault: float  # seconds the fault lasts
    after: float  # seconds of load after it, at least (longer until recovered, up to a bound)
    overrides: dict[str, str]  # extra environment for mita (to compare a configuration)


@dataclass
class Rig:
    """What the phases share: the settings, the dependencies, the users and credentials."""

    settings: Settings
    deps: Dependencies
    warm_session: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    emails: list[str] = field(default_factory=list)  # local accounts, registered once
    warm_token: str = ""  # the first one's access token

    def server_env(self, auth_mode: str) -> dict[str, str]:
        """mita's environment: its defaults, plus what production and the mode need."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "MITA_ENV": "production",
            "SECRET_KEY": SECRET_KEY,  # one for every worker and every phase's server
            "MAIL_SERVER": "127.0.0.1",  # production wants one; nothing here sends mail
            "DATABASE_URL": self.deps.database_url,
        }
        if auth_mode == EXTERNAL:
            env.update(AUTH_MODE="better-auth", AUTH_SERVER_URL=self.deps.auth_server().url)
        env.update(self.settings.overrides)
        return env


# --- the load of each mode, after a warm-up ----------------------------------------------------


def _bearer(token: str) -> Prepared:
    return Prepared(headers={"Authorization": f"Bearer {token}"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_jwt() -> str:
    """A made-up token shaped like a JWT, with a key id nobody published."""
    header = {"alg": "EdDSA", "typ": "JWT", "kid": f"made-up-{secrets.token_hex(4)}"}
    claims = {"sub": secrets.token_hex(8), "exp": int(time.time()) + 600}
    parts = [json.dumps(header).encode(), json.dumps(claims).encode(), os.urandom(64)]
    return ".".join(_b64url(part) for part in parts)


def _setup_call(
    base_url: str, method: str, path: str, request_id: str, *, token: str = "", body: Any = None
) -> requests.Response:
    headers = {"X-Request-ID": request_id}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, base_url + path, headers=headers, json=body, timeout=10)


def _expect(response: requests.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise BenchError(f"{what}: {response.status_code} {response.text[:300]}")


def local_load(rig: Rig, base_url: str, phase: str) -> list[Kind]:
    """Warm the access token of the first user (registering the users once), then the load:
    /health, /api/users/me with that token, a forged token, and logins (every other one with
    an unknown email) that each record an event."""
    ids = (f"rs.setup.{phase}.{n}" for n in itertools.count())
    if not rig.emails:
        for n in range(ACCOUNTS):
            email = f"resilience-{n}@example.com"
            body = {"email": email, "password": PASSWORD}
            answer = _setup_call(base_url, "POST", REGISTER, next(ids), body=body)
            _expect(answer, 201, f"registering {email}")
            rig.emails.append(email)
            rig.warm_token = rig.warm_token or answer.json()["data"]["access_token"]
    for _ in range(WARM_REQUESTS):
        answer = _setup_call(base_url, "GET", ME, next(ids), token=rig.warm_token)
        _expect(answer, 200, "warming the access token")

    logins = itertools.count()

    def login() -> Prepared:
        n = next(logins)
        email = rig.emails[n // 2 % len(rig.emails)] if n % 2 == 0 else f"nobody-{n}@example.com"
        return Prepared(body={"email": email, "password": PASSWORD})

    warm = _bearer(rig.warm_token)
    return [
        Kind("health", "GET", "/health", every=0.05, events={}),
        Kind("me-warm", "GET", ME, 0.1, PROTECTED_EVENTS, lambda: warm, threads=2, valid=True),
        Kind("bad-token", "GET", ME, 0.1, PROTECTED_EVENTS, lambda: _bearer(forged_jwt())),
        Kind("login", "POST", LOGIN, 0.5, LOGIN_EVENTS, login),
    ]


def unknown() -> str:
    """An opaque session token the auth server does not know (it answers `null`)."""
    return secrets.token_urlsafe(32)


def external_load(rig: Rig, base_url: str, phase: str) -> list[Kind]:
    """Warm the warm session (its local account made on the first request) and make the local
    account of the new sessions' user, then the load: /health, /api/users/me with the warm
    session and with a new session each time (the auth server must be asked), opaque tokens the
    auth server does not know, made-up JWTs (two clients: a hostile flow), and logouts of new
    sessions, which record an event."""
    stand_in = rig.deps.auth_server()
    ids = (f"rs.setup.{phase}.{n}" for n in itertools.count())
    stand_in.add_session(rig.warm_session, user_id="resilience-warm", email="warm@example.com")

    def fresh() -> Prepared:
        token = secrets.token_urlsafe(32)
        stand_in.add_session(token, user_id="resilience-fresh", email="fresh@example.com")
        return _bearer(token)

    for _ in range(WARM_REQUESTS):
        answer = _setup_call(base_url, "GET", ME, next(ids), token=rig.warm_session)
        _expect(answer, 200, "warming the session")
    token = fresh().headers["Authorization"].removeprefix("Bearer ")
    _expect(_setup_call(base_url, "GET", ME, next(ids), token=token), 200, "a new session")

    warm = _bearer(rig.warm_session)
    return [
        Kind("health", "GET", "/health", every=0.05, events={}),
        Kind("me-warm", "GET", ME, 0.1, PROTECTED_EVENTS, lambda: warm, threads=2, valid=True),
        Kind("me-fresh", "GET", ME, 0.2, PROTECTED_EVENTS, fresh, valid=True),
        Kind("bad-session", "GET", ME, 0.1, PROTECTED_EVENTS, lambda: _bearer(unknown())),
        Kind("bad-jwt", "GET", ME, 0.1, PROTECTED_EVENTS, lambda: _bearer(forged_jwt()), 2),
        Kind("logout", "POST", LOGOUT, 0.5, LOGOUT_EVENTS, fresh, valid=True),
    ]


# --- one phase ---------------------------------------------------------------------------------


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path


@contextlib.contextmanager
def serving(app: Path, env: dict[str, str], log_path: Path) -> Iterator[Gunicorn]:
    """gunicorn through gunicorn.conf.py on a free port of 127.0.0.1, in a session of its own
    (Ctrl-C reaches only this process, which stops it), stopped by its PID whatever happens."""
    port = free_port()
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command, "wsgi:app"],
            cwd=app,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Gunicorn(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        # SIGTERM: the workers finish, and their audit writers flush; SIGKILL to the group after
        # gunicorn's graceful timeout (20 s) and the writer's budget have had their chance.
        stop(process, timeout=30)


def _wait_until_serving(server: Gunicorn, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"gunicorn exited ({server.process.returncode}); see {server.log_path}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(server.base_url + "/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"gunicorn did not serve /health within {timeout:g} s")


def run_phase(rig: Rig, phase: Phase) -> PhaseResult:
    """Serve, warm up, load; the fault on and off; on until recovered; stop; count and draw."""
    settings = rig.settings
    ensure_database(rig)
    log_path = settings.out / f"{phase.name}.gunicorn.log"
    log_path.unlink(missing_ok=True)
    prefix = f"rs.{phase.name}"
    server_started = datetime.now(UTC)
    with contextlib.ExitStack() as fault_on:
        if phase.from_start:
            fault_on.enter_context(phase.fault(rig.deps))
        with serving(settings.app, rig.server_env(phase.auth_mode), log_path) as server:
            make_load = local_load if phase.auth_mode == LOCAL else external_load
            _log(f"{phase.name}: serving on {server.base_url}")
            kinds = make_load(rig, server.base_url, phase.name)
            load = Load(server.base_url, kinds, request_prefix=prefix, timeout=CLIENT_TIMEOUT)
            since = datetime.now(UTC)
            load.start()
            try:
                if phase.from_start:
                    fault_start = 0.0
                    time.sleep(settings.before + settings.fault)
                    fault_on.close()
                else:
                    time.sleep(settings.before)
                    fault_start = load.now()
                    with phase.fault(rig.deps):
                        time.sleep(max(0.0, fault_start + settings.fault - load.now()))
                fault_end = load.now()
                _log(f"{phase.name}: fault from {fault_start:.2f} s to {fault_end:.2f} s")
                _wait_for_recovery(load, kinds, fault_end, settings.after)
            except BaseException:
                load.stop(wait=False)
                raise
            load.stop()
            if load.still_running:
                raise BenchError(f"client threads still running: {load.still_running}")
            end = load.now()
            _log(f"{phase.name}: load stopped at {end:.2f} s; stopping gunicorn")
    until = datetime.now(UTC)  # the server has stopped: its writers have written what they could
    samples = load.samples()
    audit = resilience_audit.count(
        database_url=rig.deps.database_url,
        log_path=log_path,
        samples=samples,
        kinds=kinds,
        request_prefix=prefix,
        since=since,
        until=until,
        server_started=server_started,
    )
    result = PhaseResult(
        phase.name, phase.title, phase.auth_mode, kinds, samples, fault_start, fault_end, end, audit
    )
    _write_samples(result, settings.out / f"{phase.name}.csv")
    result.plot = resilience_report.plot(result, settings.out / f"{phase.name}.png", CLIENT_TIMEOUT)
    return result


def _wait_for_recovery(load: Load, kinds: list[Kind], fault_end: float, after: float) -> None:
    """At least `after` seconds, then until every valid credential has had a 2xx since the
    fault ended, or RECOVERY_LIMIT seconds."""
    valid = {kind.name for kind in kinds if kind.valid}
    while (since_fault := load.now() - fault_end) < RECOVERY_LIMIT:
        if since_fault >= after:
            served = {s.kind for s in load.samples() if s.ok and s.end >= fault_end}
            if valid <= served:
                return
        time.sleep(0.1)


def _write_samples(result: PhaseResult, path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["kind", "request_id", "sent_s", "latency_ms", "status", "error_code"])
        for s in result.samples:
            row = [s.kind, s.request_id, f"{s.start:.4f}", f"{s.latency * 1000:.2f}", s.status]
            writer.writerow([*row, s.code or ""])


def ensure_database(rig: Rig, timeout: float = 15) -> None:
    """The cluster runs and its database answers (a phase before may have left it stopped)."""
    if not rig.deps.cluster.running:
        rig.deps.cluster.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            pg_connect(rig.deps.database_url).close()
            return
        except psycopg2.Error as error:
            if time.monotonic() > deadline:
                raise BenchError(f"the database does not answer: {error}") from error
            time.sleep(0.2)


# --- the run -----------------------------------------------------------------------------------


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    # A second Ctrl-C must not cut the clean-up short: from now on these are ignored.
    for other in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    _log("stopping: cleaning up (every process this run started, by PID)")
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _parse(argv: list[str]) -> tuple[Settings, list[Phase]]:
    names = [phase.name for phase in PHASES]
    parser = argparse.ArgumentParser(
        prog="python -m bench.resilience", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument(
        "--app",
        type=Path,
        default=ROOT,
        help="the mita checkout to serve (default: this one), e.g. an export of another commit",
    )
    parser.add_argument(
        "--phase",
        action="append",
        choices=names,
        help="run only this phase (repeatable); default: all, in order",
    )
    parser.add_argument("--before", type=float, default=3.0, help="seconds of load before")
    parser.add_argument("--fault", type=float, default=8.0, help="seconds the fault lasts")
    parser.add_argument(
        "--after", type=float, default=3.0, help=f"seconds after, at least (<= {RECOVERY_LIMIT})"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add to mita's environment (e.g. GUNICORN_WORKER_CLASS=gthread); repeatable",
    )
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env wants NAME=VALUE, got {item!r}")
        overrides[name] = value
    if not (0 < args.before <= 30 and 0 < args.fault <= 30 and 0 <= args.after <= RECOVERY_LIMIT):
        parser.error(f"--before and --fault: (0, 30] s; --after: [0, {RECOVERY_LIMIT:g}] s")
    chosen = [phase for phase in PHASES if phase.name in (args.phase or names)]
    try:
        lock_timeout = int(overrides.get("DB_LOCK_TIMEOUT_MS", DEFAULT_LOCK_TIMEOUT_MS))
    except ValueError:
        parser.error("DB_LOCK_TIMEOUT_MS must be a whole number of milliseconds")
    if any(p.name == "table-lock" for p in chosen) and args.fault * 1000 <= lock_timeout:
        parser.error(f"table-lock: --fault must exceed DB_LOCK_TIMEOUT_MS ({lock_timeout} ms)")
    if not (args.app / "wsgi.py").is_file():
        parser.error(f"--app: no wsgi.py in {args.app}")
    settings = Settings(
        args.out.resolve(), args.app.resolve(), args.before, args.fault, args.after, overrides
    )
    return settings, chosen


def _create_database(cluster: PostgresCluster, app: Path) -> str:
    """The database `mita` on the run's cluster, migrated by the served checkout's migrations."""
    admin = pg_connect(cluster.url)
    try:
        with admin.cursor() as cursor:
            cursor.execute("CREATE DATABASE mita")
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
    finally:
        admin.close()
    url = cluster.url.rsplit("/", 1)[0] + "/mita"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "DATABASE_URL": url}
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=app,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"flask db upgrade failed:\n{done.stderr[-2000:]}")
    _log(f"PostgreSQL {version} on 127.0.0.1:{cluster.port} (its own cluster), migrated")
    return url


def _stop_stand_in(stand_in: AuthServer) -> None:
    try:
        stand_in.stop()
    except RuntimeError as error:  # its threads are daemons: they end with this process
        _log(f"the stand-in auth server did not stop cleanly: {error}")


def run(settings: Settings, phases: list[Phase]) -> list[PhaseResult | str]:
    """Each phase's result, or why it failed (the phases after it still run)."""
    results: list[PhaseResult | str] = []
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(temporary_cluster())
        database_url = _create_database(cluster, settings.app)
        stand_in = None
        if any(phase.auth_mode == EXTERNAL for phase in phases):
            stand_in = AuthServer().start()
            stack.callback(_stop_stand_in, stand_in)
        rig = Rig(settings, Dependencies(cluster, database_url, stand_in))
        for phase in phases:
            _log(f"--- {phase.name}: {phase.title} ---")
            started = time.monotonic()
            try:
                results.append(run_phase(rig, phase))
            except (RuntimeError, OSError, psycopg2.Error, requests.RequestException) as error:
                _log(f"{phase.name} failed: {error}")
                results.append(f"{phase.name}: failed: {error}")
            _log(f"{phase.name}: {time.monotonic() - started:.1f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    settings, phases = _parse(sys.argv[1:] if argv is None else argv)
    settings.out.mkdir(parents=True, exist_ok=True)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_on_signal)
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        results = run(settings, phases)
    except pytest.skip.Exception as missing:  # temporary_cluster: no PostgreSQL server binaries
        _log(f"cannot run: {missing.msg}")
        return 2
    except KeyboardInterrupt:
        _log("interrupted; everything it started is stopped")
        return 130
    except SystemExit:
        _log("terminated; everything it started is stopped")
        raise
    except (OSError, psycopg2.Error, RuntimeError) as error:  # BenchError among them
        _log(f"failed: {error}")
        return 1
    elapsed = time.monotonic() - started
    lines = [
        f"resilience run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs;"
        f" load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f};"
        f" {elapsed:.0f} s in all",
        f"each phase: {settings.before:g} s of load, the fault for {settings.fault:g} s, then at"
        f" least {settings.after:g} s (until recovered, at most {RECOVERY_LIMIT:g} s);"
        f" client timeout {CLIENT_TIMEOUT:g} s",
        f"mita from {settings.app}, default configuration (MITA_ENV=production)"
        + "".join(f", {name}={value}" for name, value in settings.overrides.items()),
        "",
    ]
    done = [result for result in results if isinstance(result, PhaseResult)]
    for result in results:
        if isinstance(result, PhaseResult):
            lines += [*resilience_report.phase_table(result, CLIENT_TIMEOUT), ""]
        else:
            lines += [result, ""]
    lines += resilience_report.summary_table(done)
    text = "\n".join(lines)
    print(text)
    (settings.out / "resilience.txt").write_text(text + "\n")
    _log(f"tables, plots, samples and gunicorn logs in {settings.out}")
    return 0 if len(done) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
