"""Property tests: whatever headers or body arrive, the API answers in its own terms, never a 500.

Errors always come in the one JSON shape; a rejected request never changes stored state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from decimal import Decimal
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mita_app.fields import COUNTRY_CODES
from tests.conftest import PASSWORD, TEST_SECRET, AuthActions

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
BARE_CHALLENGE = 'Bearer realm="mita"'
INVALID_TOKEN_CHALLENGE = re.compile(
    r'Bearer realm="mita", error="invalid_token", error_description="[^"\\\x00-\x1f\x7f]+"'
)

# Every character, lone surrogates included: JSON text can carry them as \ud800 escapes.
any_char = st.characters(exclude_categories=())
texts = st.one_of(
    st.text(any_char, max_size=40),
    st.text(max_size=300),
    st.sampled_from(
        [
            *["", " ", "\x00", "a\x00b", "\ud800", "NaN", "Infinity", "-1", "1e400", "12.345"],
            *["FR", "fr", "Europe/Paris", "Mars/Base", "../etc/passwd", "a@b.io", " A@B.IO "],
            PASSWORD,
        ]
    ),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),  # NaN and the infinities serialise as bare literals: invalid JSON for the API
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
passwords = st.text(any_char, max_size=140) | st.sampled_from(["x" * 7, "x" * 8, "x" * 128])
incomes = st.one_of(
    st.decimals(min_value=0, max_value=Decimal("999999999999.99"), places=2).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.floats(min_value=0, max_value=1e15),
    st.integers(min_value=-10, max_value=10**15),
)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "email": st.emails() | texts,
    "password": passwords,
    "current_password": passwords | st.just(PASSWORD),
    "new_password": passwords,
    "country": st.sampled_from(sorted(COUNTRY_CODES)).map(str.lower)
    | st.sampled_from(["FR", " de ", "XX", "FRA", ""])
    | texts,
    "annual_income": incomes,
    "income": incomes,
    "savings_goal": incomes,
    "budget_alert_threshold": incomes,
    "name": texts,
    "region": st.sampled_from(["US", "UK", "Asia", "Mars", "us", ""]) | texts,
    "budget_method": st.sampled_from(["50/30/20 Rule", "Zero-Based", "zero"]) | texts,
    "currency": st.sampled_from(["USD", "eur", "EURO", "", "12"]) | texts,
    "dark_mode": st.booleans() | json_values,
    "notifications": st.booleans() | json_values,
    "auto_sync": st.booleans() | json_values,
    "timezone": st.timezone_keys() | st.sampled_from(["Mars/Base", "europe/paris"]) | texts,
    "refresh_token": st.uuids().map(lambda u: f"{u.hex}.{'A' * 43}") | texts,
}
SCHEMAS = {
    "register": ("email", "password", "country", "annual_income", "income", "timezone"),
    "login": ("email", "password"),
    "refresh": ("refresh_token",),
    "profile": (
        *("name", "email", "income", "savings_goal", "country", "region", "timezone"),
        "currency",
        *("budget_method", "dark_mode", "notifications", "auto_sync", "budget_alert_threshold"),
    ),
    "password": ("current_password", "new_password"),
}
ENDPOINTS = {
    "register": ("POST", "/api/auth/register", {201, 400, 409, 422}),
    "login": ("POST", "/api/auth/login", {400, 401, 422}),
    "refresh": ("POST", "/api/auth/refresh", {400, 401, 422}),
    "profile": ("PATCH", "/api/users/me", {200, 400, 409, 422}),
    "password": ("POST", "/api/auth/password", {200, 400, 403, 422}),
}
# Endpoints that change the caller's account, and what a rejected request may still change there:
# a wrong current password is recorded as a failed attempt, which touches `updated_at`.
STATEFUL: dict[str, tuple[str, ...]] = {"profile": (), "password": ("updated_at",)}
PROTECTED = [
    ("GET", "/api/auth/session", None),
    ("GET", "/api/users/me", None),
    ("PATCH", "/api/users/me", {"country": "FR"}),
    ("POST", "/api/auth/logout", None),
    ("POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": "x" * 12}),
]


def shaped_bodies(endpoint: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the endpoint's own field names, odd values, and sometimes extra fields."""
    names = SCHEMAS[endpoint]
    known = st.fixed_dictionaries(
        {}, optional={name: PLAUSIBLE[name] | json_values for name in names}
    )
    extra = st.dictionaries(
        texts | st.sampled_from(["role", "is_active", "id", "password_hash", "email"]),
        json_values,
        max_size=2,
    )
    return st.builds(lambda a, b: {**b, **a}, known, st.one_of(st.just({}), extra))


def nearly_valid_bodies(endpoint: str) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies that pass validation more often than not, so the database sees odd values too."""
    names = SCHEMAS[endpoint]
    new_password = st.text(any_char, min_size=8, max_size=128)
    required = {
        "register": {"email": st.emails(), "password": new_password},
        "login": {"email": st.emails(), "password": new_password},
        "refresh": {"refresh_token": PLAUSIBLE["refresh_token"]},
        "profile": {},
        "password": {"current_password": st.just(PASSWORD), "new_password": new_password},
    }[endpoint]
    optional = {name: PLAUSIBLE[name] for name in names if name not in required}
    return st.fixed_dictionaries(required, optional=optional)


def bodies(endpoint: str) -> st.SearchStrategy[Any]:
    return st.one_of(json_values, shaped_bodies(endpoint), nearly_valid_bodies(endpoint))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def as_received(text: str) -> str:
    """What a WSGI server hands the app for a header sent as UTF-8 bytes: latin-1 text."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1")


def error_of(response: Any) -> dict[str, Any]:
    """The error of a response in the one error shape (asserting that shape)."""
    assert response.mimetype == "application/json", response.get_data()
    body = response.get_json()
    assert set(body) == {"success", "error"}
    assert body["success"] is False
    error = body["error"]
    expected_keys = {"code", "message", "request_id"} | (
        {"fields"} if response.status_code == 422 else set()
    )
    assert set(error) == expected_keys, error
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["request_id"] == response.headers["X-Request-ID"]
    if response.status_code == 422:
        assert isinstance(error["fields"], dict)
        assert error["fields"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in error["fields"].items())
    return error


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, (response.status_code, response.get_data())
    error = error_of(response)
    challenge = response.headers["WWW-Authenticate"]
    if error["code"] == "missing_credentials":
        assert challenge == BARE_CHALLENGE
    else:
        assert error["code"] == "invalid_token"
        assert INVALID_TOKEN_CHALLENGE.fullmatch(challenge), challenge


@pytest.fixture
def session_tokens(auth: AuthActions) -> dict[str, Any]:
    """A registered user's tokens and the claims of its access token."""
    tokens = auth.register()
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return {**tokens, "claims": claims}


def header_values() -> st.SearchStrategy[str]:
    base64url_text = st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60
    )
    jwt_shaped = st.lists(base64url_text, min_size=1, max_size=5).map(".".join)
    json_segments = st.builds(
        lambda header, claims, signature: ".".join(
            (b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), signature)
        ),
        json_values,
        json_values,
        st.binary(max_size=64).map(b64url),
    )
    schemes = st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "", "Bearerx"])
    separators = st.sampled_from([" ", "  ", "\t", "", ", "])
    credentials = st.one_of(st.text(any_char, max_size=80), jwt_shaped, json_segments)
    return st.one_of(
        st.text(any_char, max_size=120),
        st.tuples(schemes, separators, credentials).map("".join),
    ).map(lambda text: as_received(text).replace("\r", "").replace("\n", ""))


@FUZZ
@given(header=header_values(), target=st.sampled_from(PROTECTED))
def test_any_authorization_header_gets_401_never_500(
    client: FlaskClient, header: str, target: tuple[str, str, Any]
) -> None:
    method, path, body = target
    response = client.open(path, method=method, json=body, headers={"Authorization": header})
    assert_unauthorized(response)


@FUZZ
@given(data=st.data())
def test_tokens_signed_with_the_real_key_but_odd_claims_get_401_never_500(
    app: Flask, client: FlaskClient, session_tokens: dict[str, Any], data: st.DataObject
) -> None:
    """Past the signature check, every claim value is still treated as hostile."""
    real = session_tokens["claims"]
    times = st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70),
        st.integers(min_value=-10, max_value=10).map(lambda delta: int(time.time()) + delta),
        st.floats(),
        texts,
        st.none(),
    )
    odd_claims = {
        "sub": st.one_of(st.uuids().map(str), json_values),  # never the real user's id
        "sid": st.one_of(st.just(real["sid"]), st.uuids().map(str), json_values),
        "jti": st.one_of(st.just(real["jti"]), json_values),
        "iat": st.one_of(st.just(real["iat"]), times),
        "exp": st.one_of(st.just(real["exp"]), times),
        "nbf": times,
        "iss": st.one_of(st.just(app.config["JWT_ISSUER"]), json_values),
        "aud": st.one_of(st.just(app.config["JWT_AUDIENCE"]), json_values),
        "type": st.one_of(st.just("access"), json_values),
    }
    claims = data.draw(st.fixed_dictionaries({}, optional=odd_claims))
    header = data.draw(
        st.fixed_dictionaries(
            {"alg": st.just("HS256")},
            optional={"typ": json_values, "kid": json_values, "crit": json_values},
        )
    )
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(TEST_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    response = client.get("/api/auth/session", headers={"Authorization": f"Bearer {token}"})
    assert_unauthorized(response)


def profile(client: FlaskClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.get("/api/users/me", headers=headers)
    assert response.status_code == 200
    return response.get_json()["data"]


def check_answer(endpoint: str, response: Any, body: Any) -> None:
    _, _, allowed = ENDPOINTS[endpoint]
    event(f"status {response.status_code}")
    assert response.status_code in allowed, (response.status_code, response.get_data()[:500])
    if response.status_code < 300:
        assert response.get_json()["success"] is True
    else:
        error = error_of(response)
        if response.status_code == 422 and isinstance(body, dict):
            # Unknown keys are ignored: a 422 names only the endpoint's own fields.
            assert set(error["fields"]) <= set(SCHEMAS[endpoint]), error["fields"]


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@FUZZ
@given(data=st.data())
def test_any_json_body_gets_an_allowed_status_never_500(
    client: FlaskClient, session_tokens: dict[str, Any], endpoint: str, data: st.DataObject
) -> None:
    method, path, _ = ENDPOINTS[endpoint]
    headers = {"Authorization": f"Bearer {session_tokens['access_token']}"}
    body = data.draw(bodies(endpoint), label="body")
    before = profile(client, headers) if endpoint in STATEFUL else None
    response = client.open(
        path, method=method, data=json.dumps(body), content_type="application/json", headers=headers
    )
    check_answer(endpoint, response, body)
    if before is not None and response.status_code >= 400:
        after = profile(client, headers)
        for name in STATEFUL[endpoint]:
            after.pop(name)
            before.pop(name)
        assert after == before


raw_bodies = st.one_of(
    st.binary(max_size=512),
    st.text(any_char, max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=64).map(lambda b: b'{"email": "' + b + b'", "password": ""}'),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * (n % 3)),
)


def json_object(raw: bytes) -> dict[str, Any] | None:
    """`raw` as a JSON object, or None when the API must answer 400 (RFC 8259 JSON only)."""

    def reject(name: str) -> None:
        raise ValueError(name)

    try:
        value = json.loads(raw, parse_constant=reject)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
@FUZZ
@given(raw=raw_bodies)
def test_any_raw_bytes_body_gets_400_or_an_answer_about_its_fields(
    client: FlaskClient, session_tokens: dict[str, Any], endpoint: str, raw: bytes
) -> None:
    method, path, _ = ENDPOINTS[endpoint]
    headers = {"Authorization": f"Bearer {session_tokens['access_token']}"}
    response = client.open(
        path, method=method, data=raw, content_type="application/json", headers=headers
    )
    body = json_object(raw)
    if body is None:
        event("not a JSON object")
        assert response.status_code == 400, (raw, response.status_code, response.get_data())
        assert error_of(response)["code"] == "invalid_json"
    else:
        check_answer(endpoint, response, body)
