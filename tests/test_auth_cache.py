"""The per-process cache behind login_required: few database round trips, bounded staleness.

Revocation is immediate in the process that revoked; another process (here, another app on the
same database) sees it once its cache entry is older than AUTH_CACHE_TTL.
"""

from __future__ import annotations

import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from mita_app.auth import accounts as users
from mita_app.auth import guard
from mita_app.auth.guard import EXTENSION_KEY, AuthCache, TokenCheck
from tests.conftest import AuthActions, HandClock, sql_statements

TTL = 5.0


def cache_of(app):
    return app.extensions[EXTENSION_KEY]


def with_fake_clock(app):
    clock = HandClock()
    cache_of(app).clock = clock
    return clock


def session_of(client, token):
    return client.get("/api/auth/session", headers=AuthActions.bearer(token))


def assert_accepted(client, token):
    response = session_of(client, token)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def assert_rejected(client, token):
    response = session_of(client, token)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_steady_requests_cost_one_query_per_ttl(app_factory):
    app = app_factory(AUTH_CACHE_TTL=str(TTL))
    clock = with_fake_clock(app)
    client = app.test_client()
    token = AuthActions(client).register()["access_token"]

    with sql_statements(app) as statements:
        for _ in range(20):
            assert_accepted(client, token)
    assert len(statements) == 1
    assert "auth_sessions" in statements[0][0]

    clock.advance(TTL - 0.01)
    with sql_statements(app) as statements:
        for _ in range(20):
            assert_accepted(client, token)
    assert statements == []

    clock.advance(0.02)
    with sql_statements(app) as statements:
        for _ in range(20):
            assert_accepted(client, token)
    assert len(statements) == 1


def test_cache_ttl_zero_queries_the_database_on_every_request(app_factory):
    app = app_factory(AUTH_CACHE_TTL="0")
    client = app.test_client()
    token = AuthActions(client).register()["access_token"]

    with sql_statements(app) as statements:
        for _ in range(20):
            assert_accepted(client, token)
    assert len(statements) == 20
    assert len(cache_of(app)._entries) == 0


def test_logout_rejects_the_access_token_at_once_even_with_a_warm_cache(app_factory):
    app = app_factory(AUTH_CACHE_TTL=str(TTL))
    with_fake_clock(app)
    client = app.test_client()
    token = AuthActions(client).register()["access_token"]
    assert_accepted(client, token)

    response = client.post("/api/auth/logout", headers=AuthActions.bearer(token))
    assert response.status_code == 200
    assert_rejected(client, token)


def test_a_cached_token_is_rejected_once_it_expires(app_factory, monkeypatch):
    app = app_factory(AUTH_CACHE_TTL="3600", ACCESS_TOKEN_TTL="900")
    with_fake_clock(app)
    client = app.test_client()
    token = AuthActions(client).register()["access_token"]
    assert_accepted(client, token)

    class AfterExpiry(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.now(tz) + timedelta(seconds=901)

    monkeypatch.setattr(guard, "datetime", AfterExpiry)
    with sql_statements(app) as statements:
        response = session_of(client, token)
    assert statements == []  # answered from the cache, and still refused
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "The access token has expired."


@pytest.fixture
def two_workers(app_factory):
    """Two apps on one database, standing for two worker processes, each with its own cache."""
    first = app_factory(AUTH_CACHE_TTL=str(TTL))
    second = app_factory(AUTH_CACHE_TTL=str(TTL))
    return first, with_fake_clock(first), second, with_fake_clock(second)


def test_logout_in_one_process_reaches_another_within_the_ttl(two_workers):
    a, _, b, b_clock = two_workers
    client_a, client_b = a.test_client(), b.test_client()
    token = AuthActions(client_a).register()["access_token"]
    assert_accepted(client_b, token)  # b now holds a cache entry for the session

    assert client_a.post("/api/auth/logout", headers=AuthActions.bearer(token)).status_code == 200
    assert_rejected(client_a, token)
    assert_accepted(client_b, token)
    b_clock.advance(TTL - 0.5)
    assert_accepted(client_b, token)
    b_clock.advance(0.6)
    assert_rejected(client_b, token)


def disable_with_function(app, email):
    with app.app_context():
        users.set_active(users.get_user(email), False)


def disable_with_cli(app, email):
    result = app.test_cli_runner().invoke(args=["user", "disable", email])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("disable", [disable_with_function, disable_with_cli], ids=["api", "cli"])
def test_disabling_a_user_in_one_process_reaches_another_within_the_ttl(two_workers, disable):
    a, _, b, b_clock = two_workers
    client_a, client_b = a.test_client(), b.test_client()
    data = AuthActions(client_a).register()
    token = data["access_token"]
    assert_accepted(client_a, token)
    assert_accepted(client_b, token)

    disable(a, data["user"]["email"])
    assert_rejected(client_a, token)
    assert_accepted(client_b, token)
    b_clock.advance(TTL + 0.1)
    assert_rejected(client_b, token)


def promote_with_function(app, email):
    with app.app_context():
        users.set_role(users.get_user(email), "admin")


def promote_with_cli(app, email):
    result = app.test_cli_runner().invoke(args=["user", "set-role", email, "admin"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("promote", [promote_with_function, promote_with_cli], ids=["api", "cli"])
def test_role_change_in_one_process_reaches_another_within_the_ttl(two_workers, promote):
    a, _, b, b_clock = two_workers
    client_a, client_b = a.test_client(), b.test_client()
    data = AuthActions(client_a).register()
    token = data["access_token"]
    assert assert_accepted(client_a, token)["role"] == "user"
    assert assert_accepted(client_b, token)["role"] == "user"

    promote(a, data["user"]["email"])
    assert assert_accepted(client_a, token)["role"] == "admin"
    assert assert_accepted(client_b, token)["role"] == "user"
    b_clock.advance(TTL + 0.1)
    assert assert_accepted(client_b, token)["role"] == "admin"


def test_cache_holds_at_most_auth_cache_size_sessions(app_factory):
    app = app_factory(AUTH_CACHE_TTL=str(TTL), AUTH_CACHE_SIZE="3")
    with_fake_clock(app)
    client = app.test_client()
    auth = AuthActions(client)
    tokens = [auth.register()["access_token"] for _ in range(5)]

    for _ in range(2):
        for token in tokens:
            assert_accepted(client, token)
            assert len(cache_of(app)._entries) <= 3
    assert len(cache_of(app)._entries) == 3


def check(user_id=None, session_id=None, role="user", live=True):
    soon = datetime.now(UTC) + timedelta(hours=1)
    return TokenCheck(
        user_id or uuid.uuid4(), session_id or uuid.uuid4(), role, soon, soon if live else None
    )


def token():
    return uuid.uuid4().hex


def test_cache_entry_expires_after_the_ttl():
    clock = HandClock()
    cache = AuthCache(ttl=TTL, max_size=10, clock=clock)
    key, entry = token(), check()
    cache.put(key, entry)
    clock.advance(TTL - 0.001)
    assert cache.get(key) is entry
    clock.advance(0.001)
    assert cache.get(key) is None


def test_cache_with_ttl_zero_stores_nothing():
    cache = AuthCache(ttl=0, max_size=10)
    key = token()
    cache.put(key, check())
    assert cache.get(key) is None
    assert len(cache._entries) == 0


def test_full_cache_evicts_expired_entries_before_live_ones():
    clock = HandClock()
    cache = AuthCache(ttl=TTL, max_size=3, clock=clock)
    old, live = token(), [token(), token()]
    cache.put(old, check())
    clock.advance(TTL - 1)
    for key in live:
        cache.put(key, check())
    clock.advance(1)  # `old` has expired; the others have not
    newest = token()
    cache.put(newest, check())
    assert cache.get(old) is None
    assert all(cache.get(key) is not None for key in [*live, newest])


def test_full_cache_evicts_the_oldest_live_entry():
    cache = AuthCache(ttl=TTL, max_size=3, clock=HandClock())
    keys = [token() for _ in range(4)]
    for key in keys:
        cache.put(key, check())
    assert cache.get(keys[0]) is None
    assert all(cache.get(key) is not None for key in keys[1:])


def test_cache_drops_every_token_of_one_session_or_of_every_session_of_a_user():
    cache = AuthCache(ttl=TTL, max_size=10, clock=HandClock())
    user, other = uuid.uuid4(), uuid.uuid4()
    sessions = [uuid.uuid4() for _ in range(3)]
    # Two access tokens of the first session: one from login, one from a refresh.
    mine = [(token(), sessions[0]), (token(), sessions[0])]
    mine += [(token(), session_id) for session_id in sessions[1:]]
    theirs = token()
    for key, session_id in mine:
        cache.put(key, check(user, session_id))
    cache.put(theirs, check(other))

    cache.drop_session(sessions[0])
    assert cache.get(mine[0][0]) is None
    assert cache.get(mine[1][0]) is None
    assert cache.get(mine[2][0]) is not None
    cache.drop_user(user)
    assert all(cache.get(key) is None for key, _ in mine)
    assert cache.get(theirs) is not None


def test_cache_stays_bounded_and_consistent_under_concurrent_use():
    max_size, threads, operations = 50, 8, 3000
    cache = AuthCache(ttl=TTL, max_size=max_size)
    owners = [uuid.uuid4() for _ in range(10)]
    sessions = [uuid.uuid4() for _ in range(200)]
    owner = {session_id: owners[i % len(owners)] for i, session_id in enumerate(sessions)}
    key = {session_id: session_id.hex for session_id in sessions}
    stop = threading.Event()
    sizes = []

    def watch():
        while not stop.is_set() and len(sizes) < 100_000:
            sizes.append(len(cache._entries))

    def hammer(seed):
        rng = random.Random(seed)
        for _ in range(operations):
            session_id = rng.choice(sessions)
            action = rng.random()
            if action < 0.5:
                cache.put(key[session_id], check(owner[session_id], session_id))
            elif action < 0.9:
                found = cache.get(key[session_id])
                assert found is None or found.session_id == session_id
                assert found is None or found.user_id == owner[session_id]
            elif action < 0.98:
                cache.drop_session(session_id)
            else:
                cache.drop_user(owner[session_id])
            assert len(cache._entries) <= max_size

    watcher = threading.Thread(target=watch, name="cache-size-watcher")
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(hammer, seed) for seed in range(threads)]:
                future.result(timeout=60)
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert sizes
    assert max(sizes) <= max_size
    assert 0 < len(cache._entries) <= max_size
