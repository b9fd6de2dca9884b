"""Flood control for the events a client can trigger at line rate without being anyone.

A garbage bearer token costs a client nothing and costs us one audit row: left alone, a flood of
them would drive the database's write rate (and the audit table's size) from outside. So, per
process and per source (event type, client address, reason), the first `limit` events of each
`window` seconds are recorded one by one, as usual; past that they are only counted, and when
the window closes one `<type>.suppressed` event says how many there were, from when to when, and
the last one's request id. Nothing goes unaccounted: rows plus suppressed counts are every event.
A normal client (an expired token, then a refresh) never comes near the limit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The events a client can cause without credentials and without costing us a password hash.
GATED = frozenset({"auth.denied", "auth.rate_limited", "auth.refresh.failed"})
# And, by reason, the attempts on a locked account: each is refused without counting, so a
# client can repeat them at the rate limit's pace (or past it, from many addresses).
GATED_REASONS = frozenset(
    {("auth.login.failed", "account_locked"), ("auth.password_change.failed", "account_locked")}
)
MAX_SOURCES = 10_000  # past this many sources in one window, events are recorded one by one


@dataclass
class _Window:
    event_type: str
    ip: str | None
    reason: str | None
    opened: float  # clock()
    seen: int = 0
    suppressed: int = 0
    first_suppressed_at: datetime | None = None
    last_suppressed_at: datetime | None = None
    last_request_id: str | None = None


class BurstGate:
    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        """Forget every window (a forked child starts afresh, with a lock of its own)."""
        self._pid = os.getpid()
        # Reentrant: the audit writer's `abandon` takes the last summaries in a signal handler,
        # which may have interrupted `admit` on the same thread.
        self._lock = threading.RLock()
        self._windows: dict[tuple[str, str | None, str | None], _Window] = {}
        self._closed: list[_Window] = []

    def admit(
        self, event_type: str, ip: str | None, reason: str | None, request_id: str | None
    ) -> bool:
        """True: record this event. False: it has been counted into its source's window."""
        if self.limit <= 0 or (
            event_type not in GATED and (event_type, reason) not in GATED_REASONS
        ):
            return True
        if self._pid != os.getpid():
            self.reset()
        key = (event_type, ip, reason)
        now = self.clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.opened >= self.window:
                self._close(key, window)
                window = None
            if window is None:
                if len(self._windows) >= MAX_SOURCES:
                    self._close_expired(now)
                    if len(self._windows) >= MAX_SOURCES:
                        return True
                window = self._windows[key] = _Window(event_type, ip, reason, opened=now)
            window.seen += 1
            if window.seen <= self.limit:
                return True
            stamp = datetime.now(UTC)
            window.suppressed += 1
            window.first_suppressed_at = window.first_suppressed_at or stamp
            window.last_suppressed_at = stamp
            window.last_request_id = request_id
            return False

    def summaries(self, *, final: bool = False) -> list[dict[str, Any]]:
        """What the windows closed since the last call suppressed (with `final`, every window
        closes now), as `(event_type, ip, details)` for `<type>.suppressed` events."""
        with self._lock:
            if final:
                for key, window in list(self._windows.items()):
                    self._close(key, window)
            else:
                self._close_expired(self.clock())
            closed, self._closed = self._closed, []
        return [
            {
                "event_type": f"{window.event_type}.suppressed",
                "ip": window.ip,
                "details": {
                    "reason": window.reason,
                    "count": window.suppressed,
                    "first_at": window.first_suppressed_at,
                    "last_at": window.last_suppressed_at,
                    "last_request_id": window.last_request_id,
                    "window_seconds": self.window,
                    "recorded_one_by_one": self.limit,
                },
            }
            for window in closed
        ]

    def _close(self, key: tuple[str, str | None, str | None], window: _Window) -> None:
        del self._windows[key]
        if window.suppressed:
            self._closed.append(window)

    def _close_expired(self, now: float) -> None:
        for key, window in list(self._windows.items()):
            if now - window.opened >= self.window:
                self._close(key, window)
