"""Where an audit event is between its hand-over and its end, so that it ends exactly once.

A handed-over event is queued, then in the writer's hand (its batch), and, for the moment of a
commit, being committed. It ends once: written (its commit succeeded while the writer still held
it) or spilled (one JSON line on stderr). Spilling takes an event out of the writer's hand, and the
writer checks its hand before each commit, so an event spilled is never written afterwards. Only
an event taken while its commit was under way, or after a commit whose answer was lost, may be in
the table too: its line says `possibly_written`, and the row has the same `id`.

The caller holds the writer's lock around every use of a `Hand`.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

Event = dict[str, Any]
Stamped = tuple[float, Event]  # (time.monotonic() when handed over, the event)


@dataclass(frozen=True)
class Spill:
    event: Event
    possibly_written: bool = False


class EventQueue(queue.Queue[Event | None]):
    """The bounded queue of handed-over events, oldest first (`None` is a wake-up). The time
    each was put is kept beside it, as a float: a deep queue then holds no more objects for the
    garbage collector to walk than its events."""

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        # Reentrant, as the writer's lock: `AuditWriter.abandon` runs in a signal handler, and
        # the thread it interrupted may be in the middle of a put.
        self.mutex = threading.RLock()  # type: ignore[assignment]  # typeshed says Lock
        self.not_empty = threading.Condition(self.mutex)
        self.not_full = threading.Condition(self.mutex)
        self.all_tasks_done = threading.Condition(self.mutex)

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.since: deque[float] = deque()

    def _put(self, item: Event | None) -> None:
        super()._put(item)
        self.since.append(time.monotonic())

    def _get(self) -> Event | None:
        self.since.popleft()
        return super()._get()

    def oldest(self) -> float | None:
        with self.mutex:
            return self.since[0] if self.since else None

    def take(self, limit: float = math.inf, *, until: float = math.inf) -> list[Stamped]:
        """Take up to `limit` events from the front of the queue, only those put at or before
        `until`; in one go, so that a hand-over waits for none of it."""
        taken: list[Stamped] = []
        with self.mutex:
            while self.queue and len(taken) < limit and self.since[0] <= until:
                item, since = self.queue.popleft(), self.since.popleft()
                if item is not None:
                    taken.append((since, item))
            if taken:
                self.not_full.notify_all()
        return taken


class Hand:
    """The events the writer has taken from the queue and not yet ended, in hand-over order."""

    def __init__(self) -> None:
        # Keyed by identity: the writer's batches hold these very dicts.
        self._held: dict[int, Stamped] = {}
        self._committing: set[int] = set()
        self._in_doubt: set[int] = set()  # a commit failed with no answer: it may have happened

    def __len__(self) -> int:
        return len(self._held)

    def oldest(self) -> float | None:
        return next(iter(self._held.values()))[0] if self._held else None

    def take(self, items: list[Stamped]) -> None:
        for item in items:
            self._held[id(item[1])] = item

    def still_held(self, batch: list[Event]) -> list[Event]:
        return [event for event in batch if id(event) in self._held]

    def begin_commit(self, batch: list[Event]) -> bool:
        """Mark the batch as being committed; False if part of it has been spilled meanwhile."""
        keys = {id(event) for event in batch}
        if not keys <= self._held.keys():
            return False
        self._committing |= keys
        return True

    def commit_failed(self, batch: list[Event], *, in_doubt: bool) -> None:
        keys = {id(event) for event in batch}
        self._committing -= keys
        if in_doubt:
            self._in_doubt |= keys & self._held.keys()

    def written(self, batch: list[Event]) -> int:
        """End the events of a committed batch that are still held; how many that is."""
        count = 0
        for event in batch:
            key = id(event)
            self._committing.discard(key)
            self._in_doubt.discard(key)
            if self._held.pop(key, None) is not None:
                count += 1
        return count

    def spill(self, batch: list[Event] | None = None, *, until: float | None = None) -> list[Spill]:
        """Take out what is to be spilled: the events of `batch` still held, or those handed
        over at or before `until`, or (neither given) every event held."""
        if batch is not None:
            keys = [id(event) for event in batch if id(event) in self._held]
        elif until is not None:
            keys = [key for key, (since, _) in self._held.items() if since <= until]
        else:
            keys = list(self._held)
        spills = []
        for key in keys:
            _, event = self._held.pop(key)
            doubt = key in self._committing or key in self._in_doubt
            self._committing.discard(key)
            self._in_doubt.discard(key)
            spills.append(Spill(event, possibly_written=doubt))
        return spills
