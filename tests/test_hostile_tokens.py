"""Hostile Authorization headers on every protected endpoint.

Whatever arrives in the header, the answer is a 401 in the one JSON error shape with an
RFC 6750 challenge: a bare `Bearer realm="mita"` when no bearer credentials were sent,
`error="invalid_token"` otherwise. Never a 422, never a 500, and never a change of state.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from mita_app.auth.accounts import get_user, set_active
from mita_app.extensions import db
from mita_app.models import AuthSession, User, utcnow
from tests.conftest import PASSWORD, TEST_SECRET, AuthActions

NEW_PASSWORD = "a brand new passphrase"
PROTECTED: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/auth/session", None),
    ("GET", "/api/users/me", None),
    ("PATCH", "/api/users/me", {"country": "FR", "timezone": "Europe/Paris"}),
    ("POST", "/api/auth/logout", None),
    ("POST", "/api/auth/logout-all", None),
    ("POST", "/api/auth/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
]
BARE_CHALLENGE = 'Bearer realm="mita"'
INVALID_TOKEN_CHALLENGE = re.compile(
    r'Bearer realm="mita", error="invalid_token", error_description="([^"\\\x00-\x1f\x7f]+)"'
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(part: dict[str, Any] | list[Any] | bytes) -> str:
    return b64url(part if isinstance(part, bytes) else json.dumps(part).encode())


def hmac_jwt(
    header: dict[str, Any] | list[Any] | bytes,
    claims: dict[str, Any] | list[Any] | bytes,
    key: bytes = TEST_SECRET.encode(),
    digest: Callable[..., Any] = hashlib.sha256,
) -> str:
    """A JWT signed by hand, for headers and claims PyJWT would refuse to produce."""
    signing_input = f"{segment(header)}.{segment(claims)}"
    signature = hmac.new(key, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


# Any RSA public key will do: the server trusts none, and must not treat one as an HMAC secret.
RSA_PUBLIC_PEM = b"""-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAkRLFiTkUUqg6z8DlvwEV
B6lO+jSy8EEchJSpt0w8cWfaGHt0c8fuFoXUslAmn/AyLsPGSQy888BBz7YQy5AD
c+85gTkbauolPmHwBZpeAJhqkVnq/BLAsnXz287rB+iiVO9SBHsRe1A/aDvN8V/V
IYnWnIGTvBv1kboyWm6E7qAjKR1PaXDt3/S0CpPe4H1amROHqMQAcVsbN/R0W/gB
Fc4BtTzWrFk3RydViXO7TE3iJl3i3Qluhsob6ym6hPw7TGDRotG0bnwKIO0DbrtQ
Na34Yf2mWz77oKXwMbr8K4Te0sC457G+sVwEe4PsySbjtuMM5OYi32dUImKtWo38
GwIDAQAB
-----END PUBLIC KEY-----
"""


def rs256_shaped(claims: dict[str, Any]) -> str:
    """An RS256 token with a signature of the right size; only HS256 may ever be accepted."""
    header = segment({"alg": "RS256", "typ": "JWT"})
    return f"{header}.{segment(claims)}.{b64url(os.urandom(256))}"


@dataclass
class Victim:
    """A registered user with a live session, and the means to forge tokens naming it."""

    app: Flask
    client: FlaskClient
    auth: AuthActions
    email: str
    user_id: str
    session_id: str
    access_token: str
    refresh_token: str

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": self.user_id,
            "sid": self.session_id,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + 600,
            "iss": self.app.config["JWT_ISSUER"],
            "aud": self.app.config["JWT_AUDIENCE"],
            "type": "access",
        }
        claims.update(overrides)
        return claims

    def forge(
        self,
        *,
        key: Any = TEST_SECRET,
        algorithm: str = "HS256",
        headers: dict[str, Any] | None = None,
        without: tuple[str, ...] = (),
        **overrides: Any,
    ) -> str:
        claims = self.claims(**overrides)
        for name in without:
            del claims[name]
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)

    def forge_raw(
        self,
        header: dict[str, Any] | list[Any] | bytes | None = None,
        claims: dict[str, Any] | list[Any] | bytes | None = None,
        **overrides: Any,
    ) -> str:
        return hmac_jwt(
            {"alg": "HS256", "typ": "JWT"} if header is None else header,
            self.claims(**overrides) if claims is None else claims,
        )

    def other_user_id(self) -> str:
        other = self.auth.register()
        return jwt.decode(other["access_token"], options={"verify_signature": False})["sub"]

    def update_rows(self, model: type[User] | type[AuthSession], **values: Any) -> None:
        key = model.id == uuid.UUID(self.user_id if model is User else self.session_id)
        with self.app.app_context():
            db.session.execute(update(model).where(key).values(**values))
            db.session.commit()


def bearer(token: str) -> str:
    return f"Bearer {token}"


def tamper_payload(victim: Victim) -> str:
    header, _, signature = victim.access_token.split(".")
    forged_claims = segment(victim.claims(sub=victim.other_user_id()))
    return f"{header}.{forged_claims}.{signature}"


def revoked_by_logout(victim: Victim) -> str:
    response = victim.client.post(
        "/api/auth/logout", headers=victim.auth.bearer(victim.access_token)
    )
    assert response.status_code == 200
    return victim.access_token


def disabled_user(victim: Victim) -> str:
    victim.update_rows(User, is_active=False)
    return victim.access_token


def expired_session(victim: Victim) -> str:
    victim.update_rows(AuthSession, expires_at=utcnow())
    return victim.access_token


def superseded_by_password_change(victim: Victim) -> str:
    other = victim.auth.login(victim.email)
    assert other.status_code == 200
    response = victim.client.post(
        "/api/auth/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=victim.auth.bearer(other.get_json()["data"]["access_token"]),
    )
    assert response.status_code == 200
    return victim.access_token


HeaderValue = str | list[str] | None
MISSING = "missing_credentials"
INVALID = "invalid_token"

CASES: list[Any] = [
    # No bearer credentials at all: a bare challenge (RFC 6750 section 3.1).
    pytest.param(lambda v: None, MISSING, id="no_authorization_header"),
    pytest.param(lambda v: "", MISSING, id="empty_header"),
    pytest.param(lambda v: "   ", MISSING, id="whitespace_only_header"),
    pytest.param(lambda v: "Basic dXNlcjpwYXNz", MISSING, id="basic_scheme"),
    pytest.param(lambda v: "Token x", MISSING, id="token_scheme"),
    pytest.param(lambda v: f"Digest {v.access_token}", MISSING, id="digest_scheme_valid_token"),
    pytest.param(lambda v: v.access_token, MISSING, id="valid_token_without_scheme"),
    pytest.param(lambda v: f"Bearerx {v.access_token}", MISSING, id="scheme_lookalike"),
    # A bearer token was attempted and is unusable.
    pytest.param(lambda v: "Bearer", INVALID, id="scheme_without_token"),
    pytest.param(lambda v: "Bearer ", INVALID, id="scheme_and_space_without_token"),
    pytest.param(lambda v: "Bearer a b", INVALID, id="two_tokens"),
    pytest.param(lambda v: f"Bearer {v.access_token} {v.access_token}", INVALID, id="two_valid"),
    pytest.param(
        lambda v: [bearer(v.access_token), bearer(v.access_token)],
        INVALID,
        id="two_authorization_headers",
    ),
    pytest.param(lambda v: f"Bearer Bearer {v.access_token}", INVALID, id="scheme_repeated"),
    pytest.param(lambda v: "Bearer not-a-jwt", INVALID, id="garbage"),
    pytest.param(lambda v: "Bearer a.b.c", INVALID, id="jwt_shaped_garbage"),
    pytest.param(lambda v: "Bearer ...", INVALID, id="only_dots"),
    pytest.param(lambda v: bearer(v.access_token + ".x"), INVALID, id="four_segments"),
    pytest.param(lambda v: bearer(v.access_token + "=="), INVALID, id="base64_padding"),
    pytest.param(lambda v: bearer(v.access_token + ","), INVALID, id="trailing_comma"),
    pytest.param(lambda v: "Bearer " + "A" * 10240, INVALID, id="10kB_token"),
    pytest.param(lambda v: "Bearer " + ".".join(["A" * 4000] * 3), INVALID, id="12kB_jwt_shaped"),
    pytest.param(lambda v: "Bearer \xe9t\xe9\xff\xfe", INVALID, id="latin1_bytes"),
    pytest.param(
        lambda v: bearer("\u20ac".encode().decode("latin-1") + v.access_token),
        INVALID,
        id="utf8_bytes_as_latin1",
    ),
    pytest.param(
        lambda v: bearer(v.access_token[:20] + "\x00" + v.access_token[20:]), INVALID, id="nul"
    ),
    pytest.param(lambda v: bearer(v.access_token + "\x00"), INVALID, id="trailing_nul"),
    pytest.param(
        lambda v: bearer(v.access_token[:20] + "\x07" + v.access_token[20:]), INVALID, id="bel"
    ),
    pytest.param(
        lambda v: bearer(v.access_token[:20] + "\x7f" + v.access_token[20:]), INVALID, id="del"
    ),
    pytest.param(lambda v: bearer(v.refresh_token), INVALID, id="refresh_token_as_access_token"),
    # Signature and algorithm.
    pytest.param(lambda v: bearer(v.forge(key=None, algorithm="none")), INVALID, id="alg_none"),
    pytest.param(
        lambda v: bearer(v.forge(key=None, algorithm="none") + "c2lnbmF0dXJl"),
        INVALID,
        id="alg_none_with_signature",
    ),
    pytest.param(
        lambda v: bearer(
            v.forge_raw(header={"alg": "nOnE", "typ": "JWT"}).rpartition(".")[0] + "."
        ),
        INVALID,
        id="alg_none_mixed_case_unsigned",
    ),
    pytest.param(
        lambda v: bearer(v.forge(key="some-other-secret-that-is-long-enough-for-hs256-use")),
        INVALID,
        id="hs256_wrong_key",
    ),
    pytest.param(
        lambda v: bearer(
            hmac_jwt({"alg": "HS384", "typ": "JWT"}, v.claims(), digest=hashlib.sha384)
        ),
        INVALID,
        id="hs384_right_key",
    ),
    pytest.param(
        lambda v: bearer(
            hmac_jwt({"alg": "HS512", "typ": "JWT"}, v.claims(), digest=hashlib.sha512)
        ),
        INVALID,
        id="hs512_right_key",
    ),
    pytest.param(
        lambda v: bearer(
            hmac_jwt({"alg": "HS256", "typ": "JWT"}, v.claims(), digest=hashlib.sha512)
        ),
        INVALID,
        id="hs256_header_hs512_signature",
    ),
    pytest.param(lambda v: bearer(rs256_shaped(v.claims())), INVALID, id="rs256"),
    pytest.param(
        lambda v: bearer(hmac_jwt({"alg": "HS256", "typ": "JWT"}, v.claims(), key=RSA_PUBLIC_PEM)),
        INVALID,
        id="hs256_public_key_pem_as_secret",
    ),
    pytest.param(
        lambda v: bearer(hmac_jwt({"alg": "RS256", "typ": "JWT"}, v.claims(), key=RSA_PUBLIC_PEM)),
        INVALID,
        id="rs256_header_hmac_with_public_key",
    ),
    pytest.param(
        lambda v: bearer(
            v.forge(
                key="attacker-controlled-secret-that-is-long-enough-too",
                headers={"kid": "../../../../dev/null", "jku": "https://attacker.example/jwks"},
            )
        ),
        INVALID,
        id="kid_and_jku_injection",
    ),
    pytest.param(
        lambda v: bearer(v.forge(headers={"crit": ["exp-extension"], "exp-extension": 1})),
        INVALID,
        id="unknown_critical_header",
    ),
    pytest.param(lambda v: bearer(tamper_payload(v)), INVALID, id="tampered_payload"),
    pytest.param(lambda v: bearer(v.access_token[:-6]), INVALID, id="truncated_signature"),
    pytest.param(
        lambda v: bearer(v.access_token.rpartition(".")[0] + "."), INVALID, id="no_signature"
    ),
    pytest.param(
        lambda v: bearer(v.access_token[:-2] + ("AA" if v.access_token[-2:] != "AA" else "BB")),
        INVALID,
        id="flipped_signature_bits",
    ),
    # Structure of header and payload.
    pytest.param(lambda v: bearer(v.forge_raw(header=b"not json")), INVALID, id="header_not_json"),
    pytest.param(lambda v: bearer(v.forge_raw(header=["HS256"])), INVALID, id="header_json_array"),
    pytest.param(lambda v: bearer(v.forge_raw(header={"alg": ["HS256"]})), INVALID, id="alg_list"),
    pytest.param(lambda v: bearer(v.forge_raw(header={"alg": 256})), INVALID, id="alg_integer"),
    pytest.param(lambda v: bearer(v.forge_raw(header={"typ": "JWT"})), INVALID, id="alg_missing"),
    pytest.param(lambda v: bearer(v.forge_raw(claims=b"not json")), INVALID, id="payload_not_json"),
    pytest.param(lambda v: bearer(v.forge_raw(claims=[1, 2])), INVALID, id="payload_json_array"),
    pytest.param(lambda v: bearer(v.forge_raw(claims=b"\xff\xfe")), INVALID, id="payload_not_utf8"),
    # Time claims.
    pytest.param(
        lambda v: bearer(v.forge(iat=int(time.time()) - 1200, exp=int(time.time()) - 600)),
        INVALID,
        id="expired",
    ),
    pytest.param(
        lambda v: bearer(v.forge(exp=int(time.time()))), INVALID, id="expires_this_second"
    ),
    pytest.param(lambda v: bearer(v.forge(nbf=int(time.time()) + 3600)), INVALID, id="nbf_future"),
    # We issue every token ourselves, from clocks that agree: one from the future is forged.
    pytest.param(lambda v: bearer(v.forge(iat=int(time.time()) + 3600)), INVALID, id="iat_future"),
    pytest.param(
        lambda v: bearer(v.forge(exp=str(int(time.time()) + 600))), INVALID, id="exp_string"
    ),
    pytest.param(lambda v: bearer(v.forge(exp=time.time() + 600.5)), INVALID, id="exp_float"),
    pytest.param(lambda v: bearer(v.forge(exp=10**30)), INVALID, id="exp_beyond_time_t"),
    pytest.param(lambda v: bearer(v.forge(exp=253402300800)), INVALID, id="exp_year_10000"),
    pytest.param(lambda v: bearer(v.forge_raw(exp=float("inf"))), INVALID, id="exp_infinity"),
    pytest.param(lambda v: bearer(v.forge(iat="yesterday")), INVALID, id="iat_string"),
    # Required claims, one missing at a time.
    *(
        pytest.param(
            functools.partial(lambda v, claim: bearer(v.forge(without=(claim,))), claim=claim),
            INVALID,
            id=f"missing_{claim}",
        )
        for claim in ("sub", "sid", "jti", "iat", "exp", "iss", "aud", "type")
    ),
    pytest.param(lambda v: bearer(v.forge(sub=None)), INVALID, id="null_sub"),
    # Claim values.
    pytest.param(lambda v: bearer(v.forge_raw(sub=12345)), INVALID, id="integer_sub"),
    pytest.param(lambda v: bearer(v.forge(sub="admin")), INVALID, id="non_uuid_sub"),
    pytest.param(lambda v: bearer(v.forge(sub="")), INVALID, id="empty_sub"),
    pytest.param(lambda v: bearer(v.forge(sid="not-a-session")), INVALID, id="non_uuid_sid"),
    pytest.param(lambda v: bearer(v.forge(sid=12345)), INVALID, id="integer_sid"),
    pytest.param(lambda v: bearer(v.forge(sid=[v.session_id])), INVALID, id="list_sid"),
    pytest.param(lambda v: bearer(v.forge(jti=12345)), INVALID, id="integer_jti"),
    pytest.param(lambda v: bearer(v.forge(iss="someone-else")), INVALID, id="wrong_issuer"),
    pytest.param(lambda v: bearer(v.forge_raw(iss=["mita"])), INVALID, id="issuer_list"),
    pytest.param(lambda v: bearer(v.forge(aud="another-api")), INVALID, id="wrong_audience"),
    pytest.param(
        lambda v: bearer(v.forge(aud=["another-api"])), INVALID, id="audience_list_without_ours"
    ),
    pytest.param(lambda v: bearer(v.forge(type="refresh")), INVALID, id="type_refresh"),
    pytest.param(lambda v: bearer(v.forge(type="ACCESS")), INVALID, id="type_upper_case"),
    pytest.param(lambda v: bearer(v.forge(type=["access"])), INVALID, id="type_list"),
    # Well-formed tokens whose session or user is not (or no longer) good.
    pytest.param(lambda v: bearer(v.forge(sid=str(uuid.uuid4()))), INVALID, id="unknown_session"),
    pytest.param(lambda v: bearer(v.forge(sub=str(uuid.uuid4()))), INVALID, id="unknown_user"),
    pytest.param(lambda v: bearer(v.forge(sub=v.other_user_id())), INVALID, id="sub_of_other_user"),
    pytest.param(lambda v: bearer(revoked_by_logout(v)), INVALID, id="revoked_by_logout"),
    pytest.param(lambda v: bearer(disabled_user(v)), INVALID, id="disabled_user"),
    pytest.param(lambda v: bearer(expired_session(v)), INVALID, id="expired_session"),
    pytest.param(
        lambda v: bearer(superseded_by_password_change(v)),
        INVALID,
        id="session_ended_by_password_change_elsewhere",
    ),
]


@pytest.fixture
def victim(app: Flask, client: FlaskClient, auth: AuthActions) -> Victim:
    email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    tokens = auth.register(email)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return Victim(
        app=app,
        client=client,
        auth=auth,
        email=email,
        user_id=claims["sub"],
        session_id=claims["sid"],
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


def call(client: FlaskClient, method: str, path: str, body: Any, header: HeaderValue) -> Any:
    headers: list[tuple[str, str]] = []
    if isinstance(header, str):
        headers.append(("Authorization", header))
    elif isinstance(header, list):
        headers.extend(("Authorization", value) for value in header)
    return client.open(path, method=method, json=body, headers=headers)


def assert_unauthorized(response: Any, code: str, presented: HeaderValue = None) -> None:
    """A 401 in the one error shape, with the challenge `code` calls for."""
    where = f"{response.request.method} {response.request.path}"
    assert response.status_code == 401, (where, response.status_code, response.get_data())
    assert response.mimetype == "application/json", where
    body = response.get_json()
    assert set(body) == {"success", "error"}, where
    assert body["success"] is False, where
    error = body["error"]
    assert set(error) == {"code", "message", "request_id"}, where
    assert error["code"] == code, (where, error)
    assert isinstance(error["message"], str), where
    assert error["message"], where
    assert error["request_id"] == response.headers["X-Request-ID"], where
    assert "Retry-After" not in response.headers, where
    challenges = response.headers.getlist("WWW-Authenticate")
    assert len(challenges) == 1, (where, challenges)
    if code == MISSING:
        assert challenges[0] == BARE_CHALLENGE, where
    else:
        match = INVALID_TOKEN_CHALLENGE.fullmatch(challenges[0])
        assert match, (where, challenges[0])
        assert match.group(1) == error["message"], where
    # The description is ours: nothing the caller sent is echoed back.
    tokens = [presented] if isinstance(presented, str) else presented or []
    for value in tokens:
        token = value.partition(" ")[2] or value
        if len(token) >= 16:
            assert token not in response.get_data(as_text=True), where
            assert token not in challenges[0], where


@pytest.mark.parametrize(("make_header", "code"), CASES)
def test_hostile_authorization_gets_401_with_the_right_challenge(
    victim: Victim, make_header: Callable[[Victim], HeaderValue], code: str
) -> None:
    header = make_header(victim)
    for method, path, body in PROTECTED:
        response = call(victim.client, method, path, body, header)
        assert_unauthorized(response, code, header)


def test_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 35


def test_forged_token_with_the_real_key_and_claims_is_accepted(victim: Victim) -> None:
    """The forging helpers are faithful: the hostile cases differ from this in one respect only."""
    for token in (victim.forge(), victim.forge_raw()):
        response = victim.client.get("/api/auth/session", headers=victim.auth.bearer(token))
        assert response.status_code == 200, response.get_json()
        data = response.get_json()["data"]
        assert (data["user_id"], data["session_id"]) == (victim.user_id, victim.session_id)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("bearer {}", id="lower_case"),
        pytest.param("BEARER {}", id="upper_case"),
        pytest.param("bEaReR {}", id="mixed_case"),
        pytest.param("Bearer   {}", id="several_spaces"),
        pytest.param("Bearer {}  ", id="trailing_spaces"),
    ],
)
def test_bearer_scheme_is_case_insensitive_and_tolerates_spaces(
    victim: Victim, template: str
) -> None:
    header = template.format(victim.access_token)
    for path in ("/api/auth/session", "/api/users/me"):
        response = victim.client.get(path, headers={"Authorization": header})
        assert response.status_code == 200, (path, response.get_json())


def test_hostile_requests_change_nothing(victim: Victim) -> None:
    now = int(time.time())
    headers = [
        bearer(victim.forge(key="some-other-secret-that-is-long-enough-for-hs256-use")),
        bearer(victim.forge(key=None, algorithm="none")),
        bearer(victim.forge(iat=now - 1200, exp=now - 600)),
        bearer(victim.forge(type="refresh")),
        bearer(tamper_payload(victim)),
        bearer(victim.refresh_token),
        "Basic dXNlcjpwYXNz",
    ]
    for header in headers:
        for method, path, body in PROTECTED:
            if method != "GET":
                assert call(victim.client, method, path, body, header).status_code == 401

    me = victim.client.get("/api/users/me", headers=victim.auth.bearer(victim.access_token))
    assert me.status_code == 200
    assert (me.get_json()["data"]["country"], me.get_json()["data"]["timezone"]) == (None, None)
    assert victim.auth.login(victim.email).status_code == 200
    assert victim.auth.login(victim.email, NEW_PASSWORD).status_code == 401


def test_disabling_a_user_ends_their_tokens_at_once(victim: Victim) -> None:
    headers = victim.auth.bearer(victim.access_token)
    # A first request puts the session in the authorisation cache.
    assert victim.client.get("/api/users/me", headers=headers).status_code == 200
    with victim.app.app_context():
        set_active(get_user(victim.user_id), False)
    for method, path, body in PROTECTED:
        assert_unauthorized(
            call(victim.client, method, path, body, bearer(victim.access_token)), INVALID
        )
