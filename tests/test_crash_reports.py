"""POST /api/errors/report: the mobile app's crash reports, sent as the app sends them.

The app (core/error_handling.dart) posts with package:http, `Authorization: Bearer null` when
signed out, and resends a report until it gets a 2xx; any other 4xx but 408/429 drops it.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select

from mita_app.crash_reports import MAX_ERROR, TOO_DEEP
from mita_app.extensions import db
from mita_app.models import CrashReport, User
from tests.conftest import TEST_SECRET, AuthActions, free_port, pg_connect
from tests.gunicorn_server import migrated_postgres_database, running_gunicorn
from tests.races import gate

URL = "/api/errors/report"
LIMIT = 64 * 1024
# What package:http puts on the wire for the app's `Content-Type: application/json` and a
# String body: it adds the charset.
WIRE_CONTENT_TYPE = "application/json; charset=utf-8"
_ids = itertools.count(int(time.time() * 1000))


def app_body(**changes: Any) -> dict[str, Any]:
    """A report exactly as `ErrorReport.toJson()` builds it (a FlutterError, signed out)."""
    return {
        "id": str(next(_ids)),
        "timestamp": "2026-11-28T21:47:03.123456",
        "error": "Null check operator used on a null value",
        "stackTrace": "#0      _DashboardState.build (package:mita/screens/dashboard.dart:88)\n"
        "#1      StatefulElement.build (package:flutter/src/widgets/framework.dart:5592)",
        "severity": "high",
        "category": "ui",
        "context": {"library": "widgets library", "context": None, "informationCollector": None},
        "appVersion": "1.0.0 (1)",
        "platform": "android",
        "deviceInfo": "Android Device",
        "isConnected": True,
        "userId": None,
        **changes,
    }


def send(
    client: FlaskClient,
    body: Any,
    token: str | None = "null",
    *,
    path: str = URL,
    content_type: str = WIRE_CONTENT_TYPE,
    **kwargs: Any,
) -> Any:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(path, data=data, headers=headers, **kwargs)


def accepted(response: Any) -> uuid.UUID:
    assert response.status_code == 202, response.get_json()
    document = response.get_json()
    assert document["success"] is True
    assert document["data"]["status"] == "received"
    return uuid.UUID(document["data"]["report_id"])


def stored(app: Flask) -> list[CrashReport]:
    with app.app_context():
        reports = db.session.scalars(select(CrashReport).order_by(CrashReport.received_at)).all()
        db.session.expunge_all()
        return list(reports)


def only_report(app: Flask) -> CrashReport:
    (report,) = stored(app)
    return report


def field_error(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    return dict(error["fields"])


# --- what the app sends ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device_info",
    ["Android Device", {"model": "Pixel 8", "os": "Android 15", "sdk": 35, "physical": True}],
)
@pytest.mark.parametrize("content_type", ["application/json", WIRE_CONTENT_TYPE])
def test_the_apps_report_gets_202_and_is_stored_as_sent(
    app: Flask, client: FlaskClient, device_info: Any, content_type: str
) -> None:
    body = app_body(deviceInfo=device_info)
    before = datetime.now(UTC)

    report_id = accepted(send(client, body, content_type=content_type))

    report = only_report(app)
    assert report.id == report_id
    assert report.client_report_id == body["id"]
    assert report.reported_at == body["timestamp"]
    assert report.error == body["error"]
    assert report.stack_trace == body["stackTrace"]
    assert (report.severity, report.category) == ("high", "ui")
    assert report.context == body["context"]
    assert (report.app_version, report.platform) == ("1.0.0 (1)", "android")
    assert report.device_info == device_info
    assert report.is_connected is True
    assert report.user_id is None
    assert report.ip == "127.0.0.1"
    assert before <= report.received_at <= datetime.now(UTC)


def test_a_resend_gets_202_with_the_same_report_id_and_is_stored_once(
    app: Flask, client: FlaskClient
) -> None:
    body = app_body()

    first = accepted(send(client, body))
    again = accepted(send(client, body))

    assert again == first
    assert [report.id for report in stored(app)] == [first]


def test_the_same_app_id_with_another_time_or_error_is_another_report(
    app: Flask, client: FlaskClient
) -> None:
    # The id is the device's clock in ms: two devices can send the same one.
    body = app_body()
    ids = {
        accepted(send(client, body)),
        accepted(send(client, {**body, "timestamp": "2026-11-28T22:47:03.123456"})),
        accepted(send(client, {**body, "error": "Bad state: No element"})),
    }

    assert len(ids) == 3
    assert len(stored(app)) == 3


def test_a_minimal_report_gets_defaults_and_unknown_keys_are_ignored(
    app: Flask, client: FlaskClient
) -> None:
    accepted(send(client, {"id": 1732823223123, "error": "boom", "breadcrumbs": [1, 2]}))

    report = only_report(app)
    assert report.client_report_id == "1732823223123"
    assert (report.severity, report.category) == ("medium", "unknown")
    assert report.context == {}
    assert report.reported_at is None
    assert report.device_info is None


def test_v1_path_is_served_too(app: Flask, client: FlaskClient) -> None:
    accepted(send(client, app_body(), path="/api/v1/errors/report"))
    accepted(send(client, app_body(), path="/api/v1/errors/report/"))

    assert len(stored(app)) == 2


# --- who sent it -------------------------------------------------------------------------------


def test_a_valid_access_token_links_the_report_to_its_user_not_the_body_user_id(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    user = auth.register()
    claimed = str(uuid.uuid4())

    accepted(send(client, app_body(userId=claimed), user["access_token"]))

    report = only_report(app)
    assert str(report.user_id) == user["user"]["id"]
    assert report.context["claimed_user_id"] == claimed


def test_a_user_id_in_the_body_alone_links_nothing(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    user = auth.register()

    accepted(send(client, app_body(userId=user["user"]["id"])))

    report = only_report(app)
    assert report.user_id is None
    assert report.context["claimed_user_id"] == user["user"]["id"]


def expired_token(access_token: str) -> str:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    past = int((datetime.now(UTC) - timedelta(minutes=5)).timestamp())
    return jwt.encode({**claims, "iat": past - 60, "exp": past}, TEST_SECRET, algorithm="HS256")


BAD_CREDENTIALS: dict[str, Callable[[FlaskClient, dict[str, Any]], dict[str, str]]] = {
    "none": lambda client, user: {},
    "bearer null": lambda client, user: {"Authorization": "Bearer null"},
    "bearer undefined": lambda client, user: {"Authorization": "Bearer undefined"},
    "bearer empty": lambda client, user: {"Authorization": "Bearer "},
    "two tokens": lambda client, user: {"Authorization": "Bearer a b"},
    "basic": lambda client, user: {"Authorization": "Basic dXNlcjpwYXNz"},
    "garbage": lambda client, user: {"Authorization": "Bearer not.a.token"},
    "forged": lambda client, user: {
        "Authorization": "Bearer " + jwt.encode({"sub": user["user"]["id"]}, "x" * 32)
    },
    "expired": lambda client, user: {
        "Authorization": "Bearer " + expired_token(user["access_token"])
    },
    "revoked": lambda client, user: revoked(client, user),
}


def revoked(client: FlaskClient, user: dict[str, Any]) -> dict[str, str]:
    headers = AuthActions.bearer(user["access_token"])
    response = client.post("/api/auth/logout", headers=headers)
    assert response.status_code in (200, 204), response.get_json()
    return headers


@pytest.mark.parametrize("credential", BAD_CREDENTIALS)
def test_a_missing_or_bad_credential_is_an_anonymous_report_never_a_401(
    app: Flask, client: FlaskClient, auth: AuthActions, credential: str
) -> None:
    user = auth.register()
    headers = {"Content-Type": WIRE_CONTENT_TYPE, **BAD_CREDENTIALS[credential](client, user)}

    response = client.post(URL, data=json.dumps(app_body()), headers=headers)

    accepted(response)
    assert only_report(app).user_id is None


def test_a_report_outlives_its_users_account_anonymised(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    user = auth.register()
    accepted(send(client, app_body(), user["access_token"]))
    assert str(only_report(app).user_id) == user["user"]["id"]

    with app.app_context():
        db.session.execute(delete(User).where(User.id == uuid.UUID(user["user"]["id"])))
        db.session.commit()

    report = only_report(app)
    assert report.user_id is None
    assert report.error == app_body()["error"]


def test_a_token_checked_just_before_its_account_was_deleted_gives_an_anonymous_report(
    app_factory: Callable[..., Flask],
) -> None:
    # The token's check stays cached for AUTH_CACHE_TTL: the user id it names may be gone.
    app = app_factory(AUTH_CACHE_TTL="60")
    client = app.test_client()
    user = AuthActions(client).register()
    first = accepted(send(client, app_body(), user["access_token"]))
    with app.app_context():
        db.session.execute(delete(User).where(User.id == uuid.UUID(user["user"]["id"])))
        db.session.commit()

    second = accepted(send(client, app_body(), user["access_token"]))

    assert {(r.id, r.user_id) for r in stored(app)} == {(first, None), (second, None)}


def test_a_report_is_stored_anonymously_while_the_auth_server_is_down(
    app_factory: Callable[..., Flask],
) -> None:
    app = app_factory(
        AUTH_MODE="better-auth",
        AUTH_SERVER_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        AUTH_JWKS_URL="off",
        AUTH_SERVER_CONNECT_TIMEOUT="0.5",
    )
    client = app.test_client()
    assert client.get("/api/auth/session", headers=AuthActions.bearer("s3ss10n")).status_code == 503

    accepted(send(client, app_body(), "an-opaque-session-token"))

    assert only_report(app).user_id is None


# --- limits ------------------------------------------------------------------------------------


def body_of_size(size: int) -> bytes:
    body = app_body(error="")
    padding = size - len(json.dumps(body).encode())
    body["error"] = "x" * padding
    data = json.dumps(body).encode()
    assert len(data) == size
    return data


def test_a_body_of_64_kb_is_accepted_and_one_byte_more_gets_413(
    app: Flask, client: FlaskClient
) -> None:
    accepted(send(client, body_of_size(LIMIT)))
    assert len(only_report(app).error) == MAX_ERROR  # cut, not refused

    response = send(client, body_of_size(LIMIT + 1))

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert len(stored(app)) == 1


def test_an_unannounced_body_over_64_kb_gets_413_when_read(app: Flask, client: FlaskClient) -> None:
    # A chunked request has no Content-Length: the limit must hold while reading.
    response = client.post(
        URL,
        input_stream=io.BytesIO(body_of_size(LIMIT + 1)),
        headers={"Content-Type": WIRE_CONTENT_TYPE, "Authorization": "Bearer null"},
        environ_overrides={"wsgi.input_terminated": True},
    )

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert stored(app) == []


def test_reports_from_one_address_are_rate_limited_with_429(
    app_factory: Callable[..., Flask],
) -> None:
    app = app_factory(RATELIMIT_ENABLED="true", RATELIMIT_ERROR_REPORTS_PER_IP="3 per minute")
    client = app.test_client()
    for _ in range(3):
        accepted(send(client, app_body(), environ_base={"REMOTE_ADDR": "10.0.0.1"}))

    response = send(client, app_body(), environ_base={"REMOTE_ADDR": "10.0.0.1"})

    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) > 0
    accepted(send(client, app_body(), environ_base={"REMOTE_ADDR": "10.0.0.2"}))
    assert len(stored(app)) == 4


# --- what is refused, and what is cleaned ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"severity": "fatal"}, "severity"),
        ({"severity": None}, "severity"),
        ({"category": "crash"}, "category"),
        ({"context": ["not", "an", "object"]}, "context"),
        ({"context": "text"}, "context"),
        ({"deviceInfo": ["Android"]}, "deviceInfo"),
        ({"deviceInfo": 5}, "deviceInfo"),
        ({"id": ""}, "id"),
        ({"id": "1" * 65}, "id"),
        ({"id": "17\x00"}, "id"),
        ({"id": None}, "id"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": "2026-11-28T21:47:03.123456" + "0" * 20}, "timestamp"),
        ({"error": None}, "error"),
        ({"stackTrace": 5}, "stackTrace"),
        ({"isConnected": "maybe"}, "isConnected"),
        ({"appVersion": 1.0}, "appVersion"),
    ],
)
def test_a_known_key_with_a_bad_value_gets_422_naming_it(
    app: Flask, client: FlaskClient, changes: dict[str, Any], field: str
) -> None:
    assert field in field_error(send(client, app_body(**changes)))
    assert stored(app) == []


@pytest.mark.parametrize("missing", ["id", "error"])
def test_a_report_without_id_or_error_gets_422(client: FlaskClient, missing: str) -> None:
    body = app_body()
    del body[missing]

    assert missing in field_error(send(client, body))


@pytest.mark.parametrize("data", [b"{", b"[1]", b'{"id": NaN, "error": "x"}'])
def test_a_body_that_is_not_a_json_object_gets_400(client: FlaskClient, data: bytes) -> None:
    assert send(client, data).status_code == 400


def test_unstorable_characters_are_replaced_not_refused(app: Flask, client: FlaskClient) -> None:
    # Both reach the server as JSON escapes; PostgreSQL refuses NUL even inside JSONB.
    body = app_body(
        error="bad\u0000byte \ud800",
        stackTrace="#0 \u0000",
        context={"key\u0000": ["\ud83d", {"deep": "\u0000"}]},
        deviceInfo={"model": "Pixel\u0000"},
        appVersion="1.0\u0000",
    )

    report_id = accepted(send(client, body))

    report = only_report(app)
    assert report.id == report_id
    assert report.error == "bad\ufffdbyte \ufffd"
    assert report.stack_trace == "#0 \ufffd"
    assert report.context == {"key\ufffd": ["\ufffd", {"deep": "\ufffd"}]}
    assert report.device_info == {"model": "Pixel\ufffd"}
    assert report.app_version == "1.0\ufffd"
    assert accepted(send(client, body)) == report_id  # and its resend is recognised


def test_long_fields_are_cut_to_their_columns(app: Flask, client: FlaskClient) -> None:
    long = app_body(appVersion="v" * 100, platform="p" * 100, deviceInfo="d" * 2000)

    accepted(send(client, long))

    report = only_report(app)
    assert (len(report.app_version or ""), len(report.platform or "")) == (64, 32)
    assert report.device_info == "d" * 1000


def test_a_deeply_nested_context_is_cut_at_its_depth_limit(app: Flask, client: FlaskClient) -> None:
    nested: Any = "leaf"
    for _ in range(200):
        nested = {"n": nested}

    accepted(send(client, app_body(context=nested)))

    context = only_report(app).context
    depth = 0
    while isinstance(context, dict):
        context, depth = context["n"], depth + 1
    assert (context, depth) == (TOO_DEEP, 16)


def test_a_new_serious_report_is_logged_once_by_id_without_its_text(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = app_body(severity="critical", error="secret-looking text 4242")
    with caplog.at_level(logging.WARNING, logger="mita_app.crash_reports"):
        report_id = accepted(send(client, body))
        accepted(send(client, body))
        accepted(send(client, app_body(severity="low")))

    lines = [r.getMessage() for r in caplog.records if r.name == "mita_app.crash_reports"]
    assert len(lines) == 1
    assert str(report_id) in lines[0]
    assert "critical" in lines[0]
    assert "4242" not in lines[0]


# --- concurrent resends, against a real server -------------------------------------------------


@pytest.fixture
def served_postgres(pg_url: str, tmp_path: Any) -> Iterator[tuple[str, str]]:
    """gunicorn (2 workers of 8 threads) on a PostgreSQL database built by `flask db upgrade`."""
    with migrated_postgres_database(pg_url) as url:
        threads = {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_THREADS": "8"}
        with running_gunicorn(url, tmp_path / "gunicorn.log", env=threads) as server:
            yield url, server.base_url


@pytest.mark.postgres
def test_concurrent_resends_of_one_report_are_one_row_with_one_id(
    served_postgres: tuple[str, str],
) -> None:
    url, base_url = served_postgres
    resends = 8
    data = json.dumps(app_body())
    headers = {"Content-Type": WIRE_CONTENT_TYPE, "Authorization": "Bearer null"}
    # Every insert waits behind this lock until all of them are waiting: then they race.
    lock = "LOCK TABLE crash_reports IN SHARE ROW EXCLUSIVE MODE"
    # The gate is left first, so a failure releases the lock before the threads are joined.
    with ThreadPoolExecutor(max_workers=resends) as pool, gate(url, lock) as open_gate:
        barrier = threading.Barrier(resends, timeout=10)

        def resend() -> requests.Response:
            barrier.wait()
            return requests.post(base_url + URL, data=data, headers=headers, timeout=20)

        futures = [pool.submit(resend) for _ in range(resends)]
        open_gate(resends)
        responses = [future.result(timeout=30) for future in futures]

    assert [r.status_code for r in responses] == [202] * resends, [r.text for r in responses]
    assert len({r.json()["data"]["report_id"] for r in responses}) == 1
    check = pg_connect(url)
    try:
        with check.cursor() as cursor:
            cursor.execute("SELECT id::text FROM crash_reports")
            rows = cursor.fetchall()
    finally:
        check.close()
    assert rows == [(responses[0].json()["data"]["report_id"],)]
