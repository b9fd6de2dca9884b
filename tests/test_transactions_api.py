"""/api/transactions as the unchanged mobile app uses it, on SQLite and PostgreSQL.

Requests are the app's own (transaction_model.dart): `spent_at` in UTC with milliseconds and
`Z`, a JSON Content-Type on every request, the collection with a trailing slash. The clock is
the budget clock (`mita_app.budget.utcnow`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from mita_app.domain.categories import CATEGORIES
from mita_app.extensions import db
from mita_app.models import Transaction, User
from tests.budget_helpers import AppUser

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
# What the add-expense screen sends (transaction_model.dart TransactionInput.toJson).
APP_BODY = {
    "amount": 23.75,
    "category": "food",
    "description": "Lunch",
    "notes": "Subcategory: Groceries",
    "spent_at": "2026-11-28T21:47:03.123Z",
}
CHANGED_KEYS = {"rebalanced", "rebalance_covered", "rebalance_fully_covered"}


@pytest.fixture
def clock(budget_clock: Any) -> Any:
    budget_clock(NOW)
    return budget_clock


@pytest.fixture
def user(client: Any, auth: Any, clock: Any) -> AppUser:
    return AppUser(client, auth)


@pytest.fixture
def other(client: Any, auth: Any) -> AppUser:
    return AppUser(client, auth)


def post(user: AppUser, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return user.send("POST", "/api/transactions/", body, **headers)


def created(user: AppUser, **changes: Any) -> dict[str, Any]:
    response = post(user, {**APP_BODY, **changes})
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json()["data"])


def listed(user: AppUser, query: str = "") -> Any:
    response = user.send("GET", f"/api/transactions/{query}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def set_timezone(user: AppUser, timezone: str) -> None:
    response = user.send("PATCH", "/api/users/me", {"timezone": timezone})
    assert response.status_code == 200, response.get_json()


def rows_of(app: Any) -> int:
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(Transaction)) or 0)


def error_of(response: Any) -> dict[str, Any]:
    body = response.get_json()
    body["error"].pop("request_id")
    return dict(body)


# --- create ---------------------------------------------------------------------------------------


def test_the_apps_exact_body_is_recorded_and_answered_with_every_field(app: Any, user: Any) -> None:
    response = post(user, APP_BODY)

    assert response.status_code == 201
    data = response.get_json()["data"]
    assert uuid.UUID(data.pop("id"))
    assert data == {
        "amount": 23.75,
        "category": "food",
        "description": "Lunch",
        "notes": "Subcategory: Groceries",
        "merchant": None,
        "location": None,
        "is_recurring": False,
        "tags": [],
        "spent_at": "2026-11-28T21:47:03.123000Z",
        "date": "2026-11-28",
        "created_at": "2026-11-30T15:00:00Z",
        "updated_at": "2026-11-30T15:00:00Z",
        # A user without a plan: nothing to rebalance, nothing covers it.
        "rebalanced": False,
        "rebalance_covered": 0.0,
        "rebalance_fully_covered": False,
    }
    assert "Idempotent-Replayed" not in response.headers
    assert rows_of(app) == 1


def test_every_field_is_stored_and_read_back(user: Any) -> None:
    body = {
        **APP_BODY,
        "amount": "12.5",
        "category": "gas",
        "merchant": " Shell ",
        "location": "Main St",
        "is_recurring": True,
        "tags": ["car", " commute "],
        "currency": "USD",
        "confidence_score": 0.9,
    }
    made = created(user, **body)

    got = user.get(f"/api/transactions/{made['id']}")
    assert got == {key: value for key, value in made.items() if key not in CHANGED_KEYS}
    assert (got["amount"], got["category"], got["merchant"], got["location"]) == (
        12.5,
        "gas",
        "Shell",
        "Main St",
    )
    assert (got["is_recurring"], got["tags"]) == (True, ["car", "commute"])


def test_spent_at_is_answered_in_the_users_zone_with_its_offset(user: Any) -> None:
    set_timezone(user, "America/New_York")

    made = created(user)

    assert made["spent_at"] == "2026-11-28T16:47:03.123000-05:00"
    assert made["date"] == "2026-11-28"


def test_a_naive_spent_at_is_the_users_local_time_and_day(app: Any, user: Any) -> None:
    set_timezone(user, "America/Los_Angeles")

    made = created(user, spent_at="2026-11-30T23:30:00")

    assert (made["spent_at"], made["date"]) == ("2026-11-30T23:30:00-08:00", "2026-11-30")
    with app.app_context():
        row = db.session.get(Transaction, uuid.UUID(made["id"]))
        assert row is not None
        assert row.spent_at == datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
        assert row.spent_on.isoformat() == "2026-11-30"


def test_a_day_alone_is_noon_that_local_day(user: Any) -> None:
    set_timezone(user, "America/Los_Angeles")

    made = created(user, spent_at="2026-11-29")

    assert (made["spent_at"], made["date"]) == ("2026-11-29T12:00:00-08:00", "2026-11-29")


@pytest.mark.parametrize(
    ("spent_at", "answered"),
    [
        ("2026-11-28T21:47:03.123456+05:30", "2026-11-28T16:17:03.123456Z"),
        ("2026-11-28T21:47:03-0800", "2026-11-29T05:47:03Z"),
        ("2026-11-28T21:47Z", "2026-11-28T21:47:00Z"),
        ("2026-11-28T21:47:03.1Z", "2026-11-28T21:47:03.100000Z"),
    ],
)
def test_iso_forms_with_an_offset_or_z(user: Any, spent_at: str, answered: str) -> None:
    assert created(user, spent_at=spent_at)["spent_at"] == answered


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": 1.005}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": 100000.01}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": None}, "amount"),
        ({"category": "groceries "}, "category"),
        ({"category": "Food"}, "category"),
        ({"category": "dining out"}, "category"),
        ({"category": None}, "category"),
        ({"description": "x" * 501}, "description"),
        ({"notes": "x" * 2001}, "notes"),
        ({"merchant": "x" * 201}, "merchant"),
        ({"location": "x" * 201}, "location"),
        ({"tags": ["t"] * 21}, "tags"),
        ({"tags": ["x" * 51]}, "tags.0"),
        ({"tags": ["ok", " "]}, "tags.1"),
        ({"tags": "food"}, "tags"),
        ({"is_recurring": "maybe"}, "is_recurring"),
        ({"spent_at": "yesterday"}, "spent_at"),
        ({"spent_at": "2026-11-28T21:47:03.1234567Z"}, "spent_at"),
        ({"spent_at": "2026-11-28 21:47:03Z"}, "spent_at"),
        ({"spent_at": "2026-02-30"}, "spent_at"),
        ({"spent_at": 1764366423}, "spent_at"),
        ({"spent_at": None}, "spent_at"),
    ],
)
def test_bad_fields_are_422_naming_the_field(app: Any, user: Any, changes: Any, field: str) -> None:
    response = post(user, {**APP_BODY, **changes})

    assert response.status_code == 422, response.get_json()
    assert list(response.get_json()["error"]["fields"]) == [field]
    assert rows_of(app) == 0


def test_missing_required_fields_are_named(user: Any) -> None:
    response = post(user, {"description": "no amount"})

    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"amount", "category", "spent_at"}


def test_an_unknown_category_is_answered_with_the_vocabulary(user: Any) -> None:
    message = post(user, {**APP_BODY, "category": "Food"}).get_json()["error"]["fields"]["category"]

    assert all(f"'{category}'" in message for category in CATEGORIES)


def test_every_category_of_the_vocabulary_is_accepted(user: Any) -> None:
    for category in CATEGORIES:
        assert created(user, category=category, description=category)["category"] == category


@pytest.mark.parametrize(
    ("timezone", "spent_at", "ok"),
    [
        ("UTC", "2026-12-01T23:59:59Z", True),  # tomorrow: the phone may be ahead
        ("UTC", "2026-12-02T00:00:00Z", False),
        # 15:00 UTC is 00:00 on 1 December in Tokyo: the 2nd is its tomorrow.
        ("Asia/Tokyo", "2026-12-02T23:00:00", True),
        ("Asia/Tokyo", "2026-12-03T00:00:00", False),
        ("UTC", "2000-01-01T00:00:00Z", True),
        ("UTC", "1999-12-31T23:59:59Z", False),
        ("UTC", "0001-01-01T00:00:00+05:00", False),
        ("UTC", "9999-12-31T23:59:59-05:00", False),
    ],
)
def test_spent_at_from_2000_to_the_users_tomorrow(
    user: Any, timezone: str, spent_at: str, ok: bool
) -> None:
    set_timezone(user, timezone)

    response = post(user, {**APP_BODY, "spent_at": spent_at})

    if ok:
        assert response.status_code == 201, response.get_json()
    else:
        assert response.status_code == 422, response.get_json()
        assert list(response.get_json()["error"]["fields"]) == ["spent_at"]


def test_null_optional_fields_are_their_defaults(user: Any) -> None:
    nulls = {"description": None, "notes": None, "merchant": None, "tags": None}

    made = created(user, **nulls, is_recurring=None, location="  ")

    assert (made["description"], made["notes"], made["merchant"], made["location"]) == (
        "",
        "",
        None,
        None,
    )
    assert (made["tags"], made["is_recurring"]) == ([], False)


# --- repeats --------------------------------------------------------------------------------------


def test_an_identical_create_within_10_minutes_is_the_original(
    app: Any, user: Any, clock: Any
) -> None:
    first = post(user, APP_BODY)
    clock(NOW + timedelta(minutes=10))
    # The same JSON, keys in another order: the same body.
    again = post(user, dict(reversed(list(APP_BODY.items()))))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["data"] == first.get_json()["data"]
    assert rows_of(app) == 1


def test_an_identical_create_after_10_minutes_is_a_new_expense(
    app: Any, user: Any, clock: Any
) -> None:
    first = created(user)
    clock(NOW + timedelta(minutes=10, seconds=1))

    second = post(user, APP_BODY)

    assert second.status_code == 201
    assert second.get_json()["data"]["id"] != first["id"]
    assert rows_of(app) == 2


def test_a_create_differing_in_any_field_is_a_new_expense(app: Any, user: Any) -> None:
    first = created(user)
    second = created(user, spent_at="2026-11-28T21:47:03.124Z")

    assert first["id"] != second["id"]
    assert rows_of(app) == 2


def test_an_idempotency_key_returns_the_original_at_any_time(
    app: Any, user: Any, clock: Any
) -> None:
    first = post(user, APP_BODY, key="key-1")
    clock(NOW + timedelta(days=1))

    again = post(user, APP_BODY, key="key-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["data"] == first.get_json()["data"]
    assert rows_of(app) == 1


def test_an_idempotency_key_reused_with_another_body_is_409(app: Any, user: Any) -> None:
    post(user, APP_BODY, key="key-1")

    response = post(user, {**APP_BODY, "amount": 24}, key="key-1")

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert rows_of(app) == 1


def test_different_keys_record_identical_bodies_separately(app: Any, user: Any) -> None:
    assert post(user, APP_BODY, key="coffee-1").status_code == 201
    assert post(user, APP_BODY, key="coffee-2").status_code == 201
    assert rows_of(app) == 2


def test_idempotency_keys_are_per_user(app: Any, user: Any, other: Any) -> None:
    mine = post(user, APP_BODY, key="key-1").get_json()["data"]["id"]
    theirs = post(other, APP_BODY, key="key-1")

    assert theirs.status_code == 201
    assert theirs.get_json()["data"]["id"] != mine


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_idempotency_key_is_1_to_255_characters(app: Any, user: Any, key: str) -> None:
    response = post(user, APP_BODY, key=key)

    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == ["Idempotency-Key"]
    assert post(user, APP_BODY, key="k" * 255).status_code == 201


# --- list -----------------------------------------------------------------------------------------


def test_the_list_is_newest_first_with_paging_at_the_top(user: Any, clock: Any) -> None:
    a = created(user, spent_at="2026-11-28T10:00:00Z", description="a")
    b = created(user, spent_at="2026-11-29T09:00:00Z", description="b")
    clock(NOW + timedelta(seconds=1))
    c = created(user, spent_at="2026-11-28T10:00:00Z", description="c")

    body = listed(user)

    assert [row["id"] for row in body["data"]] == [b["id"], c["id"], a["id"]]
    assert (body["total"], body["skip"], body["limit"]) == (3, 0, 100)
    assert body["data"][0] == {k: v for k, v in b.items() if k not in CHANGED_KEYS}
    page = listed(user, "?skip=1&limit=1")
    assert [row["id"] for row in page["data"]] == [c["id"]]
    assert (page["total"], page["skip"], page["limit"]) == (3, 1, 1)


@pytest.mark.parametrize(
    ("query", "skip", "limit", "count"),
    [
        ("?limit=20000", 0, 10000, 3),
        ("?limit=10000", 0, 10000, 3),
        ("?limit=0", 0, 1, 1),
        ("?limit=-5", 0, 1, 1),
        ("?skip=-1&limit=2", 0, 2, 2),
        ("?skip=99999999999999999999", 1000000000, 100, 0),
    ],
)
def test_skip_and_limit_are_clamped_not_rejected(
    user: Any, query: str, skip: int, limit: int, count: int
) -> None:
    for minute in range(3):
        created(user, spent_at=f"2026-11-28T10:0{minute}:00Z")

    body = listed(user, query)

    assert (body["skip"], body["limit"], len(body["data"]), body["total"]) == (
        skip,
        limit,
        count,
        3,
    )


@pytest.mark.parametrize("query", ["?limit=abc", "?skip=x", "?limit=1.5"])
def test_non_numeric_paging_is_422_naming_it(user: Any, query: str) -> None:
    response = user.send("GET", f"/api/transactions/{query}")

    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [query[1:].split("=")[0]]


def test_filters_by_instant_and_by_local_day_both_inclusive(user: Any) -> None:
    set_timezone(user, "America/Los_Angeles")
    late = created(user, spent_at="2026-11-29T23:30:00", description="late")  # 07:30Z on the 30th
    early = created(user, spent_at="2026-11-29T00:00:00", description="early")  # 08:00Z
    before = created(user, spent_at="2026-11-28T23:59:59", description="before")

    def ids(query: str) -> list[str]:
        return [row["id"] for row in listed(user, query)["data"]]

    # The app's filters: UTC instants with Z, inclusive at both ends.
    assert ids("?start_date=2026-11-29T08:00:00.000Z&end_date=2026-11-30T07:30:00.000Z") == [
        late["id"],
        early["id"],
    ]
    assert ids("?start_date=2026-11-29T08:00:00.001Z") == [late["id"]]
    assert ids("?end_date=2026-11-29T07:59:59Z") == [before["id"]]
    # Days are the user's local days.
    assert ids("?start_date=2026-11-29&end_date=2026-11-29") == [late["id"], early["id"]]
    assert ids("?end_date=2026-11-28") == [before["id"]]
    # A naive time is local too.
    assert ids("?start_date=2026-11-29T23:30:00") == [late["id"]]
    assert ids("?start_date=2026-11-30&end_date=2026-11-29") == []


def test_a_parent_category_filter_includes_its_children(user: Any) -> None:
    made = {
        category: created(user, category=category, description=category)["id"]
        for category in ("food", "groceries", "dining", "gas", "other", "pets")
    }

    def categories(query: str) -> set[str]:
        return {row["category"] for row in listed(user, query)["data"]}

    assert categories("?category=food") == {"food", "groceries", "dining"}
    assert categories("?category=groceries") == {"groceries"}
    assert categories("?category=other") == {"other", "pets"}
    assert categories("?category=transportation") == {"gas"}
    assert categories("?category=rent") == set()
    assert listed(user, "?category=food")["total"] == 3
    assert len(made) == 6


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?category=Food", "category"),
        ("?category=dining%20out", "category"),
        ("?start_date=yesterday", "start_date"),
        ("?end_date=2026-11-31", "end_date"),
    ],
)
def test_bad_filters_are_422_naming_them(user: Any, query: str, field: str) -> None:
    response = user.send("GET", f"/api/transactions/{query}")

    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


def test_empty_filters_are_absent(user: Any) -> None:
    created(user)

    assert listed(user, "?category=&start_date=&end_date=")["total"] == 1


# --- one transaction: read, change, delete --------------------------------------------------------


def test_put_with_the_edit_screens_body_changes_the_expense_and_its_day(
    user: Any, clock: Any
) -> None:
    set_timezone(user, "America/New_York")
    made = created(user, merchant="Deli")
    clock(NOW + timedelta(hours=1))

    # add_transaction_screen.dart: amount, category, description, spent_at (UTC, Z).
    body = {
        "amount": 30,
        "category": "dining",
        "description": "Dinner",
        "spent_at": "2026-11-30T02:00:00.000Z",
    }
    response = user.send("PUT", f"/api/transactions/{made['id']}", body)

    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert {
        key: data[key] for key in ("amount", "category", "description", "spent_at", "date")
    } == {
        "amount": 30.0,
        "category": "dining",
        "description": "Dinner",
        "spent_at": "2026-11-29T21:00:00-05:00",
        "date": "2026-11-29",
    }
    assert (data["notes"], data["merchant"]) == ("Subcategory: Groceries", "Deli")
    assert (data["created_at"], data["updated_at"]) == (
        "2026-11-30T15:00:00Z",
        "2026-11-30T16:00:00Z",
    )
    assert set(data) >= CHANGED_KEYS
    assert user.get(f"/api/transactions/{made['id']}") == {
        key: value for key, value in data.items() if key not in CHANGED_KEYS
    }


def test_patch_changes_only_what_it_sends_and_null_clears_text(user: Any) -> None:
    made = created(user, merchant="Deli", tags=["a"])

    response = user.send(
        "PATCH", f"/api/transactions/{made['id']}", {"notes": None, "merchant": None, "tags": None}
    )

    data = response.get_json()["data"]
    assert (data["notes"], data["merchant"], data["tags"]) == ("", None, [])
    assert (data["amount"], data["description"], data["date"]) == (23.75, "Lunch", "2026-11-28")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"amount": None}, "amount"),
        ({"amount": 0}, "amount"),
        ({"category": "Food"}, "category"),
        ({"spent_at": None}, "spent_at"),
        ({"spent_at": "2026-12-05T00:00:00Z"}, "spent_at"),
        ({"category": None}, "category"),
        ({"notes": "x" * 2001}, "notes"),
    ],
)
def test_bad_updates_are_422_naming_the_field_and_change_nothing(
    user: Any, body: dict[str, Any], field: str
) -> None:
    made = created(user)

    response = user.send("PUT", f"/api/transactions/{made['id']}", body)

    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]
    assert user.get(f"/api/transactions/{made['id']}")["updated_at"] == made["updated_at"]


def test_delete_removes_the_expense_for_good(app: Any, user: Any) -> None:
    made = created(user)
    path = f"/api/transactions/{made['id']}"

    response = user.send("DELETE", path)

    assert response.status_code == 200
    assert response.get_json()["data"] == {"deleted": True, "id": made["id"]}
    assert rows_of(app) == 0
    assert user.send("GET", path).status_code == 404
    assert user.send("DELETE", path).get_json()["error"]["code"] == "transaction_not_found"


def test_another_users_a_missing_and_a_malformed_id_are_the_same_404(user: Any, other: Any) -> None:
    theirs = created(other)["id"]
    body = {"amount": 1, "category": "food"}
    answers = []
    for transaction_id in (theirs, str(uuid.uuid4()), "not-a-uuid", "1"):
        path = f"/api/transactions/{transaction_id}"
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            response = user.send(method, path, body if method in ("PUT", "PATCH") else None)
            assert response.status_code == 404, (method, path)
            answers.append(error_of(response))

    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["error"]["code"] == "transaction_not_found"
    assert listed(user)["data"] == []
    assert other.get(f"/api/transactions/{theirs}")["amount"] == 23.75


@pytest.mark.parametrize(
    "collection",
    ["/api/transactions/", "/api/transactions", "/api/v1/transactions/", "/api/v1/transactions"],
)
def test_every_path_form_answers(user: Any, collection: str) -> None:
    response = user.send("POST", collection, APP_BODY)
    assert response.status_code == 201, response.get_json()
    item = f"{collection.rstrip('/')}/{response.get_json()['data']['id']}"

    assert user.send("GET", collection).get_json()["data"][0]["id"] == item.rsplit("/", 1)[1]
    assert user.send("GET", item + "/").status_code == 200
    assert user.send("PATCH", item, {"notes": "n"}).status_code == 200
    assert user.send("DELETE", item + "/").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/transactions/"),
        ("POST", "/api/transactions/"),
        ("GET", f"/api/transactions/{uuid.uuid4()}"),
        ("PUT", f"/api/transactions/{uuid.uuid4()}"),
        ("DELETE", f"/api/transactions/{uuid.uuid4()}"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer null"])
def test_without_a_token_every_route_is_401(
    client: Any, method: str, path: str, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization

    response = client.open(path, method=method, headers=headers, json=APP_BODY)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="mita"')


# --- rebalancing ----------------------------------------------------------------------------------
# The plan of these tests, by hand (domain.budget): income 6000, rent 2000 and utilities 150,
# savings 500: 3350.00 discretionary, shared by the base shares. November has 30 days.
#   food 30 % = 1005.00 -> 33.50 a day           transportation, other 15 % -> 16.75 a day
#   entertainment, shopping 10 % -> 11.16 or 11.17   healthcare 8 % -> 8.93 or 8.94
#   travel 7 % -> 7.81 or 7.82                    education 5 % -> 5.58 or 5.59
# A later day gives at most half its flexible money.


def onboard_directly(app: Any, user: AppUser, timezone: str = "America/New_York") -> None:
    user_id = uuid.UUID(user.get("/api/users/me")["id"])
    with app.app_context():
        row = db.session.get(User, user_id)
        assert row is not None
        row.timezone = timezone
        row.income = Decimal("6000")
        row.additional_income = Decimal("0")
        row.fixed_expenses = {"rent": "2000.00", "utilities": "150.00"}
        row.savings_goal = Decimal("500")
        row.spending_habits = {}
        row.has_onboarded = True
        row.onboarded_at = datetime(2026, 11, 1, 5, tzinfo=UTC)
        db.session.commit()


def impact(data: dict[str, Any]) -> tuple[bool, float, bool]:
    return data["rebalanced"], data["rebalance_covered"], data["rebalance_fully_covered"]


def test_an_overspend_is_covered_from_later_days_and_the_answer_says_so(
    app: Any, user: Any, clock: Any
) -> None:
    clock(datetime(2026, 11, 10, 17, tzinfo=UTC))
    onboard_directly(app, user)

    within = created(user, amount=20, category="groceries", spent_at="2026-11-10T12:00:00")
    # 20 + 80 = 100 on a day with 33.50 for food: 66.50 over, and the 20 later days of the
    # month hold 16.75 each of food money to give.
    over = created(user, amount=80, category="dining", spent_at="2026-11-10T13:00:00")

    assert impact(within) == (False, 0.0, True)
    assert impact(over) == (True, 66.5, True)
    # Editing it below the day's money: nothing to cover; deleting it restores the day.
    path = f"/api/transactions/{over['id']}"
    assert impact(user.send("PUT", path, {"amount": 10}).get_json()["data"]) == (False, 0.0, True)
    assert impact(user.send("PUT", path, {"amount": 80}).get_json()["data"]) == (True, 66.5, True)
    user.send("DELETE", path)
    again = created(user, amount=13.5, category="food", spent_at="2026-11-10T14:00:00")
    assert impact(again) == (False, 0.0, True)  # 20 + 13.50 = 33.50: exactly the day's food


def test_a_replay_answers_the_same_rebalance_fields(app: Any, user: Any, clock: Any) -> None:
    clock(datetime(2026, 11, 10, 17, tzinfo=UTC))
    onboard_directly(app, user)
    body = {**APP_BODY, "amount": 100, "spent_at": "2026-11-10T17:00:00.000Z"}

    first, again = post(user, body), post(user, body)

    assert impact(first.get_json()["data"]) == (True, 66.5, True)
    assert again.get_json()["data"] == first.get_json()["data"]


def test_an_overspend_too_big_for_the_rest_of_the_month_is_partly_covered(
    app: Any, user: Any, clock: Any
) -> None:
    clock(datetime(2026, 11, 29, 17, tzinfo=UTC))
    onboard_directly(app, user)

    made = created(user, amount=2000, category="food", spent_at="2026-11-29T12:00:00")

    # Only the 30th is later: half of its food (16.75), then half of every other flexible
    # budget's: transportation 8.37, other 8.37, entertainment 5.58, shopping 5.58,
    # healthcare 4.46, travel 3.90, education 2.79 = 39.05. 16.75 + 39.05 = 55.80.
    assert impact(made) == (True, 55.8, False)


def test_an_overspend_on_the_last_day_has_nothing_to_move(app: Any, user: Any, clock: Any) -> None:
    clock(datetime(2026, 11, 30, 17, tzinfo=UTC))
    onboard_directly(app, user)

    made = created(user, amount=100, category="food", spent_at="2026-11-30T12:00:00")

    assert impact(made) == (False, 0.0, False)
