"""/api/auth: register, login, Google sign-in, refresh, logout, password change, account deletion
and session introspection.

The public routes (register, login, google, refresh-token) never read the Authorization header:
the app sends its stale access token, or `Bearer null`, on every request.
"""

from __future__ import annotations

import uuid
from typing import cast

from flask import Blueprint, Response, current_app

from .. import audit
from ..auth import accounts, current_principal, current_user, login_required, service
from ..auth.google import google_id_tokens
from ..auth.guard import better_auth, local_accounts_only
from ..auth.sessions import (
    TokenPair,
    revoke_by_refresh_token,
    revoke_session,
    revoke_user_sessions,
    rotate,
)
from ..extensions import limiter
from ..validation import body, no_content, ok, returns
from .limits import configured, email_key, user_key
from .schemas.auth import (
    AccountDeletedOut,
    DeleteAccountIn,
    GoogleIn,
    LoggedOutOut,
    LoginIn,
    LogoutIn,
    PasswordChangedOut,
    PasswordChangeIn,
    RefreshIn,
    RegisterIn,
    SessionOut,
    TokenPairOut,
)
from .schemas.users import UserOut

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


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


# One budget of password checks per email, spent by logins and by registers (a register of a
# taken email checks the password: the app's retry of a register it lost the answer to).
_per_email = limiter.shared_limit(
    lambda: configured("RATELIMIT_LOGIN_PER_EMAIL"), scope="login_per_email", key_func=email_key
)


@bp.post("/register")
@returns(TokenPairOut, 201, errors={409: "Email already registered"}, top_level=TOKENS)
@local_accounts_only
@limiter.limit(lambda: configured("RATELIMIT_REGISTER_PER_IP"))
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
@limiter.limit(lambda: configured("RATELIMIT_LOGIN_PER_IP"))
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
@limiter.limit(lambda: configured("RATELIMIT_LOGIN_PER_IP"))
@body(GoogleIn)
def google(payload: GoogleIn) -> Response:
    """Sign in with a Google ID token (linking or creating the account by its email)."""
    return _tokens(service.sign_in_with_google(google_id_tokens(), payload.id_token))


# Shared: both paths of a refresh spend one budget.
_refresh_per_ip = limiter.shared_limit(
    lambda: configured("RATELIMIT_REFRESH_PER_IP"), scope="refresh_per_ip"
)


@bp.post("/refresh-token", endpoint="refresh_token")
@bp.post("/refresh")  # the older name; the same view
@returns(TokenPairOut, errors={401: "Refresh token invalid, reused or expired"}, top_level=TOKENS)
@local_accounts_only
@_refresh_per_ip
@body(RefreshIn)
def refresh(payload: RefreshIn) -> Response:
    """Exchange the refresh token for a new pair.

    Presented again within REFRESH_REUSE_GRACE seconds (a retry after a lost answer), the old
    token gets the same new refresh token back; later, it ends the session (reuse)."""
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


# Shared: both paths of the password change spend one budget.
_password_change_per_user = limiter.shared_limit(
    lambda: configured("RATELIMIT_PASSWORD_CHANGE_PER_USER"),
    scope="password_change_per_user",
    key_func=user_key,
)
_password_change_per_ip = limiter.shared_limit(
    lambda: configured("RATELIMIT_PASSWORD_CHANGE_PER_IP"), scope="password_change_per_ip"
)


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
# Below login_required: the limits count signed-in callers (a bad token costs no password check).
@_password_change_per_user
@_password_change_per_ip
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
