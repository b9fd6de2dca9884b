"""AUTH_MODE=better-auth end to end: the app against a stand-in Better Auth server.

The stand-in (`tests/auth_server.py`) is a real HTTP server on 127.0.0.1, so every call goes
through the app's real HTTP client: its deadline, its breaker and its caches. Each test builds its
own app (SQLite unless the database matters: provisioning and races also run on PostgreSQL) and
counts what reached the stand-in. Waits on time are bounded polls; every thread is joined with a
bound; the breaker's probe timer is cancelled before an app is disposed, so no probe of one test
fires into the next.
"""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import func, select

from mita_app.auth import accounts as users
from mita_app.auth import external as accounts
from mita_app.auth.better_auth import BetterAuth
from mita_app.extensions import db
from mita_app.models import User
from tests.auth_server import JWKS_PATH, SESSION_PATH, AuthServer, auth_server_fixture  # noqa: F401
from tests.conftest import PASSWORD, HandClock, build_app, dispose, events_of, timed_get
from tests.races import in_threads, poll

WAIT = 5.0  # the bound on every wait for another thread or for a state: far above what is needed
ME = "/api/users/me"
WHOAMI = "/api/auth/session"
TIMEOUT = 1.0  # AUTH_SERVER_TIMEOUT of the tests that make the server slow
SLACK = 0.5  # what a request may take beyond that deadline
FAST_FAIL_BOUND = 0.05  # per request while the breaker is open (the goal is well under 10 ms)
LOCAL_ONLY = ["/api/auth/register", "/api/auth/login", "/api/auth/refresh", "/api/auth/password"]


# --- building apps ---------------------------------------------------------------------------


def external_env(server: AuthServer, **overrides: str) -> dict[str, str]:
    """AUTH_MODE=better-auth against the stand-in. The breaker's pause is long unless a test
    shortens it, so that a test which opens the breaker finds it still open while it looks."""
    return {
        "AUTH_MODE": "better-auth",
        "AUTH_SERVER_URL": server.url,
        "AUTH_SERVER_TIMEOUT": str(TIMEOUT),
        "AUTH_SERVER_CONNECT_TIMEOUT": "0.5",
        "AUTH_BREAKER_RESET": "30",
        **overrides,
    }


def client_of(app: Flask) -> FlaskClient:
    """A client without a cookie jar: the Cookie header a test sends is sent as it is (a jar,
    even an empty one, replaces it)."""
    return app.test_client(use_cookies=False)


def better_auth_of(app: Flask) -> BetterAuth:
    return app.extensions["mita.better_auth"]


def silence_probe(app: Flask) -> None:
    """Cancel the breaker's pending probe (and wait out one that is running, which may arm the
    next): a probe firing after its app is gone would call a stopped server and log into the
    next test."""
    breaker = better_auth_of(app).breaker
    for _ in range(10):
        timer = breaker._timer
        if timer is None or not timer.is_alive():
            return
        timer.cancel()
        timer.join(WAIT)
    raise AssertionError("the breaker's probe keeps re-arming")


@pytest.fixture
def make_app(tmp_path: Any, auth_server: AuthServer) -> Iterator[Callable[..., Flask]]:
    """Apps on one SQLite database, for the tests where the database does not matter."""
    apps: list[Flask] = []

    def factory(**env: str) -> Flask:
        app = build_app(
            f"sqlite:///{tmp_path}/mita.db",
            create_schema=not apps,
            **external_env(auth_server, **env),
        )
        apps.append(app)
        return app

    yield factory
    for app in apps:
        silence_probe(app)
        dispose(app)


@pytest.fixture
def make_db_app(
    app_factory: Callable[..., Flask], auth_server: AuthServer
) -> Iterator[Callable[..., Flask]]:
    """Apps on SQLite and on PostgreSQL (app_factory disposes them), for provisioning."""
    apps: list[Flask] = []

    def factory(**env: str) -> Flask:
        app = app_factory(**external_env(auth_server, **env))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        silence_probe(app)


# --- small helpers ---------------------------------------------------------------------------


SECURE_COOKIE = "__Secure-better-auth.session_token"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_token() -> str:
    """An opaque session token as Better Auth makes them: 32 alphanumerics."""
    return uuid.uuid4().hex


def unsigned_cookie_value(server: AuthServer, token: str) -> str:
    """The signed form `token.signature`, not URL-encoded (as a client may send it raw)."""
    return (
        server.session_cookie_value(token)
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=")
    )


def error_code(response: Any) -> str:
    return response.get_json()["error"]["code"]


def breaker_check(client: FlaskClient) -> dict[str, Any]:
    """What /ready says of the auth server (and that /ready itself answers 200)."""
    response = client.get("/ready")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["checks"]["auth_server"]


def failures(client: FlaskClient) -> int:
    return breaker_check(client)["breaker"]["consecutive_failures"]


def retry_after(response: Any) -> int:
    """The Retry-After header, which must be a whole number of seconds, at least 1."""
    value = response.headers.get("Retry-After")
    assert value is not None, response.headers
    assert value.isdigit(), value
    assert int(value) >= 1
    return int(value)


def assert_unavailable(response: Any) -> int:
    assert response.status_code == 503, response.get_json()
    assert error_code(response) == "auth_unavailable"
    return retry_after(response)


def open_breaker(client: FlaskClient, server: AuthServer) -> float:
    """Three requests that the server answers with 500: the breaker opens (threshold 3).
    Returns a moment (time.monotonic) just before it opened: before the third was sent."""
    server.set_mode("status", code=500)
    for _ in range(2):
        assert_unavailable(client.get(ME, headers=bearer(new_token())))
    before = time.monotonic()
    assert_unavailable(client.get(ME, headers=bearer(new_token())))
    assert breaker_check(client)["breaker"]["state"] == "open"
    return before


def jwt_of(server: AuthServer, user_id: str = "jwt-user", kid: str | None = None, **claims: Any):
    """A JWT of the server's JWT plugin; a fresh `jti` so that no two are the same (and a new
    one is never answered from the cache)."""
    return server.sign(server.claims(user_id, jti=uuid.uuid4().hex, **claims), kid=kid)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), signature]
    )


def external_users(app: Flask) -> list[User]:
    with app.app_context():
        rows = list(db.session.scalars(select(User).where(User.auth_provider == "better-auth")))
        db.session.expunge_all()
        return rows


# --- a valid session token, however it is presented -----------------------------------------


PRESENTATIONS = {
    # name: (request headers for the token, the credential as it came, the cookie it came in)
    "bearer raw": (lambda s, t: bearer(t), lambda s, t: t, None),
    "bearer signed, url-encoded": (
        lambda s, t: bearer(s.session_cookie_value(t)),
        lambda s, t: s.session_cookie_value(t),
        None,
    ),
    "bearer signed, raw": (
        lambda s, t: bearer(unsigned_cookie_value(s, t)),
        lambda s, t: unsigned_cookie_value(s, t),
        None,
    ),
    "cookie": (
        lambda s, t: {"Cookie": f"{s.session_cookie(t)}; better-auth.session_data=abc.def"},
        lambda s, t: s.session_cookie_value(t),
        "better-auth.session_token",
    ),
    "secure cookie": (
        lambda s, t: {
            "Cookie": f"better-auth.session_data=abc.def; {s.session_cookie(t, secure=True)}"
        },
        lambda s, t: s.session_cookie_value(t),
        "__Secure-better-auth.session_token",
    ),
}


@pytest.mark.parametrize("presentation", PRESENTATIONS)
def test_a_valid_session_token_is_accepted_then_served_from_the_cache(
    make_app, auth_server, presentation
):
    headers_for, credential_for, _ = PRESENTATIONS[presentation]
    app = make_app()
    client = client_of(app)
    token = new_token()
    auth_server.add_session(token, user_id="u-present", email="present@example.com")
    # The client also holds Better Auth's cookie cache (the cookie presentations carry it
    # too): it must never reach the server.
    headers = {"Cookie": "better-auth.session_data=abc.def", **headers_for(auth_server, token)}

    first = client.get(ME, headers=headers)
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["data"]["email"] == "present@example.com"
    assert auth_server.calls(SESSION_PATH) == 1
    sent = auth_server.last_headers(SESSION_PATH)
    # Forwarded as a bearer header (the bearer plugin makes the server's own session cookie of
    # it, raw or signed), exactly as it came, and nothing else of the client's.
    assert sent.get_all("Authorization") == [f"Bearer {credential_for(auth_server, token)}"]
    assert sent.get("Cookie") is None

    again = client.get(ME, headers=headers)
    assert again.status_code == 200
    assert again.get_json()["data"]["id"] == first.get_json()["data"]["id"]
    assert auth_server.calls(SESSION_PATH) == 1  # from the cache


@pytest.mark.parametrize("presentation", PRESENTATIONS)
def test_with_cookie_transport_the_credential_is_forwarded_as_the_session_cookie_only(
    make_app, auth_server, presentation
):
    headers_for, credential_for, came_in = PRESENTATIONS[presentation]
    client = client_of(make_app(AUTH_SESSION_TRANSPORT="cookie"))
    token = new_token()
    auth_server.add_session(token)
    credential = credential_for(auth_server, token)

    assert client.get(ME, headers=headers_for(auth_server, token)).status_code == 200

    sent = auth_server.last_headers(SESSION_PATH)
    # Under the name it came in; from a bearer header, under both of Better Auth's names (the
    # server reads the one its baseURL gives it: `__Secure-` for https).
    names = [came_in] if came_in else [SECURE_COOKIE, "better-auth.session_token"]
    assert sent.get_all("Cookie") == ["; ".join(f"{name}={credential}" for name in names)]
    assert sent.get("Authorization") is None


def test_with_cookie_transport_a_configured_cookie_name_is_the_only_one(make_app, auth_server):
    client = client_of(make_app(AUTH_SESSION_TRANSPORT="cookie", AUTH_SESSION_COOKIE="sid"))
    token = new_token()
    auth_server.add_session(token)

    client.get(ME, headers=bearer(auth_server.session_cookie_value(token)))

    sent = auth_server.last_headers(SESSION_PATH)
    assert sent.get_all("Cookie") == [f"sid={auth_server.session_cookie_value(token)}"]


def test_a_signed_token_unknown_as_a_bearer_is_asked_for_again_as_the_session_cookie(
    make_app, auth_server
):
    # A server without the bearer plugin ignores the header (null), but reads a signed cookie.
    client = client_of(make_app())
    token = new_token()
    signed = auth_server.session_cookie_value(token)

    assert client.get(ME, headers=bearer(signed)).status_code == 401

    assert auth_server.calls(SESSION_PATH) == 2
    sent = auth_server.last_headers(SESSION_PATH)
    assert sent.get_all("Cookie") == [
        f"{SECURE_COOKIE}={signed}; better-auth.session_token={signed}"
    ]
    assert sent.get("Authorization") is None


def test_a_raw_token_unknown_as_a_bearer_is_not_asked_for_again(make_app, auth_server):
    # A raw token never works as a cookie (Better Auth reads only signed ones): one call.
    client = client_of(make_app())

    assert client.get(ME, headers=bearer(new_token())).status_code == 401

    assert auth_server.calls(SESSION_PATH) == 1


@pytest.mark.parametrize("presentation", ["bearer raw", "bearer signed, raw", "secure cookie"])
def test_with_bearer_transport_the_credential_is_forwarded_as_a_bearer_header_only(
    make_app, auth_server, presentation
):
    headers_for, credential_for, _ = PRESENTATIONS[presentation]
    client = client_of(make_app(AUTH_SESSION_TRANSPORT="bearer"))
    token = new_token()
    auth_server.add_session(token)
    credential = credential_for(auth_server, token)  # as it came, from a cookie too

    assert client.get(ME, headers=headers_for(auth_server, token)).status_code == 200

    sent = auth_server.last_headers(SESSION_PATH)
    assert sent.get_all("Authorization") == [f"Bearer {credential}"]
    assert sent.get("Cookie") is None


# --- the routing rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "a.b.c",
        "x.y.z",  # base64url "x" is not a JSON header
        "..",
        b64url(b"{not json") + ".e30.c2ln",
        b64url(b"[1]") + ".e30.c2ln",  # JSON, but not an object
        unsigned_jwt({"alg": "EdDSA", "kid": "nobody"}, {"sub": "x"}, "c2ln"),
    ],
)
def test_a_bearer_with_two_dots_is_verified_as_a_jwt_and_never_sent_to_get_session(
    make_app, auth_server, token
):
    client = client_of(make_app())

    response = client.get(ME, headers=bearer(token))

    assert response.status_code == 401, response.get_json()
    assert error_code(response) == "invalid_token"
    assert auth_server.calls(SESSION_PATH) == 0


def test_an_opaque_token_with_one_dot_goes_to_get_session(make_app, auth_server):
    client = client_of(make_app())
    token = new_token()
    auth_server.add_session(token)
    signed = unsigned_cookie_value(auth_server, token)
    assert signed.count(".") == 1

    assert client.get(ME, headers=bearer(signed)).status_code == 200
    assert auth_server.calls(SESSION_PATH) == 1
    assert auth_server.calls(JWKS_PATH) == 0


def test_a_cookie_with_two_dots_is_a_session_token_not_a_jwt(make_app, auth_server):
    # Only a *bearer* credential can be a JWT; a cookie is always a session token.
    client = client_of(make_app())
    signed_jwt = jwt_of(auth_server)

    response = client.get(ME, headers={"Cookie": f"better-auth.session_token={signed_jwt}"})

    assert response.status_code == 401  # the server knows no such session
    assert auth_server.calls(SESSION_PATH) == 2  # as a bearer, then (it has dots) as a cookie
    assert auth_server.calls(JWKS_PATH) == 0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(bearer("two words"), id="space"),
        pytest.param(bearer("abc;def"), id="semicolon"),
        pytest.param(bearer("abc,def"), id="comma"),
        pytest.param(bearer('abc"def'), id="quote"),
        pytest.param(bearer("t\u00f6ken"), id="non-ascii"),
        pytest.param(bearer("tok\u20acn\U0001f600"), id="non-latin-1"),
        pytest.param(bearer("a" * 5000), id="5kB"),
        pytest.param(bearer("a.b" + "c" * 5000), id="5kB with a dot"),
        pytest.param(bearer("a" * 2000 + "." + "b" * 2000 + "." + "c" * 1000), id="5kB jwt"),
        pytest.param({"Cookie": 'better-auth.session_token="two words"'}, id="cookie space"),
        pytest.param({"Cookie": "better-auth.session_token=t\u00f6ken"}, id="cookie non-ascii"),
        pytest.param({"Cookie": "better-auth.session_token=" + "a" * 5000}, id="cookie 5kB"),
    ],
)
def test_a_malformed_credential_is_refused_without_any_call(make_app, auth_server, headers):
    app = make_app()
    client = client_of(app)

    response = client.get(ME, headers=headers)

    assert response.status_code == 401, response.get_json()
    assert auth_server.calls() == 0
    # Nor did it count against the server: a client must not be able to open the breaker.
    assert failures(client) == 0


# --- what get-session answers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("normal", {}),  # an unknown token: 200 null, as Better Auth answers
        ("null", {}),
        ("status", {"code": 401}),
        ("status", {"code": 403}),
    ],
)
def test_a_session_the_server_calls_invalid_is_401_and_no_failure_of_the_server(
    make_app, auth_server, mode, options
):
    client = client_of(make_app())
    token = new_token()
    auth_server.add_session(token)
    auth_server.set_mode(mode, **options)

    response = client.get(ME, headers=bearer(token if mode != "normal" else new_token()))

    assert response.status_code == 401, response.get_json()
    assert error_code(response) == "invalid_token"
    assert auth_server.calls(SESSION_PATH) == 1
    assert failures(client) == 0


def test_invalid_sessions_never_open_the_breaker(make_app, auth_server):
    # Two failures, then many "no such session": one more failure must not open the breaker,
    # as it would if a bad credential counted as the server's failure.
    client = client_of(make_app())
    auth_server.set_mode("status", code=500)
    for _ in range(2):
        assert_unavailable(client.get(ME, headers=bearer(new_token())))
    auth_server.set_mode("null")
    for _ in range(5):
        assert client.get(ME, headers=bearer(new_token())).status_code == 401
    auth_server.set_mode("status", code=500)
    assert_unavailable(client.get(ME, headers=bearer(new_token())))

    assert breaker_check(client)["breaker"]["state"] == "closed"


WRONG_SHAPES = [
    [],
    "session",
    {"session": "x"},
    {"session": {"id": "s"}, "user": None},
    {"session": {"id": "s", "expiresAt": "2999-01-01T00:00:00.000Z"}, "user": {"name": "x"}},
    {"session": {"id": "", "expiresAt": "2999-01-01T00:00:00.000Z"}, "user": {"id": "u"}},
    {"session": {"id": "s", "expiresAt": "not a date"}, "user": {"id": "u"}},
    {"session": {"id": "s", "expiresAt": 12}, "user": {"id": "u"}},
    {"session": {"id": 7, "expiresAt": "2999-01-01T00:00:00.000Z"}, "user": {"id": "u"}},
    {"session": {"id": "s", "expiresAt": "2999-01-01T00:00:00.000Z"}, "user": {"id": "u" * 256}},
    # A session of another user than the one it comes with.
    {
        "session": {"id": "s", "userId": "them", "expiresAt": "2999-01-01T00:00:00.000Z"},
        "user": {"id": "u"},
    },
]
FAILURES = [
    pytest.param("status", {"code": 500}, id="500"),
    pytest.param("status", {"code": 502}, id="502"),
    pytest.param("status", {"code": 503}, id="503"),
    pytest.param("status", {"code": 429}, id="429"),
    pytest.param("status", {"code": 404}, id="404"),
    pytest.param("status", {"code": 302}, id="302"),
    pytest.param("status", {"code": 400}, id="400"),
    pytest.param("garbage", {}, id="garbage"),
    pytest.param("garbage", {"body": b""}, id="empty body"),
    pytest.param("garbage", {"body": b"[" * 100_000}, id="deeply nested"),
    pytest.param("garbage", {"body": b" " * 300_000}, id="too big"),
    *(
        pytest.param("wrong_shape", {"body": body}, id=f"wrong shape {i}")
        for i, body in enumerate(WRONG_SHAPES)
    ),
    pytest.param("refuse", {}, id="refused"),
    pytest.param("hang", {}, id="hang"),
]


@pytest.mark.parametrize(("mode", "options"), FAILURES)
def test_a_server_failing_to_answer_is_503_with_retry_after_and_counts_against_it(
    make_app, auth_server, mode, options
):
    client = client_of(make_app())
    token = new_token()
    auth_server.add_session(token)
    auth_server.set_mode(mode, **options)

    response, seconds = timed_get(client, ME, headers=bearer(token))

    assert_unavailable(response)
    assert seconds < TIMEOUT + SLACK
    assert failures(client) == 1


def test_a_session_is_never_trusted_past_its_end(make_app, auth_server):
    client = client_of(make_app())  # AUTH_SESSION_CACHE_TTL: 60 s by default
    token = new_token()
    auth_server.add_session(token, expires_at=datetime.now(UTC) + timedelta(seconds=0.5))
    assert client.get(ME, headers=bearer(token)).status_code == 200

    # The cached answer ends with the session, not 60 s later.
    assert poll(lambda: client.get(ME, headers=bearer(token)).status_code == 401)


def test_calls_work_again_after_a_deadline_cut_a_connection_or_the_server_refused_one(
    make_app, auth_server
):
    # A connection the deadline shut down, or one the server closed, must not be handed to
    # the next call from the pool: that call would fail (and count) for nothing.
    client = client_of(make_app())
    tokens = [new_token() for _ in range(5)]
    for token in tokens:
        auth_server.add_session(token)
    assert client.get(ME, headers=bearer(tokens[0])).status_code == 200  # a kept-alive conn.

    auth_server.set_mode("hang")
    assert_unavailable(client.get(ME, headers=bearer(tokens[1])))
    auth_server.reset()
    assert client.get(ME, headers=bearer(tokens[2])).status_code == 200
    auth_server.refuse()
    assert_unavailable(client.get(ME, headers=bearer(tokens[3])))
    auth_server.listen_again()
    assert client.get(ME, headers=bearer(tokens[4])).status_code == 200
    assert failures(client) == 0


def test_a_bad_token_is_asked_about_once_within_the_negative_cache_ttl(make_app, auth_server):
    client = client_of(make_app())  # AUTH_NEGATIVE_CACHE_TTL: 5 s by default
    token = new_token()

    assert client.get(ME, headers=bearer(token)).status_code == 401
    assert client.get(ME, headers=bearer(token)).status_code == 401

    assert auth_server.calls(SESSION_PATH) == 1


def test_a_bad_token_is_asked_about_again_once_its_negative_entry_expires(make_app, auth_server):
    client = client_of(make_app(AUTH_NEGATIVE_CACHE_TTL="0.2"))
    token = new_token()
    assert client.get(ME, headers=bearer(token)).status_code == 401
    # The server now knows the session (it was created a moment too late for the first call).
    auth_server.add_session(token)

    assert poll(lambda: client.get(ME, headers=bearer(token)).status_code == 200)
    assert auth_server.calls(SESSION_PATH) == 2


# --- the circuit breaker -----------------------------------------------------------------------


def test_the_breaker_opens_after_three_failures_and_then_fails_fast_without_calling(
    make_app, auth_server
):
    app = make_app()
    client = client_of(app)
    open_breaker(client, auth_server)
    calls = auth_server.calls()

    latencies = []
    for _ in range(20):
        response, seconds = timed_get(client, ME, headers=bearer(new_token()))
        assert 1 <= assert_unavailable(response) <= 30  # the seconds left of the pause
        latencies.append(seconds)

    assert auth_server.calls() == calls  # not one call while open
    # Judged by the median (a busy machine can stall any one request); none waits anywhere
    # near the auth server's timeout (3 s).
    assert statistics.median(latencies) < FAST_FAIL_BOUND, latencies
    assert max(latencies) < 1.0, latencies
    # /ready: still 200 (the database decides), degraded, with the breaker to see.
    ready = client.get("/ready").get_json()["data"]
    assert ready["status"] == "degraded"
    breaker = ready["checks"]["auth_server"]["breaker"]
    assert breaker["state"] == "open"
    assert breaker["consecutive_failures"] == 3
    assert "500" in breaker["last_error"]
    assert ready["checks"]["auth_server"]["ok"] is False
    opened = events_of(app, "auth.breaker.opened")
    assert len(opened) == 1
    assert opened[0]["details"]["previous"] == "closed"
    assert opened[0]["details"]["consecutive_failures"] == 3


def test_a_cached_credential_still_passes_while_the_breaker_is_open(make_app, auth_server):
    client = client_of(make_app())
    token = new_token()
    auth_server.add_session(token)
    assert client.get(ME, headers=bearer(token)).status_code == 200

    open_breaker(client, auth_server)
    calls = auth_server.calls()

    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert_unavailable(client.get(ME, headers=bearer(new_token())))
    assert auth_server.calls() == calls


def test_a_jwt_of_a_known_key_still_passes_while_the_breaker_is_open(make_app, auth_server):
    # Its keys are at hand: verifying it needs no call, so an open breaker does not stop it.
    client = client_of(make_app())
    assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200

    open_breaker(client, auth_server)

    assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200


def breaker_events(app: Flask) -> list[str]:
    return [
        event["event_type"]
        for event in events_of(app)
        if event["event_type"].startswith("auth.breaker.")
    ]


def test_the_breaker_closes_again_when_requests_keep_coming_and_the_server_heals(
    make_app, auth_server
):
    app = make_app(AUTH_BREAKER_RESET="0.5")
    client = client_of(app)
    token = new_token()
    auth_server.add_session(token)
    not_before = open_breaker(client, auth_server)
    auth_server.reset()  # healed

    statuses: list[int] = []

    def served() -> bool:
        response = client.get(ME, headers=bearer(token))
        statuses.append(response.status_code)
        if response.status_code == 503:
            retry_after(response)
        return response.status_code == 200

    assert poll(served, interval=0.01)
    assert time.monotonic() - not_before >= 0.5  # not before the pause is over
    assert set(statuses[:-1]) <= {503}
    assert breaker_check(client)["breaker"]["state"] == "closed"
    assert client.get("/ready").get_json()["data"]["status"] == "ok"
    assert breaker_events(app) == [
        "auth.breaker.opened",
        "auth.breaker.half_open",
        "auth.breaker.closed",
    ]


def test_the_breaker_closes_again_without_any_traffic_by_its_own_probe(make_app, auth_server):
    app = make_app(AUTH_BREAKER_RESET="0.5")
    client = client_of(app)
    open_breaker(client, auth_server)
    calls = auth_server.calls(SESSION_PATH)

    # No request at all now; the probe, at the end of the pause, finds the server still broken:
    # the breaker opens again. (/ready only looks at the breaker; it calls nobody.)
    assert auth_server.wait_for_calls(calls + 1, SESSION_PATH, timeout=WAIT)
    assert poll(lambda: breaker_check(client)["breaker"]["state"] == "open")
    auth_server.reset()  # healed

    assert poll(lambda: breaker_check(client)["breaker"]["state"] == "closed")
    probe = auth_server.last_headers(SESSION_PATH)
    assert probe is not None
    assert probe.get("Cookie") is None  # the probe carries no one's credential
    assert probe.get("Authorization") is None
    assert breaker_events(app) == [
        "auth.breaker.opened",
        "auth.breaker.half_open",
        "auth.breaker.opened",
        "auth.breaker.half_open",
        "auth.breaker.closed",
    ]
    token = new_token()
    auth_server.add_session(token)
    assert client.get(ME, headers=bearer(token)).status_code == 200


# --- a slow server: the total deadline ---------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "options"),
    [("hang", {}), ("drip", {"interval": 0.2}), ("drip_headers", {"interval": 0.2})],
)
def test_a_slow_server_gets_each_request_a_503_within_the_deadline(
    make_app, auth_server, mode, options
):
    app = make_app(AUTH_SERVER_TIMEOUT=str(TIMEOUT))
    client = client_of(app)
    tokens = [new_token() for _ in range(3)]
    for token in tokens:
        auth_server.add_session(token)  # a real session: the dripped body is long
    auth_server.set_mode(mode, **options)

    # The first requests (as many as the breaker's threshold) wait for the server, at once.
    def ask(index: int) -> tuple[int, str | None, float]:
        response, seconds = timed_get(client_of(app), ME, headers=bearer(tokens[index]))
        return response.status_code, response.headers.get("Retry-After"), seconds

    results = in_threads(3, ask)

    for status, retry, seconds in results:
        assert status == 503
        assert retry is not None
        assert int(retry) >= 1
        assert seconds < TIMEOUT + SLACK, results
    # Then the breaker is open: the next one does not wait at all.
    response, seconds = timed_get(client, ME, headers=bearer(new_token()))
    assert_unavailable(response)
    assert seconds < FAST_FAIL_BOUND


# --- JWTs of the JWT plugin ------------------------------------------------------------------


def test_a_jwt_signed_with_the_published_key_is_accepted_and_cached(make_app, auth_server):
    client = client_of(make_app())
    token = jwt_of(auth_server, "jwt-user", email="jwt@example.com")

    first = client.get(WHOAMI, headers=bearer(token))
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["data"]["session_id"] is None  # a JWT names no session
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    another = jwt_of(auth_server, "jwt-user", email="jwt@example.com")
    assert client.get(WHOAMI, headers=bearer(another)).status_code == 200

    assert auth_server.calls(JWKS_PATH) == 1  # the keys are kept
    assert auth_server.calls(SESSION_PATH) == 0
    me = client.get(ME, headers=bearer(token)).get_json()["data"]
    assert me["email"] == "jwt@example.com"


@pytest.mark.parametrize("kind", ["RS256", "ES256"])
def test_rsa_and_ec_signing_keys_are_accepted_too(make_app, auth_server, kind):
    kid = auth_server.rotate_key(kind)
    client = client_of(make_app())

    response = client.get(ME, headers=bearer(jwt_of(auth_server, kid=kid)))

    assert response.status_code == 200, response.get_json()


def test_a_key_of_an_algorithm_not_allowed_is_not_accepted(make_app, auth_server):
    eddsa_kid = auth_server.current_kid
    kid = auth_server.rotate_key("RS256")
    client = client_of(make_app(AUTH_JWT_ALGORITHMS="EdDSA"))
    edd_sa = jwt_of(auth_server, kid=eddsa_kid)

    assert client.get(ME, headers=bearer(edd_sa)).status_code == 200
    assert client.get(ME, headers=bearer(jwt_of(auth_server, kid=kid))).status_code == 401


def test_a_token_of_a_newly_rotated_key_is_accepted_after_one_jwks_refetch(make_app, auth_server):
    client = client_of(make_app(AUTH_JWKS_MIN_REFRESH="0"))
    assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200
    assert auth_server.calls(JWKS_PATH) == 1

    auth_server.rotate_key(drop_old=True)
    response = client.get(ME, headers=bearer(jwt_of(auth_server)))

    assert response.status_code == 200, response.get_json()
    assert auth_server.calls(JWKS_PATH) == 2


def test_an_unknown_key_is_refused_and_refetches_the_keys_at_most_once_per_window(
    make_app, auth_server
):
    window = 30.0  # AUTH_JWKS_MIN_REFRESH; the keys' clock is driven by hand, so no wait
    app = make_app(AUTH_JWKS_MIN_REFRESH=str(window))
    client = client_of(app)
    clock = HandClock(time.monotonic())
    better_auth_of(app).keys.clock = clock
    assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200
    assert auth_server.calls(JWKS_PATH) == 1
    # Issued an hour ago, before any look: a look would have seen their keys.
    forged_claims = auth_server.claims("victim", iat=int(time.time()) - 3600)

    def forgeries(count: int) -> None:
        """Tokens naming kids nobody published: each refused."""
        for _ in range(count):
            kid = f"made-up-{uuid.uuid4().hex[:8]}"
            forged = auth_server.sign_with_unpublished_key(forged_claims, kid=kid)
            response = client.get(ME, headers=bearer(forged))
            assert response.status_code == 401, response.get_json()

    forgeries(5)  # within the window of the first look: no refetch at all
    assert auth_server.calls(JWKS_PATH) == 1
    clock.advance(window)
    forgeries(5)  # the window has passed: one refetch, and a new window from it
    assert auth_server.calls(JWKS_PATH) == 2
    clock.advance(window / 2)
    forgeries(5)
    assert auth_server.calls(JWKS_PATH) == 2
    assert auth_server.calls(SESSION_PATH) == 0


def test_an_unknown_key_of_a_token_issued_after_the_last_look_is_503_until_the_next_one(
    make_app, auth_server
):
    # It may be a key the issuer made since (a rotation): never a 401, and no early look.
    window = 30.0
    app = make_app(AUTH_JWKS_MIN_REFRESH=str(window))
    client = client_of(app)
    keys = better_auth_of(app).keys
    clock, wall = HandClock(time.monotonic()), HandClock(time.time())
    keys.clock, keys.wall = clock, wall
    assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200
    new_kid = "made-later"
    token = auth_server.sign_with_unpublished_key(
        auth_server.claims("victim", iat=int(wall())), kid=new_kid
    )

    response = client.get(ME, headers=bearer(token))
    assert response.status_code == 503, response.get_json()
    assert 1 <= int(response.headers["Retry-After"]) <= window
    assert auth_server.calls(JWKS_PATH) == 1

    clock.advance(window)
    wall.advance(window)
    response = client.get(ME, headers=bearer(token))  # a new look, which has no such key
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"]["message"] == "The token was signed with an unknown key."
    assert auth_server.calls(JWKS_PATH) == 2


def test_a_forgery_claiming_the_real_kid_is_refused_without_a_refetch(make_app, auth_server):
    client = client_of(make_app())
    forged = auth_server.sign_with_unpublished_key(auth_server.claims("victim"))

    for _ in range(5):
        assert client.get(ME, headers=bearer(forged)).status_code == 401

    assert auth_server.calls(JWKS_PATH) == 1


def _attacker_jwk_header(server: AuthServer) -> str:
    """Signed by the attacker's own key, which the header offers as `jwk` under the real kid."""
    key = ed25519.Ed25519PrivateKey.generate()
    embedded = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return jwt.encode(
        server.claims("victim"),
        key,
        algorithm="EdDSA",
        headers={"kid": server.current_kid, "jwk": embedded, "jku": server.jwks_url},
    )


def _hours_ago(hours: int) -> int:
    return int((datetime.now(UTC) - timedelta(hours=hours)).timestamp())


FORGERIES: dict[str, Callable[[AuthServer], str]] = {
    "alg none": lambda s: unsigned_jwt(
        {"alg": "none", "typ": "JWT", "kid": s.current_kid}, s.claims("victim")
    ),
    "alg none, no kid": lambda s: unsigned_jwt({"alg": "none"}, s.claims("victim")),
    "hs256 with the pem public key": lambda s: s.sign_hs256_with_public_key(s.claims("victim")),
    "hs256 with the raw public key": lambda s: s.sign_hs256_with_public_key(
        s.claims("victim"), form="raw"
    ),
    "hs256 with the jwk x": lambda s: s.sign_hs256_with_public_key(s.claims("victim"), form="x"),
    "embedded jwk and jku": _attacker_jwk_header,
    "wrong issuer": lambda s: s.sign(s.claims("victim", iss="https://evil.example.com")),
    "wrong audience": lambda s: s.sign(s.claims("victim", aud="https://other.example.com")),
    "expired": lambda s: s.sign(s.claims("victim", exp=_hours_ago(1), iat=_hours_ago(2))),
    "not yet valid": lambda s: s.sign(s.claims("victim", nbf=int(time.time()) + 3600)),
    "no exp": lambda s: s.sign({k: v for k, v in s.claims("victim").items() if k != "exp"}),
    "no sub": lambda s: s.sign({k: v for k, v in s.claims("victim").items() if k != "sub"}),
    "no kid": lambda s: s.sign(s.claims("victim"), with_kid=False),
    "kid of no key": lambda s: s.sign(
        s.claims("victim", iat=int(time.time()) - 3600), headers={"kid": "nobody"}
    ),
    "tampered payload": lambda s: _tampered(s),
}


def _tampered(server: AuthServer) -> str:
    header, _, signature = server.sign(server.claims("victim")).split(".")
    payload = b64url(json.dumps(server.claims("admin-user")).encode())
    return f"{header}.{payload}.{signature}"


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_or_unacceptable_jwt_is_401(make_app, auth_server, forgery):
    app = make_app()
    client = client_of(app)
    token = FORGERIES[forgery](auth_server)
    assert token.count(".") == 2

    response = client.get(ME, headers=bearer(token))

    assert response.status_code == 401, response.get_json()
    assert error_code(response) == "invalid_token"
    assert auth_server.calls(SESSION_PATH) == 0
    assert external_users(app) == []  # nobody was provisioned from it


@pytest.mark.parametrize(
    ("mode", "options"),
    [("refuse", {}), ("status", {"code": 500}), ("hang", {}), ("wrong_shape", {"body": {}})],
)
def test_an_unreachable_jwks_with_no_keys_yet_is_503_not_401(make_app, auth_server, mode, options):
    client = client_of(make_app())
    auth_server.set_mode(mode, path=JWKS_PATH, **options)

    response, seconds = timed_get(client, ME, headers=bearer(jwt_of(auth_server)))

    assert_unavailable(response)
    assert seconds < TIMEOUT + SLACK


def test_known_keys_keep_verifying_while_the_jwks_is_unreachable(make_app, auth_server):
    client = client_of(make_app(AUTH_JWKS_CACHE_TTL="0.1"))
    assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200
    auth_server.set_mode("status", path=JWKS_PATH, code=503)

    # New tokens (never cached) until one has made the app look at the keys again (their TTL
    # is short): every one of them is accepted with the keys it already has.
    def refetched() -> bool:
        response = client.get(ME, headers=bearer(jwt_of(auth_server)))
        assert response.status_code == 200, response.get_json()
        return auth_server.calls(JWKS_PATH) >= 2

    assert poll(refetched)
    auth_server.refuse()
    for _ in range(3):
        assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200


def test_a_new_kid_while_the_jwks_is_unreachable_is_503_not_401(make_app, auth_server):
    # The server rotated its key and its JWKS is down: whether the token is good cannot be
    # known, which is the server's failure (503, the client retries), not the token's (401,
    # the mobile app signs its user out).
    client = client_of(make_app(AUTH_JWKS_MIN_REFRESH="0"))
    assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200
    auth_server.rotate_key()
    auth_server.set_mode("status", path=JWKS_PATH, code=503)

    response = client.get(ME, headers=bearer(jwt_of(auth_server)))

    assert auth_server.calls(JWKS_PATH) == 2  # it did try
    assert response.status_code == 503, response.get_json()


# --- many requests at once ---------------------------------------------------------------------


def test_fifty_concurrent_requests_with_one_new_token_make_at_most_two_calls(
    make_db_app, auth_server
):
    app = make_db_app()
    token = new_token()
    auth_server.add_session(token, user_id="u-crowd")
    auth_server.set_mode("delay", seconds=0.3)  # the first call is still out when all arrive
    start = threading.Barrier(50, timeout=WAIT)

    def ask(_: int) -> int:
        client = client_of(app)
        start.wait()
        return client.get(WHOAMI, headers=bearer(token)).status_code

    statuses = in_threads(50, ask, timeout=3 * WAIT)

    assert statuses == [200] * 50
    assert auth_server.calls(SESSION_PATH) <= 2
    assert len(external_users(app)) == 1


# --- just-in-time accounts ---------------------------------------------------------------------


def test_the_first_request_of_a_new_user_creates_one_external_account(make_db_app, auth_server):
    app = make_db_app()
    client = client_of(app)
    token = new_token()
    payload = auth_server.add_session(token, user_id="ba-user-1", email="First@Example.com")

    me = client.get(ME, headers=bearer(token))
    assert me.status_code == 200, me.get_json()
    whoami = client.get(WHOAMI, headers=bearer(token)).get_json()["data"]

    [user] = external_users(app)
    assert user.auth_provider == "better-auth"
    assert user.external_subject == "ba-user-1"
    assert user.password_hash is None
    assert user.email == "first@example.com"
    assert user.role == "user"
    assert user.is_active
    assert me.get_json()["data"]["id"] == str(user.id)
    # /api/auth/session: our account's id, the server's session id.
    assert whoami["user_id"] == str(user.id)
    assert whoami["session_id"] == payload["session"]["id"]
    assert datetime.fromisoformat(whoami["expires_at"]) == datetime.fromisoformat(
        payload["session"]["expiresAt"].replace("Z", "+00:00")
    )
    [provisioned] = events_of(app, "auth.provision")
    assert provisioned["user_id"] == user.id

    # The same user by another session, and by a JWT: the same account.
    other = new_token()
    auth_server.add_session(other, user_id="ba-user-1", email="first@example.com")
    assert client.get(ME, headers=bearer(other)).get_json()["data"]["id"] == str(user.id)
    by_jwt = client.get(WHOAMI, headers=bearer(jwt_of(auth_server, "ba-user-1")))
    assert by_jwt.get_json()["data"]["user_id"] == str(user.id)
    assert len(external_users(app)) == 1


def test_a_user_the_server_gives_no_email_gets_an_undeliverable_placeholder(make_app, auth_server):
    app = make_app()
    client = client_of(app)
    claims = {k: v for k, v in auth_server.claims("no-mail").items() if k != "email"}
    token = auth_server.sign(claims)

    assert client.get(ME, headers=bearer(token)).status_code == 200

    [user] = external_users(app)
    assert user.email.endswith("@better-auth.invalid")


def test_the_email_of_an_external_account_follows_the_server(make_db_app, auth_server):
    app = make_db_app(AUTH_SESSION_CACHE_TTL="0.2")
    client = client_of(app)
    token = new_token()
    auth_server.add_session(token, user_id="mover", email="old@example.com")
    assert client.get(ME, headers=bearer(token)).get_json()["data"]["email"] == "old@example.com"

    auth_server.add_session(token, user_id="mover", email="new@example.com")

    # Once the cached answer has expired, the next request sees the new email.
    assert poll(
        lambda: (
            client.get(ME, headers=bearer(token)).get_json()["data"]["email"] == "new@example.com"
        )
    )
    [user] = external_users(app)
    assert user.email == "new@example.com"
    [changed] = events_of(app, "auth.provision.email_changed")
    assert changed["details"]["previous"] == "old@example.com"


def test_two_first_requests_of_one_new_user_at_once_make_one_account(
    make_db_app, auth_server, monkeypatch
):
    app = make_db_app()
    tokens = [new_token(), new_token()]  # two sessions: no single flight between them
    for token in tokens:
        auth_server.add_session(token, user_id="racer", email="racer@example.com")
    # Both requests look the account up (and find none) before either creates it: the race,
    # every time rather than by luck.
    looked = threading.Barrier(2, timeout=WAIT)
    first_look: set[int] = set()
    real_account = accounts._account

    def racing_account(subject: str) -> User | None:
        user = real_account(subject)
        if threading.get_ident() not in first_look:
            first_look.add(threading.get_ident())
            looked.wait()
        return user

    monkeypatch.setattr(accounts, "_account", racing_account)

    def ask(index: int) -> tuple[int, Any]:
        response = client_of(app).get(ME, headers=bearer(tokens[index]))
        return response.status_code, response.get_json()

    results = in_threads(2, ask)

    assert [status for status, _ in results] == [200, 200], results
    assert results[0][1]["data"]["id"] == results[1][1]["data"]["id"]
    assert len(external_users(app)) == 1
    assert len(events_of(app, "auth.provision")) == 1


def test_a_new_user_whose_email_belongs_to_a_local_account_is_409(make_db_app, auth_server):
    app = make_db_app()
    with app.app_context():
        users.create_user("taken@example.com", PASSWORD)
        db.session.commit()
    client = client_of(app)
    token = new_token()
    auth_server.add_session(token, user_id="newcomer", email="Taken@Example.com")

    response = client.get(ME, headers=bearer(token))

    assert response.status_code == 409, response.get_json()
    assert error_code(response) == "account_conflict"
    assert external_users(app) == []
    assert failures(client) == 0  # the server answered well: not its failure
    [conflict] = events_of(app, "auth.provision.conflict")
    assert conflict["details"]["email"] == "taken@example.com"
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_a_user_disabled_by_an_operator_is_401_whatever_the_server_says(make_db_app, auth_server):
    app = make_db_app()
    client = client_of(app)
    token = new_token()
    auth_server.add_session(token, user_id="to-disable", email="disable-me@example.com")
    assert client.get(ME, headers=bearer(token)).status_code == 200

    result = app.test_cli_runner().invoke(args=["user", "disable", "disable-me@example.com"])
    assert result.exit_code == 0, result.output

    # The CLI dropped the cached answer: the server is asked again, vouches, and still 401.
    response = client.get(ME, headers=bearer(token))
    assert response.status_code == 401, response.get_json()
    assert auth_server.calls(SESSION_PATH) == 2
    by_jwt = jwt_of(auth_server, "to-disable", email="disable-me@example.com")
    assert client.get(WHOAMI, headers=bearer(by_jwt)).status_code == 401

    result = app.test_cli_runner().invoke(args=["user", "enable", "disable-me@example.com"])
    assert result.exit_code == 0, result.output
    assert client.get(ME, headers=bearer(token)).status_code == 200


def test_an_email_taken_here_does_not_follow_the_server_and_is_not_an_error(
    make_db_app, auth_server
):
    app = make_db_app(AUTH_SESSION_CACHE_TTL="0.2")
    with app.app_context():
        users.create_user("local@example.com", PASSWORD)
        db.session.commit()
    client = client_of(app)
    token = new_token()
    auth_server.add_session(token, user_id="wanderer", email="wanderer@example.com")
    assert client.get(ME, headers=bearer(token)).status_code == 200

    auth_server.add_session(token, user_id="wanderer", email="local@example.com")
    calls = auth_server.calls(SESSION_PATH)

    def asked_again() -> bool:
        response = client.get(ME, headers=bearer(token))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["data"]["email"] == "wanderer@example.com"
        return auth_server.calls(SESSION_PATH) > calls

    assert poll(asked_again)
    assert [user.email for user in external_users(app)] == ["wanderer@example.com"]


@pytest.mark.postgres
def test_an_email_too_long_for_the_column_is_not_a_500(pg_url, auth_server):
    app = build_app(pg_url, **external_env(auth_server))
    try:
        client = client_of(app)
        token = new_token()
        long_email = "x" * 250 + "@example.com"  # a valid address to Better Auth; > 254 here
        auth_server.add_session(token, user_id="long-mail", email=long_email)

        response = client.get(ME, headers=bearer(token))

        assert response.status_code != 500, response.get_json()
    finally:
        silence_probe(app)
        dispose(app)


# --- the endpoints of local accounts, logout ---------------------------------------------------


@pytest.mark.parametrize("path", [*LOCAL_ONLY, "/api/auth/logout-all"])
def test_endpoints_of_local_accounts_answer_404_managed_by_auth_server(make_app, auth_server, path):
    client = client_of(make_app())
    token = new_token()
    auth_server.add_session(token)
    body = {
        "email": "x@example.com",
        "password": PASSWORD,
        "refresh_token": "r" * 40,
        "current_password": PASSWORD,
        "new_password": "another passphrase",
    }

    for headers in ({}, bearer(token)):
        response = client.post(path, json=body, headers=headers)
        assert response.status_code == 404, response.get_json()
        assert error_code(response) == "managed_by_auth_server"
    assert auth_server.calls() == 0


def test_logout_forgets_the_credential_so_the_next_request_asks_the_server_again(
    make_app, auth_server
):
    app = make_app()
    client = client_of(app)
    token = new_token()
    auth_server.add_session(token)
    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert client.get(ME, headers=bearer(token)).status_code == 200
    assert auth_server.calls(SESSION_PATH) == 1

    assert client.post("/api/auth/logout", headers=bearer(token)).status_code == 200

    assert client.get(ME, headers=bearer(token)).status_code == 200  # the server still vouches
    assert auth_server.calls(SESSION_PATH) == 2
    # Signed out at the server too: now the answer is 401.
    auth_server.remove_session(token)
    assert client.post("/api/auth/logout", headers=bearer(token)).status_code == 200
    assert client.get(ME, headers=bearer(token)).status_code == 401


# A session id as Better Auth makes them (generateId: 32 alphanumerics), not a UUID.
BETTER_AUTH_SESSION_ID = "kT3hZpQ9wXbY7cVn2LmR4sDf6GjH8aBe"


def test_logout_is_recorded_in_the_audit_log(make_db_app, auth_server):
    app = make_db_app()
    client = client_of(app)
    token = new_token()
    payload = auth_server.add_session(token, user_id="leaver")
    payload["session"]["id"] = BETTER_AUTH_SESSION_ID
    # The stand-in's own ids are hex; serve the same session under a Better Auth style id.
    auth_server.set_mode("wrong_shape", body=payload)
    assert (
        client_of(app).get(WHOAMI, headers=bearer(token)).get_json()["data"]["session_id"]
        == BETTER_AUTH_SESSION_ID
    )

    assert client.post("/api/auth/logout", headers=bearer(token)).status_code == 200

    logouts = events_of(app, "auth.logout")
    assert len(logouts) == 1, "the auth.logout event was not written"
    [account] = external_users(app)
    assert logouts[0]["user_id"] == account.id


def test_a_401_or_403_without_a_json_body_is_a_bad_credential_not_a_server_failure(
    make_app, auth_server
):
    client = client_of(make_app())
    for code in (401, 403):
        auth_server.set_mode("status", code=code, body=b"<html>Unauthorized</html>")
        response = client.get(ME, headers=bearer(new_token()))
        assert response.status_code == 401, response.get_json()

    assert failures(client) == 0


def test_an_answer_on_one_path_is_never_taken_for_the_other(make_app, auth_server):
    client = client_of(make_app())
    token = auth_server.sign(auth_server.claims("u-route", email="route@example.com"))

    # As a cookie it is a session token: get-session knows no such session, and that is cached.
    as_cookie = client.get(ME, headers={"Cookie": f"better-auth.session_token={token}"})
    assert as_cookie.status_code == 401
    # As a bearer credential it is a JWT, checked against the keys: the cached refusal is not its.
    assert client.get(ME, headers=bearer(token)).status_code == 200
