"""Flood control: past a few events a window from one source, denials are counted, not written
one by one, and every one of them is still accounted for."""

from __future__ import annotations

import time
import uuid

from mita_app.audit import bursts, writer_of
from mita_app.audit.bursts import BurstGate
from tests.conftest import HandClock, events_of


def admitted(gate: BurstGate, count: int, ip: str = "10.0.0.1", reason: str = "invalid_token"):
    return [gate.admit("auth.denied", ip, reason, f"r{n}") for n in range(count)]


def test_the_first_events_of_a_window_are_admitted_and_the_rest_counted():
    clock = HandClock()
    gate = BurstGate(limit=3, window=10, clock=clock)

    assert admitted(gate, 5) == [True, True, True, False, False]
    assert gate.summaries() == []  # the window is still open
    clock.now += 10
    (summary,) = gate.summaries()
    assert summary["event_type"] == "auth.denied.suppressed"
    assert summary["ip"] == "10.0.0.1"
    details = summary["details"]
    assert (details["reason"], details["count"], details["last_request_id"]) == (
        "invalid_token",
        2,
        "r4",
    )
    assert details["first_at"] <= details["last_at"]
    assert admitted(gate, 1) == [True]  # a new window


def test_sources_are_counted_apart_and_ungated_events_always_pass():
    gate = BurstGate(limit=1, window=10, clock=HandClock())

    assert admitted(gate, 2, ip="10.0.0.1") == [True, False]
    assert admitted(gate, 2, ip="10.0.0.2") == [True, False]
    assert admitted(gate, 2, reason="missing_credentials") == [True, False]
    assert all(gate.admit("auth.login.failed", "10.0.0.1", "wrong_password", None) for _ in "xyz")
    assert sorted(s["details"]["count"] for s in gate.summaries(final=True)) == [1, 1, 1]


def test_a_window_without_suppressed_events_leaves_no_summary():
    clock = HandClock()
    gate = BurstGate(limit=3, window=10, clock=clock)
    admitted(gate, 3)
    clock.now += 10

    assert gate.summaries() == []


def test_limit_zero_records_every_event():
    gate = BurstGate(limit=0, window=10, clock=HandClock())

    assert admitted(gate, 50) == [True] * 50


def test_too_many_sources_are_recorded_one_by_one_rather_than_forgotten(monkeypatch):
    monkeypatch.setattr(bursts, "MAX_SOURCES", 2)
    gate = BurstGate(limit=1, window=10, clock=HandClock())
    admitted(gate, 1, ip="10.0.0.1")
    admitted(gate, 1, ip="10.0.0.2")

    assert admitted(gate, 3, ip="10.0.0.3") == [True, True, True]


def denied(client, request_id: str, ip: str = "10.9.9.9"):
    return client.get(
        "/api/auth/session",
        headers={"Authorization": "Bearer garbage", "X-Request-ID": request_id},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_a_flood_of_denials_is_written_as_a_few_rows_and_a_summary_that_counts_the_rest(
    app_factory,
):
    app = app_factory(AUDIT_BURST_LIMIT="3", AUDIT_BURST_WINDOW="60")
    clock = HandClock()
    writer_of(app).gate.clock = clock
    client = app.test_client()
    sent = [f"flood-{n}" for n in range(10)]
    for request_id in sent:
        assert denied(client, request_id).status_code == 401
    assert denied(client, "elsewhere", ip="10.8.8.8").status_code == 401

    one_by_one = events_of(app, "auth.denied")
    assert [e["request_id"] for e in one_by_one] == [*sent[:3], "elsewhere"]
    assert events_of(app, "auth.denied.suppressed") == []

    clock.now += 60  # the window closes; the writer sums it up on its next round
    deadline = time.monotonic() + 10
    while not events_of(app, "auth.denied.suppressed") and time.monotonic() < deadline:
        time.sleep(0.05)
    (summary,) = events_of(app, "auth.denied.suppressed")
    assert summary["ip"] == "10.9.9.9"
    assert summary["details"]["count"] == 7
    assert summary["details"]["last_request_id"] == sent[-1]
    assert summary["details"]["reason"] == "invalid_token"


def test_stopping_writes_the_summary_of_a_window_still_open(app_factory):
    app = app_factory(AUDIT_BURST_LIMIT="2", AUDIT_BURST_WINDOW="3600")
    client = app.test_client()
    for n in range(5):
        denied(client, f"open-{n}")
    events_of(app)  # the two admitted ones are written

    writer_of(app).stop(timeout=5)

    assert [e["details"]["count"] for e in events_of(app, "auth.denied.suppressed")] == [3]


def test_burst_limit_zero_writes_every_denial(app_factory):
    app = app_factory(AUDIT_BURST_LIMIT="0")
    client = app.test_client()
    sent = [uuid.uuid4().hex for _ in range(30)]
    for request_id in sent:
        denied(client, request_id)

    assert sorted(e["request_id"] for e in events_of(app, "auth.denied")) == sorted(sent)
