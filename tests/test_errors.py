"""One error shape for every failure, request ids everywhere, nothing secret in the logs."""

from __future__ import annotations

import logging

import pytest
from flask import Blueprint

from tests.conftest import PASSWORD


def assert_error_shape(response, status, code):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]


def test_unknown_route_gets_404_in_the_error_shape(client):
    assert_error_shape(client.get("/api/nothing-here"), 404, "not_found")


def test_wrong_method_gets_405_with_allow(client):
    response = client.delete("/api/auth/login")
    assert_error_shape(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_unexpected_errors_get_500_with_no_detail_and_a_logged_traceback(app, caplog):
    bp = Blueprint("boom", __name__)

    @bp.get("/boom")
    def boom():
        raise RuntimeError("secret internals: SELECT * FROM users")

    app.register_blueprint(bp)
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/boom")
    assert_error_shape(response, 500, "internal_error")
    assert b"secret internals" not in response.data
    assert b"Traceback" not in response.data
    assert any("secret internals" in (r.exc_text or "") for r in caplog.records)


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [("abc-123", True), ("x" * 129, False), ("bad id; X-Evil: 1", False), ("<script>", False)],
    ids=["sane", "too-long", "spaces-and-punctuation", "markup"],
)
def test_request_id_is_echoed_only_when_sane(client, sent, echoed):
    response = client.get("/health", headers={"X-Request-ID": sent})
    request_id = response.headers["X-Request-ID"]
    assert (request_id == sent) is echoed
    assert 1 <= len(request_id) <= 128


def test_every_log_line_of_a_request_carries_its_request_id(app, client, caplog):
    from mita_app.logs import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    app.config["REFRESH_REUSE_GRACE"] = 0  # a replay at once is reuse only without the grace
    with caplog.at_level(logging.INFO):
        data = client.post(
            "/api/auth/register", json={"email": "log@example.com", "password": PASSWORD}
        ).get_json()["data"]
        client.post("/api/auth/refresh", json={"refresh_token": data["refresh_token"]})
        client.post(
            "/api/auth/refresh",
            json={"refresh_token": data["refresh_token"]},
            headers={"X-Request-ID": "trace-42"},
        )
    reuse = [r for r in caplog.records if "reuse" in r.getMessage()]
    assert reuse
    assert reuse[0].request_id == "trace-42"


def test_no_password_or_token_ever_reaches_a_log_line(app, client, auth, caplog):
    with caplog.at_level(logging.DEBUG):
        data = auth.register("secretive@example.com")
        auth.login("secretive@example.com", "a wrong password 123")
        refreshed = client.post(
            "/api/auth/refresh", json={"refresh_token": data["refresh_token"]}
        ).get_json()["data"]
        client.post("/api/auth/refresh", json={"refresh_token": data["refresh_token"]})
        client.get("/api/users/me", headers=auth.bearer(data["access_token"]))
        client.get("/api/users/me", headers={"Authorization": "Bearer garbage.token.here"})
    text = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    for secret in (
        PASSWORD,
        "a wrong password 123",
        data["access_token"],
        data["refresh_token"],
        refreshed["refresh_token"],
        "garbage.token.here",
    ):
        assert secret not in text
