"""Fail fast while the database is unreachable, and notice at once when it is back.

Without this, every request that needs a frozen or vanished database waits out the connect (or
client) timeout again, holding a worker or thread the whole time, and requests that never touch
the database queue behind them. After `failures` consecutive connection failures (a refused or
timed-out connect, a connection lost, the client-side deadline of `pgwait.py`) the breaker opens:
the request session refuses at once with a 503, before it takes a connection from the pool, and a
background probe tries `SELECT 1` every `probe_interval` seconds; its first success closes the
breaker again, with no traffic needed. Any connection handed out by the pool (so it answered its
pre-ping or was freshly made) resets the count.

It is not the auth server's `CircuitBreaker`: the outcome of database work is seen by SQLAlchemy's
events, not by one guarded call, and the trial after the pause is only ever the probe, so no
request waits on a connect to find out whether the database is back.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from flask_sqlalchemy.session import Session
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import ExceptionContext

from .errors import DATABASE_DOWN, DatabaseUnavailable, note_database_failure
from .pgwait import DatabaseTimeout

log = logging.getLogger(__name__)
EXTENSION_KEY = "mita.database_breaker"


class DatabaseBreaker:
    def __init__(
        self,
        engine: Engine,
        *,
        failures: int,
        probe_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.failure_threshold = failures  # 0: never open
        self.probe_interval = probe_interval
        self.clock = clock
        self._lock = threading.Lock()
        self.is_open = False  # read without the lock on every statement: a plain attribute
        self._failures = 0  # consecutive
        self._opened_at = 0.0
        self._next_probe_at = 0.0
        self._probe: threading.Thread | None = None
        self.last_error: str | None = None
        self.opened = 0  # times, since the process started

    # --- what requests see ------------------------------------------------------------------------

    def check(self) -> None:
        """Raise the 503 at once while the breaker is open."""
        if self.is_open:
            error = DatabaseUnavailable(retry_after=self.retry_after())
            note_database_failure(error)  # however it surfaces, even inside a serializer
            raise error

    def retry_after(self) -> int:
        """Whole seconds until the next probe, at least 1 (a Retry-After header)."""
        return max(1, math.ceil(self._next_probe_at - self.clock()))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": "open" if self.is_open else "closed",
                "consecutive_failures": self._failures,
                "times_opened": self.opened,
                "last_error": self.last_error,
                "open_for": round(self.clock() - self._opened_at, 3) if self.is_open else 0.0,
            }

    # --- what SQLAlchemy reports ------------------------------------------------------------------

    def connected(self, *args: Any) -> None:
        """The pool handed out a connection (pool event `checkout`)."""
        if self._failures:  # unlocked read: the common case costs nothing
            with self._lock:
                self._failures = 0

    def failed(self, context: ExceptionContext) -> None:
        """A statement or a connect failed (engine event `handle_error`)."""
        if not _unreachable(context):
            return
        with self._lock:
            self._failures += 1
            self.last_error = f"{type(context.original_exception).__name__}"
            if self.is_open or not self.failure_threshold:
                return
            if self._failures < self.failure_threshold:
                return
            self.is_open = True
            self.opened += 1
            self._opened_at = self.clock()
            self._next_probe_at = self._opened_at + self.probe_interval
            self._probe = threading.Thread(target=self._probe_until_back, name="database-probe")
            self._probe.daemon = True
            self._probe.start()
        log.warning(
            "database breaker open after %d consecutive failures (%s); probing every %.1f s",
            self.failure_threshold,
            self.last_error,
            self.probe_interval,
        )

    # --- recovery without traffic -----------------------------------------------------------------

    def _probe_until_back(self) -> None:
        while True:
            time.sleep(max(0.0, self._next_probe_at - self.clock()))
            try:
                with self.engine.connect() as connection:
                    connection.execute(text("SELECT 1"))
            except DATABASE_DOWN:
                with self._lock:
                    self._next_probe_at = self.clock() + self.probe_interval
                continue
            except Exception:  # not an outage we know: keep probing, but say so
                log.exception("database probe failed unexpectedly")
                with self._lock:
                    self._next_probe_at = self.clock() + self.probe_interval
                continue
            with self._lock:
                self.is_open = False
                self._failures = 0
                self._probe = None
                down_for = self.clock() - self._opened_at
            log.warning("database breaker closed: the database answered after %.1f s", down_for)
            return


def _unreachable(context: ExceptionContext) -> bool:
    """A failure that says the database cannot be reached, not that a statement was wrong or
    slow: a connect that failed, a connection lost, or our client-side deadline."""
    if not isinstance(context.sqlalchemy_exception, DATABASE_DOWN):
        return False
    return (
        context.connection is None
        or context.is_disconnect
        or isinstance(context.original_exception, DatabaseTimeout)
    )


class GuardedSession(Session):
    """The request session: asks the breaker before it takes a connection for any statement
    (every query, flush and lazy load goes through `get_bind` first)."""

    def get_bind(self, *args: Any, **kwargs: Any) -> Any:
        breaker: DatabaseBreaker | None = current_app.extensions.get(EXTENSION_KEY)
        if breaker is not None:
            breaker.check()
        return super().get_bind(*args, **kwargs)


def breaker_of(app: Flask) -> DatabaseBreaker:
    return app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def init_app(app: Flask, engine: Engine) -> None:
    breaker = DatabaseBreaker(
        engine,
        failures=app.config["DB_BREAKER_FAILURES"],
        probe_interval=app.config["DB_BREAKER_PROBE_INTERVAL"],
    )
    app.extensions[EXTENSION_KEY] = breaker
    event.listen(engine, "handle_error", breaker.failed)
    event.listen(engine, "checkout", breaker.connected)  # the pool's, kept when it is recreated
