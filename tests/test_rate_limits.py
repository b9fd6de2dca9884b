"""Flask-Limiter limits on the auth endpoints: 429 in the one error shape, with Retry-After."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD


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


def test_refreshes_from_one_address_are_limited(limited_client):
    for _ in range(2):
        limited_client.post("/api/auth/refresh", json={"refresh_token": "nope"})
    assert_rate_limited(limited_client.post("/api/auth/refresh", json={"refresh_token": "nope"}))


def test_protected_endpoints_are_not_rate_limited_per_address(limited_client):
    for _ in range(20):
        assert limited_client.get("/api/auth/session").status_code == 401
