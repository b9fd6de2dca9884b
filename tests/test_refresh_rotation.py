"""Refresh-token rotation with a reuse grace: a retry after a lost answer keeps the user signed
in, a replay after the grace still revokes the family, and a made-up secret changes nothing.

The sessions' clock (`mita_app.auth.sessions.utcnow`, their only one) is stopped and moved by
hand: no test waits for the grace to pass.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mita_app.auth import sessions
from mita_app.config import ConfigError, from_env
from mita_app.extensions import db
from mita_app.models import AuthSession, User
from tests.conftest import PASSWORD, build_app, dispose, events_of, free_port

GRACE = 30  # REFRESH_REUSE_GRACE's default


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    stopped = Clock()
    monkeypatch.setattr(sessions, "utcnow", lambda: stopped.now)
    return stopped


def refresh(client: FlaskClient, refresh_token: str):
    return client.post("/api/auth/refresh-token", json={"refresh_token": refresh_token})


def pair_of(response) -> dict:
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def session_id_in(access_token: str) -> uuid.UUID:
    """The `sid` claim, read as anyone holding an access token can read it."""
    payload = access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return uuid.UUID(claims["sid"])


def session_row(app: Flask, session_id: uuid.UUID) -> AuthSession:
    with app.app_context():
        row = db.session.get(AuthSession, session_id)
        assert row is not None
        db.session.expunge(row)
        return row


def signed_in(client: FlaskClient, access_token: str) -> bool:
    response = client.get("/api/auth/session", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code in (200, 401), response.get_json()
    return response.status_code == 200


def assert_invalid_token(response) -> None:
    assert response.status_code == 401
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]["code"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def event_types(app: Flask) -> list[str]:
    return [event["event_type"] for event in events_of(app)]


# --- the grace: a retry after a lost answer -------------------------------------------------------


def test_a_retry_after_a_lost_answer_gets_the_same_refresh_token_and_both_pairs_work(
    app, client, auth, clock
):
    first = auth.register()
    lost = pair_of(refresh(client, first["refresh_token"]))  # the app never sees this answer
    clock.advance(GRACE - 1)

    retried = pair_of(refresh(client, first["refresh_token"]))  # it still holds `first`

    # One working refresh token, whichever answer the client kept.
    assert retried["refresh_token"] == lost["refresh_token"] != first["refresh_token"]
    assert retried["access_token"] != lost["access_token"]
    assert signed_in(client, retried["access_token"])
    assert signed_in(client, lost["access_token"])
    session_id = session_id_in(first["access_token"])
    assert session_row(app, session_id).revoked_at is None

    # Its next refresh, long after the grace, is an ordinary rotation.
    clock.advance(3600)
    following = pair_of(refresh(client, retried["refresh_token"]))
    assert signed_in(client, following["access_token"])
    assert session_row(app, session_id).rotations == 2
    assert "auth.refresh.reuse_detected" not in event_types(app)
    grace_answers = [e for e in events_of(app, "auth.refresh") if e["details"].get("within_grace")]
    assert len(grace_answers) == 1


def test_every_retry_within_the_grace_gets_that_same_refresh_token(client, auth, clock):
    first = auth.register()
    answers = []
    for _ in range(4):
        answers.append(pair_of(refresh(client, first["refresh_token"]))["refresh_token"])
        clock.advance(GRACE / 5)
    assert len(set(answers)) == 1
    assert refresh(client, answers[0]).status_code == 200


# --- after the grace: theft detection stays -------------------------------------------------------


@pytest.mark.parametrize("late_by", [0, 1, 86_400])
def test_the_rotated_out_token_after_the_grace_revokes_the_family(
    app, client, auth, clock, late_by
):
    first = auth.register()
    second = pair_of(refresh(client, first["refresh_token"]))
    clock.advance(GRACE + late_by)

    assert_invalid_token(refresh(client, first["refresh_token"]))

    session_id = session_id_in(first["access_token"])
    row = session_row(app, session_id)
    assert row.revoked_at is not None
    assert row.revoke_reason == "refresh_token_reuse"
    assert_invalid_token(refresh(client, second["refresh_token"]))
    assert not signed_in(client, second["access_token"])
    (reuse,) = events_of(app, "auth.refresh.reuse_detected")
    assert reuse["session_id"] == session_id
    assert reuse["status"] == 401
    assert reuse["details"]["rotations_behind"] == 1


def test_an_older_member_of_the_family_revokes_it_even_within_the_grace(app, client, auth, clock):
    """Only the token the current one replaced is answered again."""
    first = auth.register()
    second = pair_of(refresh(client, first["refresh_token"]))
    third = pair_of(refresh(client, second["refresh_token"]))

    assert_invalid_token(refresh(client, first["refresh_token"]))

    assert session_row(app, session_id_in(first["access_token"])).revoked_at is not None
    assert_invalid_token(refresh(client, third["refresh_token"]))
    (reuse,) = events_of(app, "auth.refresh.reuse_detected")
    assert reuse["details"]["rotations_behind"] == 2


def test_with_the_grace_off_a_replay_at_once_revokes_the_family(app, client, auth, clock):
    app.config["REFRESH_REUSE_GRACE"] = 0
    first = auth.register()
    second = pair_of(refresh(client, first["refresh_token"]))
    clock.advance(0.001)

    assert_invalid_token(refresh(client, first["refresh_token"]))

    assert session_row(app, session_id_in(first["access_token"])).revoked_at is not None
    assert_invalid_token(refresh(client, second["refresh_token"]))


@pytest.mark.parametrize("ended_by", ["logout", "disabled"])
def test_the_grace_never_answers_for_an_ended_session_or_a_disabled_user(
    app, client, auth, clock, ended_by
):
    first = auth.register()
    second = pair_of(refresh(client, first["refresh_token"]))
    if ended_by == "logout":
        client.post("/api/auth/logout", json={"refresh_token": second["refresh_token"]})
    else:
        with app.app_context():
            db.session.get(User, uuid.UUID(first["user"]["id"])).is_active = False
            db.session.commit()
    clock.advance(1)

    response = refresh(client, first["refresh_token"])

    assert_invalid_token(response)
    assert "data" not in response.get_json()


# --- a made-up secret for a real session id -------------------------------------------------------


@pytest.mark.parametrize("history", ["fresh", "rotated", "within_grace"])
def test_a_made_up_secret_for_a_real_session_id_is_invalid_and_changes_nothing(
    app, client, auth, clock, history
):
    tokens = auth.register()
    for _ in range({"fresh": 0, "rotated": 3, "within_grace": 1}[history]):
        tokens = pair_of(refresh(client, tokens["refresh_token"]))
    if history == "rotated":
        clock.advance(GRACE + 1)
    session_id = session_id_in(tokens["access_token"])  # readable by anyone with the token
    before = session_row(app, session_id)

    for _ in range(3):
        forged = f"{session_id.hex}.{secrets.token_urlsafe(32)}"
        assert_invalid_token(refresh(client, forged))

    after = session_row(app, session_id)
    assert after.revoked_at is None
    assert (after.refresh_token_hash, after.rotations) == (
        before.refresh_token_hash,
        before.rotations,
    )
    assert "auth.refresh.reuse_detected" not in event_types(app)
    failures = events_of(app, "auth.refresh.failed")
    assert [(e["details"]["reason"], e["session_id"]) for e in failures] == [
        ("unknown_token", session_id)
    ] * 3
    # The user never noticed.
    assert signed_in(client, tokens["access_token"])
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_a_token_of_another_family_with_this_session_id_is_no_reuse(app, client, auth, clock):
    victim = auth.register()
    attacker = auth.register()
    session_id = session_id_in(victim["access_token"])
    genuine_elsewhere = pair_of(refresh(client, attacker["refresh_token"]))["refresh_token"]
    grafted = f"{session_id.hex}.{genuine_elsewhere.split('.')[1]}"

    assert_invalid_token(refresh(client, grafted))

    assert session_row(app, session_id).revoked_at is None
    assert refresh(client, victim["refresh_token"]).status_code == 200


def test_a_token_older_than_the_lookback_is_merely_invalid(app, client, auth, clock, monkeypatch):
    monkeypatch.setattr(sessions, "REUSE_LOOKBACK", 2)
    oldest = auth.register()
    tokens = oldest
    for _ in range(3):
        tokens = pair_of(refresh(client, tokens["refresh_token"]))
        clock.advance(GRACE + 1)

    assert_invalid_token(refresh(client, oldest["refresh_token"]))

    assert session_row(app, session_id_in(oldest["access_token"])).revoked_at is None
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_tokens_issued_under_another_secret_key_are_merely_invalid(app_factory, clock):
    """Each token is computed from the one before it with a key derived from SECRET_KEY: after
    the key changes, a replay of a token from before is not recognised, so it revokes nothing."""
    before = app_factory()
    client = before.test_client()
    email = "rekeyed@example.com"
    registered = client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    first = registered.get_json()["data"]
    second = pair_of(refresh(client, first["refresh_token"]))
    clock.advance(GRACE + 1)
    after = app_factory(SECRET_KEY="another-secret-key-that-is-long-enough-for-hs256-98765")
    client = after.test_client()

    assert_invalid_token(refresh(client, first["refresh_token"]))

    assert session_row(after, session_id_in(first["access_token"])).revoked_at is None
    assert refresh(client, second["refresh_token"]).status_code == 200


# --- the database failing -----------------------------------------------------------------------


@pytest.fixture(params=["postgresql-nothing-listening", "sqlite-missing-directory"])
def unreachable_app(request, tmp_path):
    if request.param == "postgresql-nothing-listening":
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/mita"
    else:
        url = f"sqlite:///{tmp_path}/no-such-directory/mita.db"
    app = build_app(url, create_schema=False, DB_POOL_TIMEOUT="1", DB_CONNECT_TIMEOUT="1")
    yield app
    dispose(app)


def test_a_refresh_while_the_database_is_unreachable_is_503_never_401(unreachable_app):
    token = f"{uuid.uuid4().hex}.{secrets.token_urlsafe(32)}"
    started = time.monotonic()
    response = unreachable_app.test_client().post(
        "/api/auth/refresh-token", json={"refresh_token": token}
    )
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"] == str(unreachable_app.config["RETRY_AFTER"])
    assert "WWW-Authenticate" not in response.headers
    assert time.monotonic() - started < 1 + 1  # DB_POOL_TIMEOUT + 1 s


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "seconds"), [(None, 30), ("0", 0), ("60", 60), ("300", 300)])
def test_refresh_reuse_grace_is_read_from_the_environment(raw, seconds):
    env = {} if raw is None else {"REFRESH_REUSE_GRACE": raw}
    assert from_env(env, default_database_url="sqlite://")["REFRESH_REUSE_GRACE"] == seconds


@pytest.mark.parametrize("raw", ["-1", "301", "30s", "2.5", "soon"])
def test_a_bad_refresh_reuse_grace_stops_the_app_naming_it(raw):
    with pytest.raises(ConfigError, match="REFRESH_REUSE_GRACE"):
        from_env({"REFRESH_REUSE_GRACE": raw}, default_database_url="sqlite://")
