"""A database failure is a 503 with Retry-After wherever it surfaces: in a guard, a view, a
response serializer reading an expired attribute, an after_request hook. Never a 500, never a 401.

Every protected route of the url_map is tried with a warm auth cache (the credential check needs
no database, so the failure surfaces further in) against a PostgreSQL of the test's own that is
stopped, that has every table locked past DB_LOCK_TIMEOUT_MS, and that is frozen with SIGSTOP past
the client deadline. A route added later is covered automatically: it needs an entry in EXAMPLES
(a request that passes validation), or the first test fails.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask, Response
from sqlalchemy import select, text

from mita_app.api.schemas.users import UserOut
from mita_app.extensions import db
from mita_app.models import User
from mita_app.validation import ok
from tests.budget_helpers import onboarding_body
from tests.conftest import PASSWORD, build_app, dispose, pg_connect, sql_statements
from tests.pg_cluster import PostgresCluster, pg_cluster  # noqa: F401 (a fixture)

NEW_PASSWORD = PASSWORD + " and more"
EXPENSE = {"amount": 12.5, "category": "food", "spent_at": "2026-11-20T12:00:00Z"}

# A request that passes validation, for each protected route: (method, rule) -> JSON body or None.
# Path arguments are filled in by `concrete` from the user's own rows.
EXAMPLES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("GET", "/api/auth/session"): None,
    ("GET", "/api/users/me"): None,
    ("PATCH", "/api/users/me"): {"name": "Ada"},
    ("POST", "/api/onboarding/submit"): onboarding_body(),
    ("GET", "/api/budget/daily"): None,
    ("GET", "/api/budget/spent"): None,
    ("GET", "/api/budget/remaining"): None,
    ("GET", "/api/budget/live_status"): None,
    ("GET", "/api/calendar/saved/<year>/<month>"): None,
    ("POST", "/api/calendar/shell"): {"income": 5000, "savings_target": 500, "fixed": {}},
    ("GET", "/api/dashboard/"): None,
    ("GET", "/api/habits/"): None,
    ("POST", "/api/habits/"): {"title": "Walk"},
    ("PATCH", "/api/habits/<habit_id>"): {"title": "Walk more"},
    ("POST", "/api/habits/<habit_id>/complete"): {"date": "2026-11-20"},
    ("GET", "/api/habits/<habit_id>/progress"): None,
    ("DELETE", "/api/habits/<habit_id>/complete"): {"date": "2026-11-20"},
    ("GET", "/api/transactions/"): None,
    ("POST", "/api/transactions/"): EXPENSE,
    ("GET", "/api/transactions/<transaction_id>"): None,
    ("PATCH", "/api/transactions/<transaction_id>"): {"amount": 13},
    ("PUT", "/api/transactions/<transaction_id>"): {**EXPENSE, "amount": 14},
    ("POST", "/api/transactions/check-affordability"): {"category": "food", "amount": 20},
    ("POST", "/api/auth/change-password"): {
        "current_password": PASSWORD,
        "new_password": NEW_PASSWORD,
    },
    ("POST", "/api/auth/password"): {"current_password": NEW_PASSWORD, "new_password": PASSWORD},
    # Last: each of these ends something the ones above need.
    ("DELETE", "/api/habits/<habit_id>"): None,
    ("DELETE", "/api/transactions/<transaction_id>"): None,
    ("POST", "/api/auth/logout"): {},
    ("POST", "/api/auth/logout-all"): None,
    ("DELETE", "/api/auth/delete-account"): {"confirmation": True},
}
# Ending the session: the next example needs a new one.
SIGNS_OUT = {("POST", "/api/auth/logout"), ("POST", "/api/auth/logout-all")}
# What a warm auth cache answers without the database: nothing else may.
NO_DATABASE = {("GET", "/api/auth/session")}


def protected_routes(app: Flask) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if getattr(app.view_functions[rule.endpoint], "auth_role", None) is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, rule.rule))
    return routes


@dataclass
class Account:
    """A signed-in, onboarded user with a habit and an expense (whose ids fill the paths)."""

    client: Any
    token: str
    habit_id: str
    transaction_id: str

    @classmethod
    def create(cls, app: Flask, email: str = "outage@example.com") -> Account:
        client = app.test_client()
        registered = client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.get_json()
        account = cls(client, registered.get_json()["data"]["access_token"], "", "")
        assert account.send("POST", "/api/onboarding/submit", onboarding_body()).status_code < 300
        habit = account.send("POST", "/api/habits/", {"title": "Read"})
        expense = account.send("POST", "/api/transactions/", EXPENSE)
        account.habit_id = habit.get_json()["data"]["id"]
        account.transaction_id = expense.get_json()["data"]["id"]
        return account

    def concrete(self, rule: str) -> str:
        values = {"year": "2026", "month": "11", "habit_id": self.habit_id}
        values["transaction_id"] = self.transaction_id
        return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", lambda match: values[match[1]], rule)

    def send(self, method: str, rule: str, body: dict[str, Any] | None) -> Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.client.open(self.concrete(rule), method=method, headers=headers, json=body)

    def sign_in(self, email: str = "outage@example.com") -> None:
        response = self.client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.get_json()
        self.token = response.get_json()["data"]["access_token"]


def assert_database_unavailable(response: Response, route: tuple[str, str]) -> None:
    body = response.get_json(silent=True)
    assert response.status_code == 503, (route, response.status_code, body)
    assert body["success"] is False, route
    assert body["error"]["code"] == "service_unavailable", (route, body)
    assert int(response.headers["Retry-After"]) >= 1, route
    assert "WWW-Authenticate" not in response.headers, route


def test_every_protected_route_has_an_example(app: Flask) -> None:
    assert set(protected_routes(app)) == set(EXAMPLES)


def test_the_examples_are_valid_and_only_the_listed_routes_need_no_database(app: Flask) -> None:
    account = Account.create(app)
    without_database = set()
    for route, body in EXAMPLES.items():
        with sql_statements(app) as statements:
            response = account.send(*route, body)
        assert response.status_code < 300, (route, response.get_json())
        if not statements:
            without_database.add(route)
        if route in SIGNS_OUT:
            account.sign_in()
    assert without_database == NO_DATABASE


# --- the three ways a database fails ---------------------------------------------------------


@contextlib.contextmanager
def every_table_locked(cluster: PostgresCluster) -> Iterator[None]:
    connection = pg_connect(cluster.url, autocommit=False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = ", ".join(f'"{name}"' for (name,) in cursor.fetchall())
            cursor.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        connection.rollback()
        connection.close()


FAULTS: dict[str, Callable[[PostgresCluster], contextlib.AbstractContextManager[None]]] = {
    "stopped": PostgresCluster.stopped,
    "locked": every_table_locked,
    "frozen": PostgresCluster.frozen,
}


@pytest.fixture(scope="module")
def outage_app(pg_cluster: PostgresCluster) -> Iterator[Flask]:  # noqa: F811
    app = build_app(
        pg_cluster.url,
        AUTH_CACHE_TTL="600",  # warm for the whole module: the failure surfaces past the guard
        DB_POOL_SIZE="10",
        DB_POOL_TIMEOUT="2",
        DB_CONNECT_TIMEOUT="1",
        DB_STATEMENT_TIMEOUT_MS="300",
        DB_CLIENT_TIMEOUT_MS="600",
        DB_LOCK_TIMEOUT_MS="200",
        DB_BREAKER_FAILURES="0",  # off: each route meets the failure itself
    )
    yield app
    dispose(app)


@pytest.mark.postgres
@pytest.mark.parametrize("fault", FAULTS)
def test_every_protected_route_answers_503_when_the_database_fails(
    outage_app: Flask,
    pg_cluster: PostgresCluster,  # noqa: F811
    fault: str,
) -> None:
    account = Account.create(outage_app, email=f"{fault}@example.com")
    for route in NO_DATABASE:  # warms the auth cache
        assert account.send(*route, EXAMPLES[route]).status_code == 200

    def attempt(route: tuple[str, str]) -> tuple[tuple[str, str], Response]:
        return route, account.send(*route, EXAMPLES[route])

    with FAULTS[fault](pg_cluster), ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(pool.map(attempt, EXAMPLES))

    for route, response in answers.items():
        if route in NO_DATABASE:
            assert response.status_code == 200, route
        else:
            assert_database_unavailable(response, route)
    recovered = account.send("GET", "/api/users/me", None)
    assert recovered.status_code == 200, recovered.get_json()


# --- where a failure can surface -------------------------------------------------------------


@pytest.fixture
def hooked_app(pg_url: str) -> Iterator[tuple[Flask, dict[str, Callable[[], None]]]]:
    """An app with a route and hooks that meet the database where nothing in mita does today:
    the test arms them through the returned dict."""
    app = build_app(pg_url, DB_LOCK_TIMEOUT_MS="200")
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: errors reach the handlers
    armed: dict[str, Callable[[], None]] = {}

    @app.get("/test/serialized-after-commit/<user_id>")
    def serialized_after_commit(user_id: str) -> Response:
        user = db.session.get(User, uuid.UUID(user_id))
        db.session.commit()  # expires the user: the serializer reloads it
        armed.get("after_commit", lambda: None)()
        return ok(UserOut.model_validate(user))

    @app.after_request
    def after(response: Response) -> Response:
        armed.get("after_request", lambda: None)()
        return response

    @app.teardown_request
    def teardown(error: BaseException | None) -> None:
        armed.get("teardown", lambda: None)()

    yield app, armed
    dispose(app)


@contextlib.contextmanager
def users_locked(url: str) -> Iterator[Callable[[], None]]:
    """A function that takes ACCESS EXCLUSIVE on `users` from another connection, held until the
    block ends."""
    locker = pg_connect(url, autocommit=False)

    def lock() -> None:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")

    try:
        yield lock
    finally:
        locker.rollback()
        locker.close()


def read_users() -> None:
    db.session.execute(text("SELECT count(*) FROM users")).scalar_one()


@pytest.mark.postgres
def test_an_attribute_expired_by_a_commit_and_reloaded_by_the_serializer_is_a_503(
    hooked_app: tuple[Flask, dict[str, Callable[[], None]]], pg_url: str
) -> None:
    """pydantic wraps what reading an attribute raises in its own ValidationError."""
    app, armed = hooked_app
    account = Account.create(app)
    with app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.email == "outage@example.com"))
    with users_locked(pg_url) as lock:
        armed["after_commit"] = lock
        response = account.client.get(f"/test/serialized-after-commit/{user_id}")
    assert_database_unavailable(response, ("GET", "serialized-after-commit"))


@pytest.mark.postgres
def test_a_database_failure_in_an_after_request_hook_is_a_503(
    hooked_app: tuple[Flask, dict[str, Callable[[], None]]], pg_url: str
) -> None:
    app, armed = hooked_app
    account = Account.create(app)
    with users_locked(pg_url) as lock:
        lock()
        armed["after_request"] = read_users
        response = account.send("GET", "/api/users/me", None)
    assert_database_unavailable(response, ("GET", "/api/users/me"))


@pytest.mark.postgres
def test_a_database_failure_in_a_teardown_keeps_the_answer_already_made(
    hooked_app: tuple[Flask, dict[str, Callable[[], None]]], pg_url: str
) -> None:
    """A teardown runs once the answer is decided and what it needed committed: its failure is
    logged and the answer stands. Never a 500, never the server's own error page."""
    app, armed = hooked_app
    account = Account.create(app)
    with users_locked(pg_url) as lock:
        lock()
        armed["teardown"] = read_users
        response = account.send("GET", "/api/auth/session", None)
    assert response.status_code == 200, response.get_data()
