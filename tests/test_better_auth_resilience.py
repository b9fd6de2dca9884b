"""AUTH_MODE=better-auth: what anonymous clients and a broken JWKS endpoint can (not) do.

Against the stand-in Better Auth server (`tests/auth_server.py`) over real HTTP on 127.0.0.1:
- a JWKS that does not exist (404, 410) means the server issues no JWTs: such tokens are 401,
  and the answer is no failure of the server;
- the key set is looked at again at most once per AUTH_JWKS_MIN_REFRESH for unknown key ids,
  whether keys are cached or not, and whatever the last look found (keys, none, a failure);
- the JWKS fetch and get-session have a breaker each: nothing an anonymous client sends, and
  nothing the JWKS does, makes a valid session a 503 while get-session is healthy;
- concurrent requests that need the keys share one fetch and its deadline.

The key set's clock is driven by hand where a window matters, so no test sleeps through one.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from mita_app.auth.better_auth import BetterAuth
from tests.auth_server import JWKS_PATH, SESSION_PATH, AuthServer, auth_server_fixture  # noqa: F401
from tests.conftest import HandClock, build_app, dispose, events_of, timed_get
from tests.races import in_threads, poll

ME = "/api/users/me"
TIMEOUT = 1.0  # AUTH_SERVER_TIMEOUT
SLACK = 0.5  # what a request may take beyond it
WINDOW = 30.0  # AUTH_JWKS_MIN_REFRESH where the window matters (on a hand-driven clock)
WAIT = 5.0  # the bound on every wait for a state or a thread
THREADS = 8


def external_env(server: AuthServer, **overrides: str) -> dict[str, str]:
    """AUTH_MODE=better-auth against the stand-in; breakers stay open for the whole test."""
    return {
        "AUTH_MODE": "better-auth",
        "AUTH_SERVER_URL": server.url,
        "AUTH_SERVER_TIMEOUT": str(TIMEOUT),
        "AUTH_SERVER_CONNECT_TIMEOUT": "0.5",
        "AUTH_BREAKER_RESET": "30",
        **overrides,
    }


def better_auth_of(app: Flask) -> BetterAuth:
    return app.extensions["mita.better_auth"]


def silence_probes(app: Flask) -> None:
    """Cancel every breaker's pending probe (and wait out a running one, which may arm the
    next), so none fires into the next test."""
    better_auth = better_auth_of(app)
    breakers = {id(b): b for b in (better_auth.breaker, better_auth.keys.client.breaker)}
    for breaker in breakers.values():
        for _ in range(10):
            timer = breaker._timer
            if timer is None or not timer.is_alive():
                break
            timer.cancel()
            timer.join(WAIT)
        else:
            raise AssertionError(f"the probe of {breaker.name} keeps re-arming")


def _apps(build: Callable[[dict[str, str]], Flask], server: AuthServer) -> Iterator[Any]:
    apps: list[Flask] = []

    def factory(**env: str) -> Flask:
        app = build(external_env(server, **env))
        apps.append(app)
        return app

    yield factory
    for app in apps:
        silence_probes(app)


@pytest.fixture
def make_app(tmp_path: Any, auth_server: AuthServer) -> Iterator[Callable[..., Flask]]:
    """Apps on one SQLite database: the database is not the point here."""
    built: list[Flask] = []

    def build(env: dict[str, str]) -> Flask:
        app = build_app(f"sqlite:///{tmp_path}/mita.db", create_schema=not built, **env)
        built.append(app)
        return app

    yield from _apps(build, auth_server)
    for app in built:
        dispose(app)


@pytest.fixture
def make_db_app(
    app_factory: Callable[..., Flask], auth_server: AuthServer
) -> Iterator[Callable[..., Flask]]:
    """Apps on SQLite and on PostgreSQL (app_factory disposes them)."""
    yield from _apps(lambda env: app_factory(**env), auth_server)


def hand_clock(app: Flask) -> HandClock:
    clock = HandClock(time.monotonic())
    better_auth_of(app).keys.clock = clock
    return clock


def client_of(app: Flask) -> FlaskClient:
    return app.test_client(use_cookies=False)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jwt_of(server: AuthServer, kid: str | None = None, user_id: str = "jwt-user") -> str:
    """A real JWT of the server's JWT plugin (a fresh jti: never answered from a cache)."""
    return server.sign(server.claims(user_id, jti=uuid.uuid4().hex), kid=kid)


def made_up_jwt(server: AuthServer, *, issued_at: int | None = None) -> str:
    """A JWT naming a key id nobody published: what an anonymous flood sends. Issued an hour
    ago unless said otherwise: before any look, which would have seen its key (one issued
    after the last look is a 503 until the next one: a key made since)."""
    claims = server.claims(
        "victim",
        jti=uuid.uuid4().hex,
        iat=int(time.time()) - 3600 if issued_at is None else issued_at,
    )
    return server.sign_with_unpublished_key(claims, kid=f"made-up-{uuid.uuid4().hex[:12]}")


def valid_session(server: AuthServer) -> str:
    """A session the server vouches for and the app has never seen (nothing cached)."""
    token = uuid.uuid4().hex
    server.add_session(token, user_id="u-valid", email="valid@example.com")
    return token


def retry_after(response: Any) -> int:
    value = response.headers.get("Retry-After")
    assert value is not None, response.headers
    assert value.isdigit(), value
    assert int(value) >= 1
    return int(value)


def assert_unavailable(response: Any) -> int:
    assert response.status_code == 503, response.get_json()
    assert response.get_json()["error"]["code"] == "auth_unavailable"
    return retry_after(response)


def assert_invalid_token(response: Any) -> None:
    """401 invalid_token in the one JSON error shape, with RFC 6750's challenge."""
    assert response.status_code == 401, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_token"
    assert isinstance(error["message"], str)
    assert error["message"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="mita"'), challenge
    assert 'error="invalid_token"' in challenge, challenge


def auth_check(client: FlaskClient) -> dict[str, Any]:
    """What /ready says of the auth server (and that /ready itself answers 200)."""
    response = client.get("/ready")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["checks"]["auth_server"]


def breaker_states(client: FlaskClient) -> tuple[dict[str, Any], dict[str, Any]]:
    """(get-session's breaker, the JWKS fetch's breaker), as /ready shows them."""
    check = auth_check(client)
    return check["breaker"], check["signing_keys"]["breaker"]


# --- a JWKS that does not exist: the server issues no JWTs ------------------------------------


@pytest.mark.parametrize("code", [404, 410])
def test_a_jwks_that_does_not_exist_makes_jwts_401_and_is_no_failure_of_the_server(
    make_app, auth_server, code
):
    app = make_app()
    client = client_of(app)
    auth_server.set_mode("status", path=JWKS_PATH, code=code)

    # More than the breaker's threshold, of every kind a client may send.
    for token in [made_up_jwt(auth_server), jwt_of(auth_server)] * 3:
        assert_invalid_token(client.get(ME, headers=bearer(token)))

    assert auth_server.calls(JWKS_PATH) == 1  # "none" is remembered too
    check = auth_check(client)
    assert check["ok"] is True
    assert check["signing_keys"]["published"] is False
    for breaker in breaker_states(client):
        assert (breaker["state"], breaker["consecutive_failures"]) == ("closed", 0)
    assert client.get("/ready").get_json()["data"]["status"] == "ok"
    assert client.get(ME, headers=bearer(valid_session(auth_server))).status_code == 200
    assert [e for e in events_of(app) if e["event_type"].startswith("auth.breaker.")] == []


def test_a_server_that_turns_its_jwt_plugin_on_is_heard_after_the_window(make_app, auth_server):
    app = make_app(AUTH_JWKS_MIN_REFRESH=str(WINDOW))
    client = client_of(app)
    clock = hand_clock(app)
    auth_server.set_mode("status", path=JWKS_PATH, code=404)
    assert_invalid_token(client.get(ME, headers=bearer(jwt_of(auth_server))))
    auth_server.reset()  # the JWT plugin is on from now

    clock.advance(WINDOW / 2)
    assert_invalid_token(client.get(ME, headers=bearer(jwt_of(auth_server))))
    assert auth_server.calls(JWKS_PATH) == 0  # (reset cleared the count) not asked yet
    clock.advance(WINDOW / 2 + 0.5)
    response = client.get(ME, headers=bearer(jwt_of(auth_server)))

    assert response.status_code == 200, response.get_json()
    assert auth_server.calls(JWKS_PATH) == 1
    assert auth_check(client)["signing_keys"]["published"] is True


# --- a JWKS that fails: 503 with Retry-After, and a failure of the JWKS only -------------------


JWKS_FAILURES = {
    "500": ("status", {"code": 500}),
    "502 html": ("status", {"code": 502, "body": b"<html>Bad Gateway</html>"}),
    "401": ("status", {"code": 401}),
    "garbage": ("garbage", {}),
    "no usable key": ("wrong_shape", {"body": {"keys": []}}),
    "hang": ("hang", {}),
}


@pytest.mark.parametrize("failure", JWKS_FAILURES)
def test_a_failing_jwks_is_503_and_counts_against_the_jwks_breaker_only(
    make_app, auth_server, failure
):
    mode, options = JWKS_FAILURES[failure]
    client = client_of(make_app())
    auth_server.set_mode(mode, path=JWKS_PATH, **options)

    response, seconds = timed_get(client, ME, headers=bearer(jwt_of(auth_server)))

    assert_unavailable(response)
    assert seconds < TIMEOUT + SLACK
    sessions, jwks = breaker_states(client)
    assert (sessions["state"], sessions["consecutive_failures"]) == ("closed", 0)
    assert (jwks["state"], jwks["consecutive_failures"]) == ("closed", 1)
    assert auth_check(client)["signing_keys"]["last_error"]
    assert client.get(ME, headers=bearer(valid_session(auth_server))).status_code == 200


# --- negative caching: at most one look per window for unknown key ids -----------------------


JWKS_STATES = {
    # name: (mode of the JWKS, its options, what a made-up kid gets)
    "keys cached": ("normal", {}, 401),
    "no jwks (404)": ("status", {"code": 404}, 401),
    "failing (500)": ("status", {"code": 500}, 503),
    "garbage": ("garbage", {}, 503),
}


@pytest.mark.parametrize("state", JWKS_STATES)
def test_a_flood_of_made_up_kids_looks_at_the_jwks_at_most_once_per_window(
    make_app, auth_server, state
):
    mode, options, status = JWKS_STATES[state]
    app = make_app(AUTH_JWKS_MIN_REFRESH=str(WINDOW))
    client = client_of(app)
    clock = hand_clock(app)
    auth_server.set_mode(mode, path=JWKS_PATH, **options)

    def flood(count: int) -> set[int]:
        statuses = set()
        for _ in range(count):
            response = client.get(ME, headers=bearer(made_up_jwt(auth_server)))
            statuses.add(response.status_code)
            if response.status_code == 503:
                assert_unavailable(response)
            else:
                assert_invalid_token(response)
        return statuses

    assert flood(30) == {status}
    assert auth_server.calls(JWKS_PATH) == 1
    clock.advance(WINDOW - 1)
    assert flood(10) == {status}
    assert auth_server.calls(JWKS_PATH) == 1
    clock.advance(1.5)  # the window is over: one more look, and a new window from it
    assert flood(10) == {status}
    assert auth_server.calls(JWKS_PATH) == 2
    assert auth_server.calls(SESSION_PATH) == 0
    assert breaker_states(client)[0]["consecutive_failures"] == 0


def test_while_a_failed_look_is_remembered_retry_after_says_when_the_next_one_is(
    make_app, auth_server
):
    app = make_app(AUTH_JWKS_MIN_REFRESH=str(WINDOW))
    client = client_of(app)
    clock = hand_clock(app)
    auth_server.set_mode("status", path=JWKS_PATH, code=503)

    first = assert_unavailable(client.get(ME, headers=bearer(jwt_of(auth_server))))
    clock.advance(10)
    later = assert_unavailable(client.get(ME, headers=bearer(jwt_of(auth_server))))

    assert first == WINDOW
    assert later in (math.ceil(WINDOW - 10), math.ceil(WINDOW - 10) + 1)  # float rounding
    assert auth_server.calls(JWKS_PATH) == 1


# --- anonymous clients cannot turn valid sessions away ---------------------------------------


ANONYMOUS: dict[str, Callable[[AuthServer], dict[str, str]]] = {
    "made-up kid": lambda s: bearer(made_up_jwt(s)),
    "forgery naming the real kid": lambda s: bearer(s.sign_with_unpublished_key(s.claims("v"))),
    "jwt-shaped garbage": lambda s: bearer("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"),
    "unknown session token": lambda s: bearer(uuid.uuid4().hex),
    "badly signed cookie": lambda s: {
        "Cookie": f"better-auth.session_token={uuid.uuid4().hex}.{'A' * 43}%3D"
    },
    "malformed credential": lambda s: bearer("not a token"),
}
JWKS_MODES = {
    "500": ("status", {"code": 500}),
    "hang": ("hang", {}),
    "garbage": ("garbage", {}),
    "404": ("status", {"code": 404}),
    "healthy": ("normal", {}),
}


@pytest.mark.parametrize("jwks_mode", JWKS_MODES)
def test_no_anonymous_requests_make_a_valid_session_get_a_503(make_db_app, auth_server, jwks_mode):
    mode, options = JWKS_MODES[jwks_mode]
    # The worst case for the breakers: every JWT with an unknown key makes a fetch. The valid
    # sessions' get-session calls get a deadline that a starved machine cannot miss, except
    # where the JWKS hangs: there each anonymous batch waits it out three times.
    timeout = TIMEOUT if jwks_mode == "hang" else 5 * TIMEOUT
    app = make_db_app(AUTH_JWKS_MIN_REFRESH="0", AUTH_SERVER_TIMEOUT=str(timeout))
    client = client_of(app)
    auth_server.set_mode(mode, path=JWKS_PATH, **options)

    for name, headers_for in ANONYMOUS.items():
        for _ in range(4):  # more in a row than the breakers' threshold
            response = client.get(ME, headers=headers_for(auth_server))
            assert response.status_code in (401, 503), (name, response.get_json())
            if response.status_code == 503:
                assert_unavailable(response)
                assert name in ("made-up kid", "forgery naming the real kid"), name
        response = client.get(ME, headers=bearer(valid_session(auth_server)))
        assert response.status_code == 200, (name, response.get_json())

    sessions, jwks = breaker_states(client)
    assert (sessions["state"], sessions["consecutive_failures"]) == ("closed", 0)
    assert jwks["state"] == ("closed" if jwks_mode in ("404", "healthy") else "open")
    cookie = f"better-auth.session_token={valid_session(auth_server)}"
    assert client.get(ME, headers={"Cookie": cookie}).status_code == 200
    if jwks["state"] == "open":
        [opened] = events_of(app, "auth.breaker.opened")
        assert opened["details"]["breaker"] == "auth-server-jwks"


def test_the_jwks_breaker_closes_by_its_own_probe_which_keeps_the_keys_it_found(
    make_app, auth_server
):
    app = make_app(AUTH_JWKS_MIN_REFRESH="0", AUTH_BREAKER_RESET="0.5")
    client = client_of(app)
    auth_server.set_mode("status", path=JWKS_PATH, code=500)
    for _ in range(3):
        assert_unavailable(client.get(ME, headers=bearer(jwt_of(auth_server))))
    assert breaker_states(client)[1]["state"] == "open"
    auth_server.reset()  # healed; and no request comes

    assert poll(lambda: breaker_states(client)[1]["state"] == "closed")
    calls = auth_server.calls(JWKS_PATH)
    assert calls >= 1  # the probe's
    response = client.get(ME, headers=bearer(jwt_of(auth_server)))

    assert response.status_code == 200, response.get_json()
    assert auth_server.calls(JWKS_PATH) == calls  # the probe's keys were kept
    assert auth_server.calls(SESSION_PATH) == 0
    assert breaker_states(client)[0]["state"] == "closed"


# --- single flight: one fetch, one deadline, however many wait --------------------------------


def test_concurrent_jwt_requests_share_one_hung_jwks_fetch_and_its_deadline(make_app, auth_server):
    def measure() -> tuple[list[tuple[int, str | None, float]], int]:
        app = make_app()  # nothing cached
        auth_server.reset()
        auth_server.set_mode("hang", path=JWKS_PATH)
        tokens = [jwt_of(auth_server) for _ in range(THREADS)]

        def ask(index: int) -> tuple[int, str | None, float]:
            response, seconds = timed_get(client_of(app), ME, headers=bearer(tokens[index]))
            if response.status_code == 503:
                assert_unavailable(response)
            return response.status_code, response.headers.get("Retry-After"), seconds

        return in_threads(THREADS, ask), auth_server.calls(JWKS_PATH)

    results, calls = measure()
    if max(seconds for *_, seconds in results) >= TIMEOUT + SLACK:
        results, calls = measure()  # once more: a busy machine may have stalled a thread

    assert [status for status, *_ in results] == [503] * THREADS, results
    assert max(seconds for *_, seconds in results) < TIMEOUT + SLACK, results
    assert calls == 1  # they shared one fetch


def test_a_known_key_verifies_at_once_while_a_look_for_a_new_one_hangs(make_app, auth_server):
    app = make_app(AUTH_JWKS_MIN_REFRESH="0", AUTH_SERVER_TIMEOUT="2")
    client = client_of(app)
    old_kid = auth_server.current_kid
    assert client.get(ME, headers=bearer(jwt_of(auth_server))).status_code == 200
    new_kid = auth_server.rotate_key()
    auth_server.set_mode("hang", path=JWKS_PATH)
    finished: dict[str, float] = {}
    answers: dict[str, Any] = {}

    def new_key_request() -> None:
        answers["new"] = client_of(app).get(ME, headers=bearer(jwt_of(auth_server, new_kid)))
        finished["new"] = time.monotonic()

    looking = threading.Thread(target=new_key_request, daemon=True)
    looking.start()
    assert auth_server.wait_for_calls(2, JWKS_PATH)  # its look is under way, and hangs
    for index in range(5):
        response = client.get(ME, headers=bearer(jwt_of(auth_server, old_kid)))
        assert response.status_code == 200, response.get_json()
        finished[f"old {index}"] = time.monotonic()
    looking.join(WAIT)

    assert not looking.is_alive()
    assert_unavailable(answers["new"])
    # Every request with the known key was answered before the look gave up.
    assert max(t for name, t in finished.items() if name != "new") < finished["new"], finished
    assert auth_server.calls(JWKS_PATH) == 2
