"""/health (the process is up) and /ready (the process can serve: its database answers)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from sqlalchemy import Engine, text

from .audit import writer_of
from .auth.guard import better_auth
from .database_breaker import breaker_of
from .errors import error_response
from .extensions import db
from .validation import ok
from .version import __version__

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


class DatabaseProbe:
    """Runs `SELECT 1` in a helper thread so /ready answers within its deadline, whatever the
    database does; while one probe is still stuck, later ones fail at once instead of piling up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: Future[None] | None = None

    @staticmethod
    def _select_one(engine: Engine, future: Future[None]) -> None:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            future.set_result(None)
        except Exception as error:  # reported to /ready through the future
            future.set_exception(error)

    def check(self, engine: Engine, timeout: float) -> str | None:
        """None if the database answered in time, else why not."""
        with self._lock:
            if self._running is not None and not self._running.done():
                return "a previous check is still waiting for the database"
            future: Future[None] = Future()
            self._running = future
        threading.Thread(
            target=self._select_one, args=(engine, future), name="ready-probe", daemon=True
        ).start()
        try:
            future.result(timeout=timeout)
        except FutureTimeout:
            return f"no answer within {timeout:g} s"
        except Exception as error:
            log.warning("readiness check failed: %s", type(error).__name__)
            return f"{type(error).__name__}"
        return None


@bp.get("/health")
def health() -> Response:
    return ok({"status": "ok", "version": __version__})


@bp.get("/ready")
def ready() -> Response:
    """200 while the database answers, else 503; either way with the state of the database's
    breaker. `degraded` (still 200) while the audit writer is retrying or the external auth
    server's breaker is not closed: the database decides."""
    probe: DatabaseProbe = current_app.extensions["mita.db_probe"]
    failure = probe.check(db.engine, current_app.config["READY_TIMEOUT"])
    database: dict[str, Any] = {"ok": failure is None}
    if failure is not None:
        database["error"] = failure
    database["breaker"] = breaker_of(current_app).snapshot()
    checks: dict[str, Any] = {"database": database}
    audit = checks["audit"] = writer_of(current_app).snapshot()
    audit["ok"] = not audit["retrying"]
    if current_app.config["AUTH_MODE"] == "better-auth":
        checks["auth_server"] = better_auth().snapshot()
    if failure is None:
        degraded = not all(check["ok"] for check in checks.values())
        return ok({"status": "degraded" if degraded else "ok", "checks": checks})
    return error_response(
        503,
        "service_unavailable",
        "The database is not answering.",
        headers={"Retry-After": str(current_app.config["RETRY_AFTER"])},
        extra={"checks": checks},
    )


def init_app(app: Flask) -> None:
    app.extensions["mita.db_probe"] = DatabaseProbe()
    app.register_blueprint(bp)
