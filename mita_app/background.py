"""What the per-process pipelines (the audit writer, the mail sender) share: a bounded queue
drained by one daemon thread that belongs to the process that started it.

Threads do not survive a fork: a child that finds its parent's state re-creates it (queue, locks,
events) and starts its own thread on first use. The thread is a daemon, so it never holds up the
interpreter's exit; `stop` (gunicorn: `worker_exit`, or `atexit` elsewhere) lets it finish what
is queued within a budget, and a subclass says what becomes of what is still left then.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from typing import ClassVar, Generic, TypeVar

Item = TypeVar("Item")

# Taken when a process adopts its worker. A child must not inherit it held by a parent thread.
_fork_guard = threading.Lock()


def _new_fork_guard() -> None:
    global _fork_guard
    _fork_guard = threading.Lock()


os.register_at_fork(after_in_child=_new_fork_guard)


class ProcessQueueWorker(abc.ABC, Generic[Item]):
    """A queue of `Item`s and the thread that drains it, one per process. `None` on the queue is
    the wake-up `stop` sends, so that an idle thread need not wait for an item to notice it."""

    thread_name: ClassVar[str]

    def __init__(self, *, queue_size: int, shutdown_timeout: float) -> None:
        self.queue_size = queue_size
        self.shutdown_timeout = shutdown_timeout
        self._pid: int | None = None
        self._reset()

    def _reset(self) -> None:
        """Fresh per-process state: a forked child must not use its parent's queue or locks."""
        # Reentrant: a signal handler (gunicorn's `worker_abort`) may need it while the thread
        # it interrupted holds it.
        self._lock = threading.RLock()
        self._settled = threading.Condition(self._lock)
        self._queue: queue.Queue[Item | None] = queue.Queue(self.queue_size)
        self._stopping = threading.Event()
        self._interrupt = threading.Event()  # cuts a retry's backoff short when `stop` is called
        self._stopped = False
        self._give_up_at = float("inf")
        self._thread: threading.Thread | None = None
        self._pending = 0  # queued, not yet done with (written, sent, spilled or given up)

    def _adopt_process(self) -> None:
        pid = os.getpid()
        if self._pid != pid:
            with _fork_guard:
                if self._pid != pid:
                    self._reset()
                    self._pid = pid

    def start(self) -> None:
        """Start this process's thread, once."""
        self._adopt_process()
        with self._lock:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        atexit.register(self._stop_at_exit, os.getpid())

    def flush(self, timeout: float) -> bool:
        """Wait until every queued item is done with; False if time ran out."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(remaining)
        return True

    def stop(self, timeout: float | None = None) -> None:
        """Let the thread finish what is queued within `timeout` seconds, then stop."""
        if self._pid != os.getpid():
            return
        budget = self.shutdown_timeout if timeout is None else timeout
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            thread = self._thread
        self._give_up_at = time.monotonic() + budget
        self._stopping.set()
        self._interrupt.set()
        self._wake()
        if thread is not None:
            thread.join(budget + 0.5)
        self._left_over(budget, finished=thread is None or not thread.is_alive())

    def _wake(self) -> None:
        """Wake an idle thread so that it sees `_stopping` at once."""
        # A full queue keeps the thread busy anyway, and it looks at `_stopping` between items.
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)

    def _stop_at_exit(self, pid: int) -> None:
        if pid == os.getpid():
            self.stop()

    def _take_queued(self, limit: float = float("inf")) -> list[Item]:
        """Up to `limit` items that are on the queue now, without waiting."""
        items: list[Item] = []
        while len(items) < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:  # a wake-up from `stop`
                items.append(item)
        return items

    @contextlib.contextmanager
    def _settling(self, count: int) -> Iterator[None]:
        """Update counters under the lock, then count `count` items as done for `flush`."""
        with self._settled:
            yield
            self._pending -= count
            self._settled.notify_all()

    @abc.abstractmethod
    def _run(self) -> None:
        """The thread: drain the queue until `_stopping` is set and it is empty."""

    @abc.abstractmethod
    def _left_over(self, budget: float, *, finished: bool) -> None:
        """What `stop` does, once it has waited for the thread (still busy unless `finished`),
        with whatever is still queued or pending."""
