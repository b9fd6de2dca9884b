"""Throughput of the auth path under gunicorn, as ratios to /health measured in the same run.

Starts two gunicorn servers (2 sync workers each) on a fresh PostgreSQL database, one with the
default session cache and one with AUTH_CACHE_TTL=0, drives them in turn with wrk from 127.0.0.1
over a few interleaved rounds, and prints requests/s, p50, p99 and each endpoint's ratio to
/health of the same server and round. Run it through `bash bench/run.sh` (or `make bench`);
bench/README.md explains the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from types import FrameType

import psycopg2
import psycopg2.extensions
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Fixed, so both workers (and both server runs) verify each other's tokens.
SECRET_KEY = "bench-only-secret-key-0123456789abcdef0123456789abcdef"
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = os.environ.get("BENCH_DB_NAME", "mita_bench")
DURATION = int(os.environ.get("BENCH_DURATION", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))

HEALTH = "/health"
SESSION = "/api/auth/session"
ME = "/api/users/me"
ENDPOINTS = (HEALTH, SESSION, ME)
MAX_REQUESTS = os.environ.get("GUNICORN_MAX_REQUESTS", "0")
SESSION_TARGET = 0.75  # /api/auth/session req/s over /health, cache on
CACHE_TARGET = 1.3  # /api/users/me with the cache over without

SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


class BenchError(RuntimeError):
    """Something the benchmark needs did not work; the figures would mean nothing."""


@dataclass(frozen=True)
class Result:
    round_no: int
    path: str
    cache: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    app_cpu_us: float  # gunicorn workers' CPU time per request
    db_cpu_us: float  # PostgreSQL backends' CPU time per request


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _admin() -> psycopg2.extensions.connection:
    url = make_url(ADMIN_URL)
    connection = psycopg2.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname=url.database or "postgres",
        connect_timeout=5,
    )
    connection.autocommit = True
    return connection


def _drop_database(name: str = DB_NAME) -> None:
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


def _create_database(name: str = DB_NAME) -> str:
    _drop_database(name)
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
    finally:
        connection.close()
    _log(f"database {name} created (PostgreSQL {version})")
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (so index 1 is the parent PID)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()


def _children(parent: int) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and int(_stat(int(name))[1]) == parent:
                pids.append(int(name))
        except OSError:  # the process ended while we looked
            continue
    return pids


def _cpu_ticks(pids: list[int]) -> int:
    ticks = 0
    for pid in pids:
        try:
            fields = _stat(pid)
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks


def _workers_ticks(master: int) -> int:
    """CPU ticks of a gunicorn master's live workers and of those it has reaped (cutime +
    cstime), so a worker recycled during a measurement still counts, and its successor too."""
    try:
        fields = _stat(master)
    except OSError:
        return _cpu_ticks(_children(master))
    return _cpu_ticks(_children(master)) + int(fields[13]) + int(fields[14])


def _database_backends(name: str = DB_NAME) -> list[int]:
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def _app_env(database_url: str, cache_ttl: str | None, **settings: str) -> dict[str, str]:
    """The gunicorn environment; `settings` are further variables for the app (AUDIT_ENABLED)."""
    env = dict(os.environ)
    env.pop("PORT", None)  # gunicorn.conf.py would bind 0.0.0.0:$PORT
    env.pop("AUTH_CACHE_TTL", None)
    env.update(
        MITA_ENV="production",
        SECRET_KEY=SECRET_KEY,
        # Production wants a mail server; the benchmarked routes never send mail.
        MAIL_SERVER="127.0.0.1",
        DATABASE_URL=database_url,
        RATELIMIT_ENABLED="false",
        WEB_CONCURRENCY="2",
        GUNICORN_WORKER_CLASS="sync",
        GUNICORN_THREADS="1",
        # Worker recycling off unless asked for: a worker that ends in a timed run takes its CPU
        # ticks with it, and its successor's boot stalls a share of the requests.
        GUNICORN_MAX_REQUESTS=MAX_REQUESTS,
    )
    if cache_ttl is not None:
        env["AUTH_CACHE_TTL"] = cache_ttl
    env.update(settings)
    return env


def _http(method: str, url: str, body: dict | None = None, token: str = "") -> dict:
    request = urllib.request.Request(url, method=method)  # noqa: S310 - always http://127.0.0.1
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, data=data, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


class Server:
    """One gunicorn master on 127.0.0.1, stopped by its PID.

    `cache` is the state ("on", "off") of the setting the run compares: `setting` names it in
    messages and file names, `described` in the start-up line. `config` and `app` are gunicorn's
    config file and app (another app than mita's, to compare with).
    """

    def __init__(
        self,
        cache: str,
        env: dict[str, str],
        workdir: Path,
        *,
        setting: str = "cache",
        described: str = "session cache",
        config: str = "gunicorn.conf.py",
        app: str = "wsgi:app",
    ) -> None:
        self.cache = cache
        self.setting = setting
        self.database = make_url(env["DATABASE_URL"]).database or DB_NAME  # for its backends' CPU
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"gunicorn-{setting}-{cache}.log"
        self._log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                *(str(BIN / "gunicorn"), "-c", config),
                *("--bind", f"127.0.0.1:{self.port}", app),
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        _log(f"gunicorn master {self.process.pid} on {self.base}, {described} {cache}")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited with {self.process.returncode}")
            try:
                if _http("GET", self.base + HEALTH)["data"]["status"] == "ok":
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"/health did not answer within {timeout:g} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _log(f"gunicorn {self.process.pid} ignored SIGTERM for 30 s; killing it")
                self.process.kill()
                self.process.wait(timeout=10)
        self._log_file.close()


def _to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise BenchError(f"unreadable wrk time {text!r}")
    return float(match.group(1)) * _TIME_UNITS_MS[match.group(2)]


def parse_wrk(output: str, *, expect_status: int = 200) -> tuple[float, float, float, int]:
    """Requests/s, p50 ms, p99 ms and request count from `wrk --latency` output.

    With a 2xx `expect_status` every response must be a 2xx. With an error status (401) every
    response must be one wrk counts as an error (>= 400); wrk cannot tell which, so the caller
    checks the status itself (one request before, the access log after)."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if not (rps and p50 and p99 and total):
        raise BenchError("unreadable wrk output:\n" + output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if 200 <= expect_status < 300:
        if non_2xx:
            raise BenchError(f"{non_2xx.group(1)} responses were not 2xx:\n{output}")
    elif (int(non_2xx.group(1)) if non_2xx else 0) != int(total.group(1)):
        raise BenchError(f"some responses were not the expected {expect_status}:\n{output}")
    errors = SOCKET_ERRORS.search(output)
    if errors and any(int(n) for n in errors.groups()):
        raise BenchError("socket errors:\n" + output)
    return float(rps.group(1)), _to_ms(p50.group(1)), _to_ms(p99.group(1)), int(total.group(1))


def wrk(
    base: str, path: str, token: str, seconds: int, *, expect_status: int = 200, timeout: int = 2
) -> tuple[float, float, float, int]:
    """One wrk run; a response slower than `timeout` seconds (wrk's default 2) is a socket
    error."""
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    command += ["--timeout", f"{timeout}s"]
    command += ["-H", f"Authorization: Bearer {token}", base + path]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout, expect_status=expect_status)


def _cpu_busy(seconds: float = 2.0) -> float:
    """Share of the machine's CPU time spent busy over `seconds` (0-1), from /proc/stat."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            fields = [int(n) for n in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def _wrk_with_retry(
    server: Server,
    path: str,
    token: str,
    seconds: int,
    *,
    expect_status: int = 200,
    timeout: int = 2,
) -> tuple[float, float, float, int]:
    try:
        return wrk(server.base, path, token, seconds, expect_status=expect_status, timeout=timeout)
    except BenchError as error:
        first_line = str(error).splitlines()[0]
        _log(f"retrying {path} on {server.setting} {server.cache} once: {first_line}")
        time.sleep(3)
        return wrk(server.base, path, token, seconds, expect_status=expect_status, timeout=timeout)


def timed(
    server: Server,
    path: str,
    token: str,
    seconds: int,
    round_no: int,
    *,
    expect_status: int = 200,
    timeout: int = 2,
) -> Result:
    """One wrk run, with the CPU time the app's workers and its database sessions spent on it."""
    backends = _database_backends(server.database)
    app0, db0 = _workers_ticks(server.process.pid), _cpu_ticks(backends)
    rps, p50, p99, total = _wrk_with_retry(
        server, path, token, seconds, expect_status=expect_status, timeout=timeout
    )
    app_us = (_workers_ticks(server.process.pid) - app0) * _TICK_US / total
    db_us = (_cpu_ticks(backends) - db0) * _TICK_US / total
    return Result(round_no, path, server.cache, rps, p50, p99, total, app_us, db_us)


def measure(servers: list[Server], token: str) -> list[Result]:
    """ROUNDS rounds; each times every endpoint on every server, so drift hits all alike."""
    for server in servers:
        for path in ENDPOINTS:  # each answers 200 to this token before it is timed
            _http("GET", server.base + path, token=token)
            if WARMUP:
                _wrk_with_retry(server, path, token, WARMUP)
    results = []
    for round_no in range(1, ROUNDS + 1):
        # Alternate which server goes first, so neither always follows the other.
        for server in servers if round_no % 2 else servers[::-1]:
            for path in ENDPOINTS:
                r = timed(server, path, token, DURATION, round_no)
                _log(
                    f"round {round_no} cache {r.cache:3} {path:18} {r.rps:8.1f} req/s"
                    f"  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms"
                    f"  cpu/req app {r.app_cpu_us:5.0f} us  db {r.db_cpu_us:4.0f} us"
                )
                results.append(r)
    return results


def _verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "MISS"


def report(results: list[Result], busy_before: float) -> None:
    cell = {(r.round_no, r.path, r.cache): r for r in results}
    rounds = sorted({r.round_no for r in results})

    def ratios(path: str, cache: str) -> list[float]:
        return [cell[n, path, cache].rps / cell[n, HEALTH, cache].rps for n in rounds]

    print()
    print(
        f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s x {len(rounds)} rounds,"
        f" gunicorn 2 sync workers, PostgreSQL; medians over the rounds"
    )
    print(f"machine busy before the run: {busy_before:.0%} of {os.cpu_count()} CPUs")
    print("/health: req/s ratio to /health of the same server and round (median, range);")
    print("app us, db us: CPU time per request of the gunicorn workers and PostgreSQL sessions")
    header = f"{'endpoint':<20}{'cache':<7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    print(header + f"{'/health':>9}  {'range':<11}{'app us':>8}{'db us':>7}")
    for cache in ("on", "off"):
        for path in ENDPOINTS:
            runs = [cell[n, path, cache] for n in rounds]
            spread = ratios(path, cache)
            print(
                f"{path:<20}{cache:<7}{median(r.rps for r in runs):>9.1f}"
                f"{median(r.p50_ms for r in runs):>9.2f}{median(r.p99_ms for r in runs):>9.2f}"
                f"{median(spread):>9.2f}  {min(spread):.2f}-{max(spread):<6.2f}"
                f"{median(r.app_cpu_us for r in runs):>8.0f}"
                f"{median(r.db_cpu_us for r in runs):>7.0f}"
            )
    session = median(ratios(SESSION, "on"))
    me_norm = [
        (cell[n, ME, "on"].rps / cell[n, HEALTH, "on"].rps)
        / (cell[n, ME, "off"].rps / cell[n, HEALTH, "off"].rps)
        for n in rounds
    ]
    me_raw = [cell[n, ME, "on"].rps / cell[n, ME, "off"].rps for n in rounds]
    print()
    print(
        f"target 1: {SESSION} / {HEALTH} (cache on) = {session:.2f}"
        f"  (>= {SESSION_TARGET})  {_verdict(session, SESSION_TARGET)}"
    )
    print(
        f"target 2: {ME} cache on / cache off = {median(me_norm):.2f} as ratios to /health"
        f" ({median(me_raw):.2f} in raw req/s)  (>= {CACHE_TARGET})"
        f"  {_verdict(median(me_norm), CACHE_TARGET)}"
    )


def migrate(database_url: str) -> None:
    """`flask db upgrade` on the bench database, in a subprocess (as a deployment runs it)."""
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
        cwd=ROOT,
        env=_app_env(database_url, None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError("flask db upgrade failed:\n" + done.stderr)


def show_logs(servers: list[Server], lines: int = 20) -> None:
    """The last lines of each server's gunicorn log, on stderr (after a failure)."""
    for server in servers:
        _log(f"last lines of the {server.setting}-{server.cache} gunicorn log:")
        print("".join(server.log_path.read_text().splitlines(True)[-lines:]), file=sys.stderr)


def run(workdir: Path) -> list[Result]:
    database_url = _create_database()
    migrate(database_url)
    servers: list[Server] = []
    try:
        # Both servers stay up; only the one being timed gets traffic.
        for cache, ttl in (("on", None), ("off", "0")):
            servers.append(Server(cache, _app_env(database_url, ttl), workdir))
        for server in servers:
            server.wait_healthy()
        account = {"email": "bench@example.com", "password": "bench password 123"}
        token = _http("POST", servers[0].base + "/api/auth/register", account)["data"]
        return measure(servers, token["access_token"])
    except BaseException:
        show_logs(servers)
        raise
    finally:
        for server in servers:
            server.stop()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks that clean up


@contextlib.contextmanager
def migrated_databases(names: dict[str, str]) -> Iterator[dict[str, str]]:
    """A fresh, migrated database for each of `names` (key: database name), as {key: URL};
    every one of them dropped afterwards, whatever happened."""
    urls: dict[str, str] = {}
    try:
        for key, name in names.items():
            urls[key] = _create_database(name)
            migrate(urls[key])
        yield urls
    finally:
        for name in names.values():
            try:
                _drop_database(name)
            except psycopg2.Error as error:
                _log(f"could not drop {name}: {error}")


def settle_in() -> float:
    """Make SIGTERM and SIGHUP unwind through the `finally` blocks that stop the servers and
    drop the databases; the machine's load before the run (0-1), with a warning if high."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    busy = _cpu_busy()
    if busy > 0.25:
        _log(f"the machine is already {busy:.0%} busy: expect noisy figures")
    return busy


def main() -> int:
    if shutil.which("wrk") is None:
        _log("wrk is not installed: apt-get update && apt-get install -y wrk")
        return 2
    budget = 6 * (ROUNDS * DURATION + WARMUP)
    if min(DURATION, ROUNDS) < 1 or WARMUP < 0 or budget > 600:
        # The single access token lasts 900 s (ACCESS_TOKEN_TTL); stay well inside it.
        _log(f"BENCH_DURATION/ROUNDS/WARMUP add up to {budget} s of load; keep it under 600 s")
        return 2
    busy = settle_in()
    workdir = Path(tempfile.mkdtemp(prefix="mita-bench-"))
    try:
        results = run(workdir)
    except (BenchError, OSError, subprocess.SubprocessError, psycopg2.Error) as error:
        _log(f"failed: {error}")
        return 1
    finally:
        try:
            _drop_database()
        except psycopg2.Error as error:
            _log(f"could not drop {DB_NAME}: {error}")
        shutil.rmtree(workdir, ignore_errors=True)
    report(results, busy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
