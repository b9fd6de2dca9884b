"""Least-connections accepting for gunicorn's threaded worker.

gthread accepts greedily: every worker polls the one listening socket, the first to wake
accepts, and a kept-alive connection stays with the worker that accepted it until it closes. A
client that opens its connections at once (a load generator, a proxy filling its pool) often
finds them all on one worker, whose GIL then serves everything while the others idle.

Here each worker publishes how many client connections it holds on a `Board` in memory shared by
the workers of one master, and accepts only while no other live worker holds fewer (by more than
`TOLERANCE`). A worker that holds back takes the listener out of its poller for `HOLD` seconds
(the poller is level-triggered: left in, the waiting connection would wake it over and over),
then looks again. It never leaves a connection waiting for long: once it has held back for
`MAX_WAIT` (the worker holding fewer may be slow to accept, its main loop waiting for the GIL),
it accepts as gthread would until the listener is empty.

Accepting alone cannot undo a split made while a worker was missing: when one is recycled, its
clients connect again at once, all to the others, and its replacement starts with nothing. So a
worker holding more than `SHED` connections beyond another closes a connection after its
response ("Connection: close", which HTTP/1.1 clients and proxies handle by connecting again),
and the new connection goes to the worker holding fewer; not for `SHED_PAUSE` after it had to
accept anyway, though: the others are not taking any, and the connection would come back.

gunicorn builds each worker object in the master and then forks: the first one made creates the
board there, before any fork, so every worker of that master shares it without any hook in
gunicorn.conf.py (the benchmark's anchor apps use this worker class with a configuration of
their own). A slot belongs to a worker's PID; the master hands a new worker a slot whose process
is gone, so slots survive recycling and crashes, and a slot whose process is gone never makes the
others hold back. A worker counts for the others only once it polls the listener (not while a
replacement is still starting), and gives its slot up when it stops accepting; with more
workers than slots (or `reuse_port`, where the kernel picks the socket and so the worker), a
worker without a slot accepts greedily.
"""

from __future__ import annotations

import mmap
import os
import select
import socket
import time
from typing import Any, ClassVar

from gunicorn.workers import gthread

# Slots per worker gunicorn is configured with: room for a reload (HUP starts the new workers
# before it stops the old ones) and for a few more workers (TTIN).
SLOTS_PER_WORKER = 4
# A worker holds back only for a worker holding at least this many + 1 fewer connections.
TOLERANCE = 0
# Seconds the listener stays out of a holding-back worker's poller (epoll counts milliseconds).
HOLD = 0.001
# Seconds a worker holds back at most before it accepts anyway.
MAX_WAIT = 0.015
# A worker holding this many connections more than another closes one after its response.
SHED = 2
# Seconds after accepting what the others left waiting in which a worker sheds nothing: the
# connection would only come back to it.
SHED_PAUSE = 1.0


class Board:
    """`slots` pairs of (PID, open client connections) in anonymous shared memory: made before
    the master forks, the same pages for the master and all its workers. A PID of 0 is a free
    slot; -1 connections, a worker not polling the listener yet (forked, still starting). Each
    number is one aligned 8-byte word, written by one process at a time; a reader only ever
    takes it as a hint."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._memory = mmap.mmap(-1, slots * 2 * 8)  # MAP_SHARED | MAP_ANONYMOUS
        self._cells = memoryview(self._memory).cast("q")

    def claim(self) -> int | None:
        """In the master, for a worker about to be forked: a slot no live process holds."""
        for slot in range(self.slots):
            pid = self._cells[2 * slot]
            if pid == 0 or not _alive(pid):
                self._cells[2 * slot] = 0  # until the worker's PID is known
                self._cells[2 * slot + 1] = -1
                return slot
        return None

    def enter(self, slot: int, pid: int) -> None:
        self._cells[2 * slot] = pid

    def leave(self, slot: int) -> None:
        self._cells[2 * slot] = 0

    def publish(self, slot: int, connections: int) -> None:
        self._cells[2 * slot + 1] = connections

    def fewer_elsewhere(self, slot: int, connections: int) -> bool:
        """Whether a live worker other than `slot`'s holds fewer than `connections`."""
        cells = self._cells.tolist()
        return any(
            other != slot and pid and 0 <= held < connections and _alive(pid)
            for other, (pid, held) in enumerate(zip(cells[0::2], cells[1::2], strict=True))
        )


def _alive(pid: int) -> bool:
    """Whether the process exists (a killed worker is gone once the master has reaped it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pending(listeners: list[socket.socket]) -> bool:
    """Whether a connection waits to be accepted on any of the listeners."""
    poller = select.poll()
    for listener in listeners:
        poller.register(listener, select.POLLIN)
    return bool(poller.poll(0))


class LeastConnectionsWorker(gthread.ThreadWorker):
    """gthread's worker, accepting a connection only when no other worker holds fewer: a
    subclass calls `holds_back` first thing in `accept`, and `sheds` before serving a request."""

    board: ClassVar[Board | None] = None
    slot: int | None = None
    _pid: Any = None
    _nr_conns = 0
    held_until = 0.0  # while the listener is out of the poller
    waiting_since: float | None = None  # since this worker first held back for what waits
    last_seen = 0.0  # when the listener was last found readable
    forced_at = -SHED_PAUSE  # when it last accepted what the others left waiting

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.cfg.reuse_port:
            return
        if LeastConnectionsWorker.board is None:
            LeastConnectionsWorker.board = Board(SLOTS_PER_WORKER * max(self.cfg.workers, 2))
        self.slot = LeastConnectionsWorker.board.claim()

    # gunicorn sets `pid` in the master right after the fork, and again in the worker: either
    # way the slot is the new worker's before the master forks another one.
    @property
    def pid(self) -> Any:
        return self._pid

    @pid.setter
    def pid(self, pid: Any) -> None:
        self._pid = pid
        if isinstance(pid, int) and self.slot is not None and self.board is not None:
            self.board.enter(self.slot, pid)

    # gthread keeps `nr_conns` current on accepting and closing (on its main loop only); it
    # sets it first in its constructor, before this class has a slot.
    @property
    def nr_conns(self) -> int:
        return self._nr_conns

    @nr_conns.setter
    def nr_conns(self, count: int) -> None:
        self._nr_conns = count
        if self.slot is not None and self.board is not None:
            self.board.publish(self.slot, count)

    def run(self) -> None:
        """The worker is about to poll the listener: from now on the others count on it."""
        if self.slot is not None and self.board is not None:
            self.board.publish(self.slot, self.nr_conns)
        super().run()

    def holds_back(self) -> bool:
        """With the listener readable: whether to leave the connection to a worker holding
        fewer, taking the listener out of the poller for `HOLD`."""
        if self.slot is None or self.board is None or not self.alive:
            return False
        now = time.monotonic()
        if now - self.last_seen > MAX_WAIT:
            # Not seen readable for a while (after accepting anyway): what waits came after.
            self.waiting_since = None
        self.last_seen = now
        if not self.board.fewer_elsewhere(self.slot, self.nr_conns - TOLERANCE):
            self.waiting_since = None
            return False
        if self.waiting_since is None:
            self.waiting_since = now
        if now - self.waiting_since >= MAX_WAIT:
            self.forced_at = now
            return False  # and so on, while the listener stays readable
        self.held_until = now + HOLD
        super().set_accept_enabled(False)
        return True

    def sheds(self) -> bool:
        """Whether to close the connection after this response (called in a request's thread)."""
        slot, board = self.slot, self.board
        return (
            slot is not None
            and board is not None
            and time.monotonic() - self.forced_at > SHED_PAUSE
            and board.fewer_elsewhere(slot, self.nr_conns - SHED)
        )

    def set_accept_enabled(self, enabled: bool | None) -> None:
        """gthread's run loop calls this on each turn while it wants to accept and is not."""
        if not self.alive and self.slot is not None and self.board is not None:
            # Stopping: this worker takes nothing more, and the others must not wait for it.
            self.board.leave(self.slot)
            self.slot = None
        if enabled and self.held_until:
            if time.monotonic() < self.held_until:
                return
            self.held_until = 0.0
            if not _pending(self.sockets):
                self.waiting_since = None  # another worker took what this one held back for
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float | None) -> None:
        if self.held_until:
            remaining = max(self.held_until - time.monotonic(), 0.0)
            timeout = remaining if timeout is None else min(timeout, remaining)
        super().wait_for_and_dispatch_events(timeout)
