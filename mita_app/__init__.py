"""MITA's backend API."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, cast

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from .version import __version__

__all__ = ["__version__", "create_app"]


def create_app(
    config: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None
) -> Flask:
    """Build the app from `env` (default: the process environment); `config` overrides."""
    from werkzeug.middleware.proxy_fix import ProxyFix

    from . import (
        api,
        application,
        audit,
        commands,
        database,
        docs,
        errors,
        health,
        logs,
        mail,
        openapi,
        slow_clients,
    )
    from .api.limits import record_rate_limited
    from .auth import guard
    from .config import from_env
    from .extensions import limiter

    app = application.App(__name__)
    os.makedirs(app.instance_path, exist_ok=True)
    default_db = "sqlite:///" + os.path.join(app.instance_path, "mita.db")
    app.config.update(from_env(env, default_database_url=default_db))
    app.config.update(config or {})
    cast(DefaultJSONProvider, app.json).sort_keys = False
    app.url_map.strict_slashes = False  # `/habits` and `/habits/` alike, never a redirect

    logs.init_app(app)  # first: every later hook and log line has the request id
    errors.init_app(app)
    slow_clients.init_app(app)  # a body that came too late: 408 before any later hook runs
    database.init_app(app)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    app.config.setdefault("RATELIMIT_ON_BREACH_CALLBACK", record_rate_limited)
    limiter.init_app(app)
    guard.init_app(app)
    audit.init_app(app)
    mail.init_app(app)
    health.init_app(app)
    openapi.init_app(app)
    docs.init_app(app)
    commands.init_app(app)
    api.init_app(app)
    if app.config["TRUSTED_PROXY_COUNT"]:
        hops = app.config["TRUSTED_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app
