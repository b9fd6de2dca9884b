"""Query plans on PostgreSQL: a month's calendar and dashboard for a user with a year of
expenses read that user's rows through indexes, never the whole ledger.

One migrated database (`flask db upgrade`, so the production indexes) holds a user with ~3 000
expenses over 365 local days and 20 other users with ~1 000 each, plus a year of plans each.
The statements the services really run are captured with a `before_cursor_execute` listener and
run again under `EXPLAIN (ANALYZE, FORMAT JSON)` with their parameters.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from psycopg2.extras import execute_values

from mita_app import budget, dashboard, transactions
from mita_app.domain.categories import CATEGORIES, budget_category
from mita_app.domain.days import zone
from mita_app.extensions import db
from mita_app.models import User
from tests.conftest import NO_POSTGRES, build_app, dispose, pg_connect, sql_statements
from tests.gunicorn_server import migrated_postgres_database

pytestmark = pytest.mark.postgres

FIRST_DAY = date(2025, 12, 1)  # a year: 1 December 2025 to 30 November 2026, 365 local days
DAYS = 365
NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 in New York
ZONES = ("America/New_York", "America/Los_Angeles", "Pacific/Auckland", "Europe/Berlin", "UTC")
SCANS_OF_ROWS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}
ANSWERS = {
    "income": Decimal("6000.00"),
    "savings_goal": Decimal("500.00"),
    "fixed_expenses": {"rent": "2000.00", "utilities": "150.00"},
    "spending_habits": {"dining_out_per_month": 9, "coffee_per_week": 5, "travel_per_year": 2},
}


def months_of_the_year() -> list[date]:
    months = [FIRST_DAY]
    while len(months) < 12:
        months.append((months[-1] + timedelta(days=31)).replace(day=1))
    return months


class Expense(NamedTuple):
    id: uuid.UUID
    user_id: uuid.UUID
    amount: Decimal
    category: str
    spent_at: datetime
    spent_on: date
    fingerprint: str
    created_at: datetime


def expenses(rng: random.Random, user_id: uuid.UUID, timezone: str, count: int) -> list[Expense]:
    """`count` expenses on random local days of the year at random local times."""
    local = zone(timezone)
    rows = []
    for _ in range(count):
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        at = datetime.combine(day, time(rng.randrange(7, 23), rng.randrange(60)), local)
        spent_at = at.astimezone(UTC).replace(microsecond=rng.randrange(1000) * 1000)
        cents = rng.randrange(100, 15_000)
        rows.append(
            Expense(
                uuid.uuid4(),
                user_id,
                Decimal(cents).scaleb(-2),
                rng.choice(CATEGORIES),
                spent_at,
                day,
                uuid.uuid4().hex + uuid.uuid4().hex,
                spent_at + timedelta(seconds=rng.randrange(1, 5)),
            )
        )
    return rows


def load(url: str, rows: list[Expense]) -> None:
    """Bulk-insert expenses (a multi-row INSERT per thousand: the app's wait callback rules out
    COPY on this process's connections), then VACUUM ANALYZE."""
    connection = pg_connect(url)
    try:
        with connection.cursor() as cursor:
            execute_values(
                cursor,
                "INSERT INTO transactions (id, user_id, amount, category, spent_at, spent_on,"
                " fingerprint, created_at, updated_at) VALUES %s",
                [(str(row.id), str(row.user_id), *row[2:], row.created_at) for row in rows],
                page_size=1_000,
            )
            for table in ("transactions", "budget_plans", "users"):
                cursor.execute(f"VACUUM ANALYZE {table}")
    finally:
        connection.close()


@pytest.fixture(scope="module")
def year(postgres_url: str | None) -> Iterator[dict[str, Any]]:
    """The seeded database: its app, the user's id and every row of the user's ledger."""
    if postgres_url is None:
        pytest.skip(NO_POSTGRES)
    rng = random.Random(20261118)
    with migrated_postgres_database(postgres_url) as url:
        app = build_app(url, create_schema=False)
        try:
            with app.app_context():
                users = [
                    User(
                        email=f"ledger-{n}@example.com",
                        timezone=ZONES[n % len(ZONES)],
                        has_onboarded=True,
                        onboarded_at=datetime(2025, 12, 1, 12, tzinfo=UTC),
                        **ANSWERS,
                    )
                    for n in range(21)
                ]
                db.session.add_all(users)
                db.session.flush()
                for user in users:
                    plan = budget.plan_from_answers(user)
                    for month in months_of_the_year():
                        budget.replace_plan(user, month, plan)
                db.session.commit()
                ids = [user.id for user in users]
            mine = expenses(rng, ids[0], ZONES[0], 3_000)
            others = [
                row
                for n, user_id in enumerate(ids[1:], start=1)
                for row in expenses(rng, user_id, ZONES[n % len(ZONES)], 1_000)
            ]
            load(url, mine + others)
            yield {"app": app, "url": url, "user_id": ids[0], "ledger": mine, "rows": 23_000}
        finally:
            dispose(app)


def explain(statement: str, parameters: Any) -> dict[str, Any]:
    """The executed plan of a SELECT, as PostgreSQL's JSON (its top node)."""
    assert statement.lstrip().upper().startswith("SELECT"), statement
    result = db.session.connection().exec_driver_sql(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
    )
    return result.scalar_one()[0]["Plan"]


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def on_table(plan: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return [node for node in nodes(plan) if node.get("Relation Name") == table]


def assert_no_seq_scan(plan: dict[str, Any]) -> None:
    for table in ("transactions", "budget_plans"):
        assert [n for n in on_table(plan, table) if n["Node Type"] == "Seq Scan"] == [], plan


def reading(statements: list[tuple[str, Any]], table: str) -> list[tuple[str, Any]]:
    return [
        (statement, parameters)
        for statement, parameters in statements
        if statement.lstrip().upper().startswith("SELECT") and f"FROM {table}" in statement
    ]


def index_scans(plan: dict[str, Any], index: str) -> list[dict[str, Any]]:
    return [node for node in nodes(plan) if node.get("Index Name") == index]


def test_a_months_spending_is_the_ledgers_and_reads_only_that_users_month(year):
    first, last = NOVEMBER
    expected: defaultdict[date, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in year["ledger"]:
        if first <= row.spent_on <= last:
            expected[row.spent_on][budget_category(row.category)] += int(row.amount * 100)
    in_month = sum(1 for row in year["ledger"] if first <= row.spent_on <= last)
    assert 200 < in_month < 300  # ~3 000 over 365 days

    with year["app"].app_context():
        user = db.session.get(User, year["user_id"])
        with sql_statements(year["app"]) as seen:
            spent = budget.spending(user, first, last)
        # Derived from the ledger: groceries and dining under food, and so on.
        assert spent == {day: dict(by_category) for day, by_category in expected.items()}
        [(statement, parameters)] = reading(seen, "transactions")
        plan = explain(statement, parameters)

    assert_no_seq_scan(plan)
    [scan] = index_scans(plan, "ix_transactions_user_id_spent_on")
    assert scan["Node Type"] in {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}
    condition = scan["Index Cond"]
    assert "user_id" in condition
    assert "spent_on >=" in condition
    assert "spent_on <=" in condition
    # It reads exactly the user's month: no row of another user or month, nothing filtered.
    assert scan["Actual Rows"] == in_month
    assert scan["Plan Rows"] < year["rows"] // 20
    for node in on_table(plan, "transactions"):
        assert node["Actual Rows"] == in_month
        assert node.get("Rows Removed by Filter", 0) == 0
        assert node.get("Rows Removed by Index Recheck", 0) == 0


def test_the_plan_lookup_is_one_row_by_the_unique_index(year):
    with year["app"].app_context():
        user = db.session.get(User, year["user_id"])
        with sql_statements(year["app"]) as seen:
            stored = budget.plan_of(user, NOVEMBER[0])
        assert stored is not None
        assert stored.month == NOVEMBER[0]
        [(statement, parameters)] = reading(seen, "budget_plans")
        plan = explain(statement, parameters)
    assert_no_seq_scan(plan)
    [scan] = on_table(plan, "budget_plans")
    assert scan["Node Type"] == "Index Scan"
    assert scan["Index Name"] == "uq_budget_plans_user_id"
    assert scan["Actual Rows"] == 1


def test_the_newest_hundred_expenses_come_from_the_users_index_backwards(year):
    with year["app"].app_context():
        user = db.session.get(User, year["user_id"])
        with sql_statements(year["app"]) as seen:
            page = transactions.list_page(user, limit=100)
        assert (len(page.entries), page.total) == (100, 3_000)
        plans = [explain(statement, parameters) for statement, parameters in seen]
    assert len(plans) == 2  # the count, then the page
    count, rows = plans
    for plan in plans:
        assert_no_seq_scan(plan)
    # The count reads the user's ~3 000 index entries only (an index-only scan after VACUUM).
    [counted] = on_table(count, "transactions")
    assert counted["Node Type"] in {"Index Only Scan", "Bitmap Heap Scan"}
    assert counted["Actual Rows"] == 3_000
    # The page walks the user's (user_id, spent_at) index newest first and stops after ~100.
    [scan] = on_table(rows, "transactions")
    assert scan["Node Type"] == "Index Scan"
    assert scan["Index Name"] == "ix_transactions_user_id_spent_at"
    assert scan["Scan Direction"] == "Backward"
    assert scan["Actual Rows"] <= 110  # the page, and the next row to end its last spent_at


def test_the_dashboard_and_the_calendar_read_only_through_indexes(year, budget_clock):
    budget_clock(NOW)
    with year["app"].app_context():
        user = db.session.get(User, year["user_id"])
        with sql_statements(year["app"]) as board_reads:
            board = dashboard.dashboard(user)
        with sql_statements(year["app"]) as calendar_reads:
            month = budget.month_budget(user, 2026, 11)
        assert board.today == date(2026, 11, 18)
        assert month.spent_through() == sum(
            int(row.amount * 100)
            for row in year["ledger"]
            if NOVEMBER[0] <= row.spent_on <= NOVEMBER[1]
        )
        selects = []
        for seen, most in ((board_reads, 2), (calendar_reads, 2)):
            # The dashboard: the week's plans, then their spending with the latest expenses (one
            # statement); the calendar: the plan and the spending. Nothing is written (every
            # plan is stored).
            reads = reading(seen, "transactions") + reading(seen, "budget_plans")
            assert len(reads) == most, [statement for statement, _ in seen]
            assert all(s.lstrip().upper().startswith("SELECT") for s, _ in seen)
            selects += reads
        plans = [explain(statement, parameters) for statement, parameters in selects]
    for plan in plans:
        assert_no_seq_scan(plan)
        for node in on_table(plan, "transactions"):
            assert node["Node Type"] in SCANS_OF_ROWS - {"Seq Scan"}
            assert node["Actual Rows"] <= 3_000  # never more than the user's own rows
