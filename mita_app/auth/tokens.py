"""Access tokens (JWTs we sign and verify locally) and opaque refresh tokens.

A session's refresh tokens form a chain: the first is random, each later one is a MAC of the one
it replaces under a key derived from SECRET_KEY. So a retry of a rotation gets the very token the
first answer carried, and a presented token is recognised as an earlier member of its family by
computing forward from it to the hash the session stores, never by its session id alone.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from flask import current_app

from ..errors import InvalidToken

REQUIRED_CLAIMS = ("sub", "sid", "jti", "iat", "exp", "iss", "aud", "type")
# Longest access token we will try to decode; ours are ~350 bytes.
MAX_TOKEN_LENGTH = 2048
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_REFRESH_SHAPE = re.compile(r"[0-9a-f]{32}\.[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


def issue_access_token(user_id: uuid.UUID, session_id: uuid.UUID, session_expires: datetime) -> str:
    config = current_app.config
    now = int(datetime.now(UTC).timestamp())
    # An access token never outlives the session it belongs to.
    exp = min(now + config["ACCESS_TOKEN_TTL"], int(session_expires.timestamp()))
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": exp,
        "iss": config["JWT_ISSUER"],
        "aud": config["JWT_AUDIENCE"],
        "type": "access",
    }
    return jwt.encode(claims, config["SECRET_KEY"], algorithm=config["JWT_ALGORITHM"])


def _uuid_claim(claims: dict[str, object], name: str) -> uuid.UUID:
    value = claims.get(name)
    if not isinstance(value, str):
        raise InvalidToken("The access token is malformed.")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidToken("The access token is malformed.") from None


def decode_access_token(token: str) -> AccessClaims:
    """Verify signature, algorithm, expiry, issuer, audience and type; else raise InvalidToken."""
    if len(token) > MAX_TOKEN_LENGTH or not _JWT_SHAPE.fullmatch(token):
        raise InvalidToken("The access token is malformed.")
    config = current_app.config
    try:
        claims = jwt.decode(
            token,
            config["SECRET_KEY"],
            algorithms=[config["JWT_ALGORITHM"]],
            audience=config["JWT_AUDIENCE"],
            issuer=config["JWT_ISSUER"],
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("The access token has expired.") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        # PyJWTError covers every verification failure; ValueError/TypeError cover decoding
        # oddities of crafted headers. None of them may become a 500.
        raise InvalidToken() from None
    if claims.get("type") != "access":
        raise InvalidToken("The token is not an access token.")
    exp = claims["exp"]
    if not isinstance(exp, int):
        raise InvalidToken("The access token is malformed.")
    try:
        expires_at = datetime.fromtimestamp(exp, UTC)
    except (OverflowError, OSError, ValueError):
        # PyJWT bounds `exp` only from below: past year 9999 or time_t it is not a datetime.
        raise InvalidToken("The access token is malformed.") from None
    return AccessClaims(
        user_id=_uuid_claim(claims, "sub"),
        session_id=_uuid_claim(claims, "sid"),
        expires_at=expires_at,
    )


def new_refresh_token(session_id: uuid.UUID) -> str:
    """The first refresh token of a session: the session id, then 256 random bits."""
    return f"{session_id.hex}.{secrets.token_urlsafe(32)}"


def _chain_key() -> bytes:
    # A key of its own, so that no refresh token is ever a MAC that an access token's
    # signature (HMAC under SECRET_KEY itself) could be confused with.
    secret = current_app.config["SECRET_KEY"].encode()
    return hmac.digest(secret, b"mita refresh-token chain", "sha256")


def _successor(key: bytes, token: str) -> str:
    mac = hmac.digest(key, token.encode(), "sha256")
    return token[:33] + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def successor(refresh_token: str) -> str:
    """The refresh token that replaces `refresh_token` when it rotates: the same session id and
    256 bits no one can compute without SECRET_KEY."""
    return _successor(_chain_key(), refresh_token)


def rotations_behind(refresh_token: str, current_hash: str, limit: int) -> int | None:
    """How many rotations ago the family's current token (the one hashing to `current_hash`)
    replaced `refresh_token`: 0 if it is that token, None if it is no earlier member within
    `limit` rotations (never issued, or issued under another SECRET_KEY)."""
    target = bytes.fromhex(current_hash)
    key = _chain_key()
    token = refresh_token
    for behind in range(limit + 1):
        if behind:
            token = _successor(key, token)
        if hmac.compare_digest(hashlib.sha256(token.encode()).digest(), target):
            return behind
    return None


def parse_refresh_token(token: str) -> uuid.UUID | None:
    """The session id a well-formed refresh token names, or None."""
    if not _REFRESH_SHAPE.fullmatch(token):
        return None
    return uuid.UUID(hex=token[:32])


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
