"""gunicorn's threaded worker with deadlines on reading a request: mita's default worker class.

A sync worker serves one request at a time and reads it in full first, so two clients that
send a request slowly stop a two-worker deployment until gunicorn's `timeout` kills the workers.
gunicorn's own `gthread` worker spreads requests over threads but bounds none of its reads: a
client that sends one byte and then nothing holds a thread for good (the worker's heartbeat
comes from its main loop, which such a thread never blocks, so `timeout` never fires either).

This worker adds, per connection:

- a new connection waits for its first byte in the worker's poller, not in a thread (gthread
  parks it in a thread for up to 5 s), and is closed if nothing came within
  `REQUEST_HEADER_TIMEOUT`;
- a request's headers must be complete within `REQUEST_HEADER_TIMEOUT` of the connection being
  accepted (of its first byte, on a kept-alive connection), however slowly they trickle in:
  the deadline covers all the reads, not each one. Past it the client gets a 408 in the one
  error shape and the connection is closed;
- its body must be complete within `REQUEST_BODY_TIMEOUT` of the headers; `mita_app.slow_clients`
  reads it before the app runs and answers 408 past the deadline;
- a connection is closed in its thread, not on the main loop, where gunicorn lingers up to 2 s
  for the client to close first: a client that never does would freeze every other connection
  of the worker that long.

Both settings come from the app's configuration (`mita_app/config.py`).

It also spreads connections over the workers, each accepting only while no other holds fewer
and shedding a connection when it holds clearly more: see `mita_app.worker_balance`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import socket
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from flask import Flask
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread

from .errors import RequestTimeout
from .worker_balance import LeastConnectionsWorker

if TYPE_CHECKING:
    from gunicorn._types import _AddressType
    from gunicorn.http import Request


# Seconds a read past its deadline still waits: enough to take what is already there.
LAST_LOOK = 0.001
# gthread's STOP_KEEPALIVE_LINGER: how long a stopping worker keeps idle connections open.
STOP_LINGER = 2.0


class HeaderTimeout(Exception):
    """The request's headers did not arrive in time."""


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, under a deadline for all the reads of one part of a request
    (its headers, then its body): a client sending a byte now and then never resets it."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.deadline: float | None = None
        self.expired: Callable[[], Exception] = TimeoutError

    def expect_headers(self, deadline: float) -> None:
        self.deadline = deadline
        self.expired = HeaderTimeout

    def expect_body(self, deadline: float, expired: Callable[[], Exception]) -> None:
        self.deadline = deadline
        self.expired = expired

    def chunk(self, size_hint: int | None = None) -> bytes:
        if self.deadline is None:
            return super().chunk(size_hint)  # type: ignore[call-arg]  # stubs predate size_hint
        # Past the deadline, what has arrived is still read: a thread that comes to the
        # connection late (all busy) must not turn the server's delay into the client's 408.
        remaining = max(self.deadline - time.monotonic(), LAST_LOOK)
        previous = self.sock.gettimeout()  # gunicorn's own, when it drains an unread body
        self.sock.settimeout(remaining if previous is None else min(previous, remaining))
        try:
            return super().chunk(size_hint)  # type: ignore[call-arg]
        except TimeoutError:
            if previous is not None and previous < remaining:
                raise  # gunicorn's shorter timeout, not ours
            raise self.expired() from None
        finally:
            self.sock.settimeout(previous)


class Connection(gthread.TConn):
    """gthread's connection, reading each request under the deadlines of `DeadlineUnreader`."""

    def __init__(
        self,
        cfg: Config,
        sock: socket.socket,
        client: _AddressType,
        server: _AddressType,
        header_timeout: float,
    ) -> None:
        super().__init__(cfg, sock, client, server)
        self.header_timeout = header_timeout
        self.header_deadline = time.monotonic() + header_timeout
        self.closed = False

    def init(self) -> None:
        """Called by gthread before each request is read, the socket just made blocking."""
        super().init()
        parser = self.parser
        if not isinstance(parser, RequestParser):
            return  # HTTP/2, when enabled: gunicorn's own handling
        if isinstance(parser.unreader, DeadlineUnreader):
            parser.unreader.expect_headers(time.monotonic() + self.header_timeout)
            return
        unreader = DeadlineUnreader(self.sock)
        unreader.unread(parser.unreader.take_buffered())
        unreader.expect_headers(self.header_deadline)
        parser.unreader = unreader

    def close(self, graceful: bool = False) -> None:
        """Once: the thread that served the connection closes it, then the main loop tries."""
        if not self.closed:
            self.closed = True
            super().close(graceful)


class ThreadWorker(LeastConnectionsWorker):
    """gunicorn's gthread worker, with the deadlines above, accepting least-connections."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0

    def run(self) -> None:
        config = cast(Flask, self.wsgi).config
        self.header_timeout = config["REQUEST_HEADER_TIMEOUT"]
        self.body_timeout = config["REQUEST_BODY_TIMEOUT"]
        super().run()

    def accept(self, listener: socket.socket) -> None:
        if self.holds_back():
            return
        try:
            sock, client = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = Connection(self.cfg, sock, client, listener.getsockname(), self.header_timeout)
        if _readable(conn.sock):  # usually: the request came with the connection
            conn.data_ready = True
            self.enqueue_req(conn)
            return
        # Every pending connection gets the same offset, so the queue stays in deadline order
        # (gthread's murder_pending reads it from the left).
        conn.timeout = conn.header_deadline
        self.pending_conns.append(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self.on_pending_socket_readable, conn)
        )

    def murder_pending(self) -> None:
        if not self.alive:
            # Stopping: a connection that has sent nothing yet gets the little time gthread
            # gives kept-alive ones, not the rest of its header deadline.
            deadline = time.monotonic() + STOP_LINGER
            for conn in self.pending_conns:
                conn.timeout = min(conn.timeout or deadline, deadline)
        super().murder_pending()

    def handle(self, conn: gthread.TConn) -> bool:
        keepalive = super().handle(conn)
        if not keepalive:
            conn.close(graceful=True)  # here, not on the main loop (see the module's doc)
        return keepalive

    def handle_request(self, req: Request, conn: gthread.TConn) -> bool:
        unreader = getattr(conn.parser, "unreader", None)
        if isinstance(unreader, DeadlineUnreader):
            unreader.expect_body(time.monotonic() + self.body_timeout, partial(_body_expired, req))
        if self.sheds():
            req.force_close()
        return super().handle_request(req, conn)

    def handle_error(
        self, req: Request | None, client: socket.socket, addr: _AddressType, exc: BaseException
    ) -> None:
        if not isinstance(exc, HeaderTimeout):
            super().handle_error(req, client, addr, exc)
            return
        request_id = uuid.uuid4().hex
        peer = addr[0] if isinstance(addr, tuple) else addr
        self.log.warning(
            "request headers from %s not complete within %gs: 408 [%s]",
            peer,
            self.header_timeout,
            request_id,
        )
        # A client that is gone, or reads nothing, gets nothing: closing is all that is left.
        with contextlib.suppress(OSError):
            util.write_nonblock(client, _timeout_response(request_id))


def _readable(sock: socket.socket) -> bool:
    try:
        sock.recv(1, socket.MSG_PEEK)  # the socket is non-blocking here
    except BlockingIOError:
        return False
    except OSError:
        return True  # let the thread find out what is wrong, as gthread would
    return True


def _body_expired(req: Request) -> Exception:
    req.force_close()  # where the next request would start is unknown
    return TimeoutError("the request body did not arrive in time")


def _timeout_response(request_id: str) -> bytes:
    body = json.dumps(
        {
            "success": False,
            "error": {
                "code": RequestTimeout.code,
                "message": RequestTimeout.message,
                "request_id": request_id,
            },
        },
        separators=(",", ":"),
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "\r\n"
    )
    return head.encode() + body
