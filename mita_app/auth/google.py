"""Google ID tokens (POST /api/auth/google): verified locally against Google's published keys.

A token passes only if it is RS256-signed by a key of Google's JWKS (chosen by its `kid`, the
algorithm never the token's own say), issued by Google, for one of our OAuth client ids, not
expired, and vouches for a verified email. The keys are fetched with `requests` through a
circuit breaker, kept for GOOGLE_JWKS_CACHE_TTL, and refetched on an unknown `kid` at most once
per 30 s (`jwks.SigningKeys`). Keys we cannot fetch make a 503, never a 401: the token may be
good.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, cast

import jwt
from flask import Flask, current_app
from pydantic import TypeAdapter, ValidationError
from werkzeug.local import LocalProxy

from ..errors import IdentityProviderUnavailable, InvalidToken, NotFound
from ..fields import Email
from .breaker import BreakerOpen, CircuitBreaker, UpstreamFailure, retry_after_seconds
from .jwks import SigningKeys
from .upstream import AuthServerClient

EXTENSION_KEY = "mita.google"
ISSUERS = ("accounts.google.com", "https://accounts.google.com")
ALGORITHM = "RS256"
MAX_TOKEN_LENGTH = 4096
LEEWAY = 60  # seconds of clock skew allowed on exp/iat
MIN_REFRESH = 30.0  # at most one refetch per this many seconds for an unknown kid
TIMEOUT, CONNECT_TIMEOUT = 3.0, 1.0  # a whole JWKS fetch, and its connect
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_EMAIL: TypeAdapter[str] = TypeAdapter(Email)
_create_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class GoogleIdentity:
    subject: str  # Google's stable account id (`sub`); the email may change, this never does
    email: str  # normalised, and verified by Google
    name: str


class GoogleIdTokens:
    """Verifies Google ID tokens for one set of client ids. Thread-safe; no I/O until used."""

    def __init__(
        self, client_ids: tuple[str, ...], jwks_url: str, *, ttl: float, min_refresh: float
    ) -> None:
        self.client_ids = client_ids
        self.breaker = CircuitBreaker("google-jwks", failure_threshold=3, reset_timeout=10.0)
        client = AuthServerClient(
            jwks_url, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, breaker=self.breaker
        )
        self.keys = SigningKeys(
            client, jwks_url, algorithms=(ALGORITHM,), ttl=ttl, min_refresh=min_refresh
        )

    @classmethod
    def from_config(cls, app: Flask) -> GoogleIdTokens:
        config = app.config
        client_ids = config["GOOGLE_CLIENT_IDS"]
        if isinstance(client_ids, str):  # set by hand, as the environment variable is written
            client_ids = [part.strip() for part in client_ids.split(",") if part.strip()]
        return cls(
            tuple(client_ids),
            config["GOOGLE_JWKS_URL"],
            ttl=config["GOOGLE_JWKS_CACHE_TTL"],
            min_refresh=MIN_REFRESH,
        )

    def verify(self, token: str) -> GoogleIdentity:
        """The identity a valid token vouches for; else InvalidToken (401), or
        IdentityProviderUnavailable (503) when Google's keys cannot be had."""
        if len(token) > MAX_TOKEN_LENGTH or not _JWT_SHAPE.fullmatch(token):
            raise InvalidToken("The Google ID token is malformed.")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError, UnicodeError):
            raise InvalidToken("The Google ID token is malformed.") from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not 0 < len(kid) <= 128:
            raise InvalidToken("The Google ID token is not signed as Google signs.")
        try:
            key = self.keys.key(kid)
        except BreakerOpen as error:
            raise IdentityProviderUnavailable(retry_after=retry_after_seconds(error)) from None
        except UpstreamFailure:
            raise IdentityProviderUnavailable() from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=list(self.client_ids),
                issuer=ISSUERS,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The Google ID token has expired.") from None
        except (jwt.PyJWTError, ValueError, TypeError, UnicodeError):
            raise InvalidToken("The Google ID token is invalid.") from None
        return _identity(claims)


def _identity(claims: dict[str, Any]) -> GoogleIdentity:
    subject = claims["sub"]
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise InvalidToken("The Google ID token is malformed.")
    # Google sends a boolean; some of its older endpoints sent the string "true".
    if claims.get("email_verified") not in (True, "true"):
        raise InvalidToken("The Google account's email address is not verified.")
    try:
        email = _EMAIL.validate_python(claims.get("email"))
    except ValidationError:
        raise InvalidToken("The Google ID token carries no usable email address.") from None
    name = claims.get("name")
    if not isinstance(name, str) or "\x00" in name:
        name = ""
    name = name.strip()[:100].encode("utf-8", "replace").decode("utf-8")
    return GoogleIdentity(subject=subject, email=email, name=name)


def google_id_tokens() -> GoogleIdTokens:
    """This app's verifier, made on first use; 404 google_signin_disabled without client ids."""
    # `current_app` is typed as the app it stands for; it is a LocalProxy of it.
    app = cast("LocalProxy[Flask]", current_app)._get_current_object()
    if not app.config["GOOGLE_CLIENT_IDS"]:
        raise NotFound(
            "Google sign-in is not enabled on this server.", code="google_signin_disabled"
        )
    verifier = app.extensions.get(EXTENSION_KEY)
    if verifier is None:
        with _create_lock:  # one verifier, so one key cache and one breaker, per app
            verifier = app.extensions.get(EXTENSION_KEY)
            if verifier is None:
                verifier = app.extensions[EXTENSION_KEY] = GoogleIdTokens.from_config(app)
    return cast(GoogleIdTokens, verifier)
