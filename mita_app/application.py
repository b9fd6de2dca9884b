"""The Flask class of the app: Flask, with a failing teardown contained, no cookie session, and
the question "is this hook a coroutine?" answered once per hook rather than on every request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import NullSession, SessionInterface

from .errors import teardown_failed


class NoCookieSession(SessionInterface):
    """The API keeps no state in cookies (clients send bearer tokens), so no request reads,
    verifies or writes a session cookie: `flask.session` is Flask's `NullSession`, which
    refuses any write."""

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self.make_null_session(app)

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None


class App(Flask):
    """Teardowns run once the answer is decided and what it needed is committed: a failure
    there (the database going away as the session is closed) is logged and the answer stands,
    instead of the server's own HTML error page."""

    session_interface = NoCookieSession()
    # Hooks, views and error handlers are a fixed set; the bound keeps a caller that passes a
    # new callable each time (none does) from growing the cache.
    SYNC_CACHE_SIZE = 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's, remembered: Flask asks it of every hook and the view on every request, and
        each answer costs an inspection of the callable."""
        try:
            return self._sync[func]
        except KeyError:
            sync = super().ensure_sync(func)
            if len(self._sync) < self.SYNC_CACHE_SIZE:
                self._sync[func] = sync
            return sync
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)

    def do_teardown_request(self, *args: Any) -> None:
        try:
            super().do_teardown_request(*args)
        except Exception as error:
            teardown_failed(error)

    def do_teardown_appcontext(self, *args: Any) -> None:
        try:
            super().do_teardown_appcontext(*args)
        except Exception as error:
            teardown_failed(error)
