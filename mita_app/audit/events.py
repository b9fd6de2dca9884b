"""Building audit events: plain dicts of safe values, ready for the writer.

An event never carries a password, a token or an `Authorization` header: details under such names
are replaced, whatever the caller passed. Every string is cut to size and stripped of what
PostgreSQL cannot store (NUL, lone surrogates); it is data in a JSON column, never markup.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from flask import g, has_request_context, request

from ..client import client_ip, client_user_agent

MAX_DETAIL_LENGTH = 256
MAX_DETAILS = 32
_SECRET_NAME = re.compile(r"pass|token|secret|authoriz|cookie|credential", re.IGNORECASE)
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
REDACTED = "[redacted]"


def clean_text(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, without NUL or lone surrogates."""
    return _UNSTORABLE.sub("\ufffd", value[:limit])


def _clean_value(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping) and depth < 2:
        return clean_details(value, depth + 1)
    if isinstance(value, list | tuple | set | frozenset) and depth < 2:
        return [_clean_value(item, depth + 1) for item in list(value)[:MAX_DETAILS]]
    return clean_text(value if isinstance(value, str) else repr(value), MAX_DETAIL_LENGTH)


def clean_details(details: Mapping[Any, Any], depth: int = 0) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in list(details.items())[:MAX_DETAILS]:
        name = clean_text(str(key), 64)
        cleaned[name] = REDACTED if _SECRET_NAME.search(name) else _clean_value(value, depth)
    return cleaned


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562, version 7): each new row of an append-only table lands at
    the end of its primary-key index instead of on a random page of it."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # the RFC 4122 variant
    return uuid.UUID(int=value)


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def build(
    event_type: str,
    *,
    user_id: Any = None,
    session_id: Any = None,
    details: Mapping[str, Any],
    from_request: bool = True,
) -> dict[str, Any]:
    """A complete event row; in a request (unless not `from_request`: an event of the process's
    own, such as a flood summary), what the request says about itself fills it in."""
    event: dict[str, Any] = {
        "id": uuid7(),
        "created_at": datetime.now(UTC),
        "event_type": clean_text(event_type, 64),
        "user_id": _uuid_or_none(user_id),
        "session_id": _uuid_or_none(session_id),
        "request_id": None,
        "ip": None,
        "user_agent": None,
        "method": None,
        "path": None,
        "status": None,
        "details": clean_details(details),
    }
    if from_request and has_request_context():
        principal = g.get("principal")
        if principal is not None:
            event["user_id"] = event["user_id"] or principal.user_id
            if isinstance(principal.session_id, uuid.UUID):
                event["session_id"] = event["session_id"] or principal.session_id
            elif principal.session_id is not None:  # an external auth server's own id
                event["details"]["auth_session_id"] = clean_text(principal.session_id, 128)
        event["request_id"] = g.get("request_id")
        event["ip"] = client_ip()
        event["user_agent"] = client_user_agent()
        event["method"] = clean_text(request.method, 16)
        event["path"] = clean_text(request.path, 512)
    return event
