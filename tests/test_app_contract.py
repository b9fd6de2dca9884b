"""Rules the mobile app relies on for every route (contract §8): paths, headers, envelopes.

The routes are read from the app's own url_map, so a route added later is held to them too.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions

JSON = {"Content-Type": "application/json"}
# Not part of the API: the documents about it.
NOT_API = re.compile(r"^/(docs|openapi\.json|static)")


def api_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, concrete path) for every API route, path arguments filled with a fresh UUID."""
    routes = []
    for rule in app.url_map.iter_rules():
        if NOT_API.match(rule.rule) or not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<[^>]+>", str(uuid.uuid4()), rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


def toggled(path: str) -> str:
    return path[:-1] if path.endswith("/") else path + "/"


def versioned(path: str) -> str:
    return "/api/v1/" + path.removeprefix("/api/")


def test_there_are_routes_to_check(app: Flask) -> None:
    assert len(api_routes(app)) >= 10


def test_no_route_redirects_with_or_without_its_trailing_slash_or_under_v1(
    app: Flask, client: FlaskClient
) -> None:
    for method, path in api_routes(app):
        for variant in {path, toggled(path), versioned(path), toggled(versioned(path))}:
            response = client.open(variant, method=method, headers={**JSON, "Authorization": ""})
            assert response.status_code not in (301, 302, 307, 308), (method, variant)
            assert response.status_code != 404 or response.get_json()["error"]["code"] != (
                "not_found"
            ), (method, variant)
            assert response.status_code < 500, (method, variant, response.get_data()[:300])
            assert response.mimetype == "application/json", (method, variant)


def test_protected_routes_answer_401_with_a_challenge_for_the_app_null_token(
    app: Flask, client: FlaskClient
) -> None:
    protected = [
        (method, path)
        for method, path in api_routes(app)
        if getattr(app.view_functions[endpoint_of(app, method, path)], "auth_role", None)
    ]
    assert protected
    for method, path in protected:
        for variant in (path, versioned(path)):
            response = client.open(
                variant, method=method, headers={**JSON, "Authorization": "Bearer null"}, json={}
            )
            assert response.status_code == 401, (method, variant, response.status_code)
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="mita"')
            assert response.get_json()["success"] is False


def endpoint_of(app: Flask, method: str, path: str) -> str:
    adapter = app.url_map.bind("localhost")
    endpoint, _ = adapter.match(path, method=method)
    return str(endpoint)


def test_versioned_habits_without_a_token_is_401(client: FlaskClient) -> None:
    response = client.get("/api/v1/habits", headers=JSON)

    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "missing_credentials"


def test_unknown_api_paths_are_json_404s_under_both_prefixes(client: FlaskClient) -> None:
    for path in ("/api/nothing-here", "/api/v1/nothing-here", "/api/v1", "/api/v2/habits"):
        response = client.get(path, headers=JSON)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"


def test_a_bodiless_get_with_a_json_content_type_is_normal(
    client: FlaskClient, auth: AuthActions
) -> None:
    token = auth.register()["access_token"]

    response = client.get(
        "/api/users/me", headers={**JSON, "Authorization": f"Bearer {token}"}, data=b""
    )

    assert response.status_code == 200


def test_unknown_keys_are_logged_at_debug_with_the_request_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mita_app.validation")
    body: dict[str, Any] = {
        "email": "new@example.com",
        "password": "long enough password",
        "deviceFingerprint": "abc",
    }

    response = client.post(
        "/api/auth/register", json=body, headers={**JSON, "X-Request-ID": "req-unknown-keys"}
    )

    assert response.status_code == 201
    (record,) = [r for r in caplog.records if "deviceFingerprint" in r.getMessage()]
    assert record.levelno == logging.DEBUG
    assert getattr(record, "request_id", None) in (None, "req-unknown-keys")
    assert response.headers["X-Request-ID"] == "req-unknown-keys"


def test_success_answers_keep_the_envelope(client: FlaskClient, auth: AuthActions) -> None:
    token = auth.register()["access_token"]

    body = client.get("/api/users/me", headers={**JSON, "Authorization": f"Bearer {token}"})

    assert body.get_json()["success"] is True
    assert isinstance(body.get_json()["data"], dict)


def test_token_answers_carry_the_tokens_in_data_and_at_the_top_level(
    client: FlaskClient,
) -> None:
    response = client.post(
        "/api/auth/register",
        json={"email": "top@example.com", "password": "long enough password"},
        headers={**JSON, "Authorization": "Bearer null"},
    )

    body = response.get_json()
    for name in ("access_token", "refresh_token"):
        assert isinstance(body[name], str)
        assert body[name] == body["data"][name]
