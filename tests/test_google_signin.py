"""POST /api/auth/google: Google ID tokens verified against a JWKS served by a real HTTP server
on 127.0.0.1, signed with RSA keys made here. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import select, update

from mita_app.auth.google import EXTENSION_KEY
from mita_app.extensions import db
from mita_app.models import LinkedIdentity, User
from tests.conftest import PASSWORD, events_of, free_port

CLIENT_ID = "1234-android.apps.googleusercontent.com"
OTHER_CLIENT_ID = "1234-ios.apps.googleusercontent.com"
ISSUER = "https://accounts.google.com"


@functools.cache
def rsa_key(number: int) -> rsa.RSAPrivateKey:
    """RSA key number `number`: made once per run (making one takes a good part of a second)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class JwksServer:
    """Google's certs endpoint, stood in for: serves `keys` (kid -> private key) as a JWKS, or
    misbehaves as `mode` says ("ok", "500", "garbage"). Counts the requests it answers."""

    def __init__(self) -> None:
        self.port = free_port()
        self.keys: dict[str, rsa.RSAPrivateKey] = {"key-1": rsa_key(0)}
        self.mode = "ok"
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth2/v3/certs"

    def document(self) -> bytes:
        keys = []
        for kid, key in self.keys.items():
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return json.dumps({"keys": keys}).encode()

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                status, body = 200, owner.document()
                if owner.mode == "500":
                    status, body = 500, b"oops"
                elif owner.mode == "garbage":
                    body = b"<html>not a key set</html>"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = None


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app(app_factory, jwks):
    return app_factory(
        GOOGLE_CLIENT_IDS=f"{CLIENT_ID}, {OTHER_CLIENT_ID}", GOOGLE_JWKS_URL=jwks.url
    )


def id_token(
    jwks: JwksServer,
    *,
    kid: str = "key-1",
    key: rsa.RSAPrivateKey | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "azp": CLIENT_ID,
        "aud": CLIENT_ID,
        "sub": "110169484474386276334",
        "email": "gee@example.com",
        "email_verified": True,
        "name": "Gee Oogle",
        "iat": now,
        "exp": now + 3600,
        **claims,
    }
    for name in drop:
        payload.pop(name)
    return jwt.encode(payload, key or jwks.keys[kid], algorithm="RS256", headers={"kid": kid})


def sign_in(client, token: Any, bearer: str = "null"):
    # As login_screen.dart sends it, with the interceptor's header.
    return client.post(
        "/api/auth/google",
        json={"id_token": token},
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"},
    )


def only_user(app) -> User:
    with app.app_context():
        user = db.session.scalars(select(User)).one()
        db.session.expunge(user)
        return user


def links(app) -> list[tuple[uuid.UUID, str, str]]:
    with app.app_context():
        rows = db.session.execute(
            select(LinkedIdentity.user_id, LinkedIdentity.provider, LinkedIdentity.subject)
        )
        return [tuple(row) for row in rows]


def test_a_new_google_user_gets_an_account_without_a_password_and_tokens(app, client, jwks):
    response = sign_in(client, id_token(jwks))

    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] == body["data"]["access_token"]
    assert body["refresh_token"] == body["data"]["refresh_token"]
    assert body["data"]["user"]["email"] == "gee@example.com"
    user = only_user(app)
    assert (user.email_verified, user.password_hash, user.name) == (True, None, "Gee Oogle")
    assert links(app) == [(user.id, "google", "110169484474386276334")]
    session = client.get(
        "/api/auth/session", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert session.status_code == 200
    refresh = {"refresh_token": body["refresh_token"]}
    refreshed = client.post("/api/auth/refresh-token", json=refresh)
    assert refreshed.status_code == 200
    # No password to log in with.
    login = client.post("/api/auth/login", json={"email": "gee@example.com", "password": "x" * 8})
    assert login.status_code == 401
    [event] = events_of(app, "auth.login.succeeded")
    assert event["details"]["via"] == "google"
    assert event["user_id"] == user.id


def test_an_unverified_account_with_the_email_is_linked_and_loses_password_and_sessions(
    app, client, auth, jwks
):
    # Someone registered the address first (never proving it theirs): the owner signing in
    # with Google must not share the account with them.
    squatter = auth.register("Gee@Example.com")

    response = sign_in(client, id_token(jwks, email="GEE@example.com"))

    assert response.status_code == 200
    assert response.get_json()["data"]["user"]["id"] == squatter["user"]["id"]
    user = only_user(app)
    assert (user.email_verified, user.password_hash) == (True, None)
    assert links(app) == [(user.id, "google", "110169484474386276334")]
    assert auth.login("gee@example.com", PASSWORD).status_code == 401
    stale = {"Authorization": f"Bearer {squatter['access_token']}"}
    assert client.get("/api/auth/session", headers=stale).status_code == 401
    refresh = {"refresh_token": squatter["refresh_token"]}
    assert client.post("/api/auth/refresh-token", json=refresh).status_code == 401
    fresh = {"Authorization": f"Bearer {response.get_json()['access_token']}"}
    assert client.get("/api/auth/session", headers=fresh).status_code == 200
    [linked] = events_of(app, "auth.google.linked")
    assert (linked["user_id"], linked["details"]["old_sign_ins_ended"]) == (user.id, True)


def test_a_verified_account_with_the_email_is_linked_and_keeps_password_and_sessions(
    app, client, auth, jwks
):
    registered = auth.register("gee@example.com")
    with app.app_context():
        db.session.execute(update(User).values(email_verified=True))
        db.session.commit()

    response = sign_in(client, id_token(jwks))

    assert response.status_code == 200
    assert response.get_json()["data"]["user"]["id"] == registered["user"]["id"]
    assert auth.login("gee@example.com", PASSWORD).status_code == 200
    kept = {"Authorization": f"Bearer {registered['access_token']}"}
    assert client.get("/api/auth/session", headers=kept).status_code == 200
    [linked] = events_of(app, "auth.google.linked")
    assert linked["details"]["old_sign_ins_ended"] is False


def test_a_second_sign_in_finds_the_link_even_after_the_email_changed(app, client, jwks):
    first = sign_in(client, id_token(jwks)).get_json()["data"]["user"]["id"]
    again = sign_in(client, id_token(jwks, email="new-address@example.com"))
    assert again.status_code == 200
    assert again.get_json()["data"]["user"]["id"] == first
    assert len(links(app)) == 1
    assert events_of(app, "auth.google.linked") == []


@pytest.mark.parametrize("verified", [True, "true"])
def test_email_verified_may_be_a_boolean_or_the_string_true(client, jwks, verified):
    assert sign_in(client, id_token(jwks, email_verified=verified)).status_code == 200


def test_stale_and_null_bearer_headers_are_ignored(client, auth, jwks):
    stale = auth.register("someone-else@example.com")["access_token"]
    for bearer in ("null", stale, "garbage.token.here"):
        assert sign_in(client, id_token(jwks), bearer).status_code == 200


def forged(jwks: JwksServer, alg: str) -> str:
    """A token whose header claims `alg`, with a signature that is not Google's."""
    genuine = id_token(jwks)
    header = {"alg": alg, "kid": "key-1", "typ": "JWT"}
    if alg == "HS256":
        # The classic confusion: HMAC keyed with something public.
        payload = jwt.decode(genuine, options={"verify_signature": False})
        return jwt.encode(payload, "public-knowledge-secret-32-bytes!", "HS256", headers=header)
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return ".".join([encoded, genuine.split(".")[1], "x"])


INVALID = {
    "wrong-audience": lambda j: id_token(j, aud="someone-elses.apps.googleusercontent.com"),
    "wrong-issuer": lambda j: id_token(j, iss="https://evil.example.com"),
    "expired": lambda j: id_token(j, exp=int(time.time()) - 600, iat=int(time.time()) - 4200),
    "email-unverified": lambda j: id_token(j, email_verified=False),
    "email-verified-false-string": lambda j: id_token(j, email_verified="false"),
    "email-verified-missing": lambda j: id_token(j, drop=("email_verified",)),
    "no-email": lambda j: id_token(j, drop=("email",)),
    "no-sub": lambda j: id_token(j, drop=("sub",)),
    "no-exp": lambda j: id_token(j, drop=("exp",)),
    "hs256": lambda j: forged(j, "HS256"),
    "alg-none": lambda j: forged(j, "none"),
    "unknown-kid": lambda j: id_token(j, kid="key-9", key=rsa_key(1)),
    "known-kid-other-key": lambda j: id_token(j, key=rsa_key(1)),
    "garbage": lambda j: "garbage",
    "jwt-shaped-garbage": lambda j: "a.b.c",
}


@pytest.mark.parametrize("case", list(INVALID))
def test_a_bad_token_gets_401_invalid_token(app, client, jwks, case):
    response = sign_in(client, INVALID[case](jwks))
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"]["code"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    with app.app_context():
        assert db.session.scalars(select(User)).all() == []
    [event] = events_of(app, "auth.login.failed")
    assert event["details"]["via"] == "google"


@pytest.mark.parametrize(
    "body",
    [{}, {"id_token": 123}, {"id_token": ""}, {"id_token": "a" * 4097}],
    ids=["missing", "not-a-string", "empty", "too-long"],
)
def test_a_malformed_body_gets_422(client, body):
    response = client.post("/api/auth/google", json=body)
    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == {"id_token"}


@pytest.mark.parametrize("failure", ["stopped", "500", "garbage"])
def test_an_unreachable_jwks_without_a_cached_key_gets_503_with_retry_after(
    app, client, jwks, failure
):
    token = id_token(jwks)
    if failure == "stopped":
        jwks.stop()
    else:
        jwks.mode = failure
    response = sign_in(client, token)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "identity_provider_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    with app.app_context():
        assert db.session.scalars(select(User)).all() == []


def test_cached_keys_keep_working_while_google_is_unreachable(client, jwks):
    assert sign_in(client, id_token(jwks)).status_code == 200
    token = id_token(jwks)
    jwks.stop()
    assert sign_in(client, token).status_code == 200


def test_keys_are_cached_and_unknown_kids_refetch_at_most_once_per_30_seconds(app, client, jwks):
    for _ in range(3):
        assert sign_in(client, id_token(jwks)).status_code == 200
    assert jwks.requests == 1
    verifier = app.extensions[EXTENSION_KEY]
    started = time.monotonic()
    now = [started + 31]
    verifier.keys.clock = lambda: now[0]

    assert sign_in(client, id_token(jwks, kid="made-up", key=rsa_key(1))).status_code == 401
    assert jwks.requests == 2
    for i in range(5):
        forged_kid = id_token(jwks, kid=f"made-up-{i}", key=rsa_key(1))
        assert sign_in(client, forged_kid).status_code == 401
    assert jwks.requests == 2  # a flood of made-up kids cannot make us hammer Google

    jwks.keys["key-2"] = rsa_key(2)  # Google rotates its keys
    now[0] += 31
    assert sign_in(client, id_token(jwks, kid="key-2")).status_code == 200
    assert jwks.requests == 3


def test_a_disabled_account_gets_401_invalid_credentials(app, client, jwks):
    assert sign_in(client, id_token(jwks)).status_code == 200
    with app.app_context():
        db.session.scalars(select(User)).one().is_active = False
        db.session.commit()
    response = sign_in(client, id_token(jwks))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_credentials"


def test_without_client_ids_google_sign_in_is_404_google_signin_disabled(app_factory, jwks):
    client = app_factory(GOOGLE_JWKS_URL=jwks.url).test_client()
    response = sign_in(client, id_token(jwks))
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["code"] == "google_signin_disabled"
    assert error["message"] == "Google sign-in is not enabled on this server."
    assert jwks.requests == 0


def test_google_sign_in_is_rate_limited_per_address(app_factory, jwks):
    client = app_factory(
        GOOGLE_CLIENT_IDS=CLIENT_ID,
        GOOGLE_JWKS_URL=jwks.url,
        RATELIMIT_ENABLED="true",
        RATELIMIT_LOGIN_PER_IP="2 per minute",
    ).test_client()
    for _ in range(2):
        assert sign_in(client, "garbage").status_code == 401
    assert sign_in(client, id_token(jwks)).status_code == 429


def test_concurrent_first_sign_ins_make_one_account_and_one_link(app, jwks):
    token = id_token(jwks)
    assert sign_in(app.test_client(), "garbage").status_code == 401  # keys not needed yet
    start = threading.Barrier(4)
    statuses: list[int] = []

    def attempt() -> None:
        client = app.test_client()
        start.wait(timeout=10)
        statuses.append(sign_in(client, token).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 4
    with app.app_context():
        assert len(db.session.scalars(select(User)).all()) == 1
    assert len(links(app)) == 1
