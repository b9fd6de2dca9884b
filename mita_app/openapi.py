"""GET /openapi.json: an OpenAPI 3.1 document built from the url_map and what each view declares
(`@body`, `@returns`, `@login_required`), so a route is documented as soon as it is registered."""

from __future__ import annotations

import copy
import inspect
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, json, request
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue

from .version import __version__

bp = Blueprint("openapi", __name__)
F = TypeVar("F", bound=Callable[..., Any])

DESCRIPTION = """The backend of the MITA app.

- Every path is served under `/api/v1` as well: `/api/v1/users/me` is `/api/users/me`.
- Every path answers with or without its trailing slash, never with a redirect.
- Success: `{"success": true, "data": ...}`, plus the top-level keys an operation lists beside
  `data`. Error: `{"success": false, "error": {"code", "message", "request_id", "fields"?}}`.
- Request bodies are JSON objects. Keys a schema does not list are ignored; a listed key with a
  bad value is a 422 that names it in `error.fields`. A `Content-Type: application/json` header
  on a request without a body is fine.
- Money is a JSON number. Ids are UUIDs. Instants carry an offset or `Z`.
- `Authorization: Bearer <access_token>`; a missing, bad or expired token is always a 401.
"""
REF = "#/components/schemas/{model}"
ERROR_SCHEMA = {
    "type": "object",
    "required": ["success", "error"],
    "properties": {
        "success": {"const": False},
        "error": {
            "type": "object",
            "required": ["code", "message", "request_id"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
                "fields": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "For 422: the message for each invalid field.",
                },
            },
        },
    },
}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_BODY_ERRORS = {
    "400": "Malformed JSON",
    "413": "Body too large",
    "415": "Not application/json",
    "422": "Invalid fields",
}
_COMMON_ERRORS = {"429": "Rate limited", "500": "Unexpected error", "503": "Dependency down"}
# A Flask rule argument, `<name>` or `<converter(args):name>`: (converter, name).
_RULE_ARGUMENT = re.compile(r"<(?:([^:<>(]+)(?:\([^<>]*\))?:)?([^<>]+)>")
_CONVERTER_SCHEMAS: dict[str, dict[str, str]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}
# pydantic writes constraints it cannot place on a type (Money: a number or a numeric string)
# under its own names, which JSON Schema tools ignore; these are the standard ones.
_STANDARD_KEYWORDS = {
    "ge": "minimum",
    "le": "maximum",
    "gt": "exclusiveMinimum",
    "lt": "exclusiveMaximum",
    "max_digits": "x-max-digits",
    "decimal_places": "x-decimal-places",
}
_SCHEMA_MAPS = ("properties", "$defs", "patternProperties", "dependentSchemas")


def undocumented(view: F) -> F:
    """Leave this view out of the document (pages about the API, not the API)."""
    view.openapi_hidden = True  # type: ignore[attr-defined]
    return view


class Schemas:
    """The types the document uses, turned into JSON Schemas in one pass so that each model is
    one component, under a name pydantic keeps unique, however many operations use it."""

    def __init__(self) -> None:
        self._kinds: list[tuple[Any, JsonSchemaMode]] = []
        self._generated: list[JsonSchemaValue] = []
        self.components: dict[str, JsonSchemaValue] = {}

    def add(self, kind: Any, mode: JsonSchemaMode) -> None:
        if kind is not None and not any(k is kind and m == mode for k, m in self._kinds):
            self._kinds.append((kind, mode))

    def generate(self) -> None:
        inputs = [(i, m, TypeAdapter(kind).core_schema) for i, (kind, m) in enumerate(self._kinds)]
        generated, definitions = GenerateJsonSchema(ref_template=REF).generate_definitions(inputs)
        self._generated = [_standard(generated[i, mode]) for i, (_, mode) in enumerate(self._kinds)]
        self.components = {name: _standard(definitions[name]) for name in sorted(definitions)}

    def of(self, kind: Any, mode: JsonSchemaMode) -> JsonSchemaValue:
        for index, (known, known_mode) in enumerate(self._kinds):
            if known is kind and known_mode == mode:
                return copy.deepcopy(self._generated[index])
        raise KeyError(kind)

    def property_of(self, kind: Any, name: str) -> JsonSchemaValue:
        schema = self.of(kind, "serialization")
        if "$ref" in schema:
            schema = self.components[schema["$ref"].removeprefix(REF.format(model=""))]
        return copy.deepcopy(schema["properties"][name])


def _standard(node: Any) -> Any:
    if isinstance(node, list):
        return [_standard(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        _STANDARD_KEYWORDS.get(key, key): (
            {name: _standard(schema) for name, schema in value.items()}
            if key in _SCHEMA_MAPS
            else _standard(value)
        )
        for key, value in node.items()
    }


def _first_paragraph(doc: str) -> str:
    return " ".join(doc.strip().split("\n\n")[0].split())


def _declared(view: Any) -> tuple[int, Any, dict[str, Any]]:
    status, model = getattr(view, "response_schema", (200, None))
    return status, model, getattr(view, "response_top_level", {})


def _success(view: Any, schemas: Schemas) -> tuple[str, dict[str, Any]]:
    status, model, top_level = _declared(view)
    if status == 204:
        return "204", {"description": "No content"}
    if hasattr(view, "openapi_response"):
        return str(status), view.openapi_response
    extra = {
        key: schemas.property_of(model, key) if kind is None else schemas.of(kind, "serialization")
        for key, kind in top_level.items()
    }
    data = schemas.of(model, "serialization") if model is not None else {}
    envelope = {
        "type": "object",
        "required": ["success", "data", *extra],
        "properties": {"success": {"const": True}, "data": data, **extra},
    }
    content = {"application/json": {"schema": envelope}}
    return str(status), {"description": "Success", "content": content}


def _operation(view: Any, endpoint: str, schemas: Schemas) -> dict[str, Any]:
    doc = inspect.getdoc(view) or endpoint
    operation: dict[str, Any] = {"tags": [endpoint.split(".")[0]], "summary": _first_paragraph(doc)}
    if "\n\n" in doc:
        operation["description"] = doc
    responses = dict([_success(view, schemas)])
    request_model = getattr(view, "request_schema", None)
    if request_model is not None:
        operation["requestBody"] = {
            "required": not getattr(view, "request_body_optional", False),
            "description": "Keys the schema does not list are ignored.",
            "content": {"application/json": {"schema": schemas.of(request_model, "validation")}},
        }
        responses.update({code: {"description": text} for code, text in _BODY_ERRORS.items()})
    query_model = getattr(view, "query_schema", None)
    if query_model is not None:
        operation["parameters"] = _query_parameters(query_model, schemas)
        responses["422"] = {"description": "Invalid query parameters"}
    role = getattr(view, "auth_role", None)
    if role is not None:
        operation["security"] = [{"bearerAuth": []}]
        responses["401"] = {"description": "Missing, bad or expired token"}
        if role != "user":
            responses["403"] = {"description": f"Needs role {role}"}
    for status_code, description in getattr(view, "error_responses", {}).items():
        responses[str(status_code)] = {"description": description}
    responses.update({code: {"description": text} for code, text in _COMMON_ERRORS.items()})
    for code, response in responses.items():
        if int(code) >= 400:
            response["content"] = _ERROR
    operation["responses"] = dict(sorted(responses.items()))
    return operation


def _query_parameters(model: type[BaseModel], schemas: Schemas) -> list[dict[str, Any]]:
    schema = schemas.of(model, "validation")
    if "$ref" in schema:
        schema = schemas.components[schema["$ref"].removeprefix(REF.format(model=""))]
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        for name, field in schema.get("properties", {}).items()
    ]


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": dict(_CONVERTER_SCHEMAS.get(converter, {"type": "string"})),
        }
        for converter, name in _RULE_ARGUMENT.findall(rule)
    ]


def _tags(app: Flask, names: set[str]) -> list[dict[str, str]]:
    """A tag per blueprint, described by the first paragraph of its module's docstring."""
    tags = []
    for name in sorted(names):
        tag = {"name": name}
        blueprint = app.blueprints.get(name)
        module = sys.modules.get(blueprint.import_name) if blueprint else None
        if module is not None and module.__doc__:
            tag["description"] = _first_paragraph(inspect.cleandoc(module.__doc__))
        tags.append(tag)
    return tags


def documented_rules(app: Flask) -> list[Any]:
    """The url_map's rules the document describes: all but static files and pages about the API."""
    return [
        rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        and not getattr(app.view_functions[rule.endpoint], "openapi_hidden", False)
    ]


def _unique(base: str, taken: set[str]) -> str:
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}_{number}"
    taken.add(candidate)
    return candidate


def build_document(app: Flask) -> dict[str, Any]:
    rules = documented_rules(app)
    schemas = Schemas()
    for rule in rules:
        view = app.view_functions[rule.endpoint]
        schemas.add(getattr(view, "request_schema", None), "validation")
        schemas.add(getattr(view, "query_schema", None), "validation")
        _, model, top_level = _declared(view)
        for kind in (model, *top_level.values()):
            schemas.add(kind, "serialization")
    schemas.generate()
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for rule in rules:
        view = app.view_functions[rule.endpoint]
        path = _RULE_ARGUMENT.sub(r"{\2}", rule.rule)
        methods = sorted(m.lower() for m in (rule.methods or set()) - {"HEAD", "OPTIONS"})
        for method in methods:
            # One view may serve several methods or paths; an operationId must stay unique.
            base = rule.endpoint.replace(".", "_") + (f"_{method}" if len(methods) > 1 else "")
            operation_id = _unique(base, operation_ids)
            operation = {"operationId": operation_id, **_operation(view, rule.endpoint, schemas)}
            if parameters := _path_parameters(rule.rule):
                operation["parameters"] = parameters + operation.get("parameters", [])
            paths.setdefault(path, {})[method] = operation
    components = schemas.components | {"Error": ERROR_SCHEMA}
    tag_names = {tag for item in paths.values() for op in item.values() for tag in op["tags"]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "MITA API", "version": __version__, "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "This server (also under /api/v1, see above)"}],
        "tags": _tags(app, tag_names),
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document of this API."""
    if "mita.openapi" not in current_app.extensions:
        # Built once, on first use: every route is registered by then.
        body = json.dumps(build_document(current_app), separators=(",", ":"))
        current_app.extensions["mita.openapi"] = body
    response = current_app.response_class(
        current_app.extensions["mita.openapi"], mimetype="application/json"
    )
    response.cache_control.no_cache = True  # revalidate: a deploy changes it
    response.add_etag()
    response.make_conditional(request)  # a 304 for a matching If-None-Match, in place
    return response


openapi.openapi_response = {  # type: ignore[attr-defined]
    "description": "This document (not in the success envelope)",
    "content": {"application/json": {"schema": {"type": "object", "required": ["openapi"]}}},
}


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
