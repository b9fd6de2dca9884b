"""Rate limits of the API: limits read from config, the per-email key, and the audit of a 429."""

from __future__ import annotations

from flask import current_app, request
from flask_limiter import RequestLimit

from .. import audit
from ..auth import current_principal
from ..errors import MitaError
from ..fields import normalize_email
from ..validation import json_body


def configured(name: str) -> str:
    """The limit the setting `name` holds, e.g. "10 per minute"."""
    return str(current_app.config[name])


def email_key() -> str:
    """Key of per-account limits: the email in the body (known or not, alike), else the client
    address."""
    try:
        email = json_body().get("email")
    except MitaError:  # a bad body is the view's to report, not the limiter's
        email = None
    if isinstance(email, str) and email.strip():
        return "email:" + normalize_email(email)[:320]
    return "ip:" + (request.remote_addr or "unknown")


def user_key() -> str:
    """Key of per-user limits, on views behind `login_required` (which runs first)."""
    return f"user:{current_principal.user_id}"


def record_rate_limited(limit: RequestLimit) -> None:
    """Flask-Limiter's breach callback: every 429 is an audit event."""
    audit.record("auth.rate_limited", limit=str(limit.limit), endpoint=request.endpoint)
