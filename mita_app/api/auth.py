"""/api/auth: register, login, refresh, logout, password change and session introspection."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal, TypeVar, cast

from flask import Blueprint, Response, current_app, request
from flask_limiter import RequestLimit
from pydantic import BaseModel, Field

from .. import audit
from ..auth import current_principal, current_user, login_required, service
from ..auth.guard import better_auth
from ..auth.sessions import TokenPair, revoke_session, revoke_user_sessions, rotate
from ..errors import MitaError, NotFound
from ..extensions import limiter
from ..fields import CENT, CountryCode, Email, Money, Password, TimeZoneName
from ..validation import SafeStr, Schema, body, json_body, no_content, ok, returns
from .users import UserOut

bp = Blueprint("auth", __name__, url_prefix="/api/auth")
F = TypeVar("F", bound=Callable[..., Any])


class RegisterIn(Schema):
    email: Email
    password: Password
    country: CountryCode | None = None
    timezone: TimeZoneName | None = None
    income: Money | None = Field(None, description="Monthly income")
    annual_income: Money | None = Field(
        None, description="Yearly income (what the app sends), kept as a twelfth a month"
    )

    def monthly_income(self) -> Decimal:
        if self.income is not None:
            return self.income
        if self.annual_income is not None:
            return (self.annual_income / 12).quantize(CENT, rounding=ROUND_HALF_UP)
        return Decimal(0)


class LoginIn(Schema):
    email: Annotated[SafeStr, Field(min_length=1, max_length=320)]
    password: Annotated[SafeStr, Field(min_length=1, max_length=1024)]


class RefreshIn(Schema):
    refresh_token: Annotated[SafeStr, Field(min_length=1, max_length=512)]


class PasswordChangeIn(Schema):
    current_password: Annotated[SafeStr, Field(min_length=1, max_length=1024)]
    new_password: Password


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int
    user: UserOut


class SessionOut(BaseModel):
    user_id: uuid.UUID
    role: str
    session_id: str | None  # none for the JWTs of an external auth server
    expires_at: datetime


def _tokens(pair: TokenPair, status: int = 200) -> Response:
    """A token pair in `data`, and its tokens at the top level too (the app reads either)."""
    return ok(
        TokenPairOut(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            expires_in=pair.expires_in,
            user=UserOut.of(pair.user),
        ),
        status,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
    )


def local_accounts_only(view: F) -> F:
    """404 where accounts live on an external auth server: these endpoints are its."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_app.config["AUTH_MODE"] != "local":
            raise NotFound(
                "Accounts are managed by the auth server here (AUTH_MODE=better-auth): "
                "sign up, sign in, refresh and change passwords there.",
                code="managed_by_auth_server",
            )
        return view(*args, **kwargs)

    return cast(F, wrapper)


def record_rate_limited(limit: RequestLimit) -> None:
    """Flask-Limiter's breach callback: every 429 is an audit event."""
    audit.record("auth.rate_limited", limit=str(limit.limit), endpoint=request.endpoint)


def _limit(name: str) -> str:
    return str(current_app.config[name])


def _email_key() -> str:
    """Rate-limit key for per-account limits: the email in the body, else the client address."""
    try:
        email = json_body().get("email")
    except MitaError:  # a bad body is the view's to report, not the limiter's
        email = None
    if isinstance(email, str) and email.strip():
        return "email:" + email.strip().lower()[:320]
    return "ip:" + (request.remote_addr or "unknown")


@bp.post("/register")
@returns(TokenPairOut, 201, errors={409: "Email already registered"})
@local_accounts_only
@limiter.limit(lambda: _limit("RATELIMIT_REGISTER_PER_IP"))
@body(RegisterIn)
def register(payload: RegisterIn) -> Response:
    return _tokens(
        service.register(
            payload.email,
            payload.password,
            country=payload.country,
            income=payload.monthly_income(),
            timezone=payload.timezone,
        ),
        201,
    )


@bp.post("/login")
@returns(TokenPairOut, errors={401: "Wrong email or password"})
@local_accounts_only
@limiter.limit(lambda: _limit("RATELIMIT_LOGIN_PER_IP"))
@limiter.limit(lambda: _limit("RATELIMIT_LOGIN_PER_EMAIL"), key_func=_email_key)
@body(LoginIn)
def login(payload: LoginIn) -> Response:
    return _tokens(service.login(payload.email, payload.password))


@bp.post("/refresh")
@returns(TokenPairOut, errors={401: "Refresh token invalid, reused or expired"})
@local_accounts_only
@limiter.limit(lambda: _limit("RATELIMIT_REFRESH_PER_IP"))
@body(RefreshIn)
def refresh(payload: RefreshIn) -> Response:
    return _tokens(rotate(payload.refresh_token))


@bp.post("/logout")
@returns(None, 204)
@login_required
def logout() -> Response:
    """Sign this session out (with an external auth server: forget it here; the app signs
    out there)."""
    if current_app.config["AUTH_MODE"] == "local":
        revoke_session(cast(uuid.UUID, current_principal.session_id), "logout")
    else:
        better_auth().forget()
    audit.record("auth.logout")
    return no_content()


@bp.post("/logout-all")
@returns(None, 204)
@local_accounts_only
@login_required
def logout_all() -> Response:
    revoke_user_sessions(current_principal.user_id, "logout_all")
    audit.record("auth.logout_all")
    return no_content()


@bp.post("/password")
@returns(None, 204, errors={403: "Current password is incorrect"})
@local_accounts_only
@login_required
@body(PasswordChangeIn)
def change_password(payload: PasswordChangeIn) -> Response:
    service.change_password(
        current_principal, current_user, payload.current_password, payload.new_password
    )
    return no_content()


@bp.get("/session")
@returns(SessionOut)
@login_required
def session() -> Response:
    return ok(
        SessionOut(
            user_id=current_principal.user_id,
            role=current_principal.role,
            session_id=None
            if current_principal.session_id is None
            else str(current_principal.session_id),
            expires_at=current_principal.token_expires_at,
        )
    )
