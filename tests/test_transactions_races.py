"""The ledger under concurrency, on a real PostgreSQL: repeated creates make one row, and the
spending the service reports is the ledger's sum after concurrent creates, edits and deletes
from several app instances (standing for gunicorn workers)."""

from __future__ import annotations

import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from mita_app import budget as budget_service
from mita_app.extensions import db
from mita_app.models import User
from tests.budget_helpers import AppUser
from tests.conftest import AuthActions, build_app, dispose, pg_connect
from tests.races import gated_race

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))
BODY = {
    "amount": 23.75,
    "category": "food",
    "description": "Lunch",
    "spent_at": "2026-11-28T21:47:03.123Z",
}
LOCK_USER = "SELECT id FROM users WHERE id = %s FOR UPDATE"


@pytest.fixture
def pg_app(pg_url: str, budget_clock: Any) -> Iterator[Any]:
    budget_clock(NOW)
    # Room for every racing request's connection at once.
    app = build_app(pg_url, DB_POOL_SIZE="25", DB_MAX_OVERFLOW="5")
    yield app
    dispose(app)


def new_user(app: Any) -> tuple[AppUser, uuid.UUID]:
    client = app.test_client()
    user = AppUser(client, AuthActions(client))
    return user, uuid.UUID(user.get("/api/users/me")["id"])


def ledger_by_day(url: str, user_id: uuid.UUID) -> dict[date, Decimal]:
    connection = pg_connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT spent_on, SUM(amount) FROM transactions WHERE user_id = %s"
                " GROUP BY spent_on",
                (str(user_id),),
            )
            return dict(cursor.fetchall())
    finally:
        connection.close()


def test_twenty_identical_creates_at_once_make_one_row(pg_app: Any, pg_url: str) -> None:
    user, user_id = new_user(pg_app)

    def create(client: Any) -> Any:
        return client.post("/api/transactions/", headers=user.headers, json=BODY)

    # Another transaction holds the user's row lock: all 20 wait on it, then race.
    results = gated_race(pg_app, pg_url, 20, create, LOCK_USER, (str(user_id),))

    assert sorted(status for status, _ in results) == [200] * 19 + [201], results
    assert len({body["data"]["id"] for _, body in results}) == 1
    assert ledger_by_day(pg_url, user_id) == {date(2026, 11, 28): Decimal("23.75")}


def test_twenty_creates_with_one_idempotency_key_at_once_make_one_row(
    pg_app: Any, pg_url: str
) -> None:
    user, user_id = new_user(pg_app)

    def create(client: Any) -> Any:
        headers = {**user.headers, "Idempotency-Key": "one-purchase"}
        return client.post("/api/transactions/", headers=headers, json=BODY)

    results = gated_race(pg_app, pg_url, 20, create, LOCK_USER, (str(user_id),))

    assert sorted(status for status, _ in results) == [200] * 19 + [201], results
    assert len({body["data"]["id"] for _, body in results}) == 1
    assert ledger_by_day(pg_url, user_id) == {date(2026, 11, 28): Decimal("23.75")}


def test_concurrent_edits_and_deletes_of_one_expense_answer_200_or_404(
    pg_app: Any, pg_url: str
) -> None:
    user, user_id = new_user(pg_app)
    path = f"/api/transactions/{user.spend(10, 'food', '2026-11-28T12:00:00Z')['id']}"
    turns = iter(range(100))
    turn_lock = threading.Lock()

    def edit_or_delete(client: Any) -> Any:
        with turn_lock:
            turn = next(turns)
        if turn % 2:
            return client.delete(path, headers=user.headers)
        return client.put(path, headers=user.headers, json={"amount": 20 + turn})

    results = gated_race(pg_app, pg_url, 10, edit_or_delete, LOCK_USER, (str(user_id),))

    assert {status for status, _ in results} <= {200, 404}, results
    deleted = [body for _, body in results if body["success"] and "deleted" in body["data"]]
    assert len(deleted) == 1
    assert ledger_by_day(pg_url, user_id) == {}


def onboard_directly(app: Any, user_id: uuid.UUID) -> None:
    with app.app_context():
        row = db.session.get(User, user_id)
        assert row is not None
        row.timezone = "America/New_York"
        row.income, row.savings_goal = Decimal("6000"), Decimal("500")
        row.fixed_expenses = {"rent": "2000.00", "utilities": "150.00"}
        row.has_onboarded, row.onboarded_at = True, datetime(2026, 11, 1, 5, tzinfo=UTC)
        db.session.commit()


class Worker:
    """One thread's share of the writes: it creates, edits and deletes its own expenses (of one
    user shared by every worker), so its final ledger is known whatever the interleaving."""

    CATEGORIES = ("food", "groceries", "dining", "gas", "shopping", "rent", "pets")

    def __init__(self, number: int, app: Any, headers: dict[str, str]) -> None:
        self.number, self.client, self.headers = number, app.test_client(), headers
        self.random = random.Random(number)
        self.mine: dict[str, tuple[date, Decimal]] = {}

    def expense(self, step: int) -> dict[str, Any]:
        day = date(2026, 11, self.random.randint(1, 30))
        return {
            "amount": self.random.randint(1, 20000) / 100,
            "category": self.random.choice(self.CATEGORIES),
            "description": f"worker {self.number} step {step}",
            "spent_at": f"{day.isoformat()}T{self.random.randint(0, 23):02}:30:00",
        }

    def step(self, step: int) -> None:
        choice = self.random.random() if self.mine else 0.0
        if choice < 0.5:
            response = self.client.post(
                "/api/transactions/", headers=self.headers, json=self.expense(step)
            )
            assert response.status_code == 201, response.get_json()
        else:
            transaction_id = self.random.choice(sorted(self.mine))
            path = f"/api/transactions/{transaction_id}"
            if choice < 0.8:
                response = self.client.put(path, headers=self.headers, json=self.expense(step))
            else:
                response = self.client.delete(path, headers=self.headers)
                assert response.status_code == 200, response.get_json()
                del self.mine[transaction_id]
                return
            assert response.status_code == 200, response.get_json()
        data = response.get_json()["data"]
        self.mine[data["id"]] = (date.fromisoformat(data["date"]), Decimal(str(data["amount"])))


def test_spending_is_the_ledgers_sum_after_concurrent_creates_edits_and_deletes(
    pg_app: Any, pg_url: str
) -> None:
    second = build_app(pg_url, create_schema=False)  # another worker process's app
    try:
        user, user_id = new_user(pg_app)
        onboard_directly(pg_app, user_id)
        workers = [Worker(n, (pg_app, second)[n % 2], user.headers) for n in range(6)]
        barrier = threading.Barrier(len(workers), timeout=10)

        def run(worker: Worker) -> None:
            barrier.wait()
            for step in range(25):
                worker.step(step)

        with ThreadPoolExecutor(max_workers=len(workers)) as pool:
            for future in [pool.submit(run, worker) for worker in workers]:
                future.result(timeout=120)
    finally:
        dispose(second)

    expected: defaultdict[date, Decimal] = defaultdict(Decimal)
    for worker in workers:
        for day, amount in worker.mine.values():
            expected[day] += amount
    ledger = ledger_by_day(pg_url, user_id)
    assert ledger == dict(expected)
    assert sum(len(worker.mine) for worker in workers) > 30
    with pg_app.app_context():
        row = db.session.get(User, user_id)
        assert row is not None
        spent = budget_service.spending(row, *NOVEMBER)
        month = budget_service.month_budget(row, 2026, 11)
    reported = {day: Decimal(sum(by.values())) / 100 for day, by in spent.items()}
    assert reported == ledger
    assert Decimal(month.spent_through()) / 100 == sum(ledger.values())
    listed: defaultdict[date, Decimal] = defaultdict(Decimal)
    for item in user.get(
        "/api/transactions/?start_date=2026-11-01&end_date=2026-11-30&limit=10000"
    ):
        listed[date.fromisoformat(item["date"])] += Decimal(str(item["amount"]))
    assert dict(listed) == ledger
