"""A small circuit breaker: closed, open after consecutive failures, half-open after a pause.

Why not pybreaker: it holds a lock for the whole guarded call (threaded workers would queue
behind one slow auth-server call), and its half-open state lets every caller through. Here the
lock covers only the bookkeeping, half-open admits exactly one trial call at a time, and recovery
does not wait for traffic: when the breaker opens it schedules a probe for the end of the pause,
so it closes again within one reset period of the server healing even if every request in the
meantime is answered from a cache.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class BreakerOpen(Exception):
    """The call was not attempted: the breaker is open (or its one trial call is under way)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"circuit open; next trial in {retry_after:.1f} s")
        self.retry_after = retry_after


class UpstreamFailure(Exception):
    """The guarded dependency failed: it counts toward opening the breaker."""


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_timeout: float,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[str, str, dict[str, Any]], None] | None = None,
        probe: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.clock = clock
        self.on_transition = on_transition
        self.probe = probe  # the trial to make when the pause ends (not itself guarded by us)
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0  # consecutive
        self._opened_at = 0.0
        self._trial: object | None = None  # the ticket of the half-open trial under way
        self._timer: threading.Timer | None = None
        self._transitions: list[tuple[str, str, dict[str, Any]]] = []  # not yet announced
        self.last_error: str | None = None

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """Guard one call: raises BreakerOpen instead of calling; an `UpstreamFailure` from
        the block counts as a failure, a normal exit as a success, anything else as neither."""
        ticket = self._allow()
        try:
            yield
        except UpstreamFailure as error:
            self._settle(ticket, error)
            raise
        except BaseException:
            self._settle(ticket, None, verdict=False)
            raise
        self._settle(ticket, None)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self._state,
                "consecutive_failures": self._failures,
                "last_error": self.last_error,
                "retry_in": round(self._retry_after(self.clock()), 3),
            }

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    # --- transitions: decided under the lock, announced after it ---------------------------------

    def _allow(self) -> object | None:
        """None for a call admitted while closed; the trial's ticket in half-open."""
        with self._lock:
            now = self.clock()
            if self._state == OPEN:
                if now - self._opened_at < self.reset_timeout:
                    raise BreakerOpen(self._retry_after(now))
                self._move(HALF_OPEN)
            if self._state == HALF_OPEN:
                if self._trial is not None:
                    raise BreakerOpen(self._retry_after(now))
                self._trial = ticket = object()
            else:
                ticket = None
        self._announce()
        return ticket

    def _settle(
        self, ticket: object | None, error: BaseException | None, *, verdict: bool = True
    ) -> None:
        """Apply a call's outcome: the trial's decides half-open; any other call's counts only
        while closed (a call admitted before the breaker opened says nothing about now)."""
        with self._lock:
            if ticket is not None:
                if ticket is not self._trial:
                    return
                self._trial = None
                if not verdict:
                    self._arm_probe(self.reset_timeout)  # no answer yet: try again later
                elif error is None:
                    self._failures = 0
                    self._move(CLOSED)
                else:
                    self._failed(error)
            elif verdict and self._state == CLOSED:
                if error is None:
                    self._failures = 0
                else:
                    self._failed(error)
        self._announce()

    def _failed(self, error: BaseException) -> None:
        self._failures += 1
        self.last_error = f"{type(error).__name__}: {error}"[:200]
        if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self.clock()
            self._move(OPEN)
            self._arm_probe(self.reset_timeout)

    def _retry_after(self, now: float) -> float:
        if self._state == OPEN:
            return max(0.0, self._opened_at + self.reset_timeout - now)
        return 1.0 if self._state == HALF_OPEN else 0.0

    def _move(self, state: str) -> None:
        previous, self._state = self._state, state
        if state == CLOSED and self._timer is not None:
            self._timer.cancel()  # healed: no probe needed any more
            self._timer = None
        details = {"consecutive_failures": self._failures, "last_error": self.last_error}
        self._transitions.append((previous, state, details))

    def _announce(self) -> None:
        """Log and report the transitions made under the lock, outside it: a callback may look
        at the breaker, and its failure must not become the guarded call's."""
        with self._lock:
            transitions, self._transitions = self._transitions, []
        for previous, state, details in transitions:
            log.warning("circuit %s: %s -> %s (%s)", self.name, previous, state, self.last_error)
            if self.on_transition is not None:
                try:
                    self.on_transition(previous, state, details)
                except Exception:
                    log.exception("circuit %s: reporting a transition failed", self.name)

    # --- recovery without traffic -----------------------------------------------------------------

    def _arm_probe(self, delay: float) -> None:
        if self.probe is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(delay, self._run_probe)
        self._timer.daemon = True
        self._timer.name = f"{self.name}-probe"
        self._timer.start()

    def _run_probe(self) -> None:
        """The trial call at the end of the pause, unless a request has already taken it."""
        assert self.probe is not None
        try:
            with self.attempt():
                self.probe()
        except BreakerOpen as error:
            with self._lock:
                if self._state == OPEN:  # the clock disagrees with the timer: look again then
                    self._arm_probe(max(error.retry_after, 0.05))
        except UpstreamFailure:
            pass  # reopened, and the next probe armed
        except Exception:  # `attempt` has re-armed the probe
            log.exception("circuit %s: probe failed unexpectedly", self.name)


def retry_after_seconds(error: BreakerOpen) -> int:
    """A whole number of seconds for a Retry-After header: at least 1."""
    return max(1, math.ceil(error.retry_after))
