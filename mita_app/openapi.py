"""GET /openapi.json: an OpenAPI 3.1 document built from the routes and their pydantic schemas."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .version import __version__

bp = Blueprint("openapi", __name__)

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
# A Flask rule argument, `<name>` or `<converter(args):name>`: (converter, name).
_RULE_ARGUMENT = re.compile(r"<(?:([^:<>(]+)(?:\([^<>]*\))?:)?([^<>]+)>")
_CONVERTER_SCHEMAS: dict[str, dict[str, str]] = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
}
_COMMON_ERRORS = {"429": "Rate limited", "500": "Unexpected error", "503": "Dependency down"}


def _envelope(model: type[BaseModel] | None) -> dict[str, Any]:
    data = {"$ref": REF.format(model=model.__name__)} if model else {"type": "object"}
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": data},
    }


def _operation(view: Any, endpoint: str) -> dict[str, Any]:
    status, response_model = getattr(view, "response_schema", (200, None))
    request_model = getattr(view, "request_schema", None)
    role = getattr(view, "auth_role", None)
    operation: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_"),
        "tags": [endpoint.split(".")[0]],
        "summary": (view.__doc__ or endpoint).strip().splitlines()[0],
        "responses": {},
    }
    if status == 204:
        operation["responses"]["204"] = {"description": "No content"}
    else:
        operation["responses"][str(status)] = {
            "description": "Success",
            "content": {"application/json": {"schema": _envelope(response_model)}},
        }
    if request_model is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=request_model.__name__)}}
            },
        }
        operation["responses"]["400"] = {"description": "Malformed JSON", "content": _ERROR}
        operation["responses"]["413"] = {"description": "Body too large", "content": _ERROR}
        operation["responses"]["415"] = {"description": "Not application/json", "content": _ERROR}
        operation["responses"]["422"] = {"description": "Invalid fields", "content": _ERROR}
    if role is not None:
        operation["security"] = [{"bearerAuth": []}]
        operation["responses"]["401"] = {"description": "Missing or bad token", "content": _ERROR}
        if role != "user":
            operation["responses"]["403"] = {"description": f"Needs role {role}", "content": _ERROR}
    for status_code, description in getattr(view, "error_responses", {}).items():
        operation["responses"][str(status_code)] = {"description": description, "content": _ERROR}
    for code, description in _COMMON_ERRORS.items():
        operation["responses"][code] = {"description": description, "content": _ERROR}
    return operation


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


def build_document(app: Flask) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    models: set[tuple[type[BaseModel], JsonSchemaMode]] = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path = _RULE_ARGUMENT.sub(r"{\2}", rule.rule)
        parameters = _path_parameters(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(view, rule.endpoint)
            if parameters:
                operation["parameters"] = parameters
            paths.setdefault(path, {})[method.lower()] = operation
        if getattr(view, "request_schema", None) is not None:
            models.add((view.request_schema, "validation"))
        if getattr(view, "response_schema", (None, None))[1] is not None:
            models.add((view.response_schema[1], "serialization"))
    _, schema = models_json_schema(
        sorted(models, key=lambda pair: pair[0].__name__), ref_template=REF
    )
    components = dict(schema.get("$defs", {}))
    components["Error"] = ERROR_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": "MITA API", "version": __version__},
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
        current_app.extensions["mita.openapi"] = build_document(current_app)
    return jsonify(current_app.extensions["mita.openapi"])


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
