"""`login_required`: the one gate in front of every protected view.

It verifies the access token locally, then checks that the token's session is still live and its
user active and allowed. The outcome is cached per process, by token, for `AUTH_CACHE_TTL` seconds,
so a steady stream of requests costs neither a signature check nor a database round trip each.
Credentials problems raise `AuthError` (401); a database that cannot answer raises through to the
503 handler.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast, overload

from flask import Flask, current_app, g, request
from sqlalchemy import select
from werkzeug.local import LocalProxy

from .. import audit
from ..errors import AuthError, InsufficientScope, InvalidToken, MissingCredentials
from ..extensions import db
from ..models import AuthSession, User
from .tokens import decode_access_token

F = TypeVar("F", bound=Callable[..., Any])
EXTENSION_KEY = "mita.auth_cache"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: uuid.UUID
    session_id: uuid.UUID
    role: str
    token_expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """What verifying one access token found: its claims, and its session as the database has it."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    role: str
    token_expires_at: datetime
    live_until: datetime | None  # the session's end; None: revoked, or its user disabled


class AuthCache:
    """A small thread-safe TTL cache of `TokenCheck` by access token.

    A hit spares both the signature check and the database round trip; expiry is still checked
    on every request, so an entry never outlives its token or its session.
    """

    def __init__(self, ttl: float, max_size: int, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_size = max_size
        self.clock = clock
        self._entries: dict[str, tuple[float, TokenCheck]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> TokenCheck | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                del self._entries[token]
                return None
            return entry[1]

    def put(self, token: str, check: TokenCheck) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            now = self.clock()
            if len(self._entries) >= self.max_size:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                while len(self._entries) >= self.max_size:
                    del self._entries[next(iter(self._entries))]
            self._entries[token] = (now + self.ttl, check)

    def drop_session(self, session_id: uuid.UUID) -> None:
        with self._lock:
            self._entries = {
                k: v for k, v in self._entries.items() if v[1].session_id != session_id
            }

    def drop_user(self, user_id: uuid.UUID) -> None:
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if v[1].user_id != user_id}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def auth_cache() -> AuthCache:
    return cast(AuthCache, current_app.extensions[EXTENSION_KEY])


def _check_token(token: str) -> TokenCheck:
    """Verify the token, then look its session and user up in the database."""
    claims = decode_access_token(token)
    row = db.session.execute(
        select(
            AuthSession.user_id,
            AuthSession.revoked_at,
            AuthSession.expires_at,
            User.role,
            User.is_active,
        )
        .join(User, User.id == AuthSession.user_id)
        .where(AuthSession.id == claims.session_id)
    ).one_or_none()
    if row is None or row.user_id != claims.user_id:
        raise InvalidToken("The session does not exist.")
    live = row.revoked_at is None and row.is_active
    return TokenCheck(
        claims.user_id,
        claims.session_id,
        row.role,
        claims.expires_at,
        row.expires_at if live else None,
    )


def _bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    # RFC 6750 3.1: no credentials, or another scheme, gets a challenge without an error code.
    if scheme.lower() != "bearer":
        raise MissingCredentials()
    tokens = credentials.split()
    if len(tokens) != 1:
        raise InvalidToken("The Authorization header must hold exactly one bearer token.")
    return tokens[0]


def authenticate() -> Principal:
    """The caller's principal, from the request's bearer token."""
    token = _bearer_token()
    cache = auth_cache()
    check = cache.get(token)
    if check is None:
        check = _check_token(token)
        cache.put(token, check)
    now = datetime.now(UTC)
    if check.token_expires_at <= now:
        raise InvalidToken("The access token has expired.")
    if check.live_until is None or check.live_until <= now:
        raise InvalidToken("The session has been revoked or has expired.")
    return Principal(check.user_id, check.session_id, check.role, check.token_expires_at)


@overload
def login_required(view: F) -> F: ...
@overload
def login_required(*, role: str | None = None) -> Callable[[F], F]: ...
def login_required(view: F | None = None, *, role: str | None = None) -> Any:
    """Require a valid access token (and, with `role`, that role) before the view runs."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                g.principal = authenticate()
                if role is not None and g.principal.role != role:
                    raise InsufficientScope()
            except (AuthError, InsufficientScope) as error:
                audit.record("auth.denied", reason=error.code, detail=error.message)
                raise
            return view(*args, **kwargs)

        wrapper.auth_role = role or "user"  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator(view) if view is not None else decorator


def _get_principal() -> Principal:
    return cast(Principal, g.principal)


def _get_user() -> User:
    if "current_user" not in g:
        user = db.session.get(User, _get_principal().user_id)
        if user is None or not user.is_active:
            raise InvalidToken("The session has been revoked or has expired.")
        g.current_user = user
    return cast(User, g.current_user)


current_principal: Principal = cast(Principal, LocalProxy(_get_principal))
current_user: User = cast(User, LocalProxy(_get_user))


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION_KEY] = AuthCache(
        app.config["AUTH_CACHE_TTL"], app.config["AUTH_CACHE_SIZE"]
    )
