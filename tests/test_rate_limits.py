"""Flask-Limiter limits on the auth endpoints: 429 in the one error shape, with Retry-After."""

from __future__ import annotations

import os
import uuid

import pytest

from mita_app import create_app
from mita_app.extensions import limiter
from tests.conftest import PASSWORD, dispose, env_for, free_port

NO_REDIS = "Redis tests need TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"


@pytest.fixture
def limited_client(app_factory):
    app = app_factory(
        RATELIMIT_ENABLED="true",
        RATELIMIT_LOGIN_PER_EMAIL="3 per minute",
        RATELIMIT_LOGIN_PER_IP="5 per minute",
        RATELIMIT_REGISTER_PER_IP="2 per minute",
        RATELIMIT_REFRESH_PER_IP="2 per minute",
    )
    return app.test_client()


def assert_rate_limited(response):
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited"
    assert error["request_id"] == response.headers["X-Request-ID"]


def login(client, email, ip="10.0.0.1"):
    return client.post(
        "/api/auth/login",
        json={"email": email, "password": "wrong password"},
        environ_base={"REMOTE_ADDR": ip},
    )


def test_logins_for_one_email_are_limited_from_any_address(limited_client):
    for i in range(3):
        assert login(limited_client, "a@example.com", ip=f"10.0.0.{i}").status_code == 401
    assert_rate_limited(login(limited_client, "A@example.com ", ip="10.0.0.9"))
    assert login(limited_client, "b@example.com", ip="10.0.0.9").status_code == 401


def test_logins_from_one_address_are_limited(limited_client):
    for i in range(5):
        assert login(limited_client, f"user{i}@example.com").status_code == 401
    assert_rate_limited(login(limited_client, "other@example.com"))
    assert login(limited_client, "other@example.com", ip="10.0.0.2").status_code == 401


def test_registrations_from_one_address_are_limited(limited_client):
    for i in range(2):
        response = limited_client.post(
            "/api/auth/register", json={"email": f"r{i}@example.com", "password": PASSWORD}
        )
        assert response.status_code == 201
        assert "Retry-After" not in response.headers
    assert_rate_limited(
        limited_client.post(
            "/api/auth/register", json={"email": "r9@example.com", "password": PASSWORD}
        )
    )


@pytest.mark.parametrize("last", ["/api/auth/refresh", "/api/auth/refresh-token"])
def test_refreshes_from_one_address_are_limited_across_both_paths(limited_client, last):
    for path in ("/api/auth/refresh", "/api/auth/refresh-token"):
        limited_client.post(path, json={"refresh_token": "nope"})
    assert_rate_limited(limited_client.post(last, json={"refresh_token": "nope"}))


def test_protected_endpoints_are_not_rate_limited_per_address(limited_client):
    for _ in range(20):
        assert limited_client.get("/api/auth/session").status_code == 401


@pytest.fixture
def redis_url():
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip(NO_REDIS)
    return url


@pytest.mark.redis
def test_workers_sharing_redis_share_the_per_email_limit(app_factory, redis_url):
    workers = [
        app_factory(
            RATELIMIT_ENABLED="true",
            RATELIMIT_STORAGE_URI=redis_url,
            RATELIMIT_LOGIN_PER_EMAIL="3 per minute",
        ).test_client()
        for _ in range(2)
    ]
    email = f"shared-{uuid.uuid4().hex}@example.com"  # its own counter in the shared Redis

    statuses = [login(workers[i % 2], email, ip=f"10.1.0.{i}").status_code for i in range(3)]
    assert statuses == [401, 401, 401]
    assert_rate_limited(login(workers[1], email, ip="10.1.0.9"))
    assert_rate_limited(login(workers[0], email, ip="10.1.0.9"))


def test_unreachable_limit_storage_lets_requests_through_instead_of_failing(app_factory, caplog):
    client = app_factory(
        RATELIMIT_ENABLED="true",
        RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0",
        RATELIMIT_LOGIN_PER_EMAIL="1 per minute",
    ).test_client()

    # The per-account lockout still guards the password; the limits fail open, not with a 500.
    for _ in range(3):
        assert login(client, "open@example.com").status_code == 401
    assert any("rate limit" in record.getMessage().lower() for record in caplog.records)


@pytest.mark.parametrize("setting", ["RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION"])
def test_an_app_wide_limit_still_applies_to_every_route(tmp_path, setting):
    """Flask-Limiter's per-request check of app-wide limits is skipped while none is set; once
    one is, it counts requests to routes that have no limit of their own."""
    app = create_app(
        {"TESTING": True, setting: "2 per minute"},
        env=env_for(f"sqlite:///{tmp_path}/mita.db", RATELIMIT_ENABLED="true"),
    )
    try:
        client = app.test_client()
        assert [client.get("/health").status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(client.get("/health"))
    finally:
        # The limiter is one object for every app of the process: forget this app's limits.
        limiter.limit_manager.set_default_limits([])
        limiter.limit_manager.set_application_limits([])
        dispose(app)


def test_without_app_wide_limits_a_route_without_a_limit_is_not_counted(limited_client):
    for _ in range(50):
        response = limited_client.get("/health")
        assert response.status_code == 200
        assert "X-RateLimit-Limit" not in response.headers
