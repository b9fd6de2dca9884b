"""The audit writer: one thread per process draining a bounded queue into the database.

It writes on an engine of its own (a pool of one connection), never the request pool, so it
cannot starve requests of connections. Each batch is one transaction. While the database is
down it keeps its batch and retries with capped exponential backoff. An event ends exactly once
(`custody.py`): written, or spilled to stderr as one JSON line and counted. Spilled are events
that do not fit in the queue, that the database refuses, that have waited `AUDIT_SPILL_AFTER`
seconds while the writer cannot write (so that a SIGKILL loses at most that window), that are
still unwritten when the shutdown budget runs out or when gunicorn aborts the worker, and those
the writer held when it failed.

The thread and its lifecycle are `ProcessQueueWorker`'s (`mita_app/background.py`): one per
process, started in each gunicorn worker (`post_worker_init`, or lazily on first use), stopped
within a budget by `worker_exit` (or `atexit` elsewhere), or abandoned by `worker_abort`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sys
import threading
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
from .custody import Event, EventQueue, Hand, Spill
from .events import build
from .storage import insert_events, report_statement

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0  # seconds between reports of a busy writer
IDLE_HEARTBEAT_INTERVAL = 10.0  # ... and of an idle one
_INITIAL_BACKOFF = 0.05
_ERROR_PAUSE = 0.1  # after a failure of the writer itself: a bug that repeats must not spin


class _Withdrawn(Exception):
    """Part of the batch was spilled during the attempt: roll back, write what is still held."""


class AuditWriter(ProcessQueueWorker[Event]):
    """Queue, thread and counters of one process's audit pipeline (`app.extensions`)."""

    thread_name = "audit-writer"

    def __init__(self, app: Flask) -> None:
        config = app.config
        self.app = app
        self.enabled: bool = config["AUDIT_ENABLED"]
        self.batch_size: int = config["AUDIT_BATCH_SIZE"]
        self.flush_interval: float = config["AUDIT_FLUSH_INTERVAL"]
        self.retry_max: float = config["AUDIT_RETRY_MAX"]
        self.spill_after: float = config["AUDIT_SPILL_AFTER"]
        self.gate = BurstGate(config["AUDIT_BURST_LIMIT"], config["AUDIT_BURST_WINDOW"])
        super().__init__(
            queue_size=config["AUDIT_QUEUE_SIZE"],
            shutdown_timeout=config["AUDIT_SHUTDOWN_TIMEOUT"],
        )

    def _reset(self) -> None:
        super()._reset()
        self._events = EventQueue(self.queue_size)
        self._queue = self._events
        self._hand = Hand()
        self._arrived = threading.Event()  # the queue has events (set under the lock)
        self._finished = threading.Event()  # stopped or abandoned: the watch may end
        self._watch: threading.Thread | None = None
        self._last_commit = time.monotonic()  # the writer's last success (or its birth)
        self._engine: Engine | None = None
        self._last_report = 0.0
        self.writer_id = uuid.uuid4()
        self.started_at = datetime.now(UTC)
        self.written = self.batches = self.write_failures = self.spilled = 0
        self.retrying = False
        self.last_error: str | None = None

    # --- the side requests and commands see ------------------------------------------------------

    def start(self) -> None:
        """Start this process's writer thread and its spill watch, once. Never in a process
        that only forks."""
        if not self.enabled:
            return
        super().start()
        if self._watch is not None:  # the usual case, without taking the lock
            return
        with self._lock:
            if self._watch is None and not self._stopped:
                self._watch = threading.Thread(
                    target=self._watch_held, name="audit-spill", daemon=True
                )
                self._watch.start()

    def submit(self, events: list[Event]) -> None:
        """Queue events; never blocks. What does not fit is spilled to the log, and counted."""
        if not events:
            return
        self.start()
        self._enqueue(events, from_writer=False)

    def _enqueue(self, events: list[Event], *, from_writer: bool) -> None:
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
                        self._events.put_nowait(event)
                    except queue.Full:
                        refused.append(event)
                if len(refused) < len(events) and not self._arrived.is_set():
                    self._arrived.set()
        self._spill([Spill(event) for event in refused], reason)

    def _wake(self) -> None:
        self._arrived.set()

    def abandon(self, reason: str) -> None:
        """Spill at once every event not yet written (queued, in the writer's hand, or being
        committed) and take no more: the process is about to be killed, with no time to wait
        for the database or the thread. Safe in a signal handler: the locks it takes are
        reentrant, so the thread it interrupted may be holding them."""
        if self._pid != os.getpid():
            return
        with self._lock:
            self._stopped = True
            spills = [Spill(event) for _, event in self._events.take()]
            spills += self._hand.spill()
        self._stopping.set()
        self._interrupt.set()
        summaries = self._summaries(final=True)
        with self._lock:
            self._pending += len(summaries)
        self._spill(spills + [Spill(event) for event in summaries], reason)
        self._finished.set()

    def _left_over(self, budget: float, *, finished: bool) -> None:
        if not finished:
            log.error("audit writer did not finish within %.1f s", budget)
        with self._lock:  # only if the thread gave up, is stuck on the database, or never ran
            spills = [Spill(event) for _, event in self._events.take()]
            spills += self._hand.spill()
        self._spill(spills, "shutdown")
        self._finished.set()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            return {
                "enabled": self.enabled,
                "running": running,
                "pid": self._pid,
                "queue_depth": self._events.qsize(),
                "queue_size": self.queue_size,
                "held": len(self._hand),
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
                    try:
                        self._drain()
                        break
                    # The thread must outlive any bug of its own, a stray sys.exit included
                    # (nothing else raises in a thread that is not the main one).
                    except BaseException:
                        log.exception("audit writer failed; spilling the events it held")
                        self._spill_held(reason="writer_error")
                        self._stopping.wait(_ERROR_PAUSE)
                if not self.retrying:  # a database that is down would only cost the budget
                    self._report_alone()
            finally:
                if self._engine is not None:
                    self._engine.dispose()

    def _drain(self) -> None:
        """Write batches until stopped and the queue is empty."""
        while True:
            batch = self._take_batch()
            if batch:
                self._write(batch)
            elif self._stopping.is_set():
                summaries = self._summaries(final=True)
                if not summaries:
                    return
                self._enqueue(summaries, from_writer=True)
                continue
            elif time.monotonic() - self._last_report >= IDLE_HEARTBEAT_INTERVAL:
                self._report_alone()
            summaries = self._summaries(final=False)
            if summaries:
                self._enqueue(summaries, from_writer=True)

    def _summaries(self, *, final: bool) -> list[Event]:
        """A `<type>.suppressed` event for each flood window that has closed."""
        events = []
        for summary in self.gate.summaries(final=final):
            event = build(summary["event_type"], details=summary["details"], from_request=False)
            event["ip"] = valid_ip(summary["ip"])
            events.append(event)
        return events

    def _take_batch(self) -> list[Event]:
        """Up to `batch_size` events, moved from the queue into the writer's hand at once:
        waits for the first, then lets the queue fill for one flush interval (unless a batch is
        already there, or stopping).

        Sleeping instead of waiting on the queue for each further event matters: a thread
        blocked in `get` is woken by every `put`, and each wake-up costs a request the GIL."""
        if not self._stopping.is_set():
            if not self._arrived.wait(self.flush_interval):
                return []
            if self._events.qsize() < self.batch_size:
                self._stopping.wait(self.flush_interval)
        with self._lock:
            taken = self._events.take(self.batch_size)
            if self._events.empty():
                self._arrived.clear()
            self._hand.take(taken)
        return [event for _, event in taken]

    def _write(self, batch: list[Event]) -> None:
        delay = _INITIAL_BACKOFF
        while True:
            with self._lock:
                batch = self._hand.still_held(batch)
            if not batch:  # spilled while the writer waited: never written after that
                return
            try:
                self._commit(batch)
            except _Withdrawn:
                continue
            except DATABASE_DOWN as error:
                # The database is unreachable: keep the events and try again later.
                self._failed(error, retrying=True)
                wait = min(delay, self._give_up_at - time.monotonic())
                if wait <= 0:
                    self._spill_held(batch, reason="database_unavailable_at_shutdown")
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
                    self._spill_held(batch, reason="refused")
                    return
                for event in batch:
                    self._write([event])
                return
            self._written(batch)
            return

    def _commit(self, batch: list[Event]) -> None:
        """One transaction: the batch (and, now and then, the writer's report). Committed only
        if the writer still holds every event of it when the commit starts."""
        report = time.monotonic() - self._last_report >= HEARTBEAT_INTERVAL
        with self._get_engine().connect() as connection:
            transaction = connection.begin()
            insert_events(connection, batch)
            if report:
                connection.execute(report_statement(connection.dialect.name, self._report()))
            with self._lock:
                held = self._hand.begin_commit(batch)
            if not held:
                transaction.rollback()
                raise _Withdrawn
            try:
                transaction.commit()
            except BaseException as error:
                # Lost on the way (no answer), the commit may or may not have happened.
                in_doubt = isinstance(error, DATABASE_DOWN)
                with self._lock:
                    self._hand.commit_failed(batch, in_doubt=in_doubt)
                raise

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
                "queue_depth": self._events.qsize() + len(self._hand),
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

    # --- the spill watch --------------------------------------------------------------------------

    def _watch_held(self) -> None:
        """A thread of its own, so that the bound holds while the writer waits on a database
        that does not answer at all."""
        while True:
            try:
                pause = self._spill_overdue()
            except Exception:  # the watch, too, must outlive any bug of its own
                log.exception("audit spill watch failed")
                pause = self.spill_after
            if self._finished.wait(pause):
                return

    def _spill_overdue(self) -> float:
        """Spill what has been held `spill_after` seconds while the writer has written nothing
        for as long (the database is down or hung, or the writer is stuck); returns how long to
        wait before looking again. A writer that is behind but writing keeps its events."""
        now = time.monotonic()
        with self._lock:
            since = [t for t in (self._hand.oldest(), self._events.oldest()) if t is not None]
            if not since:
                return self.spill_after
            due = max(min(since), self._last_commit) + self.spill_after
            if due > now:
                return due - now
            until = now - self.spill_after
            spills = self._hand.spill(until=until)
            spills += [Spill(event) for _, event in self._events.take(until=until)]
        self._spill(spills, "held_too_long")
        return 0.0

    # --- bookkeeping ------------------------------------------------------------------------------

    def _written(self, batch: list[Event]) -> None:
        with self._settled:
            count = self._hand.written(batch)  # not those spilled while the commit was under way
            self.written += count
            self.batches += 1
            self.retrying = False
            self._last_commit = time.monotonic()
            self._pending -= count
            self._settled.notify_all()

    def _failed(self, error: Exception, *, retrying: bool) -> None:
        with self._lock:
            self.write_failures += 1
            self.retrying = retrying
            self.last_error = f"{type(error).__name__}"
        if retrying and self.write_failures % 20 == 1:
            log.warning("audit writer cannot reach the database (%s); retrying", self.last_error)

    def _spill_held(self, batch: list[Event] | None = None, *, reason: str) -> None:
        """Spill the events of `batch` the writer still holds (all it holds, without one)."""
        with self._lock:
            spills = self._hand.spill(batch)
        self._spill(spills, reason)

    def _spill(self, spills: list[Spill], reason: str) -> None:
        """Write each event as one JSON line to stderr, and count them."""
        if not spills:
            return
        lines = []
        for spill in spills:
            head: dict[str, Any] = {"audit_spill": reason}
            if spill.possibly_written:
                head["possibly_written"] = True
            lines.append(json.dumps({**head, **spill.event}, default=str, ensure_ascii=True))
        try:
            sys.stderr.write("\n".join(lines) + "\n")
            sys.stderr.flush()
        except (OSError, ValueError, RuntimeError):  # closed, or interrupted by a signal handler
            pass  # the count still says it happened
        with self._settling(len(spills)):
            self.spilled += len(spills)
