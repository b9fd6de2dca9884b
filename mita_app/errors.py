"""One exception hierarchy, mapped to one JSON error shape in one place."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, jsonify
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

REALM = "mita"


class MitaError(Exception):
    """Base of every error the API answers deliberately."""

    status = 500
    code = "internal_error"
    message = "An unexpected error occurred."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        if code is not None:
            self.code = code
        self.fields = fields

    def headers(self) -> dict[str, str]:
        return {}


class BadRequest(MitaError):
    status = 400
    code = "bad_request"
    message = "The request could not be understood."


class ValidationFailed(MitaError):
    status = 422
    code = "validation_error"
    message = "Some fields are invalid."


class UnsupportedMediaType(MitaError):
    status = 415
    code = "unsupported_media_type"
    message = "The request body must be application/json."


class RequestTimeout(MitaError):
    """The request's headers or body did not arrive within their deadline (a slow client)."""

    status = 408
    code = "request_timeout"
    message = "The request did not arrive in time; send it again."


class NotFound(MitaError):
    status = 404
    code = "not_found"
    message = "Not found."


class Conflict(MitaError):
    status = 409
    code = "conflict"
    message = "The request conflicts with the current state."


class AuthError(MitaError):
    """401: the caller is not authenticated. Never raised for a dependency failure."""

    status = 401
    code = "unauthorized"
    message = "Authentication is required."

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}


class MissingCredentials(AuthError):
    code = "missing_credentials"
    message = "Authentication is required: send Authorization: Bearer <access token>."


class InvalidToken(AuthError):
    """A bad, expired, revoked or malformed token. The description is ours, never the input."""

    code = "invalid_token"
    message = "The access token is invalid."

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="invalid_token", error_description="{self.message}"'
            )
        }


class InvalidCredentials(AuthError):
    code = "invalid_credentials"
    message = "Invalid email or password."


class InsufficientScope(MitaError):
    status = 403
    code = "insufficient_scope"
    message = "This action needs a role the caller does not have."

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="insufficient_scope", '
                f'error_description="{self.message}"'
            )
        }


class Forbidden(MitaError):
    status = 403
    code = "forbidden"
    message = "This action is not allowed."


class DependencyUnavailable(MitaError):
    """503: something we depend on is down. Clients retry; they must not log the user out."""

    status = 503
    code = "service_unavailable"
    message = "The service is temporarily unavailable; retry shortly."

    def __init__(self, message: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # when known (a breaker's next trial); else RETRY_AFTER

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after or current_app.config["RETRY_AFTER"])}


class DatabaseUnavailable(DependencyUnavailable):
    pass


class AuthServerUnavailable(DependencyUnavailable):
    """The external auth server is down, slow, or answering nonsense (or its breaker is open)."""

    code = "auth_unavailable"
    message = "Sign-in cannot be checked right now; retry shortly."


class IdentityProviderUnavailable(DependencyUnavailable):
    """Google's signing keys cannot be fetched, and none we hold verifies the token: the token
    may well be good, so this is a 503, never a 401."""

    code = "identity_provider_unavailable"
    message = "Google sign-in cannot be checked right now; retry shortly."


# Database failures that mean "unreachable, overloaded or timed out", not "our bug".
DATABASE_DOWN = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    sa_exc.DisconnectionError,
)

_DATABASE_DOWN_NAMES = frozenset(kind.__name__ for kind in DATABASE_DOWN)


def note_database_failure(error: BaseException) -> None:
    """Remember that the database failed during this request (`database.py` calls this for
    every such failure SQLAlchemy sees), so the answer is a 503 wherever the failure surfaces:
    even wrapped in another exception, or swallowed and followed by another one."""
    if has_app_context():
        g.database_failure = error


def database_failed(error: BaseException) -> bool:
    """Whether `error` is, wraps or followed a failure of the database in this request."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, DATABASE_DOWN) or _failed_reading(cause):
            return True
        original = getattr(cause, "original_exception", None)  # Flask's InternalServerError
        cause = original or cause.__cause__ or cause.__context__
    return has_app_context() and "database_failure" in g


def _failed_reading(error: BaseException) -> bool:
    """pydantic, reading an attribute for a `from_attributes` model (an ORM attribute a commit
    expired, say), keeps only "ClassName: message" of what the read raised. The pool's own
    timeout is the one database failure SQLAlchemy reports to no event: this is where it shows."""
    if not isinstance(error, ValidationError):
        return False
    return any(
        item["type"] == "get_attribute_error"
        and str(item.get("ctx", {}).get("error", "")).split(":", 1)[0] in _DATABASE_DOWN_NAMES
        for item in error.errors(include_url=False, include_input=False)
    )


# Werkzeug's own errors (routing, body size, ...) under our codes.
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """The one error shape: {"success": false, "error": {code, message, request_id, ...}}."""
    error: dict[str, Any] = {"code": code, "message": message, "request_id": g.get("request_id")}
    if fields is not None:
        error["fields"] = fields
    error.update(extra or {})
    response = jsonify({"success": False, "error": error})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _mita_error(error: MitaError) -> Response:
    # A dependency's failure is logged where it is seen (once per failure, or per breaker
    # transition): a line per 503 would flood the log at the request rate during an outage.
    if error.status >= 500 and not isinstance(error, DependencyUnavailable):
        log.warning("%s: %s", error.code, error.message)
    return error_response(
        error.status, error.code, error.message, fields=error.fields, headers=error.headers()
    )


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    if isinstance(error, InternalServerError) and database_failed(error):
        return _database_down(error)  # raised by an after_request hook
    if status == 429:
        return _rate_limited(error)
    code = HTTP_CODES.get(status, "http_error")
    message = error.description if status < 500 else "An unexpected error occurred."
    response = error_response(status, code, message or "")
    if status == 405 and error.get_response().headers.get("Allow"):
        response.headers["Allow"] = error.get_response().headers["Allow"]
    return response


def _rate_limited(error: HTTPException) -> Response:
    # Flask-Limiter adds Retry-After and the X-RateLimit-* headers to this response afterwards.
    return error_response(429, "rate_limited", "Too many requests; retry later.")


def _database_down(error: Exception) -> Response:
    log.warning("database unavailable: %s", type(error).__name__, exc_info=error)
    return _mita_error(DatabaseUnavailable())


def _unexpected(error: Exception) -> Response:
    if database_failed(error):
        return _database_down(error)
    log.error("unhandled %s", type(error).__name__, exc_info=error)
    return error_response(500, "internal_error", MitaError.message)


def _retry_after_only_when_retrying(response: Response) -> Response:
    # Flask-Limiter adds Retry-After to every limited response; it means "come back later"
    # only on a 429 or 503, and would confuse clients anywhere else.
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def teardown_failed(error: Exception) -> None:
    """A teardown failed once the answer was decided: logged, and the answer stands."""
    if database_failed(error):
        log.warning("database unavailable during teardown: %s", type(error).__name__)
    else:
        log.error("teardown failed: %s", type(error).__name__, exc_info=error)


def init_app(app: Flask) -> None:
    app.after_request(_retry_after_only_when_retrying)
    app.register_error_handler(MitaError, _mita_error)
    app.register_error_handler(HTTPException, _http_error)
    for error_class in DATABASE_DOWN:
        app.register_error_handler(error_class, _database_down)
    app.register_error_handler(Exception, _unexpected)
