"""The framework's share of a request: mita's routes against anchor apps of a few lines, in one run.

Starts four gunicorn servers on one fresh PostgreSQL database (`<BENCH_DB_NAME>_framework`,
dropped afterwards), all up at once, each with the same worker count (WEB_CONCURRENCY, default
2), worker class, threads, worker recycling and keep-alive:

- mita as deployed: `gunicorn -c gunicorn.conf.py wsgi:app`, MITA_ENV=production, its defaults
  for everything else (rate limits, the JSON access log, the audit log, worker recycling);
- the anchors in bench/anchors/, through bench/anchors/gunicorn.conf.py (mita's settings, no
  access log): bare Flask (`GET /ping`), Flask with a tutorial's PyJWT `login_required`
  (`GET /me`), and that decorator plus the user's row read with Flask-SQLAlchemy (`GET /me`).

It registers one user through the API, submits onboarding and creates 10 habits through it, and
writes a year of history straight into the tables as the API would have: ~3000 expenses, the
habits' completions on most days, the budget plans of the months since onboarding. Then it drives
every row with wrk from 127.0.0.1 over interleaved rounds (wrk's timeout 10 s: the budget routes
take most of a second under this load) and prints req/s, p50, p99, each row's ratio to bare
Flask's `/ping` of the same round, the SQL statements one request of each mita route runs
(counted in-process on a test client of the same app, after a warm-up request; the pool's
pre-ping on each checkout is no statement to SQLAlchemy's events: the log gives the checkouts),
the database connections each run opened per 1000 requests, and the targets.
BENCH_WORKER_CLASS (e.g. `sync`) sets the worker class of every server alike.

BENCH_PROFILE=<a mita row's path> (`/health`, `/api/users/me`...) then starts one more mita
server with one worker that is never recycled, drives that row for BENCH_DURATION while py-spy
samples the worker, and writes bench/results/flame-<path>.svg.

Run it through `bash bench/run.sh framework` (or `make bench BENCH=framework`), or
`python -m bench.framework_bench` from the repository's root. BENCH_DURATION, BENCH_ROUNDS,
BENCH_WARMUP, BENCH_CONNECTIONS and BENCH_THREADS are auth_bench's.
"""

from __future__ import annotations

import os
import random
import runpy
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from statistics import median
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import psycopg2
from flask import Flask
from sqlalchemy import event, insert, select, text, update

from bench import auth_bench as ab
from bench.auth_bench import (
    BIN,
    CONNECTIONS,
    DURATION,
    HEALTH,
    ME,
    ROOT,
    ROUNDS,
    SECRET_KEY,
    SESSION,
    THREADS,
    WARMUP,
    BenchError,
    Result,
    Server,
    _admin,
    _children,
    _http,
    _log,
    _wrk_with_retry,
    migrated_databases,
    settle_in,
    show_logs,
    timed,
    wrk,
)

# The onboarding body the mobile app sends (the contract's), as the budget tests send it.
from tests.budget_helpers import ONBOARDING
from tests.gunicorn_server import connections_per_worker

DB_NAME = f"{ab.DB_NAME}_framework"
WORKERS = os.environ.get("WEB_CONCURRENCY", "2")
WORKER_CLASS = os.environ.get("BENCH_WORKER_CLASS", "")
PROFILE = os.environ.get("BENCH_PROFILE", "")
RESULTS = ROOT / "bench" / "results"
ANCHOR_CONF = "bench/anchors/gunicorn.conf.py"
# wrk's timeout: the budget routes take most of a second under this load, and a response later
# than this is a socket error, which fails the run.
WRK_TIMEOUT = 10
# What the servers' environment must not inherit from the caller's (nor any GUNICORN_ variable):
# every server runs with gunicorn.conf.py's and the app's defaults, but for the worker count and
# BENCH_WORKER_CLASS.
NOT_INHERITED = ("PORT", "AUTH_CACHE_TTL", "RATELIMIT_ENABLED", "AUDIT_ENABLED")

MITA = "mita"
ANCHORS = ("bare_flask", "pyjwt_decorator", "pyjwt_user_row")
PING = "/ping"
ANCHOR_ME = "/me"
# The list's first page at the server's default size (the app's contract names the parameters).
TRANSACTIONS = "/api/transactions/?skip=0&limit=100"
DASHBOARD = "/api/dashboard"
LIVE_STATUS = "/api/budget/live_status"
HABITS = "/api/habits/"

# Targets, as ratios of req/s to bare Flask's /ping of the same round.
HEALTH_TARGET = 0.85
SESSION_TARGET = 0.80
ME_TARGET = 0.40
APP_TARGET = 0.20
APP_P99_MS = 25.0
APP_SQL = 3
TAIL_TARGET = 3.0  # p99 / p50

# The bench user: the onboarding body is the app's own (../shared/MITA_CLIENT.md, section 3).
TIMEZONE = "America/New_York"
ACCOUNT = {
    "email": "framework@example.com",
    "password": "bench password 123",
    "country": "US",
    "timezone": TIMEZONE,
}
HABIT_TITLES = (
    ("Log every expense", "daily"),
    ("No takeaway coffee", "daily"),
    ("Cook dinner at home", "daily"),
    ("Check today's budget", "daily"),
    ("Walk instead of a ride", "daily"),
    ("No impulse buys", "daily"),
    ("Pack lunch", "daily"),
    ("Read for 20 minutes", "daily"),
    ("Review subscriptions", "weekly"),
    ("Move money to savings", "weekly"),
)
DAYS = 365
EXPENSES = 3000
# Everyday spending: (category, share of the rows, lowest and highest amount, descriptions).
SPENDING: tuple[tuple[str, int, float, float, tuple[str, ...]], ...] = (
    ("food", 22, 3.25, 9.5, ("Coffee", "Bagel", "Snacks")),
    ("dining", 13, 12.0, 75.0, ("Lunch", "Dinner out", "Takeaway", "Brunch")),
    ("groceries", 12, 18.0, 145.0, ("Groceries", "Farmers market", "Supermarket")),
    ("public_transport", 13, 2.9, 2.9, ("Subway",)),
    ("transportation", 5, 8.0, 38.0, ("Taxi", "Rideshare")),
    ("gas", 3, 32.0, 68.0, ("Gas",)),
    ("shopping", 7, 8.0, 120.0, ("Pharmacy basics", "Homeware", "Online order")),
    ("clothing", 3, 25.0, 160.0, ("Shoes", "Jacket", "T-shirts")),
    ("entertainment", 7, 9.0, 85.0, ("Cinema", "Concert", "Museum", "Bowling")),
    ("healthcare", 2, 10.0, 120.0, ("Pharmacy", "Doctor copay")),
    ("pets", 2, 12.0, 90.0, ("Pet food", "Vet")),
    ("gifts", 2, 20.0, 110.0, ("Birthday gift", "Flowers")),
    ("education", 1, 12.0, 60.0, ("Books", "Online course")),
    ("travel", 1, 60.0, 420.0, ("Train tickets", "Hotel")),
    ("charity", 1, 10.0, 50.0, ("Donation",)),
    ("other", 6, 4.0, 60.0, ("Haircut", "Laundry", "Post office")),
)
# The month's bills, recorded on their day: (category, day, lowest, highest, description).
BILLS = (
    ("rent", 1, 2000.0, 2000.0, "Rent"),
    ("utilities", 5, 110.0, 185.0, "Electricity and water"),
    ("subscriptions", 12, 15.99, 15.99, "Streaming"),
)


@dataclass(frozen=True)
class Row:
    server: str  # MITA or an anchor
    path: str
    label: str

    @property
    def anchor(self) -> bool:
        return self.server != MITA


Key = tuple[int, str, str]  # (round, server, path)


@dataclass(frozen=True)
class Measured:
    results: list[Result]
    connections: dict[Key, float]  # database connections opened per 1000 requests
    recycled: dict[Key, int]  # workers replaced during the run
    splits: dict[Key, str]  # wrk's connections per worker, halfway through


@dataclass(frozen=True)
class Outcome:
    rows: list[Row]
    measured: Measured
    sql: dict[str, int]
    settings: dict[str, Any]
    restarts: dict[str, tuple[int, int]]  # server: (workers booted, autorestarts logged)
    flame: Path | None


def rows_of(today: date) -> list[Row]:
    """Every row measured, anchors first; `today` is the user's local day (its month's calendar)."""
    calendar = f"/api/calendar/saved/{today.year}/{today.month}"
    return [
        Row("bare_flask", PING, "anchor /ping (bare Flask)"),
        Row("pyjwt_decorator", ANCHOR_ME, "anchor /me (PyJWT decorator)"),
        Row("pyjwt_user_row", ANCHOR_ME, "anchor /me (decorator + user row)"),
        *(Row(MITA, path, path) for path in (HEALTH, SESSION, ME)),
        *(Row(MITA, path, path) for path in (TRANSACTIONS, DASHBOARD, LIVE_STATUS, calendar)),
        Row(MITA, HABITS, HABITS),
    ]


def app_routes(rows: list[Row]) -> list[Row]:
    """The six routes of the app's screens (all mita rows but /health and the bare session)."""
    return [row for row in rows if not row.anchor and row.path not in (HEALTH, SESSION)]


def server_env(database_url: str) -> dict[str, str]:
    """The environment of every server: mita's production settings and defaults."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in NOT_INHERITED and not name.startswith("GUNICORN_")
    }
    env.update(
        MITA_ENV="production",
        SECRET_KEY=SECRET_KEY,
        # Production wants a mail server; the benchmarked routes never send mail.
        MAIL_SERVER="127.0.0.1",
        DATABASE_URL=database_url,
        WEB_CONCURRENCY=WORKERS,
    )
    if WORKER_CLASS:
        env["GUNICORN_WORKER_CLASS"] = WORKER_CLASS
    return env


def gunicorn_settings(env: dict[str, str]) -> dict[str, Any]:
    """What mita's gunicorn.conf.py picks from `env` (the anchors' config reads the same)."""
    with mock.patch.dict(os.environ, env, clear=True):
        return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def answer_200(server: Server, path: str, token: str, timeout: float = 30.0) -> None:
    """Wait until `path` answers 200 to the token (the anchors may still be booting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _http("GET", server.base + path, token=token)
            return
        except OSError as error:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{path} on {server.cache} did not answer 200: {error}") from None
            time.sleep(0.2)


# The bench user and a year of history -----------------------------------------------------------


def _first_of(day: date) -> date:
    return day.replace(day=1)


def _next_month(month: date) -> date:
    return _first_of(month + timedelta(days=31))


def _expense(
    user_id: uuid.UUID,
    category: str,
    amount: Decimal,
    description: str,
    spent_at: datetime,
    now: datetime,
    rng: random.Random,
    *,
    recurring: bool = False,
) -> dict[str, Any]:
    """A `transactions` row as a create through the API writes it: the app's body (a UTC time
    with milliseconds) fingerprinted, the local day it fell on, recorded shortly after."""
    from mita_app.transactions import fingerprint

    moment = spent_at.astimezone(UTC)
    body = {
        "amount": float(amount),
        "category": category,
        "description": description,
        "is_recurring": recurring,
        "spent_at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    created = min(moment + timedelta(seconds=rng.randint(20, 1800)), now)
    return {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "amount": amount,
        "category": category,
        "description": description,
        "notes": "",
        "merchant": None,
        "location": None,
        "is_recurring": recurring,
        "tags": [],
        "spent_at": moment,
        "spent_on": moment.astimezone(ZoneInfo(TIMEZONE)).date(),
        "idempotency_key": None,
        "fingerprint": fingerprint(body),
        "created_at": created,
        "updated_at": created,
    }


def _amount(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(f"{rng.uniform(low, high):.2f}")


def expenses(
    user_id: uuid.UUID, first_day: date, now: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """EXPENSES rows from `first_day` to now: the month's bills on their day, the rest everyday
    spending at a daytime hour of a random day."""
    local = ZoneInfo(TIMEZONE)
    today = now.astimezone(local).date()
    rows = []
    month = _first_of(first_day)
    while month <= today:
        for category, due, low, high, description in BILLS:
            at = datetime.combine(month.replace(day=due), clock(9, 0), local)
            if first_day <= at.date() and at < now:
                amount = _amount(rng, low, high)
                bill = _expense(
                    user_id, category, amount, description, at, now, rng, recurring=True
                )
                rows.append(bill)
        month = _next_month(month)
    weights = [share for _, share, _, _, _ in SPENDING]
    for _ in range(EXPENSES - len(rows)):
        category, _, low, high, descriptions = rng.choices(SPENDING, weights)[0]
        day = first_day + timedelta(days=rng.randrange(DAYS))
        at = datetime.combine(day, clock(7, 0), local) + timedelta(seconds=rng.randrange(55_800))
        if at >= now:  # today, later than now
            at = now - timedelta(minutes=rng.randint(1, 240))
        amount = _amount(rng, low, high)
        rows.append(_expense(user_id, category, amount, rng.choice(descriptions), at, now, rng))
    return rows


Call = Callable[..., dict[str, Any]]  # (method, path, body=None, token="") -> the JSON answer


def over_http(base: str) -> Call:
    """API calls to a running server at `base`."""
    return lambda method, path, body=None, token="": _http(method, base + path, body, token)


def in_process(app: Flask) -> Call:
    """API calls through `app`'s test client (to seed or profile without a server)."""
    client = app.test_client()

    def call(method: str, path: str, body: Any = None, token: str = "") -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = client.open(path, method=method, json=body, headers=headers)
        if response.status_code >= 400:
            raise BenchError(f"{method} {path}: {response.status_code} {response.get_data()!r}")
        return dict(response.get_json())

    return call


def seed(call: Call, app: Flask) -> str:
    """Register the bench user, onboard it and create its habits through the API (`call`), then
    write a year of history into the tables; the user's access token."""
    from mita_app.extensions import db
    from mita_app.models import BudgetPlan, Habit, HabitCompletion, Transaction, User

    token = str(call("POST", "/api/auth/register", ACCOUNT)["data"]["access_token"])
    call("POST", "/api/onboarding/submit", ONBOARDING, token)
    habit_ids = []
    for title, frequency in HABIT_TITLES:
        habit = {"title": title, "description": "", "target_frequency": frequency}
        habit_ids.append(uuid.UUID(call("POST", HABITS, habit, token)["data"]["id"]))
    user_id = uuid.UUID(call("GET", SESSION, token=token)["data"]["user_id"])

    rng = random.Random(20261128)
    local = ZoneInfo(TIMEZONE)
    now = datetime.now(UTC)
    today = now.astimezone(local).date()
    first_day = today - timedelta(days=DAYS - 1)
    # The account was made and onboarded a year ago, its habits the same morning.
    joined = datetime.combine(first_day, clock(6, 30), local).astimezone(UTC)
    users, plans, habits = User.__table__, BudgetPlan.__table__, Habit.__table__
    with app.app_context():
        session = db.session
        session.execute(
            update(users)
            .where(users.c.id == user_id)
            .values(created_at=joined - timedelta(minutes=10), onboarded_at=joined)
        )
        # Each month since then has the plan the app makes from the answers when first needed:
        # the current month's as onboarding stored it.
        current = session.execute(select(plans).where(plans.c.user_id == user_id)).one()
        months = []
        month = _first_of(first_day)
        while month < current.month:
            made = max(datetime.combine(month, clock(7, 0), local).astimezone(UTC), joined)
            plan = {**current._mapping, "id": uuid.uuid4(), "month": month}
            months.append({**plan, "created_at": made, "updated_at": made})
            month = _next_month(month)
        session.execute(insert(plans), months)
        ledger = expenses(user_id, first_day, now, rng)
        session.execute(insert(Transaction.__table__), ledger)
        done = []
        for i, habit_id in enumerate(habit_ids):
            made = joined + timedelta(minutes=i)
            session.execute(
                update(habits)
                .where(habits.c.id == habit_id)
                .values(created_at=made, updated_at=made)
            )
            share = rng.uniform(0.6, 0.92)  # of the days it is done
            for offset in range(DAYS):
                day = first_day + timedelta(days=offset)
                if rng.random() < share:
                    at = min(datetime.combine(day, clock(21, 0), local).astimezone(UTC), now)
                    done.append({"habit_id": habit_id, "day": day, "created_at": at})
        session.execute(insert(HabitCompletion.__table__), done)
        session.commit()
        session.execute(text("ANALYZE"))  # as autovacuum would have, long since
        session.commit()
    _log(
        f"seeded: {len(ledger)} expenses, {len(months) + 1} monthly plans,"
        f" {len(habit_ids)} habits with {len(done)} completions, over {DAYS} days"
    )
    return token


# SQL statements per request ----------------------------------------------------------------------


def count_statements(app: Flask, rows: list[Row], token: str) -> dict[str, int]:
    """SQL statements one request of each mita row runs, in this thread (not the audit writer's
    or another thread's), after one warm-up request; pool checkouts (each a pre-ping) logged."""
    from mita_app.extensions import db

    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    me = threading.get_ident()
    statements: list[tuple[int, str]] = []
    checkouts: list[int] = []

    def executed(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append((threading.get_ident(), statement))

    def checked_out(*args: Any) -> None:
        checkouts.append(threading.get_ident())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", executed)
    event.listen(engine, "checkout", checked_out)
    counts = {}
    try:
        for row in rows:
            if client.get(row.path, headers=headers).status_code != 200:
                raise BenchError(f"{row.path} did not answer 200 in-process")
            statements.clear()
            checkouts.clear()
            status = client.get(row.path, headers=headers).status_code
            if status != 200:
                raise BenchError(f"{row.path} answered {status} in-process")
            ours = [" ".join(statement.split()) for thread, statement in statements if thread == me]
            others = len(statements) - len(ours)
            counts[row.path] = len(ours)
            _log(
                f"SQL {row.path}: {len(ours)} statements, {checkouts.count(me)} pool checkouts"
                + (f", {others} more in other threads (not counted)" if others else "")
            )
            for statement in ours:
                _log(f"    {statement[:150]}")
    finally:
        event.remove(engine, "before_cursor_execute", executed)
        event.remove(engine, "checkout", checked_out)
    threads = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
    _log(f"threads of this process besides the main one: {', '.join(threads) or 'none'}")
    return counts


# Load ---------------------------------------------------------------------------------------------


def sessions_opened() -> int:
    """Connections ever opened to the bench database (PostgreSQL's count)."""
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (DB_NAME,))
            return int(cursor.fetchone()[0])
    finally:
        connection.close()


def connection_split(server: Server) -> str:
    """The client connections each worker holds, busiest first ("8/8"): a threaded worker keeps
    every kept-alive connection it accepted."""
    try:
        held = connections_per_worker(server.port, server.process.pid)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return "/".join(map(str, sorted(held.values(), reverse=True)))


def note_split(splits: dict[Key, str], key: Key, server: Server) -> None:
    splits[key] = connection_split(server)


def measure(servers: dict[str, Server], rows: list[Row], token: str) -> Measured:
    """A warm-up of every row, then ROUNDS rounds, each timing every row in turn, the order
    reversed every other round; with the database connections each run opened per 1000
    requests, the workers recycled during it (new worker PIDs at its end) and the connections
    each worker held halfway through."""
    for row in rows:
        if WARMUP:
            _wrk_with_retry(servers[row.server], row.path, token, WARMUP, timeout=WRK_TIMEOUT)
    measured = Measured([], {}, {}, {})
    for round_no in range(1, ROUNDS + 1):
        for row in rows if round_no % 2 else rows[::-1]:
            server, key = servers[row.server], (round_no, row.server, row.path)
            opened, workers = sessions_opened(), set(_children(server.process.pid))
            halfway = threading.Timer(DURATION / 2, note_split, (measured.splits, key, server))
            halfway.start()
            r = timed(server, row.path, token, DURATION, round_no, timeout=WRK_TIMEOUT)
            halfway.join()
            measured.results.append(r)
            measured.connections[key] = (sessions_opened() - opened) * 1000 / r.requests
            measured.recycled[key] = len(set(_children(server.process.pid)) - workers)
            _log(
                f"round {round_no} {row.label:38} {r.rps:8.1f} req/s  p50 {r.p50_ms:6.2f} ms"
                f"  p99 {r.p99_ms:6.2f} ms  cpu/req {r.app_cpu_us:5.0f} us"
                f"  new db connections/1000 req {measured.connections[key]:5.1f}"
                f"  workers recycled {measured.recycled[key]}"
                f"  connections per worker {measured.splits.get(key, '?')}"
            )
    return measured


def worker_boots(server: Server) -> tuple[int, int]:
    """Workers booted and 'Autorestarting worker' lines so far, from the server's log."""
    booted = restarted = 0
    with server.log_path.open("rb") as log:
        for line in log:
            booted += b"Booting worker" in line
            restarted += b"Autorestarting worker" in line
    return booted, restarted


def profile(env: dict[str, str], workdir: Path, row: Row, token: str) -> Path:
    """One more mita server with one worker that lives through it; py-spy samples that worker
    while wrk drives `row` for DURATION seconds. The flame graph's path."""
    slug = row.path.partition("?")[0].strip("/").replace("/", "-") or "root"
    flame = RESULTS / f"flame-{slug}.svg"
    RESULTS.mkdir(parents=True, exist_ok=True)
    server = Server(
        "profile",
        {**env, "WEB_CONCURRENCY": "1", "GUNICORN_MAX_REQUESTS": "0"},
        workdir,
        setting="framework",
        described="app",
    )
    try:
        server.wait_healthy()
        answer_200(server, row.path, token)
        workers = _children(server.process.pid)
        if len(workers) != 1:
            raise BenchError(f"the profiled server has {len(workers)} workers, not 1")
        for options in ([], ["--nonblocking"]):
            command = [str(BIN / "py-spy"), "record", "--pid", str(workers[0])]
            command += ["--duration", str(DURATION), "--rate", "500", "--format", "flamegraph"]
            spy = subprocess.Popen(
                [*command, *options, "-o", str(flame)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(0.5)  # attached, before the load starts
            rps, p50, p99, _ = wrk(server.base, row.path, token, DURATION, timeout=WRK_TIMEOUT)
            output, _ = spy.communicate(timeout=DURATION + 60)
            if spy.returncode == 0 and flame.exists():
                _log(f"profiled {row.path}: {rps:.1f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
                return flame
            _log(f"py-spy {' '.join(options) or 'record'} failed ({spy.returncode}): {output}")
        raise BenchError(
            "py-spy could not sample the worker: it needs ptrace on it (run as root, or give the "
            "container CAP_SYS_PTRACE, or set kernel.yama.ptrace_scope to 0)"
        )
    except BaseException:
        show_logs([server])
        raise
    finally:
        server.stop()


def run(workdir: Path, database_url: str) -> Outcome:
    from mita_app import create_app
    from mita_app.extensions import db

    env = server_env(database_url)
    settings = gunicorn_settings(env)
    servers: dict[str, Server] = {}
    app = create_app(env=env)
    try:
        # All up at once; only the row being timed gets traffic.
        servers[MITA] = Server(MITA, env, workdir, setting="framework", described="app")
        for name in ANCHORS:
            servers[name] = Server(
                name,
                env,
                workdir,
                setting="framework",
                described="app",
                config=ANCHOR_CONF,
                app=f"bench.anchors.{name}:app",
            )
        servers[MITA].wait_healthy()
        token = seed(over_http(servers[MITA].base), app)
        rows = rows_of(datetime.now(ZoneInfo(TIMEZONE)).date())
        profiled = [row for row in rows if PROFILE in (row.path, row.path.partition("?")[0])]
        for row in rows:  # each answers 200 to the token before it is timed
            answer_200(servers[row.server], row.path, token)
        sql = count_statements(app, [row for row in rows if not row.anchor], token)
        measured = measure(servers, rows, token)
        restarts = {name: worker_boots(server) for name, server in servers.items()}
        flame = profile(env, workdir, profiled[0], token) if profiled else None
        return Outcome(rows, measured, sql, settings, restarts, flame)
    except BaseException:
        show_logs(list(servers.values()))
        raise
    finally:
        for server in servers.values():
            server.stop()
        with app.app_context():
            db.engine.dispose()


# The report ---------------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(outcome: Outcome, busy: float, load: tuple[float, float, float], started: str) -> None:
    rows, settings, measured = outcome.rows, outcome.settings, outcome.measured
    cell = {(r.round_no, r.cache, r.path): r for r in measured.results}
    rounds = sorted({r.round_no for r in measured.results})
    ping = next(row for row in rows if row.path == PING)
    health = next(row for row in rows if row.path == HEALTH)

    def runs(row: Row) -> list[Result]:
        return [cell[n, row.server, row.path] for n in rounds]

    def ratios(row: Row, base: Row) -> list[float]:
        return [
            cell[n, row.server, row.path].rps / cell[n, base.server, base.path].rps for n in rounds
        ]

    def tail(row: Row) -> float:
        return median(r.p99_ms / r.p50_ms for r in runs(row))

    def sql(row: Row) -> str:
        return "-" if row.anchor else str(outcome.sql[row.path])

    print()
    print(f"{started}, {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in load)};")
    print(f"machine busy before the run: {busy:.0%}")
    print(
        f"gunicorn: {settings['workers']} workers, {settings['worker_class']},"
        f" {settings['threads']} threads, max_requests {settings['max_requests']}"
        f" (jitter {settings['max_requests_jitter']}), keepalive {settings['keepalive']} s,"
        f" preload {settings['preload_app']}"
    )
    print(
        f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s x {len(rounds)} rounds, PostgreSQL;"
        " medians over the rounds"
    )
    print("/ping: req/s as a ratio to bare Flask's /ping of the same round (median, range);")
    print("SQL: statements of one request (in-process); cpu us: the workers' CPU time per")
    print("request; conn/1k: database connections the run opened per 1000 requests; recycled:")
    print("workers replaced (max_requests) during the row's runs, all rounds; split: wrk's")
    print("connections each worker held halfway through each round's run")
    print(
        f"{'row':<38}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'p99/p50':>8}{'/ping':>7}"
        f"  {'range':<11}{'SQL':>4}{'cpu us':>8}{'conn/1k':>8}{'recycled':>9}  split"
    )
    for row in rows:
        results, spread = runs(row), ratios(row, ping)
        print(
            f"{row.label:<38}{median(r.rps for r in results):>9.1f}"
            f"{median(r.p50_ms for r in results):>8.2f}{median(r.p99_ms for r in results):>8.2f}"
            f"{tail(row):>8.2f}{median(spread):>7.2f}  {min(spread):.2f}-{max(spread):<6.2f}"
            f"{sql(row):>4}{median(r.app_cpu_us for r in results):>8.0f}"
            f"{median(measured.connections[n, row.server, row.path] for n in rounds):>8.1f}"
            f"{sum(measured.recycled[n, row.server, row.path] for n in rounds):>9}"
            f"  {' '.join(measured.splits.get((n, row.server, row.path), '?') for n in rounds)}"
        )
    print()
    print("mita's rows as a ratio to mita's /health of the same round (median, range):")
    for row in rows:
        if not row.anchor:
            spread = ratios(row, health)
            print(f"{row.label:<38}{median(spread):>6.2f}  {min(spread):.2f}-{max(spread):.2f}")

    print()
    print("targets (ratios to /ping: medians over the rounds):")
    for path, target in ((HEALTH, HEALTH_TARGET), (SESSION, SESSION_TARGET), (ME, ME_TARGET)):
        row = next(row for row in rows if row.path == path)
        value = median(ratios(row, ping))
        print(f"  {path:<36} {value:.2f} of /ping (>= {target:.2f})  {_verdict(value >= target)}")
    print(
        f"  app routes: >= {APP_TARGET:.2f} of /ping, p99 < {APP_P99_MS:g} ms,"
        f" <= {APP_SQL} SQL statements"
    )
    for row in app_routes(rows):
        value, p99 = median(ratios(row, ping)), median(r.p99_ms for r in runs(row))
        count = outcome.sql[row.path]
        print(
            f"    {row.label:<36} {value:.2f} {_verdict(value >= APP_TARGET)}"
            f"  p99 {p99:6.2f} ms {_verdict(p99 < APP_P99_MS)}"
            f"  SQL {count} {_verdict(count <= APP_SQL)}"
        )
    print(f"  p99 <= {TAIL_TARGET:g} x p50, every row:")
    for row in rows:
        print(f"    {row.label:<36} {tail(row):5.2f}  {_verdict(tail(row) <= TAIL_TARGET)}")

    print()
    initial = int(settings["workers"])
    recycled = ", ".join(
        f"{name} {booted - initial} ({restarted} 'Autorestarting worker')"
        for name, (booted, restarted) in outcome.restarts.items()
    )
    print(f"workers recycled during the run (booted beyond the first {initial}): {recycled}")
    if outcome.flame is not None:
        print(f"flame graph of {PROFILE} (one worker, {DURATION} s): {outcome.flame}")


def main() -> int:
    if shutil.which("wrk") is None:
        _log("wrk is not installed: apt-get update && apt-get install -y wrk")
        return 2
    if PROFILE and not (BIN / "py-spy").exists():
        _log("BENCH_PROFILE needs py-spy: .venv/bin/pip install -r requirements-dev.txt")
        return 2
    rows = rows_of(datetime.now(ZoneInfo(TIMEZONE)).date())
    paths = {row.path for row in rows if not row.anchor}
    paths |= {path.partition("?")[0] for path in paths}
    if PROFILE and PROFILE not in paths:
        _log(f"BENCH_PROFILE={PROFILE} is not a mita row: one of {', '.join(sorted(paths))}")
        return 2
    budget = len(rows) * (ROUNDS * DURATION + WARMUP) + (DURATION if PROFILE else 0)
    if min(DURATION, ROUNDS) < 1 or WARMUP < 0 or budget > 600:
        _log(f"BENCH_DURATION/ROUNDS/WARMUP add up to {budget} s of load; keep it under 600 s")
        return 2
    started = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()
    busy = settle_in()
    workdir = Path(tempfile.mkdtemp(prefix="mita-framework-bench-"))
    try:
        with migrated_databases({"framework": DB_NAME}) as urls:
            outcome = run(workdir, urls["framework"])
    except (BenchError, OSError, subprocess.SubprocessError, psycopg2.Error) as error:
        _log(f"failed: {error}")
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(outcome, busy, load, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
