"""Session lifecycle: open a session on login, rotate its refresh token, revoke it.

A session is a family of refresh tokens of which only the newest is valid. The token names its
session, so presenting an older member of the family is recognised as reuse (a stolen token, or
a client replaying one) and revokes the whole family.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import CursorResult, update

from .. import audit
from ..client import client_ip, client_user_agent
from ..errors import InvalidToken
from ..extensions import db
from ..models import AuthSession, User, utcnow
from .guard import auth_cache
from .tokens import hash_token, issue_access_token, new_refresh_token, parse_refresh_token

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    session_id: uuid.UUID


def _pair(session: AuthSession, refresh_token: str, user: User) -> TokenPair:
    ttl = current_app.config["ACCESS_TOKEN_TTL"]
    remaining = int((session.expires_at - utcnow()).total_seconds())
    access = issue_access_token(user.id, session.id, session.expires_at)
    return TokenPair(access, refresh_token, max(0, min(ttl, remaining)), user, session.id)


def open_session(user: User) -> TokenPair:
    """Start a session for `user` (the caller commits)."""
    now = utcnow()
    session = AuthSession(
        id=uuid.uuid4(),
        user_id=user.id,
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(seconds=current_app.config["REFRESH_TOKEN_TTL"]),
        user_agent=client_user_agent(),
        ip=client_ip(),
    )
    refresh_token = new_refresh_token(session.id)
    session.refresh_token_hash = hash_token(refresh_token)
    db.session.add(session)
    return _pair(session, refresh_token, user)


def rotate(refresh_token: str) -> TokenPair:
    """Exchange a live refresh token for a new pair; a stale one revokes its family."""
    session_id = parse_refresh_token(refresh_token)
    session = db.session.get(AuthSession, session_id) if session_id else None
    if session is None:
        audit.record("auth.refresh.failed", reason="unknown_token")
        raise InvalidToken("The refresh token is invalid.")
    presented = hash_token(refresh_token)
    if not hmac.compare_digest(session.refresh_token_hash, presented):
        if session.revoked_at is None:
            log.warning("refresh token reuse detected; revoking session %s", session.id)
            revoke_session(session.id, "refresh_token_reuse")
            audit.record(
                "auth.refresh.reuse_detected", user_id=session.user_id, session_id=session.id
            )
        else:
            audit.record(
                "auth.refresh.failed",
                reason="session_revoked",
                user_id=session.user_id,
                session_id=session.id,
            )
        raise InvalidToken("The refresh token has already been used; the session is revoked.")
    now = utcnow()
    user = session.user
    if not session.is_valid(now) or not user.is_active:
        audit.record(
            "auth.refresh.failed",
            reason="session_ended" if user.is_active else "user_disabled",
            user_id=session.user_id,
            session_id=session.id,
        )
        raise InvalidToken("The session has been revoked or has expired.")
    new_token = new_refresh_token(session.id)
    # Only the request that still finds the presented token current may rotate it: of two
    # concurrent refreshes with one token, exactly one wins.
    won = cast(
        CursorResult[Any],
        db.session.execute(
            update(AuthSession)
            .where(
                AuthSession.id == session.id,
                AuthSession.refresh_token_hash == presented,
                AuthSession.revoked_at.is_(None),
            )
            .values(refresh_token_hash=hash_token(new_token), last_used_at=now)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if won != 1:
        db.session.rollback()
        audit.record(
            "auth.refresh.failed",
            reason="concurrent_refresh_lost",
            user_id=session.user_id,
            session_id=session.id,
        )
        raise InvalidToken("The refresh token has already been used.")
    db.session.commit()
    audit.record("auth.refresh", user_id=user.id, session_id=session.id)
    return _pair(session, new_token, user)


def revoke_session(session_id: uuid.UUID, reason: str) -> None:
    db.session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoke_reason=reason)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    auth_cache().drop_session(session_id)


def revoke_by_refresh_token(refresh_token: str, reason: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """Revoke the live session whose *current* refresh token this is: (user id, session id);
    None for any other token. A rotated-out token is not treated as reuse here: a client
    logging out with a stale one is no thief, and the caller falls back to the access token."""
    session_id = parse_refresh_token(refresh_token)
    if session_id is None:
        return None
    now = utcnow()
    user_id = db.session.execute(
        update(AuthSession)
        .where(
            AuthSession.id == session_id,
            AuthSession.refresh_token_hash == hash_token(refresh_token),
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > now,
        )
        .values(revoked_at=now, revoke_reason=reason)
        .returning(AuthSession.user_id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    db.session.commit()
    if user_id is None:
        return None
    auth_cache().drop_session(session_id)
    return user_id, session_id


def revoke_user_sessions(user_id: uuid.UUID, reason: str, *, keep: uuid.UUID | None = None) -> None:
    """Revoke every live session of a user, except `keep`, committing pending changes with it."""
    statement = update(AuthSession).where(
        AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
    )
    if keep is not None:
        statement = statement.where(AuthSession.id != keep)
    db.session.execute(
        statement.values(revoked_at=utcnow(), revoke_reason=reason).execution_options(
            synchronize_session=False
        )
    )
    db.session.commit()
    auth_cache().drop_user(user_id)
