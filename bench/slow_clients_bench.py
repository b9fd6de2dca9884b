"""What the default worker class costs against the sync workers it replaced, and what it buys.

Starts two gunicorn servers (2 workers each) on one fresh PostgreSQL database: `sync`, the
previous default (GUNICORN_WORKER_CLASS=sync, one thread), and `default`, gunicorn.conf.py as
deployed (mita_app.gunicorn_worker.ThreadWorker, its default threads and deadlines). Over a few
interleaved rounds it drives each endpoint of each server with wrk from 127.0.0.1, once with
kept-alive connections (wrk's way, and a proxy's) and once with a new connection per request
(`Connection: close`, as a client without keep-alive), and prints requests/s, p50, p99, the
workers' CPU time per request, and `default`'s requests/s as a ratio to `sync`'s in the same
round. Then, for each server, /health under wrk while SLOW_CLIENTS clients hold a request whose
body never comes (each one replaced as soon as the server lets it go).

BENCH_DURATION, BENCH_ROUNDS, BENCH_WARMUP, BENCH_CONNECTIONS and BENCH_THREADS are
auth_bench's; BENCH_SLOW_CLIENTS (8) and BENCH_SLOW_DURATION (12 s) set the last part, and
BENCH_DEFAULT_THREADS tries another thread count for `default`.

Run it through `bash bench/run.sh slow_clients` (or `make bench BENCH=slow_clients`).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import auth_bench as ab
import psycopg2
from auth_bench import (
    CONNECTIONS,
    DURATION,
    ENDPOINTS,
    HEALTH,
    ROUNDS,
    THREADS,
    WARMUP,
    BenchError,
    Server,
    _log,
)

DB_NAME = f"{ab.DB_NAME}_slow_clients"
SLOW_CLIENTS = int(os.environ.get("BENCH_SLOW_CLIENTS", "8"))
# Long enough for REQUEST_BODY_TIMEOUT (10 s) to answer the stalled bodies at least once.
SLOW_DURATION = int(os.environ.get("BENCH_SLOW_DURATION", "12"))
# Threads of the `default` server's workers, to try another count (unset: gunicorn.conf.py's).
DEFAULT_THREADS = os.environ.get("BENCH_DEFAULT_THREADS", "")
SERVERS = ("sync", "default")
MODES = ("keep-alive", "close")
STALLED_BODY = (
    b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n"
    b'{"em'
)
TIMEOUTS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


@dataclass(frozen=True)
class Row:
    round_no: int
    server: str
    mode: str
    path: str
    rps: float
    p50_ms: float
    p99_ms: float
    app_cpu_us: float


def _env(database_url: str, server: str) -> dict[str, str]:
    env = ab._app_env(database_url, None)
    if server == "default":  # gunicorn.conf.py's own worker class, threads and deadlines
        for name in ("GUNICORN_WORKER_CLASS", "GUNICORN_THREADS"):
            env.pop(name)
        if DEFAULT_THREADS:
            env["GUNICORN_THREADS"] = DEFAULT_THREADS
    return env


def _wrk(base: str, path: str, token: str, seconds: int, mode: str) -> str:
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    command += ["-H", f"Authorization: Bearer {token}"]
    if mode == "close":
        command += ["-H", "Connection: close"]
    done = subprocess.run(
        [*command, base + path], capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def timed(server: Server, path: str, token: str, mode: str, round_no: int) -> Row:
    workers = ab._children(server.process.pid)
    before = ab._cpu_ticks(workers)
    try:
        output = _wrk(server.base, path, token, DURATION, mode)
        rps, p50, p99, total = ab.parse_wrk(output)
    except BenchError as error:
        _log(f"retrying {path} on {server.cache} ({mode}) once: {str(error).splitlines()[0]}")
        time.sleep(3)
        before = ab._cpu_ticks(workers)
        rps, p50, p99, total = ab.parse_wrk(_wrk(server.base, path, token, DURATION, mode))
    cpu_us = (ab._cpu_ticks(workers) - before) * ab._TICK_US / total
    return Row(round_no, server.cache, mode, path, rps, p50, p99, cpu_us)


def measure(servers: list[Server], token: str) -> list[Row]:
    """ROUNDS rounds; each times every endpoint in both modes on both servers, alternating
    which server goes first."""
    for server in servers:
        for path in ENDPOINTS:
            ab._http("GET", server.base + path, token=token)
            if WARMUP:
                ab.parse_wrk(_wrk(server.base, path, token, WARMUP, "keep-alive"))
    rows = []
    for round_no in range(1, ROUNDS + 1):
        for server in servers if round_no % 2 else servers[::-1]:
            for mode in MODES:
                for path in ENDPOINTS:
                    row = timed(server, path, token, mode, round_no)
                    _log(
                        f"round {round_no} {row.server:8}{mode:11}{path:18}{row.rps:9.1f} req/s"
                        f"  p50 {row.p50_ms:6.2f} ms  p99 {row.p99_ms:7.2f} ms"
                        f"  cpu/req {row.app_cpu_us:5.0f} us"
                    )
                    rows.append(row)
    return rows


class StalledBodies:
    """`count` connections that each send a request's headers and 4 of its 100 body bytes;
    one the server answers or closes is replaced at once."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.sockets: list[socket.socket] = []
        self.answered = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._keep, daemon=True)

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(STALLED_BODY)
        sock.setblocking(False)
        self.sockets.append(sock)

    def _keep(self) -> None:
        while not self.stop.is_set():
            readable, _, _ = select.select(self.sockets, [], [], 0.1)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/"):
                    self.answered += 1
                if not data or data.startswith(b"HTTP/"):
                    self.sockets.remove(sock)
                    sock.close()
                    self._open()

    def __enter__(self) -> StalledBodies:
        for _ in range(self.count):
            self._open()
        self.thread.start()
        time.sleep(0.5)  # each is being read by a worker by now
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()


def under_slow_clients(server: Server, token: str) -> str:
    """/health under wrk for SLOW_DURATION s while SLOW_CLIENTS stalled bodies are attached."""
    with StalledBodies(server.port, SLOW_CLIENTS) as slow:
        output = _wrk(server.base, HEALTH, token, SLOW_DURATION, "keep-alive")
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    errors = TIMEOUTS.search(output)
    return (
        f"{server.cache:<9}{rps.group(1) if rps else '0':>10}{p99.group(1) if p99 else '-':>10}"
        f"{total.group(1) if total else '0':>10}{errors.group(4) if errors else '0':>10}"
        f"{slow.answered:>10}"
    )


def report(rows: list[Row], slow_lines: list[str], busy_before: float) -> None:
    cell = {(r.round_no, r.server, r.mode, r.path): r for r in rows}
    rounds = sorted({r.round_no for r in rows})
    print()
    print(
        f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s x {len(rounds)} interleaved rounds,"
        " 2 gunicorn workers each, PostgreSQL; medians over the rounds"
    )
    print(f"machine busy before the run: {busy_before:.0%} of {os.cpu_count()} CPUs")
    print("sync: GUNICORN_WORKER_CLASS=sync (the previous default); default: gunicorn.conf.py")
    print("ratio: default req/s over sync req/s in the same round (median, range)")
    header = f"{'mode':<12}{'endpoint':<20}"
    for server in SERVERS:
        header += f"{server + ' req/s':>14}{'p50 ms':>8}{'p99 ms':>8}{'cpu us':>8}"
    print(header + f"{'ratio':>7}  range")
    for mode in MODES:
        for path in ENDPOINTS:
            line = f"{mode:<12}{path:<20}"
            for server in SERVERS:
                runs = [cell[n, server, mode, path] for n in rounds]
                line += (
                    f"{median(r.rps for r in runs):>14.1f}{median(r.p50_ms for r in runs):>8.2f}"
                    f"{median(r.p99_ms for r in runs):>8.2f}"
                    f"{median(r.app_cpu_us for r in runs):>8.0f}"
                )
            ratios = [
                cell[n, "default", mode, path].rps / cell[n, "sync", mode, path].rps for n in rounds
            ]
            print(line + f"{median(ratios):>7.2f}  {min(ratios):.2f}-{max(ratios):.2f}")
    print()
    print(
        f"/health under wrk (keep-alive) for {SLOW_DURATION} s while {SLOW_CLIENTS} clients"
        " hold a stalled body (408s: answers they got)"
    )
    print(f"{'server':<9}{'req/s':>10}{'p99':>10}{'requests':>10}{'timeouts':>10}{'408s':>10}")
    for line in slow_lines:
        print(line)


def run(workdir: Path) -> tuple[list[Row], list[str]]:
    database_url = ab._create_database(DB_NAME)
    ab.migrate(database_url)
    servers: list[Server] = []
    try:
        for name in SERVERS:
            servers.append(
                Server(name, _env(database_url, name), workdir, setting="workers", described="")
            )
        for server in servers:
            server.wait_healthy()
        account = {"email": "bench@example.com", "password": "bench password 123"}
        token = ab._http("POST", servers[0].base + "/api/auth/register", account)["data"]
        rows = measure(servers, token["access_token"])
        slow_lines = [under_slow_clients(server, token["access_token"]) for server in servers]
        return rows, slow_lines
    except BaseException:
        ab.show_logs(servers)
        raise
    finally:
        for server in servers:
            server.stop()


def main() -> int:
    if shutil.which("wrk") is None:
        _log("wrk is not installed: apt-get update && apt-get install -y wrk")
        return 2
    budget = 2 * len(MODES) * len(ENDPOINTS) * (ROUNDS * DURATION + WARMUP) + 2 * SLOW_DURATION
    if min(DURATION, ROUNDS) < 1 or WARMUP < 0 or budget > 600:
        # The single access token lasts 900 s (ACCESS_TOKEN_TTL); stay well inside it.
        _log(f"BENCH_DURATION/ROUNDS/WARMUP add up to {budget} s of load; keep it under 600 s")
        return 2
    busy = ab.settle_in()
    workdir = Path(tempfile.mkdtemp(prefix="mita-bench-"))
    try:
        rows, slow_lines = run(workdir)
    except (BenchError, OSError, subprocess.SubprocessError, psycopg2.Error) as error:
        _log(f"failed: {error}")
        return 1
    finally:
        try:
            ab._drop_database(DB_NAME)
        except psycopg2.Error as error:
            _log(f"could not drop {DB_NAME}: {error}")
        shutil.rmtree(workdir, ignore_errors=True)
    report(rows, slow_lines, busy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
