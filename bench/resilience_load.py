"""The resilience run's load: a few client threads, each sending one kind of request at a steady
pace, every answer (or its absence) kept as a `Sample` with the request id it was sent with."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

TIMEOUT = 0  # the status of a request that got no answer within the client's deadline
NO_ANSWER = -1  # ... and of one whose connection failed (refused, reset)


@dataclass(frozen=True)
class Prepared:
    """What one request sends besides its method and path."""

    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # JSON; None sends no body


def _nothing() -> Prepared:
    return Prepared()


@dataclass(frozen=True)
class Kind:
    """One kind of request of the load, sent by `threads` client threads, each at most one
    request every `every` seconds (closed loop: a slow answer delays that thread's next one)."""

    name: str
    method: str
    path: str
    every: float
    # The audit event an answer with this status records, by status (what mita_app/audit and
    # its callers record for this route); a status not listed records none.
    events: Mapping[int, str]
    prepare: Callable[[], Prepared] = _nothing
    threads: int = 1
    # A valid credential on a protected route: its first 2xx after a fault says "recovered".
    valid: bool = False


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str
    request_id: str
    start: float  # seconds since the load started
    latency: float  # seconds
    status: int  # the HTTP status, or TIMEOUT / NO_ANSWER
    code: str | None  # the JSON error's code, if the answer was one

    @property
    def end(self) -> float:
        return self.start + self.latency

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def status_label(status: int) -> str:
    return {TIMEOUT: "timeout", NO_ANSWER: "no answer"}.get(status, str(status))


class Load:
    """Client threads against one base URL; `start`, then `stop` (which joins them)."""

    def __init__(
        self, base_url: str, kinds: list[Kind], *, request_prefix: str, timeout: float
    ) -> None:
        self.base_url = base_url
        self.kinds = kinds
        self.request_prefix = request_prefix
        self.timeout = timeout
        self._samples: list[Sample] = []  # appended by the client threads (atomic under the GIL)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0

    def now(self) -> float:
        """Seconds since the load started, on the clock of every sample."""
        return time.perf_counter() - self._t0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        for kind in self.kinds:
            for index in range(kind.threads):
                # Staggered, so that a kind's threads do not send in step.
                offset = kind.every * index / kind.threads
                thread = threading.Thread(
                    target=self._client,
                    args=(kind, index, offset),
                    name=f"load-{kind.name}-{index}",
                    daemon=True,
                )
                self._threads.append(thread)
                thread.start()

    def stop(self, *, wait: bool = True) -> None:
        """No new requests; with `wait`, wait for those in flight (each within the client's
        deadline). Without, the threads (daemons) end when their request does."""
        self._stopping.set()
        if not wait:
            return
        deadline = time.monotonic() + self.timeout + 5
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def still_running(self) -> list[str]:
        return [thread.name for thread in self._threads if thread.is_alive()]

    def samples(self) -> list[Sample]:
        return list(self._samples)

    def _client(self, kind: Kind, index: int, offset: float) -> None:
        if self._stopping.wait(offset):
            return
        next_at = self.now()
        number = 0
        while not self._stopping.is_set():
            request_id = f"{self.request_prefix}.{kind.name}.{index}.{number}"
            self._samples.append(self._send(kind, request_id))
            number += 1
            next_at += kind.every
            delay = next_at - self.now()
            if delay > 0:
                self._stopping.wait(delay)
            else:  # late: go on from now, rather than send a burst to catch up
                next_at = self.now()

    def _send(self, kind: Kind, request_id: str) -> Sample:
        prepared = kind.prepare()
        headers = {"X-Request-ID": request_id, **prepared.headers}
        start = self.now()
        code = None
        try:
            response = requests.request(
                kind.method,
                self.base_url + kind.path,
                headers=headers,
                json=prepared.body,
                timeout=self.timeout,  # connect, then each read: the server sends at once
                allow_redirects=False,
            )
            status = response.status_code
            code = _error_code(response)
        except requests.Timeout:
            status = TIMEOUT
        except requests.RequestException:
            status = NO_ANSWER
        return Sample(kind.name, request_id, start, self.now() - start, status, code)


def _error_code(response: requests.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        body = response.json()
        return str(body["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "(not the JSON error shape)"
