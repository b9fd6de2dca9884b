"""Session lifecycle: open a session on login, rotate its refresh token, revoke it.

A session is a family of refresh tokens of which only the newest is valid. Each refresh replaces
it with its successor (`tokens.successor`), so a retry that presents the replaced token again
within REFRESH_REUSE_GRACE seconds gets that same successor back: whichever answer the client
keeps, it holds the one working refresh token. Any earlier member of the family presented later
is reuse (a stolen token, or a client replaying one) and revokes the whole family. A token is
recognised as an earlier member by computing forward from it to the session's current hash, so a
made-up secret for a known session id is merely invalid.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, cast

from flask import current_app
from sqlalchemy import CursorResult, select, update

from .. import audit
from ..client import client_ip, client_user_agent
from ..errors import InvalidToken
from ..extensions import db
from ..models import AuthSession, User, utcnow
from .guard import auth_cache
from .tokens import (
    hash_token,
    issue_access_token,
    new_refresh_token,
    parse_refresh_token,
    rotations_behind,
    successor,
)

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


# How many rotations back a presented token is looked for among the earlier members of its
# family (each step is one MAC, a few microseconds): far more than the app makes (one refresh
# every 30 minutes of use at most, 1,440 in a 30-day session), and a bound on what a made-up
# token costs.
REUSE_LOOKBACK = 10_000


def rotate(refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a pair: the current one rotates; the one it replaced, within
    REFRESH_REUSE_GRACE seconds, gets the same new refresh token again (with a new access
    token); an earlier one revokes the family; one never issued changes nothing."""
    started = utcnow()
    session_id = parse_refresh_token(refresh_token)
    if session_id is None:
        _fail("unknown_token", "The refresh token is invalid.")
    pair = _exchange(session_id, refresh_token, started)
    if pair is None:
        # Another request rotated this token between this one's read and its write (SQLite
        # reads without a row lock): decide again on what it wrote.
        db.session.rollback()
        pair = _exchange(session_id, refresh_token, started)
    if pair is None:
        db.session.rollback()
        _fail("concurrent_refresh_lost", "The refresh token has already been used.", session_id)
    return pair


def _fail(
    reason: str, message: str, session_id: uuid.UUID | None = None, user_id: Any = None
) -> NoReturn:
    audit.record("auth.refresh.failed", reason=reason, user_id=user_id, session_id=session_id)
    raise InvalidToken(message)


def _answered_again(session: AuthSession, started: datetime, now: datetime) -> bool:
    """Whether the token the current one replaced may still be answered: within the grace, or
    rotated while this request was already under way (a concurrent refresh, not a replay)."""
    rotated_at = session.rotated_at
    if rotated_at is None:
        return False
    grace = timedelta(seconds=current_app.config["REFRESH_REUSE_GRACE"])
    return rotated_at > started or now - rotated_at < grace


def _exchange(session_id: uuid.UUID, presented: str, started: datetime) -> TokenPair | None:
    """The pair for `presented`, or None if another request rotated it meanwhile."""
    # On PostgreSQL concurrent refreshes of one session queue here, so each decides on what
    # the one before it wrote.
    session = db.session.execute(
        select(AuthSession)
        .where(AuthSession.id == session_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if session is None:
        _fail("unknown_token", "The refresh token is invalid.")
    lookback = min(session.rotations, REUSE_LOOKBACK)
    behind = rotations_behind(presented, session.refresh_token_hash, lookback)
    if behind is None:
        _fail("unknown_token", "The refresh token is invalid.", session.id, session.user_id)
    now = utcnow()
    if behind > 1 or (behind == 1 and not _answered_again(session, started, now)):
        _reused(session, behind)
    user = session.user
    if not session.is_valid(now) or not user.is_active:
        reason = "session_ended" if user.is_active else "user_disabled"
        _fail(reason, "The session has been revoked or has expired.", session.id, user.id)
    if behind == 0:
        return _rotated(session, presented, user, now)
    if not current_app.config["REFRESH_REUSE_GRACE"]:
        # Strict single use: a concurrent refresh that lost is refused, and revokes nothing.
        message = "The refresh token has already been used."
        _fail("concurrent_refresh_lost", message, session.id, user.id)
    # The token the current one replaced, again: the answer the first request carried, with
    # an access token of its own.
    pair = _pair(session, successor(presented), user)
    db.session.commit()
    audit.record("auth.refresh", user_id=user.id, session_id=session.id, within_grace=True)
    return pair


def _rotated(session: AuthSession, presented: str, user: User, now: datetime) -> TokenPair | None:
    """Replace the current token `presented` with its successor; None if another request just
    did (only the request that still finds `presented` current may)."""
    pair = _pair(session, successor(presented), user)
    rotated = cast(
        CursorResult[Any],
        db.session.execute(
            update(AuthSession)
            .where(
                AuthSession.id == session.id,
                AuthSession.refresh_token_hash == hash_token(presented),
                AuthSession.revoked_at.is_(None),
            )
            .values(
                refresh_token_hash=hash_token(pair.refresh_token),
                rotated_at=now,
                rotations=AuthSession.rotations + 1,
                last_used_at=now,
            )
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if rotated != 1:
        return None
    db.session.commit()
    audit.record("auth.refresh", user_id=user.id, session_id=pair.session_id)
    return pair


def _reused(session: AuthSession, behind: int) -> NoReturn:
    """A token of this family that was rotated out before: revoke the family."""
    user_id, session_id = session.user_id, session.id
    if session.revoked_at is None:
        log.warning("refresh token reuse detected; revoking session %s", session_id)
        revoke_session(session_id, "refresh_token_reuse")
        audit.record(
            "auth.refresh.reuse_detected",
            user_id=user_id,
            session_id=session_id,
            rotations_behind=behind,
        )
    else:
        audit.record(
            "auth.refresh.failed", reason="session_revoked", user_id=user_id, session_id=session_id
        )
    raise InvalidToken("The refresh token has already been used; the session is revoked.")


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
