"""AUTH_MODE=better-auth against a real Better Auth server (better-auth 1.7.25, Node, PostgreSQL).

Users sign up and in through the server's own endpoints, and the app is given what a client
holds afterwards, in each form a client may present it. The app is built on its defaults but for
AUTH_MODE and AUTH_SERVER_URL (and, where a test says why, one setting more); its own database is
SQLite, as nothing here depends on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import jwt
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.better_auth_real import (  # noqa: F401 (the fixtures)
    BetterAuthServer,
    SignedIn,
    better_auth_https_server_fixture,
    better_auth_run_fixture,
    better_auth_server_fixture,
)
from tests.conftest import build_app, dispose
from tests.gunicorn_server import migrated_sqlite_database, running_gunicorn
from tests.races import poll
from tests.test_better_auth import (
    ME,
    assert_unavailable,
    bearer,
    breaker_check,
    client_of,
    silence_probe,
)

pytestmark = pytest.mark.better_auth

WAIT = 10.0  # the bound on every wait for a state


@pytest.fixture
def make_app(tmp_path: Any) -> Iterator[Callable[..., Flask]]:
    """Apps in better-auth mode against a given server, on one SQLite database."""
    apps: list[Flask] = []

    def factory(server: BetterAuthServer, **env: str) -> Flask:
        app = build_app(
            f"sqlite:///{tmp_path}/mita.db",
            create_schema=not apps,
            AUTH_MODE="better-auth",
            AUTH_SERVER_URL=server.url,
            **env,
        )
        apps.append(app)
        return app

    yield factory
    for app in apps:
        silence_probe(app)
        dispose(app)


def me(client: FlaskClient, headers: dict[str, str]) -> Any:
    return client.get(ME, headers=headers)


def assert_signed_in_as(response: Any, user: SignedIn) -> None:
    assert response.status_code == 200, (response.status_code, response.get_json())
    assert response.get_json()["data"]["email"] == user.email


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


# --- what a sign-in hands its client -----------------------------------------------------------


def test_what_the_real_server_hands_its_client(better_auth_server):
    # The forms the tests below present, as better-auth 1.7.25 makes them.
    user = better_auth_server.sign_up()

    assert user.cookie_name == "better-auth.session_token"
    assert user.auth_token.startswith(user.token + ".")  # the signed value, not URL-encoded
    assert unquote(user.cookie_value) == user.auth_token != user.cookie_value  # URL-encoded
    assert user.jwt.count(".") == 2
    assert kid_of(user.jwt) in {key["kid"] for key in better_auth_server.jwks()["keys"]}
    # The raw token is a session only when signed, or through the bearer plugin.
    assert better_auth_server.session(f"{user.cookie_name}={user.token}") is None
    assert better_auth_server.session(user.cookie)["user"]["id"] == user.user_id


@pytest.mark.parametrize(
    "presented",
    [
        pytest.param(lambda user: bearer(user.auth_token), id="set-auth-token as bearer"),
        pytest.param(lambda user: bearer(user.cookie_value), id="signed cookie value as bearer"),
        pytest.param(lambda user: {"Cookie": user.cookie}, id="signed cookie"),
        pytest.param(lambda user: bearer(user.jwt), id="jwt"),
    ],
)
def test_a_credential_of_the_real_server_is_accepted_and_its_user_provisioned(
    make_app, better_auth_server, presented
):
    client = client_of(make_app(better_auth_server))
    user = better_auth_server.sign_up()

    response = me(client, presented(user))

    assert_signed_in_as(response, user)
    assert_signed_in_as(me(client, presented(user)), user)  # the same account, from the cache


def test_the_raw_session_token_is_accepted_as_a_bearer_on_the_defaults(
    make_app, better_auth_server
):
    client = client_of(make_app(better_auth_server))
    user = better_auth_server.sign_up()

    assert_signed_in_as(me(client, bearer(user.token)), user)


def test_the_raw_session_token_is_accepted_with_the_bearer_transport(make_app, better_auth_server):
    client = client_of(make_app(better_auth_server, AUTH_SESSION_TRANSPORT="bearer"))
    user = better_auth_server.sign_up()

    assert_signed_in_as(me(client, bearer(user.token)), user)
    assert_signed_in_as(me(client, bearer(user.auth_token)), user)


def tampered(token: str) -> str:
    """`token` with the first character of its signature changed: that one always counts (the
    last ones may encode only padding bits, or a byte an Ed25519 signature often has at 0)."""
    signed, signature = token.rsplit(".", 1)
    return f"{signed}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def other_last(token: str) -> str:
    return token[:-1] + ("y" if token.endswith("x") else "x")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda user: bearer(other_last(user.token)), id="unknown raw token"),
        pytest.param(lambda user: bearer(user.token + ".c2lnbmF0dXJl"), id="bad signature"),
        pytest.param(
            lambda user: {"Cookie": f"{user.cookie_name}={user.token}.c2lnbmF0dXJl"},
            id="cookie with a bad signature",
        ),
        pytest.param(lambda user: bearer(tampered(user.jwt)), id="jwt with a bad signature"),
    ],
)
def test_a_bad_credential_is_401(make_app, better_auth_server, headers):
    client = client_of(make_app(better_auth_server))
    user = better_auth_server.sign_up()

    response = me(client, headers(user))

    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_a_jwt_is_verified_without_asking_for_the_session(make_app, better_auth_server):
    client = client_of(make_app(better_auth_server))
    user = better_auth_server.sign_up()
    better_auth_server.fail("/api/auth/get-session")

    assert_signed_in_as(me(client, bearer(user.jwt)), user)
    assert me(client, {"Cookie": user.cookie}).status_code == 503  # the other path did fail


# --- an https baseURL: the __Secure- cookie ---------------------------------------------------


def test_the_secure_cookie_of_an_https_server_is_accepted(make_app, better_auth_https_server):
    client = client_of(make_app(better_auth_https_server))
    user = better_auth_https_server.sign_up()
    assert user.cookie_name == "__Secure-better-auth.session_token"

    assert_signed_in_as(me(client, {"Cookie": user.cookie}), user)


def test_a_bearer_session_token_of_an_https_server_is_accepted_on_the_defaults(
    make_app, better_auth_https_server
):
    client = client_of(make_app(better_auth_https_server))
    user = better_auth_https_server.sign_up()

    assert_signed_in_as(me(client, bearer(user.auth_token)), user)


@pytest.mark.parametrize("transport", ["cookie", "bearer"])
def test_each_transport_reaches_an_https_servers_session(
    make_app, better_auth_https_server, transport
):
    # cookie: the signed value under both of Better Auth's names (it reads its `__Secure-` one);
    # bearer: the plugin makes that cookie of it.
    client = client_of(make_app(better_auth_https_server, AUTH_SESSION_TRANSPORT=transport))
    user = better_auth_https_server.sign_up()

    assert_signed_in_as(me(client, bearer(user.auth_token)), user)


def test_a_jwt_of_a_server_reached_at_another_address_needs_its_public_url(
    make_app, better_auth_https_server, caplog
):
    # iss and aud are the public baseURL, not the address mita reaches the server at.
    server = better_auth_https_server
    user = server.sign_up()
    assert jwt.decode(user.jwt, options={"verify_signature": False})["iss"] == server.public_url
    on_defaults = client_of(make_app(server))
    configured = client_of(
        make_app(server, AUTH_JWT_ISSUER=server.public_url, AUTH_JWT_AUDIENCE=server.public_url)
    )

    with caplog.at_level(logging.WARNING, logger="mita_app.auth.better_auth"):
        refused = me(on_defaults, bearer(user.jwt))
    assert refused.status_code == 401
    assert refused.get_json()["error"]["message"] == (
        "The token was issued for another address than this server expects."
    )
    told = [record.getMessage() for record in caplog.records]
    assert len(told) == 1
    assert "AUTH_JWT_ISSUER" in told[0]
    assert server.public_url in told[0]
    assert_signed_in_as(me(configured, bearer(user.jwt)), user)


# --- sign-out and expiry ------------------------------------------------------------------------


def test_a_session_that_ended_at_the_server_is_refused_here_within_the_cache_ttl(
    make_app, better_auth_server
):
    # Better Auth slides a session's end on use (get-session pushes expiresAt back once it is
    # within `expiresIn - updateAge`), so a session ends when it goes unused: here, by its row.
    ttl = 1.0
    client = client_of(make_app(better_auth_server, AUTH_SESSION_CACHE_TTL=str(ttl)))
    seen, unseen = better_auth_server.sign_up(), better_auth_server.sign_up()
    assert_signed_in_as(me(client, bearer(seen.token)), seen)

    for user in (seen, unseen):
        better_auth_server.expire_in(user, -1)

    refused = me(client, bearer(unseen.token))
    assert refused.status_code == 401, refused.get_json()
    time.sleep(ttl + 0.2)
    refused = me(client, bearer(seen.token))
    assert refused.status_code == 401, refused.get_json()
    assert refused.get_json()["error"]["code"] == "invalid_token"


def test_signing_out_at_the_server_ends_the_session_here_within_the_cache_ttl(
    make_app, better_auth_server
):
    ttl = 1.0  # AUTH_SESSION_CACHE_TTL: the bound on how long a signed-out session still passes
    client = client_of(make_app(better_auth_server, AUTH_SESSION_CACHE_TTL=str(ttl)))
    user = better_auth_server.sign_up()
    assert_signed_in_as(me(client, {"Cookie": user.cookie}), user)

    better_auth_server.sign_out(user)
    signed_out = time.monotonic()
    status = poll(lambda: me(client, {"Cookie": user.cookie}).status_code == 401, WAIT)

    assert status, "the signed-out session was still accepted"
    assert time.monotonic() - signed_out <= ttl + 1.0


# --- the server failing ------------------------------------------------------------------------


def test_a_failing_server_gets_503_never_401_and_the_breaker_closes_again_with_no_traffic(
    make_app, better_auth_server
):
    # A short breaker pause (the default is 10 s) keeps the wait for the probe short.
    client = client_of(make_app(better_auth_server, AUTH_BREAKER_RESET="1"))
    users = [better_auth_server.sign_up() for _ in range(4)]
    signed_in = users.pop()
    assert_signed_in_as(me(client, {"Cookie": signed_in.cookie}), signed_in)

    better_auth_server.fail()
    for user in users:  # sessions not seen before: each needs the server
        assert_unavailable(me(client, {"Cookie": user.cookie}))
    assert breaker_check(client)["breaker"]["state"] == "open"
    # A session already vouched for keeps passing while the server is down.
    assert_signed_in_as(me(client, {"Cookie": signed_in.cookie}), signed_in)

    better_auth_server.normal()
    closed = poll(lambda: breaker_check(client)["breaker"]["state"] == "closed", WAIT)

    assert closed, breaker_check(client)
    for user in users:
        assert_signed_in_as(me(client, {"Cookie": user.cookie}), user)


def test_a_hanging_server_gets_503_within_the_timeout(make_app, better_auth_server):
    client = client_of(make_app(better_auth_server))  # AUTH_SERVER_TIMEOUT: 3 s
    user = better_auth_server.sign_up()
    better_auth_server.hang()

    started = time.monotonic()
    response = me(client, {"Cookie": user.cookie})

    assert_unavailable(response)
    assert time.monotonic() - started < 3.0 + 1.0


# --- key rotation ------------------------------------------------------------------------------


def test_after_a_key_rotation_old_and_new_jwts_are_accepted_once_the_keys_are_refetched(
    make_app, better_auth_server
):
    # A short refetch window (the default is 30 s): what happens within it is the next test's.
    window = 0.5
    client = client_of(make_app(better_auth_server, AUTH_JWKS_MIN_REFRESH=str(window)))
    user, other = better_auth_server.sign_up(), better_auth_server.sign_up()
    assert_signed_in_as(me(client, bearer(user.jwt)), user)  # the key set is fetched now

    new_kid = better_auth_server.rotate_key()
    fresh = better_auth_server.new_jwt(user)
    assert kid_of(fresh) == new_kid != kid_of(user.jwt)
    published = {key["kid"] for key in better_auth_server.jwks()["keys"]}
    assert {new_kid, kid_of(user.jwt)} <= published  # the old key is still published
    time.sleep(window)

    assert_signed_in_as(me(client, bearer(fresh)), user)
    # A JWT of the old key, not seen here before (so not from the cache), still verifies.
    assert kid_of(other.jwt) == kid_of(user.jwt)
    assert_signed_in_as(me(client, bearer(other.jwt)), other)


def test_a_jwt_of_a_newly_rotated_key_is_never_401_on_the_defaults(make_app, better_auth_server):
    client = client_of(make_app(better_auth_server))
    user = better_auth_server.sign_up()
    assert_signed_in_as(me(client, bearer(user.jwt)), user)  # the key set is fetched now

    better_auth_server.rotate_key()
    response = me(client, bearer(better_auth_server.new_jwt(user)))

    if response.status_code == 503:  # allowed: the client retries, its user stays signed in
        assert_unavailable(response)
    else:
        assert_signed_in_as(response, user)


# --- served by gunicorn ----------------------------------------------------------------------


def test_a_gunicorn_served_mita_on_its_defaults_takes_every_credential_form(
    tmp_path, better_auth_server
):
    env = {"AUTH_MODE": "better-auth", "AUTH_SERVER_URL": better_auth_server.url}
    user = better_auth_server.sign_up()
    forms = {
        "raw token": bearer(user.token),
        "set-auth-token": bearer(user.auth_token),
        "signed cookie": {"Cookie": user.cookie},
        "jwt": bearer(user.jwt),
    }
    with (
        running_gunicorn(
            migrated_sqlite_database(tmp_path), tmp_path / "gunicorn.log", env=env
        ) as server,
        requests.Session() as http,
    ):
        answers = {
            form: http.get(server.url("/api/users/me"), headers=headers, timeout=10)
            for form, headers in forms.items()
        }
        bad = http.get(server.url("/api/users/me"), headers=bearer("nobody"), timeout=10)

    ids = {form: answer.json()["data"]["id"] for form, answer in answers.items()}
    assert all(answer.status_code == 200 for answer in answers.values()), answers
    assert len(set(ids.values())) == 1, ids  # one local account
    assert {answer.json()["data"]["email"] for answer in answers.values()} == {user.email}
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"].startswith("Bearer")
