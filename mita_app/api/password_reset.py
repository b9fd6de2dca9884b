"""/api/auth: forgot-password, verify-reset-token and reset-password (public routes: a
stale Bearer header, or the app's literal `Bearer null`, is ignored)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from flask import Blueprint, Response
from pydantic import BaseModel, Field

from ..auth import password_reset
from ..auth.guard import local_accounts_only
from ..extensions import limiter
from ..fields import Email, Password
from ..validation import SafeStr, Schema, body, ok, query, returns
from .limits import configured, email_key

bp = Blueprint("password_reset", __name__, url_prefix="/api/auth")
SENT = "If an account exists for this email, a reset link has been sent."
INVALID = "Invalid, used, superseded or expired reset token"


class ForgotPasswordIn(Schema):
    email: Email
    client_id: Annotated[SafeStr, Field(max_length=256)] | None = Field(None, description="Ignored")
    redirect_url: Annotated[SafeStr, Field(max_length=4096)] | None = Field(
        None, description="Ignored: the link is the server's PASSWORD_RESET_URL"
    )


class ResetPasswordIn(Schema):
    # Any string: a malformed token is a 400 invalid_reset_token, as an unknown one is.
    token: SafeStr
    new_password: Password


class ResetTokenQuery(Schema):
    # Any string: a missing or malformed token is a 400 invalid_reset_token, as an unknown one is.
    token: str = Field("", description="The token from the reset mail")


class ForgotPasswordOut(BaseModel):
    message: str


class ResetTokenOut(BaseModel):
    valid: bool
    expires_at: datetime


class ResetPasswordOut(BaseModel):
    reset: bool


@bp.post("/forgot-password")
@returns(ForgotPasswordOut, 202)
@local_accounts_only
@limiter.limit(lambda: configured("RATELIMIT_FORGOT_PER_IP"))
@limiter.limit(lambda: configured("RATELIMIT_FORGOT_PER_EMAIL"), key_func=email_key)
@body(ForgotPasswordIn)
def forgot_password(payload: ForgotPasswordIn) -> Response:
    """Email a reset link, if the account exists and may reset: the answer is the same
    either way."""
    password_reset.request_reset(payload.email)
    return ok(ForgotPasswordOut(message=SENT), 202)


@bp.get("/verify-reset-token")
@returns(ResetTokenOut, errors={400: INVALID})
@local_accounts_only
@limiter.limit(lambda: configured("RATELIMIT_RESET_PER_IP"))
@query(ResetTokenQuery)
def verify_reset_token(params: ResetTokenQuery) -> Response:
    """200 only for a live token (the app takes any 200 as valid); it stays live."""
    expires_at = password_reset.verify_token(params.token)
    return ok(ResetTokenOut(valid=True, expires_at=expires_at))


@bp.post("/reset-password")
@returns(ResetPasswordOut, errors={400: INVALID})
@local_accounts_only
@limiter.limit(lambda: configured("RATELIMIT_RESET_PER_IP"))
@body(ResetPasswordIn)
def reset_password(payload: ResetPasswordIn) -> Response:
    """Set a new password with a reset token; every session of the account ends."""
    password_reset.reset_password(payload.token, payload.new_password)
    return ok(ResetPasswordOut(reset=True))
