"""/api/auth: register, login, Google sign-in, refresh, logout, password change, account deletion
and session introspection.

The public routes (register, login, google, refresh-token) never read the Authorization header:
the app sends its stale access token, or `Bearer null`, on every request.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal, TypeVar, cast

from flask import Blueprint, Response, current_app, request
from flask_limiter import RequestLimit
from pydantic import AfterValidator, BaseModel, Field, StrictBool

from .. import audit
from ..auth import accounts, current_principal, current_user, login_required, service
from ..auth.google import google_id_tokens
from ..auth.guard import better_auth
from ..auth.sessions import (
    TokenPair,
    revoke_by_refresh_token,
    revoke_session,
    revoke_user_sessions,
    rotate,
)
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


class LogoutIn(Schema):
    # The app sends the refresh token it has, which is "" when it never got one.
    refresh_token: Annotated[SafeStr, Field(max_length=1024)] | None = None


class GoogleIn(Schema):
    id_token: Annotated[SafeStr, Field(min_length=1, max_length=4096)]


class PasswordChangeIn(Schema):
    current_password: Annotated[SafeStr, Field(min_length=1, max_length=1024)]
    new_password: Password


def _must_be_true(value: bool) -> bool:
    if value is not True:
        raise ValueError("must be true to delete the account")
    return value


class DeleteAccountIn(Schema):
    confirmation: Annotated[
        StrictBool,
        AfterValidator(_must_be_true),
        Field(description="The JSON literal true", json_schema_extra={"const": True}),
    ]


class LoggedOutOut(BaseModel):
    logged_out: bool = True


class PasswordChangedOut(BaseModel):
    password_changed: bool = True


class AccountDeletedOut(BaseModel):
    deleted: bool = True


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


# What `_tokens` puts beside `data` as well.
TOKENS = ("access_token", "refresh_token")


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


# One budget of password checks per email, spent by logins and by registers (a register of a
# taken email checks the password: the app's retry of a register it lost the answer to).
_per_email = limiter.shared_limit(
    lambda: _limit("RATELIMIT_LOGIN_PER_EMAIL"), scope="login_per_email", key_func=_email_key
)


@bp.post("/register")
@returns(TokenPairOut, 201, errors={409: "Email already registered"}, top_level=TOKENS)
@local_accounts_only
@limiter.limit(lambda: _limit("RATELIMIT_REGISTER_PER_IP"))
@_per_email
@body(RegisterIn)
def register(payload: RegisterIn) -> Response:
    """Create an account; the same email and password again within 10 minutes signs in."""
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
@returns(TokenPairOut, errors={401: "Wrong email or password"}, top_level=TOKENS)
@local_accounts_only
@limiter.limit(lambda: _limit("RATELIMIT_LOGIN_PER_IP"))
@_per_email
@body(LoginIn)
def login(payload: LoginIn) -> Response:
    return _tokens(service.login(payload.email, payload.password))


@bp.post("/google")
@returns(
    TokenPairOut,
    errors={
        401: "Google ID token invalid or expired, or account disabled",
        404: "Google sign-in is not enabled on this server",
    },
    top_level=TOKENS,
)
@local_accounts_only
@limiter.limit(lambda: _limit("RATELIMIT_LOGIN_PER_IP"))
@body(GoogleIn)
def google(payload: GoogleIn) -> Response:
    """Sign in with a Google ID token (linking or creating the account by its email)."""
    return _tokens(service.sign_in_with_google(google_id_tokens(), payload.id_token))


@bp.post("/refresh-token", endpoint="refresh_token")
@bp.post("/refresh")  # the older name; the same view
@returns(TokenPairOut, errors={401: "Refresh token invalid, reused or expired"}, top_level=TOKENS)
@local_accounts_only
@limiter.limit(lambda: _limit("RATELIMIT_REFRESH_PER_IP"))
@body(RefreshIn)
def refresh(payload: RefreshIn) -> Response:
    """Exchange the refresh token for a new pair; the old one is dead from then on."""
    return _tokens(rotate(payload.refresh_token))


@bp.post("/logout")
@returns(LoggedOutOut, errors={401: "Neither a live refresh token nor a valid access token"})
@body(LogoutIn, optional=True)
def logout(payload: LogoutIn) -> Response:
    """Sign a session out: the one whose current refresh token the body holds, else the access
    token's (with an external auth server: forget it here; the app signs out there)."""
    if current_app.config["AUTH_MODE"] == "local" and payload.refresh_token:
        # The app's access token may well have expired by now; its refresh token still names
        # the session.
        ended = revoke_by_refresh_token(payload.refresh_token, "logout")
        if ended is not None:
            user_id, session_id = ended
            audit.record("auth.logout", user_id=user_id, session_id=session_id)
            return ok(LoggedOutOut())
    return _logout_with_access_token()


@login_required
def _logout_with_access_token() -> Response:
    if current_app.config["AUTH_MODE"] == "local":
        revoke_session(cast(uuid.UUID, current_principal.session_id), "logout")
    else:
        better_auth().forget()
    audit.record("auth.logout")
    return ok(LoggedOutOut())


# For the OpenAPI document: without a refresh token, logout needs a bearer token.
logout.auth_role = "user"  # type: ignore[attr-defined]


@bp.post("/logout-all")
@returns(None, 204)
@local_accounts_only
@login_required
def logout_all() -> Response:
    revoke_user_sessions(current_principal.user_id, "logout_all")
    audit.record("auth.logout_all")
    return no_content()


@bp.post("/change-password", endpoint="change_password")
@bp.post("/password", endpoint="password")  # the older name; the same view
@returns(
    PasswordChangedOut,
    errors={
        403: "Current password is incorrect",
        409: "The account has no password yet (signed up with Google)",
    },
)
@local_accounts_only
@login_required
@body(PasswordChangeIn)
def change_password(payload: PasswordChangeIn) -> Response:
    """Change the password: this session stays, every other one ends."""
    service.change_password(
        current_principal, current_user, payload.current_password, payload.new_password
    )
    return ok(PasswordChangedOut())


@bp.delete("/delete-account")
@returns(AccountDeletedOut)
@local_accounts_only
@login_required
@body(DeleteAccountIn, optional=True)
def delete_account(payload: DeleteAccountIn) -> Response:
    """Delete the caller's account and everything that is theirs, for good."""
    user_id = current_principal.user_id
    accounts.delete_account(current_user)
    audit.record("auth.account_deleted", user_id=user_id)
    return ok(AccountDeletedOut())


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
