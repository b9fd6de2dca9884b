"""GET /api/habits/ reads every habit with its days in one statement, a habit's days as one text
rather than a row each. Habit for habit it says what the habit's own answer says, where the days
are read a row each (PATCH with no field answers the habit as it is), on SQLite and PostgreSQL;
and it costs the caller and that one statement."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from mita_app import habits as habit_service
from mita_app.domain.habits import EARLIEST_DAY
from mita_app.extensions import db
from mita_app.models import HabitCompletion
from tests.conftest import sql_statements

ZONE = "Pacific/Kiritimati"  # UTC+14: the local day is ahead of UTC's most of the day
NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)  # 26 November, 00:30 in Kiritimati
TODAY = date(2026, 11, 26)
DAY = timedelta(days=1)


@pytest.fixture
def headers(auth):
    tokens = auth.register(timezone=ZONE)
    return {**auth.bearer(tokens["access_token"]), "Content-Type": "application/json"}


@pytest.fixture
def clock(monkeypatch):
    def set_to(instant):
        monkeypatch.setattr(habit_service, "utcnow", lambda: instant)

    return set_to


def create(client, headers, title, frequency):
    body = {"title": title, "target_frequency": frequency}
    response = client.post("/api/habits/", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["data"]["id"]


def log(app, habit_id, days):
    with app.app_context():
        db.session.add_all(HabitCompletion(habit_id=uuid.UUID(habit_id), day=day) for day in days)
        db.session.commit()


def listed(client, headers):
    response = client.get("/api/habits/", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def test_the_list_says_for_each_habit_what_its_own_answer_says(app, client, headers, clock):
    picks = random.Random(20261126)
    year = [TODAY - back * DAY for back in range(400)]
    habits = {}
    for number, (frequency, share) in enumerate(
        [("daily", 0.8), ("daily", 0.3), ("weekly", 0.2), ("monthly", 0.05), ("daily", 0)]
    ):
        clock(NOW - timedelta(days=200 - 30 * number, hours=number))
        habit_id = create(client, headers, f"habit {number}", frequency)
        habits[habit_id] = {day for day in year if picks.random() < share}
    clock(NOW - 5 * DAY)
    # Every day of this one shows: its first, logged before the habit was made, starts the rate.
    habits[create(client, headers, "new", "daily")] = {TODAY - 10 * DAY, TODAY - 3 * DAY, TODAY}
    clock(NOW)
    first = next(iter(habits))
    habits[first] |= {TODAY, TODAY + DAY, EARLIEST_DAY}  # tomorrow (a phone ahead), and 1970
    for habit_id, days in habits.items():
        log(app, habit_id, days)

    summaries = listed(client, headers)

    assert [habit["id"] for habit in summaries] == list(habits)  # oldest first
    for habit in summaries:
        response = client.patch(f"/api/habits/{habit['id']}", json={}, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert habit == response.get_json()["data"]
        days = habits[habit["id"]]
        recent = sorted(day for day in days if TODAY - 29 * DAY <= day <= TODAY + DAY)
        assert habit["completed_dates"] == [day.isoformat() for day in recent]
    assert summaries[0]["current_streak"] >= 2  # today and tomorrow at least
    never_done, new = summaries[-2:]
    assert never_done["completed_dates"] == []
    assert (never_done["current_streak"], never_done["completion_rate"]) == (0, 0.0)
    assert (new["current_streak"], new["completion_rate"]) == (1, 27.3)  # 3 of 11 days


def test_listing_habits_is_the_caller_and_one_statement(app, client, headers):
    for frequency in ("daily", "weekly"):
        log(app, create(client, headers, frequency, frequency), [TODAY - DAY, TODAY - 3 * DAY])
    listed(client, headers)  # warm

    with sql_statements(app) as seen:
        summaries = listed(client, headers)

    assert [habit["title"] for habit in summaries] == ["daily", "weekly"]
    assert len(seen) <= 2, [statement for statement, _ in seen]
