"""The audit writer: one thread per process draining a bounded queue into the database.

It writes on an engine of its own (a pool of one connection), never the request pool, so it
cannot starve requests of connections. Each batch is one transaction. While the database is
down it keeps its batch and retries with capped exponential backoff; events that do not fit in
the queue, or that the database refuses, or that are still unwritten when the shutdown budget
runs out, are written to stderr as one JSON line each and counted: none is dropped silently.

The thread and its lifecycle are `ProcessQueueWorker`'s (`mita_app/background.py`): one per
process, started in each gunicorn worker (`post_worker_init`, or lazily on first use), stopped
within a budget by `worker_exit` (or `atexit` elsewhere).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import Engine, create_engine

from ..background import ProcessQueueWorker
from ..client import valid_ip
from ..errors import DATABASE_DOWN
from ..extensions import db
from .bursts import BurstGate
from .events import build
from .storage import insert_events, report_statement

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0  # seconds between reports of a busy writer
IDLE_HEARTBEAT_INTERVAL = 10.0  # ... and of an idle one
_INITIAL_BACKOFF = 0.05


class AuditWriter(ProcessQueueWorker[dict[str, Any]]):
    """Queue, thread and counters of one process's audit pipeline (`app.extensions`)."""

    thread_name = "audit-writer"

    def __init__(self, app: Flask) -> None:
        config = app.config
        self.app = app
        self.enabled: bool = config["AUDIT_ENABLED"]
        self.batch_size: int = config["AUDIT_BATCH_SIZE"]
        self.flush_interval: float = config["AUDIT_FLUSH_INTERVAL"]
        self.retry_max: float = config["AUDIT_RETRY_MAX"]
        self.gate = BurstGate(config["AUDIT_BURST_LIMIT"], config["AUDIT_BURST_WINDOW"])
        super().__init__(
            queue_size=config["AUDIT_QUEUE_SIZE"],
            shutdown_timeout=config["AUDIT_SHUTDOWN_TIMEOUT"],
        )

    def _reset(self) -> None:
        super()._reset()
        self._engine: Engine | None = None
        self._last_report = 0.0
        self.writer_id = uuid.uuid4()
        self.started_at = datetime.now(UTC)
        self.written = self.batches = self.write_failures = self.spilled = 0
        self.retrying = False
        self.last_error: str | None = None

    # --- the side requests and commands see ------------------------------------------------------

    def start(self) -> None:
        """Start this process's writer thread, once. Never in a process that only forks."""
        if self.enabled:
            super().start()

    def submit(self, events: list[dict[str, Any]]) -> None:
        """Queue events; never blocks. What does not fit is spilled to the log, and counted."""
        if not events:
            return
        self.start()
        self._enqueue(events, from_writer=False)

    def _enqueue(self, events: list[dict[str, Any]], *, from_writer: bool) -> None:
        # Under the lock, so that no event slips into the queue after `stop` has emptied it
        # (only the writer itself still queues then: the summaries of its last windows).
        with self._lock:
            self._pending += len(events)
            if self._stopped and not from_writer:
                refused, reason = list(events), "writer_stopped"
            else:
                refused, reason = [], "queue_full"
                for event in events:
                    try:
                        self._queue.put_nowait(event)
                    except queue.Full:
                        refused.append(event)
        for event in refused:
            self._spill(event, reason)

    def _left_over(self, budget: float, *, finished: bool) -> None:
        if not finished:
            log.error("audit writer did not finish within %.1f s", budget)
        for event in self._take_queued():  # only if the thread gave up, or never ran
            self._spill(event, "shutdown")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            return {
                "enabled": self.enabled,
                "running": running,
                "pid": self._pid,
                "queue_depth": self._queue.qsize(),
                "queue_size": self.queue_size,
                "written": self.written,
                "batches": self.batches,
                "write_failures": self.write_failures,
                "spilled": self.spilled,
                "retrying": self.retrying,
                "last_error": self.last_error,
            }

    # --- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        with self.app.app_context():
            try:
                while True:
                    batch = self._take_batch()
                    try:
                        if batch:
                            self._write(batch)
                        elif self._stopping.is_set():
                            if self._queue_summaries(final=True):
                                continue
                            break
                        elif time.monotonic() - self._last_report >= IDLE_HEARTBEAT_INTERVAL:
                            self._report_alone()
                        self._queue_summaries(final=False)
                    except Exception:  # the thread must outlive any bug: spill and go on
                        log.exception("audit writer failed on a batch of %d", len(batch))
                        for event in batch:
                            self._spill(event, "writer_error")
                if not self.retrying:  # a database that is down would only cost the budget
                    self._report_alone()
            finally:
                if self._engine is not None:
                    self._engine.dispose()

    def _queue_summaries(self, *, final: bool) -> int:
        """Queue a `<type>.suppressed` event for each flood window that has closed."""
        events = []
        for summary in self.gate.summaries(final=final):
            event = build(summary["event_type"], details=summary["details"])
            event["ip"] = valid_ip(summary["ip"])
            events.append(event)
        if events:
            self._enqueue(events, from_writer=True)
        return len(events)

    def _take_batch(self) -> list[dict[str, Any]]:
        """Up to `batch_size` events: waits for the first, then lets the queue fill for one
        flush interval (unless a batch is already there, or stopping) and takes what is there.

        Sleeping instead of waiting on the queue for each further event matters: a thread
        blocked in `get` is woken by every `put`, and each wake-up costs a request the GIL."""
        try:
            if self._stopping.is_set():
                first = self._queue.get_nowait()
            else:
                first = self._queue.get(timeout=self.flush_interval)
        except queue.Empty:
            return []
        if self._queue.qsize() < self.batch_size - 1:
            self._stopping.wait(self.flush_interval)
        batch = [] if first is None else [first]
        return batch + self._take_queued(self.batch_size - len(batch))

    def _write(self, batch: list[dict[str, Any]]) -> None:
        delay = _INITIAL_BACKOFF
        while True:
            try:
                report = time.monotonic() - self._last_report >= HEARTBEAT_INTERVAL
                self._insert(batch, report=report)
            except DATABASE_DOWN as error:
                # The database is unreachable: keep the events and try again later.
                self._failed(error, retrying=True)
                wait = min(delay, self._give_up_at - time.monotonic())
                if wait <= 0:
                    for event in batch:
                        self._spill(event, "database_unavailable_at_shutdown")
                    return
                if self._interrupt.wait(wait):  # `stop` was called: the budget is known now
                    self._interrupt.clear()
                delay = min(delay * 2, self.retry_max)
                continue
            except Exception as error:
                # The database refused this data: find the events it refuses, one by one.
                self._failed(error, retrying=False)
                if len(batch) == 1:
                    log.warning("audit event refused by the database: %s", type(error).__name__)
                    self._spill(batch[0], "refused")
                    return
                for event in batch:
                    self._write([event])
                return
            self._written(len(batch))
            return

    def _insert(self, batch: list[dict[str, Any]], *, report: bool) -> None:
        with self._get_engine().begin() as connection:
            insert_events(connection, batch)
            if report:
                connection.execute(report_statement(connection.dialect.name, self._report()))

    def _report_alone(self) -> None:
        try:
            with self._get_engine().begin() as connection:
                connection.execute(report_statement(connection.dialect.name, self._report()))
        except Exception as error:  # a report is worth one try; the next one carries the news
            log.debug("audit writer report failed: %s", type(error).__name__)
            self._last_report = time.monotonic()

    def _report(self) -> dict[str, Any]:
        """What this writer reports of itself to `audit_writers`."""
        self._last_report = time.monotonic()
        with self._lock:
            return {
                "id": self.writer_id,
                "host": socket.gethostname()[:255],
                "pid": os.getpid(),
                "started_at": self.started_at,
                "updated_at": datetime.now(UTC),
                "queue_depth": self._queue.qsize(),
                "written": self.written,
                "batches": self.batches,
                "write_failures": self.write_failures,
                "spilled": self.spilled,
                "last_error": self.last_error,
            }

    def _get_engine(self) -> Engine:
        if self._engine is None:
            options = dict(self.app.config["SQLALCHEMY_ENGINE_OPTIONS"])
            if "pool_size" in options:
                options.update(pool_size=1, max_overflow=0)
            # db.engine's URL is the configured one as Flask-SQLAlchemy resolved it (a relative
            # SQLite path lands in instance/); only its URL is used, never its pool.
            self._engine = create_engine(db.engine.url, **options)
        return self._engine

    # --- bookkeeping ------------------------------------------------------------------------------

    def _written(self, count: int) -> None:
        with self._settling(count):
            self.written += count
            self.batches += 1
            self.retrying = False

    def _failed(self, error: Exception, *, retrying: bool) -> None:
        with self._lock:
            self.write_failures += 1
            self.retrying = retrying
            self.last_error = f"{type(error).__name__}"
        if retrying and self.write_failures % 20 == 1:
            log.warning("audit writer cannot reach the database (%s); retrying", self.last_error)

    def _spill(self, event: dict[str, Any], reason: str) -> None:
        """Write one event as one JSON line to stderr, and count it."""
        line = json.dumps({"audit_spill": reason, **event}, default=str, ensure_ascii=True)
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # stderr closed: the count still says it happened
            pass
        with self._settling(1):
            self.spilled += 1
