"""/api/errors: crash and error reports from the mobile app (public: a report about a broken
sign-in must get through)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, cast

from flask import Blueprint, Response, current_app, request
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from werkzeug.exceptions import RequestEntityTooLarge

from .. import crash_reports
from ..client import client_ip
from ..extensions import limiter
from ..models import Category, Severity
from ..validation import Schema, body, ok, returns

bp = Blueprint("crash_reports", __name__, url_prefix="/api/errors")
F = TypeVar("F", bound=Callable[..., Any])

MAX_REPORT_BYTES = 64 * 1024


def _number_as_text(value: Any) -> Any:
    # The app sends its id as a string of digits; a client sending the number means the same.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must be printable text")
    return value


def _iso_datetime(value: str | None) -> str | None:
    if value is not None:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("must be an ISO 8601 date and time") from None
    return value


def _string_or_object(value: Any) -> Any:
    # Checked before the union, so a 422 names `deviceInfo` and not each member of the union.
    if value is not None and not isinstance(value, str | dict):
        raise ValueError("must be a string or an object")
    return value


class CrashReportIn(Schema):
    """A report as the app builds it (core/error_handling.dart `ErrorReport.toJson`)."""

    id: Annotated[
        str,
        BeforeValidator(_number_as_text),
        Field(min_length=1, max_length=64, description="The app's id (its clock in ms)"),
        AfterValidator(_printable),
    ]
    timestamp: Annotated[
        str | None,
        Field(max_length=40, description="The device's local time, ISO 8601"),
        AfterValidator(_iso_datetime),
    ] = None
    error: str = Field(description=f"Kept up to {crash_reports.MAX_ERROR} characters")
    stack_trace: str | None = Field(
        None, alias="stackTrace", description=f"Kept up to {crash_reports.MAX_STACK_TRACE}"
    )
    severity: Severity = "medium"
    category: Category = "unknown"
    context: dict[str, Any] | None = None
    app_version: str | None = Field(None, alias="appVersion")
    platform: str | None = None
    device_info: Annotated[str | dict[str, Any] | None, BeforeValidator(_string_or_object)] = Field(
        None, alias="deviceInfo"
    )
    is_connected: bool | None = Field(None, alias="isConnected")
    user_id: Annotated[str | None, BeforeValidator(_number_as_text)] = Field(
        None, alias="userId", description="Ignored for linking: the access token decides"
    )

    def report(self) -> crash_reports.Report:
        return crash_reports.Report(
            client_id=self.id,
            reported_at=self.timestamp,
            error=self.error,
            stack_trace=self.stack_trace,
            severity=self.severity,
            category=self.category,
            context=self.context or {},
            app_version=self.app_version,
            platform=self.platform,
            device_info=self.device_info,
            is_connected=self.is_connected,
            claimed_user_id=self.user_id,
        )


class ReportReceived(BaseModel):
    status: Literal["received"] = "received"
    report_id: uuid.UUID


def capped(limit: int) -> Callable[[F], F]:
    """413 for a body over `limit` bytes, announced or not, before anything reads it."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # Flask >= 3.1 applies a per-request limit to every read of the body (a chunked
            # body without Content-Length included); the check below answers the announced
            # case without reading anything.
            request.max_content_length = limit
            if request.content_length is not None and request.content_length > limit:
                raise RequestEntityTooLarge(f"A crash report may be at most {limit} bytes.")
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def _limit() -> str:
    return str(current_app.config["RATELIMIT_ERROR_REPORTS_PER_IP"])


@bp.post("/report")
@returns(ReportReceived, 202, errors={413: "Report over 64 KB"})
@limiter.limit(_limit)
@capped(MAX_REPORT_BYTES)
@body(CrashReportIn)
def report(payload: CrashReportIn) -> Response:
    """Store a crash report; a resend of one already stored gets the same answer."""
    stored = crash_reports.store(
        payload.report(), user_id=crash_reports.reporting_user(), ip=client_ip()
    )
    return ok(ReportReceived(report_id=stored.id), 202)
