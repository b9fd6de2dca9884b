"""AUTH_MODE=better-auth under a real gunicorn with gthread workers: a JWKS that hangs or does
not exist, against a crowd of JWT requests.

- Hung: the requests of a worker that need the keys share its one fetch and its deadline, so
  each is a 503 within AUTH_SERVER_TIMEOUT (they used to queue behind each other's fetches).
- Missing (404): every JWT is a 401, and the flood costs each worker at most one fetch a window.
- Either way a valid session is served: the JWKS's failures are not get-session's.
"""

from __future__ import annotations

import time
import uuid

import requests

from tests.auth_server import JWKS_PATH, AuthServer, auth_server_fixture  # noqa: F401
from tests.gunicorn_server import WORKERS, Server, migrated_sqlite_database, running_gunicorn
from tests.races import in_threads

TIMEOUT = 1.0  # AUTH_SERVER_TIMEOUT
BOUND = TIMEOUT + 0.75  # what one request may take, HTTP and all
WINDOW = 2.0  # AUTH_JWKS_MIN_REFRESH
THREADS = 8  # per worker
CROWD = 12  # concurrent requests: several per worker
UNCLEAN = ("WORKER TIMEOUT", "SIGKILL", "Traceback", "exited with code")


def made_up_jwt(server: AuthServer) -> str:
    kid = f"made-up-{uuid.uuid4().hex[:12]}"
    return server.sign_with_unpublished_key(server.claims("victim", jti=uuid.uuid4().hex), kid=kid)


def me(server: Server, token: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = requests.get(
        server.url("/api/users/me"), headers={"Authorization": f"Bearer {token}"}, timeout=15
    )
    return response, time.monotonic() - started


def crowd_against_a_hung_jwks(server: Server, stand_in: AuthServer) -> list[tuple[int, str, float]]:
    tokens = [made_up_jwt(stand_in) for _ in range(CROWD)]

    def ask(index: int) -> tuple[int, str, float]:
        response, took = me(server, tokens[index])
        code = response.json()["error"]["code"] if response.status_code >= 400 else ""
        if response.status_code == 503:
            assert int(response.headers["Retry-After"]) >= 1
        return response.status_code, code, took

    return in_threads(CROWD, ask)


def test_a_crowd_of_jwts_against_a_hung_or_missing_jwks_under_gthread(
    tmp_path, auth_server: AuthServer
):
    env = {
        "AUTH_MODE": "better-auth",
        "AUTH_SERVER_URL": auth_server.url,
        "AUTH_SERVER_TIMEOUT": str(TIMEOUT),
        "AUTH_JWKS_MIN_REFRESH": str(WINDOW),
        # No breaker opens to spare the later requests: only sharing the fetch keeps them in time.
        "AUTH_BREAKER_FAILURES": "100",
        "GUNICORN_WORKER_CLASS": "gthread",
        "GUNICORN_THREADS": str(THREADS),
        "GUNICORN_TIMEOUT": "10",
        "GUNICORN_GRACEFUL_TIMEOUT": "5",
    }
    database_url = migrated_sqlite_database(tmp_path)

    def valid_session_is_served() -> None:
        token = uuid.uuid4().hex
        auth_server.add_session(token, user_id="u-valid", email="valid@example.com")
        response, _ = me(server, token)
        assert response.status_code == 200, response.text

    with running_gunicorn(database_url, tmp_path / "gunicorn.log", env=env) as server:
        # Hung: one fetch per worker, shared by its requests, each answered in time.
        auth_server.set_mode("hang", path=JWKS_PATH)
        answers = crowd_against_a_hung_jwks(server, auth_server)
        if max(took for *_, took in answers) >= BOUND:  # a busy machine: measure once more
            time.sleep(WINDOW + 0.5)  # past the window of the failed looks
            answers = crowd_against_a_hung_jwks(server, auth_server)
        assert {(status, code) for status, code, _ in answers} == {(503, "auth_unavailable")}
        assert max(took for *_, took in answers) < BOUND, answers
        assert 1 <= auth_server.calls(JWKS_PATH) <= 2 * WORKERS
        valid_session_is_served()

        # Missing: 401 for every JWT, at most one fetch per worker in the window.
        auth_server.set_mode("status", path=JWKS_PATH, code=404)
        time.sleep(WINDOW + 0.5)  # past the window of the failed looks
        auth_server.reset_calls()
        tokens = [made_up_jwt(auth_server) for _ in range(5 * THREADS)]

        def flood(index: int) -> list[int]:
            statuses = []
            for token in tokens[index::THREADS]:
                response, _ = me(server, token)
                statuses.append(response.status_code)
                if response.status_code == 401:
                    assert response.json()["error"]["code"] == "invalid_token"
                    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
            return statuses

        statuses = [status for batch in in_threads(THREADS, flood) for status in batch]
        assert statuses == [401] * len(tokens)
        assert 1 <= auth_server.calls(JWKS_PATH) <= WORKERS
        valid_session_is_served()
        ready = requests.get(server.url("/ready"), timeout=5).json()["data"]
        assert ready["checks"]["auth_server"]["breaker"]["state"] == "closed"
        assert ready["checks"]["auth_server"]["signing_keys"]["published"] is False

    log = server.log()
    for marker in UNCLEAN:
        assert marker not in log, log
