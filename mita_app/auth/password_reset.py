"""Password reset by email: issue a single-use token, check it, and spend it on a new password.

A token is 256 random bits; only its SHA-256 is stored. It lives `PASSWORD_RESET_TTL` seconds
and ends when used or when a newer one is issued for the same account. Asking for a reset
answers alike for every email, so the work done in the request is alike too (see `request`).
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import current_app
from sqlalchemy import CursorResult, insert, literal, select, text, update

from .. import audit, mail
from ..errors import BadRequest
from ..extensions import db
from ..fields import normalize_email
from ..models import LOCAL_PROVIDER, PasswordResetToken, User, utcnow
from .accounts import find_by_email, set_password
from .tokens import hash_token

# What `new_reset_token` makes: 43 characters of the URL-safe base64 alphabet.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")
SUBJECT = "Reset your MITA password"


class InvalidResetToken(BadRequest):
    """Unknown, malformed, used, superseded or expired: the client is told no more than that."""

    code = "invalid_reset_token"
    message = "The password reset link is invalid or has expired; ask for a new one."

    def __init__(self, reason: str, user_id: uuid.UUID | None = None) -> None:
        super().__init__()
        self.reason = reason  # for the audit log only
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class LiveToken:
    row: PasswordResetToken
    user: User


def new_reset_token() -> str:
    return secrets.token_urlsafe(32)


def reset_link(token: str) -> str:
    """`PASSWORD_RESET_URL` with the token added to its query (never the client's URL)."""
    parts = urlsplit(str(current_app.config["PASSWORD_RESET_URL"]))
    query = "&".join(part for part in (parts.query, urlencode({"token": token})) if part)
    return urlunsplit(parts._replace(query=query))


def _duration(seconds: int) -> str:
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    raise AssertionError("unreachable: every whole number of seconds is some seconds")


def _body(email: str, token: str) -> str:
    ttl = _duration(current_app.config["PASSWORD_RESET_TTL"])
    return (
        f"Someone asked to reset the password of the MITA account {email}.\n\n"
        f"To choose a new password, open this link on your phone:\n\n{reset_link(token)}\n\n"
        f"or enter this reset token in the app:\n\n{token}\n\n"
        f"The link is valid for {ttl} and works once. If you did not ask for this, ignore this "
        "email: your password stays as it is.\n"
    )


def request_reset(email: str) -> None:
    """Issue a token for `email` and mail it after the response, if the account may reset.

    Whatever the account, the request runs the same statements: find it, end the tokens of
    the account it names and insert a new one for it (naming a fresh id where there is no
    account that may reset: both then match nothing), and commit without waiting for the
    disk, as a failed login does: a lost token is only asked for again, and a commit that
    waits for a flush only where a row was written would tell a real account by its timing."""
    token, now = new_reset_token(), utcnow()
    user = find_by_email(email)
    reason = None
    if user is None:
        reason = "unknown_email"
    elif not user.is_active:
        reason = "account_disabled"
    elif user.auth_provider != LOCAL_PROVIDER:
        reason = "external_account"
    user_id = user.id if user is not None else None
    address = user.email if user is not None else normalize_email(email)
    body = _body(address, token)  # written either way: one path must not be the busier
    account = user_id if user_id is not None and reason is None else uuid.uuid4()
    expires_at = now + timedelta(seconds=current_app.config["PASSWORD_RESET_TTL"])
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL synchronous_commit = off"))
    db.session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == account, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    columns = PasswordResetToken.__table__.c
    db.session.execute(
        insert(PasswordResetToken).from_select(
            ["id", "user_id", "token_hash", "created_at", "expires_at"],
            select(
                literal(uuid.uuid4(), columns.id.type),
                User.id,
                literal(hash_token(token), columns.token_hash.type),
                literal(now, columns.created_at.type),
                literal(expires_at, columns.expires_at.type),
            ).where(User.id == account),
        )
    )
    db.session.commit()
    if reason is None:
        mail.send(address, SUBJECT, body)
    audit.record(
        "auth.password_reset.requested",
        user_id=user_id,
        email=normalize_email(email),
        outcome="sent" if reason is None else reason,
    )


def _live(token: str, now: datetime) -> LiveToken:
    """The live token `token` names, and its account; else InvalidResetToken."""
    token = token.strip()  # pasted into the app's token field with the email's whitespace
    if not _TOKEN_SHAPE.fullmatch(token):
        raise InvalidResetToken("malformed")
    row = db.session.scalar(
        select(PasswordResetToken).where(PasswordResetToken.token_hash == hash_token(token))
    )
    if row is None:
        raise InvalidResetToken("unknown_token")
    if row.used_at is not None:
        raise InvalidResetToken("token_used", row.user_id)
    if row.expires_at <= now:
        raise InvalidResetToken("token_expired", row.user_id)
    user = db.session.get(User, row.user_id)
    if user is None or not user.is_active or user.auth_provider != LOCAL_PROVIDER:
        raise InvalidResetToken("account_unavailable", row.user_id)
    return LiveToken(row, user)


def verify_token(token: str) -> datetime:
    """When a live token expires; checking does not spend it."""
    return _live(token, utcnow()).row.expires_at


def reset_password(token: str, new_password: str) -> None:
    """Spend a live token on a new password: the token ends, the lockout clears and every
    session of the account is revoked, in one transaction. Of two uses, exactly one wins."""
    now = utcnow()
    try:
        live = _live(token, now)
    except InvalidResetToken as error:
        _failed(error)
    user_id = live.user.id
    spent = cast(
        CursorResult[Any],
        db.session.execute(
            update(PasswordResetToken)
            .where(PasswordResetToken.id == live.row.id, PasswordResetToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if spent != 1:
        db.session.rollback()
        _failed(InvalidResetToken("concurrent_reset_lost", user_id))
    live.user.email_verified = True  # the link reached its owner's mailbox
    set_password(live.user, new_password)  # commits the token's end with the password
    audit.record("auth.password_reset.completed", user_id=user_id)


def _failed(error: InvalidResetToken) -> NoReturn:
    audit.record("auth.password_reset.failed", user_id=error.user_id, reason=error.reason)
    raise error
