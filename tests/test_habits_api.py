"""/api/habits as the unchanged mobile app uses it, on SQLite and PostgreSQL.

Requests are the app's own: `Content-Type: application/json` on every request (bodiless GETs and
DELETEs too), collection routes with a trailing slash, `{date: "YYYY-MM-DD"}` bodies on complete
and uncomplete. The clock is mocked by patching `mita_app.habits.utcnow`, the service's only one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mita_app import habits as habit_service
from mita_app.extensions import db
from mita_app.models import HabitCompletion
from tests.conftest import AuthActions, build_app, dispose
from tests.races import gated_race

HABIT_KEYS = {
    "id",
    "title",
    "description",
    "target_frequency",
    "created_at",
    "current_streak",
    "longest_streak",
    "completion_rate",
    "completed_dates",
}


class AppUser:
    """One registered user, sending requests with the app's headers."""

    def __init__(self, client, auth, **register):
        self.client = client
        tokens = auth.register(**register)
        self.headers = {
            "Authorization": f"Bearer {tokens['access_token']}",
            "Content-Type": "application/json",
        }

    def send(self, method, path, body=None):
        return self.client.open(path, method=method, headers=self.headers, json=body)

    def create(self, title="Read 10 pages", frequency="daily"):
        body = {"title": title, "description": "", "target_frequency": frequency}
        response = self.send("POST", "/api/habits/", body)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["data"]

    def complete(self, habit_id, day=None):
        return self.send("POST", f"/api/habits/{habit_id}/complete", _date_body(day))

    def uncomplete(self, habit_id, day=None):
        return self.send("DELETE", f"/api/habits/{habit_id}/complete", _date_body(day))

    def habits(self):
        response = self.send("GET", "/api/habits/")
        assert response.status_code == 200, response.get_json()
        return response.get_json()["data"]

    def habit(self, habit_id):
        (habit,) = [habit for habit in self.habits() if habit["id"] == habit_id]
        return habit


def _date_body(day):
    return None if day is None else {"date": day if isinstance(day, str) else day.isoformat()}


@pytest.fixture
def user(client, auth):
    return AppUser(client, auth)


@pytest.fixture
def other(client, auth):
    return AppUser(client, auth)


@pytest.fixture
def clock(monkeypatch):
    """Set the habits service's clock: `clock(datetime)` (aware)."""

    def set_to(instant):
        monkeypatch.setattr(habit_service, "utcnow", lambda: instant)

    return set_to


def completions_of(app, habit_id):
    with app.app_context():
        query = select(func.count()).where(HabitCompletion.habit_id == uuid.UUID(habit_id))
        return db.session.scalar(query)


def without_request_id(response):
    body = response.get_json()
    body["error"].pop("request_id")
    return body


# --- the app's journey --------------------------------------------------------------------------


def test_the_apps_journey_create_list_complete_and_uncomplete_with_its_exact_requests(user):
    created = user.create()
    assert set(created) == HABIT_KEYS
    uuid.UUID(created["id"])
    assert created["title"] == "Read 10 pages"
    assert created["target_frequency"] == "daily"
    assert datetime.fromisoformat(created["created_at"]).utcoffset() == timedelta(0)

    today = datetime.now(UTC).date()  # a user without a timezone lives in UTC
    completed = user.complete(created["id"], today)
    assert completed.status_code == 200, completed.get_json()
    data = completed.get_json()["data"]
    assert data["status"] == "completed"
    assert data["date"] == today.isoformat()
    assert data["habit"]["completed_dates"] == [today.isoformat()]

    (listed,) = user.habits()
    assert set(listed) == HABIT_KEYS
    assert isinstance(listed["id"], str)
    assert isinstance(listed["completion_rate"], int | float)
    assert listed["completion_rate"] == 100.0  # new and done today
    assert listed["current_streak"] == listed["longest_streak"] == 1
    assert [date.fromisoformat(day) for day in listed["completed_dates"]] == [today]

    uncompleted = user.uncomplete(created["id"], today)
    assert uncompleted.status_code == 200
    assert uncompleted.get_json()["data"]["status"] == "uncompleted"
    assert user.habit(created["id"])["completed_dates"] == []


@pytest.mark.parametrize(
    "path", ["/api/habits/", "/api/habits", "/api/v1/habits/", "/api/v1/habits"]
)
def test_the_collection_answers_with_and_without_slash_and_under_v1(user, path):
    created = user.send("POST", path, {"title": "Walk"})
    assert created.status_code == 201
    assert created.get_json()["data"]["description"] == ""
    assert created.get_json()["data"]["target_frequency"] == "daily"
    listed = user.send("GET", path)
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == "application/json"
    assert [habit["title"] for habit in listed.get_json()["data"]] == ["Walk"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/habits"),
        ("GET", "/api/v1/habits/"),
        ("POST", "/api/v1/habits/"),
        ("PATCH", f"/api/v1/habits/{uuid.uuid4()}"),
        ("POST", f"/api/v1/habits/{uuid.uuid4()}/complete"),
        ("GET", "/api/v1/habits/not-a-uuid/progress"),
    ],
)
def test_habits_without_a_token_or_with_null_are_401_not_404(client, method, path):
    for headers in ({}, {"Authorization": "Bearer null"}):
        response = client.open(path, method=method, headers=headers, json={"title": "x"})
        assert response.status_code == 401, (headers, response.get_json())


def test_the_list_is_the_callers_own_oldest_first(user, other, clock):
    start = datetime(2026, 5, 1, 12, tzinfo=UTC)
    for hours, title in enumerate(["first", "second", "third"]):
        clock(start + timedelta(hours=hours))
        user.create(title)
    other.create("not yours")
    assert [habit["title"] for habit in user.habits()] == ["first", "second", "third"]
    assert [habit["title"] for habit in other.habits()] == ["not yours"]


def test_completing_a_day_twice_is_two_2xx_answers_and_one_row(app, user):
    habit = user.create()
    first = user.complete(habit["id"], "2026-01-05")
    again = user.complete(habit["id"], "2026-01-05")
    assert first.status_code == again.status_code == 200
    assert first.get_json()["data"]["status"] == "completed"
    assert again.get_json()["data"]["status"] == "already_completed"
    assert again.get_json()["data"]["habit"]["id"] == habit["id"]
    assert completions_of(app, habit["id"]) == 1


def test_uncompleting_a_day_not_done_is_2xx_not_completed(app, user):
    habit = user.create()
    response = user.uncomplete(habit["id"], "2026-01-05")
    assert response.status_code == 200
    assert response.get_json()["data"]["status"] == "not_completed"
    assert response.get_json()["data"]["date"] == "2026-01-05"
    assert completions_of(app, habit["id"]) == 0


def test_complete_without_a_body_or_a_date_means_the_users_today(user, clock):
    clock(datetime(2026, 2, 10, 9, tzinfo=UTC))
    habit = user.create()
    # The app's headers, no body at all; then a body without a date; then `null`.
    assert user.complete(habit["id"]).get_json()["data"]["date"] == "2026-02-10"
    uncompleted = user.send("DELETE", f"/api/habits/{habit['id']}/complete", {}).get_json()
    assert (uncompleted["data"]["status"], uncompleted["data"]["date"]) == (
        "uncompleted",
        "2026-02-10",
    )
    completed = user.send("POST", f"/api/habits/{habit['id']}/complete", {"date": None})
    assert completed.get_json()["data"]["status"] == "completed"


def test_a_day_before_the_habit_was_created_can_be_logged(app, user, clock):
    clock(datetime(2026, 2, 10, 9, tzinfo=UTC))
    habit = user.create()
    assert user.complete(habit["id"], "2026-02-01").status_code == 200
    assert user.complete(habit["id"], "1970-01-01").status_code == 200
    assert completions_of(app, habit["id"]) == 2


def test_patch_changes_only_the_fields_sent_and_keeps_the_days_done(user):
    habit = user.create("Read")
    user.complete(habit["id"])
    response = user.send(
        "PATCH",
        f"/api/habits/{habit['id']}",
        {"title": " Read more ", "target_frequency": "weekly"},
    )
    assert response.status_code == 200
    updated = response.get_json()["data"]
    assert (updated["title"], updated["description"]) == ("Read more", "")
    assert updated["target_frequency"] == "weekly"
    assert len(updated["completed_dates"]) == 1
    cleared = user.send("PATCH", f"/api/habits/{habit['id']}", {"description": None})
    assert cleared.get_json()["data"]["description"] == ""


def test_delete_answers_deleted_and_takes_the_days_done_with_it(app, user):
    habit = user.create()
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        user.complete(habit["id"], day)
    assert completions_of(app, habit["id"]) == 3

    response = user.send("DELETE", f"/api/habits/{habit['id']}")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "data": {"deleted": True}}
    assert completions_of(app, habit["id"]) == 0
    assert user.habits() == []
    assert user.send("DELETE", f"/api/habits/{habit['id']}").status_code == 404


# --- isolation ----------------------------------------------------------------------------------

ITEM_ROUTES = [
    ("PATCH", "/api/habits/{id}", {"title": "mine now"}),
    ("DELETE", "/api/habits/{id}", None),
    ("POST", "/api/habits/{id}/complete", {"date": "2026-01-05"}),
    ("DELETE", "/api/habits/{id}/complete", {"date": "2026-01-05"}),
    ("GET", "/api/habits/{id}/progress", None),
]


@pytest.mark.parametrize(("method", "route", "body"), ITEM_ROUTES)
def test_another_users_habit_a_missing_one_and_a_malformed_id_are_the_same_404(
    app, user, other, method, route, body
):
    theirs = other.create("theirs")
    other.complete(theirs["id"], "2026-01-05")
    answers = [
        user.send(method, route.format(id=habit_id), body)
        for habit_id in (theirs["id"], str(uuid.uuid4()), "not-a-uuid", "12345", theirs["id"][:-1])
    ]
    assert {response.status_code for response in answers} == {404}
    bodies = [without_request_id(response) for response in answers]
    assert all(body == bodies[0] for body in bodies)
    assert bodies[0]["error"]["code"] == "habit_not_found"
    assert other.habit(theirs["id"])["title"] == "theirs"
    assert completions_of(app, theirs["id"]) == 1


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": 7}, "title"),
        ({"title": None}, "title"),
        ({"title": "ok", "description": "x" * 2001}, "description"),
        ({"title": "ok", "description": 5}, "description"),
        ({"title": "ok", "target_frequency": "hourly"}, "target_frequency"),
        ({"title": "ok", "target_frequency": ""}, "target_frequency"),
        ({"title": "ok", "target_frequency": "Daily"}, "target_frequency"),
    ],
)
def test_bad_habit_fields_are_422_naming_the_field(user, body, field):
    response = user.send("POST", "/api/habits/", body)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


def test_title_and_description_limits_count_after_trimming(user):
    response = user.send(
        "POST", "/api/habits/", {"title": f"  {'x' * 200}  ", "description": "y" * 2000}
    )
    assert response.status_code == 201
    assert len(response.get_json()["data"]["title"]) == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": None}, "title"),
        ({"title": ""}, "title"),
        ({"target_frequency": None}, "target_frequency"),
        ({"target_frequency": "yearly"}, "target_frequency"),
    ],
)
def test_bad_patch_fields_are_422_naming_the_field(user, body, field):
    habit = user.create()
    response = user.send("PATCH", f"/api/habits/{habit['id']}", body)
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


@pytest.mark.parametrize(
    "day",
    [
        "2026-13-01",
        "2026-02-30",
        "28/11/2026",
        "20260210",
        "2026-02-10T00:00:00",
        "",
        20260210,
        "1969-12-31",
        "2026-02-12",  # two days after the user's today
    ],
)
@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_bad_or_future_dates_are_422_naming_date(user, clock, method, day):
    clock(datetime(2026, 2, 10, 9, tzinfo=UTC))
    habit = user.create()
    response = user.send(method, f"/api/habits/{habit['id']}/complete", {"date": day})
    assert response.status_code == 422, response.get_json()
    assert list(response.get_json()["error"]["fields"]) == ["date"]


def test_tomorrow_can_be_logged_for_a_phone_ahead_of_the_accounts_zone(user, clock):
    clock(datetime(2026, 2, 10, 23, 30, tzinfo=UTC))
    habit = user.create()
    response = user.complete(habit["id"], "2026-02-11")
    assert response.status_code == 200
    assert response.get_json()["data"]["habit"]["completed_dates"] == ["2026-02-11"]


# --- time zones ---------------------------------------------------------------------------------


def test_the_users_timezone_decides_today_near_midnight(client, auth, clock):
    user = AppUser(client, auth, timezone="America/Los_Angeles")
    clock(datetime(2026, 3, 11, 6, 30, tzinfo=UTC))  # 23:30 on 10 March in Los Angeles
    habit = user.create()
    assert user.complete(habit["id"]).get_json()["data"]["date"] == "2026-03-10"

    clock(datetime(2026, 3, 11, 7, 30, tzinfo=UTC))  # 00:30 on 11 March there; same UTC day
    at_half_past_midnight = user.habit(habit["id"])
    assert at_half_past_midnight["current_streak"] == 1  # not broken at midnight
    completed = user.complete(habit["id"]).get_json()["data"]
    assert completed["date"] == "2026-03-11"
    assert completed["status"] == "completed"
    assert completed["habit"]["completed_dates"] == ["2026-03-10", "2026-03-11"]
    assert completed["habit"]["current_streak"] == completed["habit"]["longest_streak"] == 2
    assert completed["habit"]["completion_rate"] == 100.0


@pytest.mark.parametrize(
    ("timezone", "latest_allowed"),
    [("Pacific/Kiritimati", "2026-03-12"), (None, "2026-03-11")],
)
def test_how_far_ahead_a_date_may_be_depends_on_the_users_timezone(
    client, auth, clock, timezone, latest_allowed
):
    user = AppUser(client, auth, **({"timezone": timezone} if timezone else {}))
    clock(datetime(2026, 3, 10, 10, 30, tzinfo=UTC))  # 00:30 on 11 March at UTC+14
    habit = user.create()
    allowed = date.fromisoformat(latest_allowed)
    assert user.complete(habit["id"], allowed).status_code == 200
    too_far = user.complete(habit["id"], allowed + timedelta(days=1))
    assert too_far.status_code == 422
    assert too_far.get_json()["error"]["fields"]["date"] == f"must not be after {latest_allowed}"


# --- progress -----------------------------------------------------------------------------------


def test_progress_defaults_to_the_last_30_local_days(user, clock):
    clock(datetime(2026, 4, 30, 12, tzinfo=UTC))
    habit = user.create()
    for day in ("2026-03-31", "2026-04-01", "2026-04-29", "2026-04-30"):
        user.complete(habit["id"], day)
    response = user.send("GET", f"/api/habits/{habit['id']}/progress")
    assert response.status_code == 200
    assert response.get_json()["data"] == {
        "habit_id": habit["id"],
        "start_date": "2026-04-01",
        "end_date": "2026-04-30",
        "total_completions": 3,
        "completion_rate": 0.1,
        "current_streak": 2,
        "longest_streak": 2,
        "completion_dates": ["2026-04-01", "2026-04-29", "2026-04-30"],
    }


def test_progress_over_a_chosen_range(user, clock):
    clock(datetime(2026, 4, 30, 12, tzinfo=UTC))
    habit = user.create()
    for day in ("2026-03-30", "2026-03-31", "2026-04-02"):
        user.complete(habit["id"], day)
    path = f"/api/habits/{habit['id']}/progress?start_date=2026-03-31&end_date=2026-04-02"
    data = user.send("GET", path).get_json()["data"]
    assert data["total_completions"] == 2
    assert data["completion_rate"] == 0.6667
    assert data["completion_dates"] == ["2026-03-31", "2026-04-02"]
    year = f"/api/habits/{habit['id']}/progress?start_date=2024-01-01&end_date=2024-12-31"
    assert user.send("GET", year).status_code == 200  # 366 days: a leap year is allowed


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("start_date=2026-04-31", "start_date"),
        ("end_date=yesterday", "end_date"),
        ("start_date=1969-12-31&end_date=1970-01-01", "start_date"),
        ("start_date=2026-04-10&end_date=2026-04-09", "start_date"),
        ("start_date=2025-01-01&end_date=2026-01-02", "start_date"),
        ("start_date=2026-05-01", "start_date"),  # after the default end, today
    ],
)
def test_bad_progress_ranges_are_422_naming_the_field(user, clock, query, field):
    clock(datetime(2026, 4, 30, 12, tzinfo=UTC))
    habit = user.create()
    response = user.send("GET", f"/api/habits/{habit['id']}/progress?{query}")
    assert response.status_code == 422
    assert list(response.get_json()["error"]["fields"]) == [field]


# --- rates and streaks through the API ----------------------------------------------------------


def test_a_new_habit_done_every_day_is_at_100_percent(user, clock):
    for day in range(3):
        clock(datetime(2026, 6, 1, 20, tzinfo=UTC) + timedelta(days=day))
        if day == 0:
            habit = user.create()
        data = user.complete(habit["id"]).get_json()["data"]["habit"]
        assert data["completion_rate"] == 100.0
        assert data["current_streak"] == day + 1
    clock(datetime(2026, 6, 4, 8, tzinfo=UTC))  # the fourth morning, not done yet
    data = user.habit(habit["id"])
    assert (data["current_streak"], data["completion_rate"]) == (3, 75.0)


def test_a_weekly_habit_counts_weeks(user, clock):
    clock(datetime(2026, 11, 25, 12, tzinfo=UTC))  # a Wednesday
    habit = user.create(frequency="weekly")
    for day in ("2026-11-08", "2026-11-15", "2026-11-16"):  # Sunday, Sunday, Monday
        user.complete(habit["id"], day)
    data = user.habit(habit["id"])
    assert (data["current_streak"], data["longest_streak"]) == (3, 3)
    assert data["completed_dates"] == ["2026-11-08", "2026-11-15", "2026-11-16"]


# --- concurrency --------------------------------------------------------------------------------


@pytest.fixture
def pg_app(pg_url):
    app = build_app(pg_url)
    yield app
    dispose(app)


@pytest.mark.postgres
def test_simultaneous_completes_of_one_day_all_succeed_with_one_row(pg_app, pg_url):
    client = pg_app.test_client()
    user = AppUser(client, AuthActions(client))
    habit = user.create()
    path, day = f"/api/habits/{habit['id']}/complete", "2026-01-05"

    def complete(client):
        return client.post(path, headers=user.headers, json={"date": day})

    # Another transaction inserts the same day and holds it uncommitted: every request waits
    # on it, then they race for the day once it rolls back.
    insert = "INSERT INTO habit_completions (habit_id, day, created_at) VALUES (%s, %s, now())"
    results = gated_race(pg_app, pg_url, 6, complete, insert, (habit["id"], day))

    assert [status for status, _ in results] == [200] * 6, results
    statuses = sorted(body["data"]["status"] for _, body in results)
    assert statuses == ["already_completed"] * 5 + ["completed"]
    assert completions_of(pg_app, habit["id"]) == 1
