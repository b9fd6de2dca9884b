"""The HTTP API: one module per resource, all under `/api`, and the same under `/api/v1`.

Every route answers with and without a trailing slash, never with a redirect: the mobile app
follows none on POST, PUT, PATCH or DELETE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

PREFIX = "/api"
VERSIONED_PREFIX = "/api/v1"


class VersionedPaths:
    """WSGI middleware: `/api/v1/...` is served as `/api/...`, by one route table."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if path == VERSIONED_PREFIX or path.startswith(VERSIONED_PREFIX + "/"):
            environ["PATH_INFO"] = PREFIX + path[len(VERSIONED_PREFIX) :]
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask) -> None:
    from . import (
        affordability,
        auth,
        budget,
        calendar,
        crash_reports,
        dashboard,
        habits,
        onboarding,
        password_reset,
        transactions,
        users,
    )

    for module in (
        auth,
        password_reset,
        users,
        crash_reports,
        habits,
        dashboard,
        affordability,
        onboarding,
        calendar,
        budget,
        transactions,
    ):
        app.register_blueprint(module.bp)
    app.wsgi_app = VersionedPaths(app.wsgi_app)  # type: ignore[method-assign]
