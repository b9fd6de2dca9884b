"""`flask errors tail|stats|prune`: operator commands over the stored crash reports."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select

from mita_app.extensions import db
from mita_app.models import CrashReport
from tests.conftest import AuthActions, events_of


def add(app: Flask, *, age: timedelta = timedelta(minutes=1), **fields: Any) -> str:
    """Store one report received `age` ago; its error text names it unless given."""
    report_id = uuid.uuid4()
    values: dict[str, Any] = {
        "id": report_id,
        "dedup_key": hashlib.sha256(report_id.bytes).hexdigest(),
        "client_report_id": "1732823223123",
        "received_at": datetime.now(UTC) - age,
        "reported_at": "2026-11-28T21:47:03.123456",
        "severity": "medium",
        "category": "unknown",
        "error": f"report {report_id}",
        "context": {},
        "app_version": "1.0.0 (1)",
        "platform": "android",
        "device_info": "Android Device",
        "is_connected": True,
        **fields,
    }
    with app.app_context():
        db.session.add(CrashReport(**values))
        db.session.commit()
    return str(report_id)


def count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(CrashReport)) or 0


def run(runner: FlaskCliRunner, *args: str) -> Result:
    return runner.invoke(args=["errors", *args])


def tail(runner: FlaskCliRunner, *args: str) -> list[dict[str, Any]]:
    result = run(runner, "tail", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def ids(reports: list[dict[str, Any]]) -> list[str]:
    return [report["id"] for report in reports]


# --- tail --------------------------------------------------------------------------------------


def test_tail_prints_the_windows_reports_oldest_first_as_json_lines(
    app: Flask, runner: FlaskCliRunner
) -> None:
    oldest = add(app, age=timedelta(hours=3))
    older = add(app, age=timedelta(minutes=30), device_info={"model": "Pixel 8"})
    newer = add(app, age=timedelta(minutes=5), severity="critical")

    reports = tail(runner)

    assert ids(reports) == [older, newer]
    assert reports[0]["device_info"] == {"model": "Pixel 8"}
    assert reports[1]["severity"] == "critical"
    assert set(reports[1]) >= {"received_at", "reported_at", "error", "stack_trace", "user_id"}
    assert ids(tail(runner, "--since", "4h")) == [oldest, older, newer]


def test_tail_limit_keeps_the_latest(app: Flask, runner: FlaskCliRunner) -> None:
    made = [add(app, age=timedelta(minutes=10 - i)) for i in range(5)]

    assert ids(tail(runner, "--limit", "2")) == made[-2:]


def test_tail_filters_by_severity_category_and_app_version(
    app: Flask, runner: FlaskCliRunner
) -> None:
    high_ui = add(app, severity="high", category="ui", app_version="1.0.0 (1)")
    critical_net = add(app, severity="critical", category="network", app_version="1.1.0 (2)")
    low_ui = add(app, severity="low", category="ui", app_version="1.1.0 (2)")

    assert ids(tail(runner, "--severity", "high")) == [high_ui]
    assert set(ids(tail(runner, "--severity", "high", "--severity", "critical"))) == {
        high_ui,
        critical_net,
    }
    assert ids(tail(runner, "--category", "network")) == [critical_net]
    assert ids(tail(runner, "--app-version", "1.0.0 (1)")) == [high_ui]
    assert ids(tail(runner, "--category", "ui", "--app-version", "1.1.0 (2)")) == [low_ui]


def test_tail_filters_by_user_email_or_id(
    app: Flask, runner: FlaskCliRunner, auth: AuthActions
) -> None:
    user = auth.register()
    user_id = user["user"]["id"]
    theirs = add(app, user_id=uuid.UUID(user_id))
    add(app)

    assert ids(tail(runner, "--user", user["user"]["email"])) == [theirs]
    assert ids(tail(runner, "--user", user_id)) == [theirs]
    assert tail(runner, "--user", str(uuid.uuid4())) == []  # an id needs no live account


def test_tail_refuses_an_unknown_email_and_an_unknown_severity(runner: FlaskCliRunner) -> None:
    unknown = run(runner, "tail", "--user", "nobody@example.com")
    assert unknown.exit_code == 1
    assert "nobody@example.com" in unknown.output

    assert run(runner, "tail", "--severity", "fatal").exit_code == 2


# --- stats -------------------------------------------------------------------------------------


def test_stats_counts_the_window_by_severity_category_version_platform_and_error(
    app: Flask, runner: FlaskCliRunner, auth: AuthActions
) -> None:
    user_id = uuid.UUID(auth.register()["user"]["id"])
    for _ in range(3):
        add(app, severity="high", category="ui", error="TypeError: x is null\n#0 main")
    crlf = "TypeError: x is null\r\n#0 other"
    add(app, severity="high", category="ui", error=crlf, user_id=user_id)
    add(app, severity="critical", category="network", error="SocketException", platform="ios")
    add(app, severity="low", category="network", error="SocketException", app_version="1.1.0 (2)")
    add(app, severity="critical", age=timedelta(days=2), error="too old to count")

    result = run(runner, "stats")

    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["total"] == 6
    assert (stats["users"], stats["anonymous"]) == (1, 5)
    assert stats["by_severity"] == {"low": 1, "medium": 0, "high": 4, "critical": 1}
    assert stats["by_category"]["ui"] == 4
    assert stats["by_category"]["network"] == 2
    assert stats["by_category"]["storage"] == 0
    assert stats["by_app_version"] == {"1.0.0 (1)": 5, "1.1.0 (2)": 1}
    assert stats["by_platform"] == {"android": 5, "ios": 1}
    assert [(e["error"], e["count"]) for e in stats["top_errors"]] == [
        ("TypeError: x is null", 4),
        ("SocketException", 2),
    ]

    wider = json.loads(run(runner, "stats", "--since", "3d").stdout)
    assert wider["total"] == 7
    assert wider["top_errors"][-1]["error"] == "too old to count"


def test_stats_top_limits_versions_and_errors(app: Flask, runner: FlaskCliRunner) -> None:
    for version, times in (("3", 3), ("2", 2), ("1", 1)):
        for _ in range(times):
            add(app, app_version=version, error=f"error of {version}")

    stats = json.loads(run(runner, "stats", "--top", "2").stdout)

    assert stats["by_app_version"] == {"3": 3, "2": 2}
    assert [e["error"] for e in stats["top_errors"]] == ["error of 3", "error of 2"]


def test_stats_of_an_empty_window_are_zeros(runner: FlaskCliRunner) -> None:
    stats = json.loads(run(runner, "stats").stdout)

    assert stats["total"] == 0
    assert set(stats["by_severity"].values()) == {0}
    assert stats["top_errors"] == []


# --- prune -------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", ["2", "10000"])
def test_prune_deletes_only_older_reports_in_batches_and_is_audited(
    app: Flask, runner: FlaskCliRunner, batch_size: str
) -> None:
    for _ in range(5):
        add(app, age=timedelta(days=40))
    kept = add(app, age=timedelta(days=20))

    result = run(runner, "prune", "--older-than", "30d", "--batch-size", batch_size)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("deleted 5 crash reports older than")
    assert ids(tail(runner, "--since", "60d")) == [kept]
    (event,) = events_of(app, "admin.errors.prune")
    assert event["details"]["deleted"] == 5


def test_prune_of_less_than_a_day_needs_force(app: Flask, runner: FlaskCliRunner) -> None:
    add(app, age=timedelta(hours=2))

    refused = run(runner, "prune", "--older-than", "1h")
    assert refused.exit_code == 2
    assert "--force" in refused.output
    assert count(app) == 1

    forced = run(runner, "prune", "--older-than", "1h", "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stdout.startswith("deleted 1 crash reports")
    assert count(app) == 0


def test_prune_needs_a_duration(runner: FlaskCliRunner) -> None:
    assert run(runner, "prune").exit_code == 2
    assert run(runner, "prune", "--older-than", "soon").exit_code == 2
