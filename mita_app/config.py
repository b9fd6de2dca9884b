"""Configuration read from the environment, in one place.

Every setting has a development-safe default; `MITA_ENV=production` makes the app refuse to
start without a strong `SECRET_KEY`. The README lists every variable.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from .pgwait import deadline_connection

log = logging.getLogger(__name__)

MIN_SECRET_KEY_BYTES = 32


class ConfigError(RuntimeError):
    """The environment does not describe a configuration the app can safely run with."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{name} must be >= {minimum:g}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.strip().lower() in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


def normalize_database_url(url: str) -> str:
    """Make Railway/Heroku style PostgreSQL URLs use psycopg2, the installed driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def engine_options(url: str, env: Mapping[str, str]) -> dict[str, Any]:
    """Pool and connection options: fail fast instead of hanging when the database is in trouble."""
    backend = make_url(url).get_backend_name()
    options: dict[str, Any] = {"pool_pre_ping": _bool(env, "DB_POOL_PRE_PING", True)}
    # Parameters of failing statements would otherwise be rendered into exception messages,
    # and from there into logs: they include password hashes and token digests.
    options["hide_parameters"] = True
    if backend == "sqlite":
        if make_url(url).database in (None, "", ":memory:"):
            return options
        options["connect_args"] = {"timeout": _float(env, "DB_POOL_TIMEOUT", 3.0)}
    # A connection for every thread of a default worker (16), kept once opened: a request never
    # waits for another's connection, only for the database, and never pays for opening one.
    # (Connections beyond `pool_size` are closed as they come back: with 16 threads busy, 5 kept
    # and 11 overflow meant a new PostgreSQL connection every few requests.)
    options["pool_size"] = _int(env, "DB_POOL_SIZE", 16, minimum=1)
    options["max_overflow"] = _int(env, "DB_MAX_OVERFLOW", 0)
    options["pool_timeout"] = _float(env, "DB_POOL_TIMEOUT", 3.0)
    options["pool_recycle"] = _int(env, "DB_POOL_RECYCLE", 1800)
    if backend == "postgresql":
        statement_ms = _int(env, "DB_STATEMENT_TIMEOUT_MS", 5000)
        server_options = " ".join(
            f"-c {name}={value}"
            for name, value in (
                ("statement_timeout", statement_ms),
                ("lock_timeout", _int(env, "DB_LOCK_TIMEOUT_MS", 3000)),
                (
                    "idle_in_transaction_session_timeout",
                    _int(env, "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 30000),
                ),
            )
        )
        client_ms = _int(env, "DB_CLIENT_TIMEOUT_MS", statement_ms + 1000 if statement_ms else 0)
        if client_ms and statement_ms and client_ms <= statement_ms:
            # The server's own timeout must fire first: it cancels cleanly and keeps the
            # connection, where the client-side one has to drop it.
            raise ConfigError(
                f"DB_CLIENT_TIMEOUT_MS ({client_ms}) must be greater than "
                f"DB_STATEMENT_TIMEOUT_MS ({statement_ms})"
            )
        connect_timeout = _int(env, "DB_CONNECT_TIMEOUT", 3, minimum=1)
        options["connect_args"] = {
            "connection_factory": deadline_connection(
                connect_timeout,
                client_ms / 1000 if client_ms else None,
                _int(env, "DB_PING_TIMEOUT_MS", 500, minimum=1) / 1000,
            ),
            "connect_timeout": connect_timeout,
            "options": server_options,
            "keepalives": 1,
            "keepalives_idle": _int(env, "DB_KEEPALIVES_IDLE", 30, minimum=1),
            "keepalives_interval": _int(env, "DB_KEEPALIVES_INTERVAL", 10, minimum=1),
            "keepalives_count": _int(env, "DB_KEEPALIVES_COUNT", 3, minimum=1),
            "application_name": env.get("DB_APPLICATION_NAME", "mita"),
        }
    return options


AUTH_MODES = ("local", "better-auth")
SESSION_TRANSPORTS = ("auto", "bearer", "cookie")
JWT_ALGORITHMS = ("EdDSA", "ES256", "RS256")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or choices[0]).strip().lower()
    lowered = {choice.lower(): choice for choice in choices}
    if value not in lowered:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return lowered[value]


def _http_url(name: str, value: str) -> str:
    parsed = urlsplit(value)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value.rstrip("/")


def external_auth(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings of AUTH_MODE=better-auth (an external auth server); empty in local mode."""
    mode = _choice(env, "AUTH_MODE", AUTH_MODES)
    settings: dict[str, Any] = {"AUTH_MODE": mode}
    if mode == "local":
        return settings
    server = env.get("AUTH_SERVER_URL", "").strip()
    if not server:
        raise ConfigError("AUTH_SERVER_URL must be set when AUTH_MODE=better-auth")
    server = _http_url("AUTH_SERVER_URL", server)
    jwks = env.get("AUTH_JWKS_URL", f"{server}/api/auth/jwks").strip()
    algorithms = tuple(
        a.strip() for a in env.get("AUTH_JWT_ALGORITHMS", ",".join(JWT_ALGORITHMS)).split(",")
    )
    if not algorithms or not set(algorithms) <= set(JWT_ALGORITHMS):
        raise ConfigError(f"AUTH_JWT_ALGORITHMS must be among {', '.join(JWT_ALGORITHMS)}")
    settings.update(
        AUTH_SERVER_URL=server,
        # Better Auth's JWT plugin signs with its base URL as issuer and audience.
        AUTH_JWKS_URL=None if jwks.lower() in ("", "off") else _http_url("AUTH_JWKS_URL", jwks),
        AUTH_JWT_ISSUER=env.get("AUTH_JWT_ISSUER", server),
        AUTH_JWT_AUDIENCE=env.get("AUTH_JWT_AUDIENCE", server),
        AUTH_JWT_ALGORITHMS=algorithms,
        AUTH_JWKS_MIN_REFRESH=_float(env, "AUTH_JWKS_MIN_REFRESH", 30.0),
        AUTH_JWKS_CACHE_TTL=_float(env, "AUTH_JWKS_CACHE_TTL", 300.0),
        AUTH_SESSION_TRANSPORT=_choice(env, "AUTH_SESSION_TRANSPORT", SESSION_TRANSPORTS),
        # Empty: both of Better Auth's names (`__Secure-` is its name behind an https baseURL).
        AUTH_SESSION_COOKIE=env.get("AUTH_SESSION_COOKIE", "").strip(),
        AUTH_SERVER_TIMEOUT=_float(env, "AUTH_SERVER_TIMEOUT", 3.0, minimum=0.1),
        AUTH_SERVER_CONNECT_TIMEOUT=_float(env, "AUTH_SERVER_CONNECT_TIMEOUT", 1.0, minimum=0.1),
        AUTH_SESSION_CACHE_TTL=_float(env, "AUTH_SESSION_CACHE_TTL", 60.0),
        AUTH_NEGATIVE_CACHE_TTL=_float(env, "AUTH_NEGATIVE_CACHE_TTL", 5.0),
        AUTH_BREAKER_FAILURES=_int(env, "AUTH_BREAKER_FAILURES", 3, minimum=1),
        AUTH_BREAKER_RESET=_float(env, "AUTH_BREAKER_RESET", 10.0, minimum=0.1),
    )
    return settings


def google_signin(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings of POST /api/auth/google; no client ids means Google sign-in is off."""
    client_ids = (part.strip() for part in env.get("GOOGLE_CLIENT_IDS", "").split(","))
    return {
        # Every OAuth client id of the app (Android, iOS, web): an ID token's `aud` is one.
        "GOOGLE_CLIENT_IDS": tuple(dict.fromkeys(part for part in client_ids if part)),
        "GOOGLE_JWKS_URL": _http_url(
            "GOOGLE_JWKS_URL",
            env.get("GOOGLE_JWKS_URL", "").strip() or "https://www.googleapis.com/oauth2/v3/certs",
        ),
        "GOOGLE_JWKS_CACHE_TTL": _float(env, "GOOGLE_JWKS_CACHE_TTL", 3600.0, minimum=1.0),
    }


MAIL_BACKENDS = ("smtp", "console")


def mail(env: Mapping[str, str], production: bool) -> dict[str, Any]:
    """Outgoing email (`mita_app.mail`). Production sends through SMTP or refuses to start: a
    reset link must never end up in a log there."""
    backend = (env.get("MAIL_BACKEND") or ("smtp" if production else "console")).strip().lower()
    if backend not in MAIL_BACKENDS:
        raise ConfigError(f"MAIL_BACKEND must be smtp or console, got {backend!r}")
    server = env.get("MAIL_SERVER", "").strip()
    use_ssl = _bool(env, "MAIL_USE_SSL", False)
    use_tls = _bool(env, "MAIL_USE_TLS", not use_ssl)
    username, password = env.get("MAIL_USERNAME", ""), env.get("MAIL_PASSWORD", "")
    if production and backend == "console":
        raise ConfigError("MAIL_BACKEND=console writes messages to the log: not in production")
    if backend == "smtp" and not server:
        raise ConfigError("MAIL_SERVER must be set when MAIL_BACKEND=smtp (production's default)")
    if use_ssl and use_tls:
        raise ConfigError("MAIL_USE_SSL (implicit TLS) excludes MAIL_USE_TLS (STARTTLS)")
    if production and username and not (use_ssl or use_tls):
        raise ConfigError("MAIL_USERNAME without MAIL_USE_TLS or MAIL_USE_SSL sends it in clear")
    sender = env.get("MAIL_FROM", "").strip() or "MITA <no-reply@localhost>"
    if "@" not in parseaddr(sender)[1]:
        raise ConfigError(f"MAIL_FROM must be an email address, got {sender!r}")
    return {
        "MAIL_BACKEND": backend,
        "MAIL_SERVER": server,
        "MAIL_PORT": _int(env, "MAIL_PORT", 465 if use_ssl else 587, minimum=1),
        "MAIL_USERNAME": username,
        "MAIL_PASSWORD": password,
        "MAIL_USE_TLS": use_tls,
        "MAIL_USE_SSL": use_ssl,
        "MAIL_FROM": sender,
        "MAIL_TIMEOUT": _float(env, "MAIL_TIMEOUT", 10.0, minimum=0.1),
        "MAIL_RETRIES": _int(env, "MAIL_RETRIES", 2),
        "MAIL_RETRY_BACKOFF": _float(env, "MAIL_RETRY_BACKOFF", 2.0, minimum=0.01),
        "MAIL_QUEUE_SIZE": _int(env, "MAIL_QUEUE_SIZE", 1000, minimum=1),
        "MAIL_SHUTDOWN_TIMEOUT": _float(env, "MAIL_SHUTDOWN_TIMEOUT", 5.0),
    }


def password_reset(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings of /api/auth/forgot-password, verify-reset-token and reset-password."""
    url = env.get("PASSWORD_RESET_URL", "").strip() or "mita://reset-password"
    if not urlsplit(url).scheme:
        raise ConfigError(f"PASSWORD_RESET_URL must be an absolute URL, got {url!r}")
    return {
        "PASSWORD_RESET_TTL": _int(env, "PASSWORD_RESET_TTL", 1800, minimum=60),
        "PASSWORD_RESET_URL": url,
        "RATELIMIT_FORGOT_PER_IP": env.get("RATELIMIT_FORGOT_PER_IP", "10 per minute"),
        "RATELIMIT_FORGOT_PER_EMAIL": env.get("RATELIMIT_FORGOT_PER_EMAIL", "3 per hour"),
        "RATELIMIT_RESET_PER_IP": env.get("RATELIMIT_RESET_PER_IP", "30 per minute"),
    }


# Longest REFRESH_REUSE_GRACE: a retry comes within seconds, and every second of grace is one in
# which a stolen, just-rotated refresh token still works (Okta and Cognito allow at most 60 s).
MAX_REFRESH_REUSE_GRACE = 300


def _refresh_reuse_grace(env: Mapping[str, str]) -> int:
    grace = _int(env, "REFRESH_REUSE_GRACE", 30)
    if grace > MAX_REFRESH_REUSE_GRACE:
        raise ConfigError(f"REFRESH_REUSE_GRACE must be <= {MAX_REFRESH_REUSE_GRACE}, got {grace}")
    return grace


def _audit_spill_after(env: Mapping[str, str]) -> float:
    """While the audit writer cannot write, what it has held this long goes to stderr: all that
    a SIGKILL can take with it. A healthy writer holds an event for a flush interval and a
    write: a bound within that would spill events that were about to be written."""
    spill_after = _float(env, "AUDIT_SPILL_AFTER", 5.0, minimum=1.0)
    flush_interval = _float(env, "AUDIT_FLUSH_INTERVAL", 0.25, minimum=0.01)
    if spill_after <= flush_interval:
        raise ConfigError(
            f"AUDIT_SPILL_AFTER ({spill_after:g}) must be greater than "
            f"AUDIT_FLUSH_INTERVAL ({flush_interval:g})"
        )
    return spill_after


def _secret_key(env: Mapping[str, str], production: bool) -> str:
    key = env.get("SECRET_KEY", "")
    if production:
        if not key:
            raise ConfigError("SECRET_KEY must be set when MITA_ENV=production")
        if len(key.encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes when MITA_ENV=production"
            )
        return key
    if not key:
        log.warning(
            "SECRET_KEY is not set: using a random key for this process; "
            "tokens will not survive a restart or work across workers"
        )
        return secrets.token_urlsafe(48)
    return key


def from_env(env: Mapping[str, str] | None = None, *, default_database_url: str) -> dict[str, Any]:
    """Build the Flask config mapping from environment variables."""
    env = os.environ if env is None else env
    mita_env = env.get("MITA_ENV", "development").strip().lower()
    if mita_env not in {"development", "production"}:
        raise ConfigError(f"MITA_ENV must be 'development' or 'production', got {mita_env!r}")
    production = mita_env == "production"
    database_url = normalize_database_url(env.get("DATABASE_URL") or default_database_url)
    return {
        **external_auth(env),
        **google_signin(env),
        "MITA_ENV": mita_env,
        "SECRET_KEY": _secret_key(env, production),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options(database_url, env),
        "MAX_CONTENT_LENGTH": _int(env, "MAX_CONTENT_LENGTH", 1024 * 1024, minimum=1),
        # How long a client has to send a request's headers, then its body, however slowly
        # it trickles them: past that, 408 (enforced by mita_app.gunicorn_worker).
        "REQUEST_HEADER_TIMEOUT": _float(env, "REQUEST_HEADER_TIMEOUT", 10.0, minimum=0.1),
        "REQUEST_BODY_TIMEOUT": _float(env, "REQUEST_BODY_TIMEOUT", 10.0, minimum=0.1),
        "ACCESS_TOKEN_TTL": _int(env, "ACCESS_TOKEN_TTL", 3600, minimum=1),
        "REFRESH_TOKEN_TTL": _int(env, "REFRESH_TOKEN_TTL", 30 * 24 * 3600, minimum=1),
        "REFRESH_REUSE_GRACE": _refresh_reuse_grace(env),
        "JWT_ALGORITHM": env.get("JWT_ALGORITHM", "HS256"),
        "JWT_ISSUER": env.get("JWT_ISSUER", "mita"),
        "JWT_AUDIENCE": env.get("JWT_AUDIENCE", "mita-api"),
        "AUTH_CACHE_TTL": _float(env, "AUTH_CACHE_TTL", 5.0),
        "AUTH_CACHE_SIZE": _int(env, "AUTH_CACHE_SIZE", 10000, minimum=1),
        "PASSWORD_HASH_METHOD": env.get("PASSWORD_HASH_METHOD", "scrypt"),
        "LOGIN_LOCKOUT_THRESHOLD": _int(env, "LOGIN_LOCKOUT_THRESHOLD", 5, minimum=1),
        "LOGIN_LOCKOUT_WINDOW": _int(env, "LOGIN_LOCKOUT_WINDOW", 900, minimum=1),
        "LOGIN_LOCKOUT_DURATION": _int(env, "LOGIN_LOCKOUT_DURATION", 900, minimum=1),
        "READY_TIMEOUT": _float(env, "READY_TIMEOUT", 1.0),
        # After this many consecutive failures to reach the database, answer 503 at once and
        # probe it in the background every DB_BREAKER_PROBE_INTERVAL seconds (0: never).
        "DB_BREAKER_FAILURES": _int(env, "DB_BREAKER_FAILURES", 3),
        "DB_BREAKER_PROBE_INTERVAL": _float(env, "DB_BREAKER_PROBE_INTERVAL", 1.0, minimum=0.05),
        "RETRY_AFTER": _int(env, "RETRY_AFTER", 5, minimum=1),
        "TRUSTED_PROXY_COUNT": _int(env, "TRUSTED_PROXY_COUNT", 0),
        "RATELIMIT_ENABLED": _bool(env, "RATELIMIT_ENABLED", True),
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_LOGIN_PER_IP": env.get("RATELIMIT_LOGIN_PER_IP", "60 per minute"),
        "RATELIMIT_LOGIN_PER_EMAIL": env.get("RATELIMIT_LOGIN_PER_EMAIL", "10 per minute"),
        "RATELIMIT_REGISTER_PER_IP": env.get("RATELIMIT_REGISTER_PER_IP", "30 per minute"),
        "RATELIMIT_REFRESH_PER_IP": env.get("RATELIMIT_REFRESH_PER_IP", "120 per minute"),
        # Each password change checks a password (scrypt): a user changes it rarely; many users
        # may share one carrier-NAT address.
        "RATELIMIT_PASSWORD_CHANGE_PER_USER": env.get(
            "RATELIMIT_PASSWORD_CHANGE_PER_USER", "5 per minute"
        ),
        "RATELIMIT_PASSWORD_CHANGE_PER_IP": env.get(
            "RATELIMIT_PASSWORD_CHANGE_PER_IP", "30 per minute"
        ),
        # Crash reports: a device sends a few an hour, and at most 50 queued ones at once after
        # an outage; many devices can share one address (carrier NAT). A 429 only delays a
        # report (the app queues it and retries every 2 minutes); a flood stops at the limit.
        "RATELIMIT_ERROR_REPORTS_PER_IP": env.get("RATELIMIT_ERROR_REPORTS_PER_IP", "120 per hour"),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO").upper(),
        "AUDIT_ENABLED": _bool(env, "AUDIT_ENABLED", True),
        "AUDIT_QUEUE_SIZE": _int(env, "AUDIT_QUEUE_SIZE", 10000, minimum=1),
        "AUDIT_BATCH_SIZE": _int(env, "AUDIT_BATCH_SIZE", 500, minimum=1),
        "AUDIT_FLUSH_INTERVAL": _float(env, "AUDIT_FLUSH_INTERVAL", 0.25, minimum=0.01),
        "AUDIT_RETRY_MAX": _float(env, "AUDIT_RETRY_MAX", 5.0, minimum=0.01),
        "AUDIT_SHUTDOWN_TIMEOUT": _float(env, "AUDIT_SHUTDOWN_TIMEOUT", 10.0),
        "AUDIT_SPILL_AFTER": _audit_spill_after(env),
        "AUDIT_BURST_LIMIT": _int(env, "AUDIT_BURST_LIMIT", 20),
        "AUDIT_BURST_WINDOW": _float(env, "AUDIT_BURST_WINDOW", 10.0, minimum=0.1),
        **mail(env, production),
        **password_reset(env),
    }
