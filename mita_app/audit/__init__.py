"""The security audit log. `record` is the only call the rest of the code makes.

Recording never raises, never blocks and never touches the database: in a request the event is
kept until the response has been sent, then handed to this process's queue; the writer thread
(`writer.py`) puts it in the database later, in a batch, over its own connection.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, cast

from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_app_context,
    has_request_context,
    request,
)

from .events import build
from .writer import AuditWriter

log = logging.getLogger(__name__)
EXTENSION_KEY = "mita.audit"

__all__ = ["AuditWriter", "init_app", "record", "writer_of"]


def writer_of(app: Flask) -> AuditWriter:
    return cast(AuditWriter, app.extensions[EXTENSION_KEY])


def record(event_type: str, *, user_id: Any = None, session_id: Any = None, **details: Any) -> None:
    """Record a security event. In a request, the caller's user, session, address and the
    response status are filled in. Details never hold secrets: such names are redacted."""
    try:
        if not has_app_context():
            log.error("audit event %s recorded outside an app context; not kept", event_type)
            return
        writer = writer_of(current_app)
        if not writer.enabled:
            return
        in_request = has_request_context()
        if in_request and not writer.gate.admit(
            event_type,
            request.remote_addr,
            details.get("reason", details.get("endpoint")),
            g.get("request_id"),
        ):
            return  # a flood from one source: counted, and summed up when its window closes
        event = build(event_type, user_id=user_id, session_id=session_id, details=details)
        if in_request:
            g.setdefault("audit_events", []).append(event)
        else:
            writer.submit([event])
    except Exception:  # the one promise of this function: auditing never breaks the caller
        log.exception("audit event %s could not be recorded", event_type)


def _hand_over_after_the_response(response: Response) -> Response:
    events = g.pop("audit_events", None)
    if events:
        for event in events:
            if event["status"] is None:
                event["status"] = response.status_code
        response.call_on_close(functools.partial(writer_of(current_app).submit, events))
    return response


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION_KEY] = AuditWriter(app)
    app.after_request(_hand_over_after_the_response)
