"""The audit log in one process: which events each flow records, what they hold and never hold,
when they are handed over, and how the writer batches, refuses and spills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from mita_app import audit
from mita_app.audit import writer_of
from mita_app.audit.events import build
from mita_app.extensions import db
from mita_app.models import AuditEvent, AuditWriterState
from tests.conftest import PASSWORD, TEST_SECRET, build_app, dispose, events_of, free_port

ROOT = Path(__file__).resolve().parent.parent


def only(app: Flask, event_type: str) -> dict[str, Any]:
    found = events_of(app, event_type)
    assert len(found) == 1, found
    return found[0]


def post(client: FlaskClient, path: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(path, json=body, headers=headers)


# --- what each flow records -------------------------------------------------------------------


def test_register_records_the_new_account_and_its_session(app, client, auth):
    data = auth.register("new@example.com")

    event = only(app, "auth.register")
    assert str(event["user_id"]) == data["user"]["id"]
    assert event["session_id"] is not None
    assert event["status"] == 201
    assert event["details"] == {"email": "new@example.com"}


def test_login_success_and_each_kind_of_failure_are_recorded_with_a_reason(app, client, auth):
    auth.register("who@example.com")
    assert auth.login("who@example.com").status_code == 200
    assert auth.login("who@example.com", "wrong password").status_code == 401
    assert auth.login("ghost@example.com").status_code == 401

    succeeded = only(app, "auth.login.succeeded")
    assert succeeded["details"]["email"] == "who@example.com"
    assert succeeded["session_id"] is not None
    failed = events_of(app, "auth.login.failed")
    assert [(e["details"]["reason"], e["details"]["email"], e["status"]) for e in failed] == [
        ("wrong_password", "who@example.com", 401),
        ("unknown_email", "ghost@example.com", 401),
    ]
    assert failed[0]["user_id"] == succeeded["user_id"]
    assert failed[1]["user_id"] is None


def test_a_locked_and_a_disabled_account_are_recorded_as_such(app, client, auth, runner):
    auth.register("locked@example.com")
    for _ in range(app.config["LOGIN_LOCKOUT_THRESHOLD"]):
        auth.login("locked@example.com", "wrong password")
    auth.login("locked@example.com")
    auth.register("off@example.com")
    assert runner.invoke(args=["user", "disable", "off@example.com"]).exit_code == 0
    auth.login("off@example.com")

    reasons = [e["details"] for e in events_of(app, "auth.login.failed")]
    assert [r["locked_now"] for r in reasons[:5]] == [False] * 4 + [True]
    assert reasons[5]["reason"] == "account_locked"
    assert reasons[6] == {
        "email": "off@example.com",
        "reason": "account_disabled",
        "locked_now": False,
    }


def test_refresh_rotation_reuse_and_failures_are_recorded(app, client, auth):
    app.config["REFRESH_REUSE_GRACE"] = 0  # a replay at once is reuse only without the grace
    data = auth.register()
    assert post(client, "/api/auth/refresh", {"refresh_token": data["refresh_token"]}).status_code
    post(client, "/api/auth/refresh", {"refresh_token": data["refresh_token"]})  # reuse
    post(client, "/api/auth/refresh", {"refresh_token": data["refresh_token"]})  # revoked now
    post(client, "/api/auth/refresh", {"refresh_token": "0" * 32 + "." + "x" * 43})

    refreshed = only(app, "auth.refresh")
    reuse = only(app, "auth.refresh.reuse_detected")
    assert refreshed["session_id"] == reuse["session_id"]
    assert reuse["status"] == 401
    failures = [e["details"]["reason"] for e in events_of(app, "auth.refresh.failed")]
    assert failures == ["session_revoked", "unknown_token"]


def test_logout_logout_all_and_password_change_are_recorded_for_the_caller(app, client, auth):
    first = auth.register("acts@example.com")
    second = auth.login("acts@example.com").get_json()["data"]
    bearer = auth.bearer(first["access_token"])
    bad = {"current_password": "not it at all", "new_password": "another passphrase"}
    assert client.post("/api/auth/password", json=bad, headers=bearer).status_code == 403
    good = {"current_password": PASSWORD, "new_password": "another passphrase"}
    assert client.post("/api/auth/password", json=good, headers=bearer).status_code == 200
    assert client.post("/api/auth/logout", headers=bearer).status_code == 200
    third = auth.login("acts@example.com", "another passphrase").get_json()["data"]
    assert (
        client.post("/api/auth/logout-all", headers=auth.bearer(third["access_token"])).status_code
        == 204
    )

    changed = only(app, "auth.password_changed")
    assert str(changed["user_id"]) == first["user"]["id"]
    assert changed["status"] == 200
    assert only(app, "auth.password_change.failed")["details"]["reason"] == "wrong_password"
    logout = only(app, "auth.logout")
    assert logout["session_id"] == changed["session_id"] != uuid.UUID(int=0)
    assert only(app, "auth.logout_all")["status"] == 204
    assert second  # its session ended with the password change; no event of its own


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing_credentials"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_credentials"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
    ],
)
def test_a_refused_request_to_a_protected_endpoint_is_recorded_as_denied(
    app, client, headers, reason
):
    response = client.get("/api/users/me", headers={"X-Request-ID": "denied-1", **headers})
    assert response.status_code == 401

    event = only(app, "auth.denied")
    assert event["details"]["reason"] == reason
    assert (event["request_id"], event["method"], event["path"], event["status"]) == (
        "denied-1",
        "GET",
        "/api/users/me",
        401,
    )


def test_rate_limited_requests_are_recorded(app_factory):
    app = app_factory(RATELIMIT_ENABLED="true", RATELIMIT_REGISTER_PER_IP="1 per minute")
    client = app.test_client()
    for address in ("a@example.com", "b@example.com"):
        post(client, "/api/auth/register", {"email": address, "password": PASSWORD})

    event = only(app, "auth.rate_limited")
    assert event["status"] == 429
    assert event["details"] == {"limit": "1 per 1 minute", "endpoint": "auth.register"}


def test_every_operator_action_is_recorded_with_the_operating_system_user(app, runner):
    address = "managed@example.com"
    for args in (
        ["create", address, "--password", PASSWORD],
        ["set-role", address, "admin"],
        ["disable", address],
        ["enable", address],
        ["revoke-sessions", address],
        ["set-password", address, "--password", "another passphrase"],
    ):
        result = runner.invoke(args=["user", *args])
        assert result.exit_code == 0, result.output

    admin_events = [e for e in events_of(app) if e["event_type"].startswith("admin.")]
    assert [e["event_type"] for e in admin_events] == [
        "admin.user.create",
        "admin.user.set_role",
        "admin.user.disable",
        "admin.user.enable",
        "admin.user.revoke_sessions",
        "admin.user.set_password",
    ]
    operator = admin_events[0]["details"]["operator"]
    assert operator
    assert all(e["details"]["operator"] == operator for e in admin_events)
    assert all(e["details"]["email"] == address for e in admin_events)
    assert admin_events[1]["details"]["previous_role"] == "user"
    assert all(e["request_id"] is None and e["path"] is None for e in admin_events)


# --- what events hold, and never hold ---------------------------------------------------------


def test_no_event_holds_a_password_a_token_or_an_authorization_header(app, client, auth):
    data = auth.register("secret@example.com")
    auth.login("secret@example.com", "a wrong password 123")
    client.get("/api/users/me", headers={"Authorization": "Bearer garbage.token.value"})
    refreshed = post(client, "/api/auth/refresh", {"refresh_token": data["refresh_token"]})
    post(client, "/api/auth/refresh", {"refresh_token": data["refresh_token"]})

    stored = json.dumps([{**e, "details": e["details"]} for e in events_of(app)], default=str)
    for secret in (
        PASSWORD,
        "a wrong password 123",
        data["access_token"],
        data["refresh_token"],
        refreshed.get_json()["data"]["refresh_token"],
        "garbage.token.value",
        "Bearer",
    ):
        assert secret not in stored


def test_details_named_like_secrets_are_redacted_and_values_made_storable(app):
    with app.app_context():
        audit.record(
            "test.details",
            password="hunter2",
            refresh_token="abc",
            Authorization="Bearer x",
            note="a\x00b\ud800c",
            long="x" * 10_000,
            amount=float("nan"),
            nested={"api_secret": "s", "ok": [1, 2, uuid.UUID(int=1)]},
            when=datetime(2026, 1, 2, tzinfo=UTC),
        )

    details = only(app, "test.details")["details"]
    assert details["password"] == details["refresh_token"] == details["Authorization"]
    assert details["password"] == "[redacted]"
    assert details["note"] == "a\ufffdb\ufffdc"
    assert details["long"] == "x" * 256
    assert details["amount"] == "nan"
    assert details["nested"] == {
        "api_secret": "[redacted]",
        "ok": [1, 2, "00000000-0000-0000-0000-000000000001"],
    }
    assert details["when"] == "2026-01-02T00:00:00+00:00"


def test_request_fields_are_cut_to_size_and_only_a_sane_request_id_is_kept(app, client):
    client.get(
        "/api/auth/session/" + "p" * 600,
        headers={"User-Agent": "agent\x07" + "u" * 400, "X-Request-ID": "bad id with spaces"},
    )
    client.get("/api/auth/session", headers={"User-Agent": "ok"})

    assert events_of(app, "auth.denied")[-1]["user_agent"] == "ok"
    denied = events_of(app, "auth.denied")
    assert len(denied) == 1  # the long path is a 404: no protected endpoint was reached
    assert denied[0]["request_id"]
    assert " " not in denied[0]["request_id"]


def test_record_never_raises_even_outside_an_app(app, caplog):
    audit.record("test.nowhere", detail=object())  # no app context at all
    with app.app_context():
        audit.record("test.odd", detail=object(), **{"": 1})

    assert "outside an app context" in caplog.text
    odd = only(app, "test.odd")
    assert odd["details"]["detail"].startswith("<object object")


def test_events_are_handed_over_only_once_the_response_is_closed(app):
    client = FlaskClient(app)  # a plain client: responses stay open until closed
    response = client.get("/api/users/me", headers={"X-Request-ID": "held-open"})
    assert response.status_code == 401
    assert events_of(app, "auth.denied") == []

    response.close()
    assert only(app, "auth.denied")["request_id"] == "held-open"


def test_audit_disabled_records_nothing(app_factory):
    app = app_factory(AUDIT_ENABLED="false")
    app.test_client().get("/api/users/me")

    assert events_of(app) == []
    assert writer_of(app).snapshot()["running"] is False


# --- the writer ------------------------------------------------------------------------------


def spills(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The events the writer spilled to stderr so far, as the JSON objects it wrote."""
    lines = capfd.readouterr().err.splitlines()
    return [json.loads(line) for line in lines if line.startswith('{"audit_spill"')]


def synthetic(count: int, event_type: str = "test.bulk") -> list[dict[str, Any]]:
    return [build(event_type, details={"n": n}) for n in range(count)]


def test_a_burst_is_written_in_full_batches(app_factory):
    app = app_factory(AUDIT_BATCH_SIZE="500", AUDIT_FLUSH_INTERVAL="0.5")
    writer = writer_of(app)
    with app.app_context():
        writer.submit(synthetic(1200))

    assert len(events_of(app, "test.bulk")) == 1200
    assert writer.snapshot()["batches"] == 3
    assert writer.snapshot()["written"] == 1200


def test_events_the_database_refuses_are_spilled_and_the_rest_of_the_batch_is_written(
    app_factory, capfd
):
    app = app_factory(AUDIT_FLUSH_INTERVAL="0.5")
    writer = writer_of(app)
    batch = synthetic(3)
    batch[1]["details"] = {"unserialisable": object()}  # only record() would have cleaned it
    with app.app_context():
        writer.submit(batch)

    assert [e["details"]["n"] for e in events_of(app, "test.bulk")] == [0, 2]
    spilled = spills(capfd)
    assert [(s["audit_spill"], s["id"]) for s in spilled] == [("refused", str(batch[1]["id"]))]
    assert writer.snapshot()["spilled"] == 1


def test_events_submitted_after_stop_are_spilled_not_lost(app, capfd):
    writer = writer_of(app)
    with app.app_context():
        writer.submit(synthetic(2))
        writer.stop(timeout=5)
        writer.submit(synthetic(1, "test.late"))

    assert len(events_of(app, "test.bulk")) == 2
    spilled = spills(capfd)
    assert [(s["audit_spill"], s["event_type"]) for s in spilled] == [
        ("writer_stopped", "test.late")
    ]


def test_the_writer_reports_itself_in_audit_writers(app):
    writer = writer_of(app)
    with app.app_context():
        writer.submit(synthetic(5))
    writer.flush(10)
    writer.stop(timeout=5)

    with app.app_context():
        rows = db.session.scalars(select(AuditWriterState)).all()
    assert [(r.pid, r.written, r.batches, r.spilled) for r in rows] == [(os.getpid(), 5, 1, 0)]


def test_ready_shows_the_writer(client):
    client.get("/api/users/me")

    audit_check = client.get("/ready").get_json()["data"]["checks"]["audit"]
    assert audit_check["ok"] is True
    assert audit_check["running"] is True
    assert audit_check["pid"] == os.getpid()
    assert {"queue_depth", "written", "batches", "write_failures", "spilled", "retrying"} <= set(
        audit_check
    )


# --- flask audit ------------------------------------------------------------------------------


def audit_cli(runner: FlaskCliRunner, *args: str) -> Any:
    return runner.invoke(args=["audit", *args])


def test_tail_filters_by_user_type_and_time_and_prints_json_lines(app, client, auth, runner):
    auth.register("tailed@example.com")
    auth.login("tailed@example.com", "wrong password")
    auth.register("other@example.com")
    events_of(app)

    result = audit_cli(runner, "tail", "--user", "tailed@example.com", "--type", "auth.login")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["event_type"], e["details"]["reason"]) for e in lines] == [
        ("auth.login.failed", "wrong_password")
    ]
    everything = audit_cli(runner, "tail", "--limit", "2").stdout.splitlines()
    assert [json.loads(line)["details"]["email"] for line in everything] == [
        "tailed@example.com",
        "other@example.com",
    ]
    assert audit_cli(runner, "tail", "--since", "0s").stdout == ""
    missing = audit_cli(runner, "tail", "--user", "nobody@example.com")
    assert missing.exit_code == 1
    assert "nobody@example.com" in missing.output
    assert audit_cli(runner, "tail", "--since", "soon").exit_code == 2


def test_stats_shows_each_writer_and_the_window_by_type(app, auth, runner):
    auth.register()
    auth.register()
    events_of(app)
    writer_of(app).stop(timeout=5)  # its last report is written as it stops

    report = json.loads(audit_cli(runner, "stats").stdout)
    assert report["events_in_window"] == {"auth.register": 2}
    assert [(w["pid"], w["written"]) for w in report["writers"]] == [(os.getpid(), 2)]
    assert report["newest_event_at"]


def test_prune_deletes_only_old_events_and_refuses_a_young_cutoff(app, auth, runner):
    auth.register()
    events_of(app)
    with app.app_context():
        old = build("test.old", details={})
        old["created_at"] = datetime.now(UTC) - timedelta(days=100)
        db.session.execute(AuditEvent.__table__.insert(), [old])
        db.session.commit()

    refused = audit_cli(runner, "prune", "--older-than", "1h")
    assert refused.exit_code == 2
    assert "--force" in refused.output
    result = audit_cli(runner, "prune", "--older-than", "90d", "--batch-size", "1")
    assert result.exit_code == 0, result.output
    assert "deleted 1 events" in result.stdout

    remaining = {e["event_type"] for e in events_of(app)}
    assert remaining == {"auth.register", "admin.audit.prune"}
    assert only(app, "admin.audit.prune")["details"]["deleted"] == 1


def test_an_operator_command_process_writes_its_event_before_it_exits(tmp_path):
    # A real `flask` process: its writer is flushed by the atexit path, not by a test.
    database_url = f"sqlite:///{tmp_path}/cli.db"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": database_url,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
    }
    flask = [str(Path(sys.executable).parent / "flask"), "--app", "wsgi"]
    for args in (["db", "upgrade"], ["user", "create", "cli@example.com", "--password", PASSWORD]):
        done = subprocess.run(
            [*flask, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr

    app = build_app(database_url, create_schema=False)
    try:
        created = only(app, "admin.user.create")
        assert created["details"]["email"] == "cli@example.com"
    finally:
        dispose(app)


def test_stopping_while_the_database_is_unreachable_spills_everything_within_the_budget(capfd):
    app = build_app(
        f"postgresql://postgres@127.0.0.1:{free_port()}/mita",
        create_schema=False,
        AUDIT_BATCH_SIZE="10",
        AUDIT_RETRY_MAX="30",  # a long backoff, which the stop must cut short
        AUDIT_SPILL_AFTER="60",  # held until the stop, not spilled for their age before it
    )
    writer = writer_of(app)
    try:
        with app.app_context():
            writer.submit(synthetic(25))
        # Seven failures in, the backoff has doubled to a 6.4 s sleep: longer than the budget.
        deadline = time.monotonic() + 15
        while writer.snapshot()["write_failures"] < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.snapshot()["retrying"] is True

        started = time.monotonic()
        writer.stop(timeout=1)
        assert time.monotonic() - started < 1.5
    finally:
        dispose(app)

    spilled = spills(capfd)
    assert len(spilled) == 25
    assert len({s["id"] for s in spilled}) == 25
    assert {s["audit_spill"] for s in spilled} <= {"database_unavailable_at_shutdown", "shutdown"}
    assert writer.snapshot()["spilled"] == 25


def test_a_forked_child_starts_its_own_writer_even_if_the_parent_was_adopting_one(app):
    # The worst moment to fork: another thread of the parent holds the adoption lock.
    from mita_app import background as module

    writer = writer_of(app)
    with module._fork_guard:
        pid = os.fork()
        if pid == 0:  # the child: start, and say whether the writer is this process's own
            writer.start()
            os._exit(0 if writer.snapshot()["pid"] == os.getpid() else 1)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    if done == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child blocked on the lock its parent held when it forked")
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_event_ids_are_time_ordered_uuid7():
    first = build("test.a", details={})["id"]
    time.sleep(0.002)
    second = build("test.b", details={})["id"]

    assert (first.version, second.version) == (7, 7)
    assert first < second


@pytest.mark.postgres
def test_postgresql_refuses_an_oversized_value_instead_of_truncating_it(pg_url, capfd):
    app = build_app(pg_url, AUDIT_FLUSH_INTERVAL="0.5")
    try:
        batch = synthetic(2)
        batch[0]["path"] = "/" + "p" * 600  # the column holds 512; record() would have cut it
        with app.app_context():
            writer_of(app).submit(batch)

        assert [e["details"]["n"] for e in events_of(app, "test.bulk")] == [1]
        assert [s["id"] for s in spills(capfd)] == [str(batch[0]["id"])]
    finally:
        dispose(app)
