"""AUTH_MODE=better-auth under a real gunicorn with sync workers: an auth server that hangs, or
drips its answer, costs each request at most AUTH_SERVER_TIMEOUT and never costs a worker.

A sync worker that stays in one request longer than GUNICORN_TIMEOUT is killed by the master
("WORKER TIMEOUT", then SIGKILL): without the app's total deadline on every auth-server call,
one hanging auth server would take the whole site down this way.
"""

from __future__ import annotations

import time
import uuid

import requests

from tests.auth_server import SESSION_PATH, AuthServer, auth_server_fixture  # noqa: F401
from tests.gunicorn_server import children_of, migrated_sqlite_database, running_gunicorn

AUTH_SERVER_TIMEOUT = 1.0
BOUND = AUTH_SERVER_TIMEOUT + 0.5  # what one request may take, all told
WORKER_TIMEOUT = 5  # GUNICORN_TIMEOUT: a request stuck this long gets its worker killed
UNCLEAN = ("WORKER TIMEOUT", "SIGKILL", "Traceback", "exited with code")


def test_a_hanging_auth_server_gets_503s_in_time_and_never_times_a_worker_out(
    tmp_path, auth_server: AuthServer
):
    database_url = migrated_sqlite_database(tmp_path)
    env = {
        "AUTH_MODE": "better-auth",
        "AUTH_SERVER_URL": auth_server.url,  # 127.0.0.1: reachable from the workers
        "AUTH_SERVER_TIMEOUT": str(AUTH_SERVER_TIMEOUT),
        # Every request must really wait for the server (the breaker would spare the later ones).
        "AUTH_BREAKER_FAILURES": "100",
        "GUNICORN_TIMEOUT": str(WORKER_TIMEOUT),
        "GUNICORN_GRACEFUL_TIMEOUT": "5",
        "GUNICORN_WORKER_CLASS": "sync",
        "GUNICORN_THREADS": "1",
    }
    tokens = [uuid.uuid4().hex for _ in range(6)]
    for token in tokens:
        auth_server.add_session(token)
    seconds: dict[str, list[float]] = {"hang": [], "drip_headers": []}

    with running_gunicorn(database_url, tmp_path / "gunicorn.log", env=env) as server:
        workers = children_of(server.pid)
        session = requests.Session()

        def me(token: str) -> tuple[requests.Response, float]:
            started = time.monotonic()
            # Far more than the bound, and more than the worker timeout: a request the deadline
            # did not end would show up as slow (or as the worker's death), not as our timeout.
            response = session.get(
                server.url("/api/users/me"),
                headers={"Authorization": f"Bearer {token}"},
                timeout=WORKER_TIMEOUT + 3,
            )
            return response, time.monotonic() - started

        response, _ = me(tokens[0])
        assert response.status_code == 200, response.text  # the set-up works
        for mode, batch in (("hang", tokens[1:4]), ("drip_headers", tokens[4:6])):
            auth_server.set_mode(mode, **({"interval": 0.2} if mode == "drip_headers" else {}))
            for token in batch:
                response, took = me(token)
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "auth_unavailable"
                assert int(response.headers["Retry-After"]) >= 1
                assert took < BOUND, (mode, took)
                seconds[mode].append(took)
        # Each of them reached the server (none was spared by a breaker or a cache) ...
        assert auth_server.calls(SESSION_PATH) == len(tokens)
        # ... and the same workers still serve: none was killed and replaced.
        assert children_of(server.pid) == workers

    log = server.log()
    for marker in UNCLEAN:
        assert marker not in log, log
