"""HTTP calls to the external auth server: one pooled session, a total deadline, a breaker.

`requests` only bounds each socket operation: a server that drips a byte a second would hold a
worker for as long as it likes. So every call also runs under a watchdog timer that, at the
deadline, shuts the call's socket down; whatever the call was waiting for then fails at once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Callable
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

from .breaker import CircuitBreaker, UpstreamFailure

T = TypeVar("T")
MAX_BODY = 256 * 1024  # a session or a key set is a few kB; more is not an auth server's answer
NOT_JSON = (
    object()
)  # what `read` gets for a body that is not JSON: whether that matters is its call
_calls = threading.local()  # the deadline of the call this thread is making, if any


class _Deadline:
    """Shuts the socket of one call down when its time is up, unless the call is over."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._done = False
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.name = "auth-server-deadline"

    def __enter__(self) -> _Deadline:
        _calls.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True  # from now on the connection may serve another call: hands off
        self._timer.cancel()
        _calls.deadline = None

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            if self.fired:
                self._shut()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            self._shut()

    def _shut(self) -> None:
        sock = getattr(self._connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


if TYPE_CHECKING:
    _Connection = HTTPConnection  # what the mixin is only ever mixed into
else:
    _Connection = object


class _Watched(_Connection):
    """Mixin: tells the current call's deadline which connection it is waiting on."""

    # The same override as urllib3's own: its HTTPResponse is not http.client's.
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        deadline: _Deadline | None = getattr(_calls, "deadline", None)
        if deadline is not None:
            deadline.attach(self)
        return super().getresponse()


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedTLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedTLSPool}


class AuthServerClient:
    """Calls to one auth server, each bounded by `timeout` in all and guarded by `breaker`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float,
        breaker: CircuitBreaker,
        pool_size: int = 16,
    ) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.breaker = breaker
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy or netrc from the environment
        # Never keep a cookie the server sets: the next call may be on another user's behalf.
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = _WatchedAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def call(self, url: str, headers: dict[str, str], read: Callable[[int, Any], T]) -> T:
        """GET `url` (absolute, or a path on the server) through the breaker; `read` turns the
        status and the JSON body (or NOT_JSON) into the answer, or raises UpstreamFailure (which
        counts against the server)."""
        with self.breaker.attempt():
            return self.request(url, headers, read)

    def request(self, url: str, headers: dict[str, str], read: Callable[[int, Any], T]) -> T:
        """The same call, not guarded: for the breaker's own probe, which it guards itself."""
        status, body = self._get(url if "://" in url else self.base_url + url, headers)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = NOT_JSON
        return read(status, document)

    def _get(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        with _Deadline(self.timeout) as deadline:
            try:
                response = self._session.get(
                    url,
                    headers=headers,
                    timeout=(self.connect_timeout, self.timeout),
                    stream=True,
                    allow_redirects=False,
                )
                with response:
                    body = response.raw.read(MAX_BODY + 1, decode_content=True)
            except (
                requests.RequestException,
                urllib3.exceptions.HTTPError,
                http.client.HTTPException,
                OSError,
            ) as error:
                if deadline.fired:
                    raise UpstreamFailure(f"no answer within {self.timeout:g} s") from None
                raise UpstreamFailure(f"{type(error).__name__}") from None
        if deadline.fired:
            raise UpstreamFailure(f"no complete answer within {self.timeout:g} s")
        if len(body) > MAX_BODY:
            raise UpstreamFailure(f"an answer of more than {MAX_BODY} bytes")
        return response.status_code, body
