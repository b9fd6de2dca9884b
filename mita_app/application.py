"""The Flask class of the app: Flask, with a failing teardown contained and no cookie session."""

from __future__ import annotations

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
