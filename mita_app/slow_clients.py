"""Slow clients: a request body that does not arrive in time is a 408, and no app code waits on it.

gunicorn runs `mita_app.gunicorn_worker.ThreadWorker` by default: threads, so a slow client
holds one thread rather than a whole worker, and deadlines on reading a request, so it holds
that thread for a bounded time. That worker enforces the deadlines on the socket; this module
is the app's side of the body's one:

- the body is read in full before the app sees the request, so no view, hook or database
  session ever waits on a client, and a body that times out is answered before anything runs;
- a body that did not arrive within `REQUEST_BODY_TIMEOUT` is a 408 `request_timeout` in the one
  error shape, and the worker closes the connection (where a next request would start on it is
  unknown).

The body is handed on as a stream (in memory now), so Flask's size limits (the app's
`MAX_CONTENT_LENGTH`, a route's own `max_content_length`) apply to it exactly as before.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request

from .errors import RequestTimeout

TIMED_OUT = "mita.request_body_timed_out"


class BufferedBody:
    """WSGI middleware: reads a request's body before the app runs (at most one byte more than
    `max_length`, so an oversized one is still refused by Flask's own check), and marks the
    request when the read timed out."""

    def __init__(self, app: Callable[..., Iterable[bytes]], max_length: int) -> None:
        self.app = app
        self.max_length = max_length

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = _announced_length(environ)
        if length is not None and 0 < length <= self.max_length:
            self._buffer(environ, length)
        elif length is None and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            self._buffer(environ, self.max_length + 1)
        return self.app(environ, start_response)

    @staticmethod
    def _buffer(environ: dict[str, Any], most: int) -> None:
        stream = environ["wsgi.input"]
        chunks: list[bytes] = []
        received = 0
        try:
            while received < most:
                chunk = stream.read(most - received)
                if not chunk:
                    break  # the client ended early: Flask answers that as before
                chunks.append(chunk)
                received += len(chunk)
        except TimeoutError:
            environ[TIMED_OUT] = True
            chunks = []
        environ["wsgi.input"] = io.BytesIO(b"".join(chunks))


def _announced_length(environ: dict[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH", "")
    return int(raw) if raw.isdigit() else None


def _refuse_a_timed_out_body() -> None:
    if request.environ.get(TIMED_OUT):
        raise RequestTimeout()


def init_app(app: Flask) -> None:
    app.wsgi_app = BufferedBody(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])  # type: ignore[method-assign]
    app.before_request(_refuse_a_timed_out_body)
