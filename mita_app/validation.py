"""JSON in, JSON out: body parsing, schema validation and the success envelope.

Schemas are pydantic models. `@body(Model)` parses and validates the request body before the view
runs and passes the model instance as `payload`; `@returns(Model)` declares the `data` shape for
the OpenAPI document. Both record what they declare on the view for `openapi.py`.

Unknown keys in a body are ignored (and logged at debug level): a mobile app in the field sends
fields this server does not know yet. A known key with a bad value is a 422 naming it.
"""

from __future__ import annotations

import functools
import json
import logging
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar, Union, cast, get_args, get_origin

from flask import Response, g, jsonify, request
from pydantic import AfterValidator, BaseModel, ConfigDict, TypeAdapter, ValidationError
from typing_extensions import TypedDict  # pydantic's choice on Python 3.11

from .errors import BadRequest, UnsupportedMediaType, ValidationFailed, database_failed

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


class Schema(BaseModel):
    """Base of request schemas: unknown fields are ignored (`validate` logs them)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


def _no_unstorable_characters(value: str) -> str:
    # PostgreSQL rejects NUL in text and psycopg2 cannot encode lone surrogates: refuse both
    # here, with a field error, instead of failing later in the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


SafeStr = Annotated[str, AfterValidator(_no_unstorable_characters)]


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def json_body(*, optional: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, or the 415/400 error that says why not. With
    `optional`, no body at all (whatever its Content-Type says) is an empty object."""
    if "json_body" in g:
        return cast(dict[str, Any], g.json_body)
    if optional and not request.get_data(cache=True):
        g.json_body = {}
        return cast(dict[str, Any], g.json_body)
    if not request.mimetype == "application/json":
        raise UnsupportedMediaType()
    raw = request.get_data(cache=True)
    try:
        parsed = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a JSON object.", code="invalid_json")
    g.json_body = parsed
    return parsed


def field_errors(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in item["loc"]) or "_body"
        fields.setdefault(name, item["msg"].removeprefix("Value error, "))
    return fields


def _known_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        if isinstance(field.validation_alias, str):
            keys.add(field.validation_alias)
    return keys


def validate(model: type[M], data: dict[str, Any]) -> M:
    if log.isEnabledFor(logging.DEBUG) and model.model_config.get("extra") == "ignore":
        unknown = sorted(str(key)[:64] for key in set(data) - _known_keys(model))
        if unknown:
            log.debug("ignored unknown %s fields: %s", model.__name__, ", ".join(unknown[:20]))
    try:
        return model.model_validate(data)
    except ValidationError as error:
        if database_failed(error):  # a validator met the database, and it was down
            raise
        raise ValidationFailed(fields=field_errors(error)) from None


def body(model: type[BaseModel], *, optional: bool = False) -> Callable[[F], F]:
    """Validate the JSON body against `model` and pass it to the view as `payload`. With
    `optional`, a request without a body (a DELETE, say) validates `{}`."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["payload"] = validate(model, json_body(optional=optional))
            return view(*args, **kwargs)

        wrapper.request_schema = model  # type: ignore[attr-defined]
        wrapper.request_body_optional = optional  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


def query(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate the query string against `model` and pass it to the view as `params` (a key
    given twice: its first value)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["params"] = validate(model, request.args.to_dict())
            return view(*args, **kwargs)

        wrapper.query_schema = model  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorator


def returns(
    model: Any,
    status: int = 200,
    *,
    errors: dict[int, str] | None = None,
    top_level: Iterable[str] | Mapping[str, Any] = (),
) -> Callable[[F], F]:
    """Declare, for the OpenAPI document, a view's success status and `data` shape (a pydantic
    model, any type pydantic serializes such as `list[HabitOut]`, or None), the errors particular
    to it (status: description), and the keys its `ok(..., **top_level)` puts beside `data`:
    names of `model`'s fields (the same value again), or a mapping of name to type."""
    keys = _top_level_keys(model, top_level)

    def decorator(view: F) -> F:
        view.response_schema = (status, model)  # type: ignore[attr-defined]
        view.error_responses = dict(errors or {})  # type: ignore[attr-defined]
        view.response_top_level = keys  # type: ignore[attr-defined]
        return view

    return decorator


def _top_level_keys(model: Any, top_level: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    """{key: its type, or None for "as the `model` field of that name"}. A mistake fails at
    import, not when someone opens the document."""
    if isinstance(top_level, str):
        raise TypeError("top_level takes a tuple of field names or a mapping name: type")
    keys: dict[str, Any] = (
        dict(top_level) if isinstance(top_level, Mapping) else dict.fromkeys(top_level)
    )
    is_model = isinstance(model, type) and issubclass(model, BaseModel)
    fields = set(model.model_fields) | set(model.model_computed_fields) if is_model else set()
    for key, kind in keys.items():
        if key in ("success", "data"):
            raise ValueError(f"top_level key {key!r} would replace the envelope's own")
        if kind is None and key not in fields:
            raise ValueError(f"top_level key {key!r} is not a field of {model!r}")
    return keys


def ok(data: Any = None, status: int = 200, **top_level: Any) -> Response:
    """The success envelope, `{"success": true, "data": ...}`, with any `top_level` keys the
    mobile app reads outside `data` (tokens, settings)."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    response = jsonify({"success": True, "data": data, **top_level})
    response.status_code = status
    return response


def fields_serializer(kind: Any) -> TypeAdapter[Any]:
    """Serialises data of type `kind` (a model, a list of models...) given with dicts of each
    model's fields in their place, exactly as the models would, without building, so validating,
    a model for each: for answers computed from what the database holds, valid already. Keys
    that are not fields are left out; the others go out in the order the dicts have them.
    `fields_serializer(M).dump_python(d, mode="json")` is `M(**d).model_dump(mode="json")`."""
    return TypeAdapter(_fields_in(kind))


@functools.cache
def _as_fields(model: type[BaseModel]) -> Any:
    """A TypedDict of `model`'s fields, with the same types, nested models made TypedDicts."""
    if model.model_computed_fields or any(
        field.alias or field.serialization_alias for field in model.model_fields.values()
    ):
        raise TypeError(f"{model.__name__}: computed fields and aliases need the model itself")
    fields = {
        name: _fields_in(field.rebuild_annotation()) for name, field in model.model_fields.items()
    }
    typed_dict: Any = TypedDict  # one made at run time, which mypy cannot follow
    return typed_dict(f"{model.__name__}Fields", fields)


def _fields_in(annotation: Any) -> Any:
    """`annotation` with each model in it (in a list, a dict, an Optional...) as `_as_fields`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _as_fields(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None or not args:
        return annotation
    if origin is Annotated:
        return Annotated[(_fields_in(args[0]), *annotation.__metadata__)]
    inner = tuple(_fields_in(arg) for arg in args)
    if inner == args:
        return annotation
    if origin in (Union, types.UnionType):
        return Union[inner]  # noqa: UP007  # built from a tuple at run time
    return origin[inner]


def no_content() -> Response:
    return Response(status=204)
