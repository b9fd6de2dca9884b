"""GET /openapi.json: a valid OpenAPI 3 document that matches the routes and how they behave."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import openapi_spec_validator
import pytest
from flask import Flask, Response
from flask.testing import FlaskClient

from mita_app.auth import login_required
from mita_app.validation import ok, returns
from mita_app.version import __version__
from tests.conftest import PASSWORD, AuthActions, build_app, dispose

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
STATUS_KEY = re.compile(r"[1-5](\d\d|XX)|default")
PATH_TEMPLATE = re.compile(r"{([^{}]+)}")
COMPONENT_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def fetch(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def doc_app(tmp_path: Any) -> Iterator[Flask]:
    """The document does not depend on the database: one backend is enough to read it."""
    app = build_app(f"sqlite:///{tmp_path}/openapi.db", create_schema=False)
    yield app
    dispose(app)


@pytest.fixture
def document(doc_app: Flask) -> dict[str, Any]:
    return fetch(doc_app.test_client())


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def request_schema(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return resolve(document, ref)


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


# --- the document itself ------------------------------------------------------------------------


def test_openapi_json_is_an_openapi_3_document(doc_app: Flask) -> None:
    response = doc_app.test_client().get("/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]
    assert document["info"]["version"] == __version__


def test_openapi_json_needs_no_credentials_and_is_stable(doc_app: Flask) -> None:
    client = doc_app.test_client()
    first = fetch(client)

    assert fetch(client) == first
    assert "security" not in first["paths"]["/openapi.json"]["get"]


def test_every_route_appears_with_exactly_its_methods(
    doc_app: Flask, document: dict[str, Any]
) -> None:
    expected: dict[str, set[str]] = {}
    for rule in doc_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = {m.lower() for m in rule.methods or ()} - {"head", "options"}
        expected.setdefault(openapi_path(rule.rule), set()).update(methods)

    documented = {path: set(item) for path, item in document["paths"].items()}

    assert documented == expected
    assert {"/api/auth/register", "/api/users/me", "/health"} <= set(documented)
    assert documented["/api/users/me"] == {"get", "patch"}


def test_document_structure_is_valid_openapi(document: dict[str, Any]) -> None:
    assert set(document) <= {
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    }
    schemes = document["components"]["securitySchemes"]
    assert all(COMPONENT_NAME.fullmatch(name) for name in document["components"]["schemas"])
    seen_ids: set[str] = set()
    for path, method, operation in operations(document):
        where = f"{method.upper()} {path}"
        assert path.startswith("/"), where
        assert set(document["paths"][path]) <= HTTP_METHODS, where
        assert operation["operationId"] not in seen_ids, where
        seen_ids.add(operation["operationId"])
        assert all(isinstance(tag, str) for tag in operation.get("tags", [])), where
        assert operation["responses"], where
        assert any(code.startswith("2") for code in operation["responses"]), where
        for code, response in operation["responses"].items():
            assert STATUS_KEY.fullmatch(code), (where, code)
            assert response.get("description"), (where, code)
            for media in response.get("content", {}).values():
                assert "schema" in media, (where, code)
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), where
        declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
        for name in PATH_TEMPLATE.findall(path):
            assert name in declared, f"{where}: path parameter {name} is not declared"
        for parameter in operation.get("parameters", []):
            assert {"name", "in"} <= set(parameter), where
            if parameter["in"] == "path":
                assert parameter.get("required") is True, where
                assert parameter["name"] in PATH_TEMPLATE.findall(path), where


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    found = list(refs(document))

    assert found
    for ref in found:
        resolve(document, ref)


def test_document_validates_with_openapi_spec_validator(document: dict[str, Any]) -> None:
    openapi_spec_validator.validate(document)


# --- request bodies -----------------------------------------------------------------------------


def test_request_bodies_reference_strict_component_schemas(document: dict[str, Any]) -> None:
    with_body = [(p, m, o) for p, m, o in operations(document) if "requestBody" in o]

    assert {(p, m) for p, m, _ in with_body} == {
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/refresh", "post"),
        ("/api/auth/password", "post"),
        ("/api/users/me", "patch"),
    }
    for path, method, operation in with_body:
        body = operation["requestBody"]
        assert body["required"] is True, (method, path)
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref.startswith("#/components/schemas/"), (method, path)
        schema = resolve(document, ref)
        assert schema["type"] == "object", (method, path)
        assert schema["additionalProperties"] is False, (method, path)
        assert set(schema.get("required", [])) <= set(schema["properties"]), (method, path)
        for code in ("400", "415", "422"):
            assert code in operation["responses"], (method, path, code)


def test_register_schema_requires_email_and_password_only(document: dict[str, Any]) -> None:
    schema = request_schema(document, document["paths"]["/api/auth/register"]["post"])

    assert schema is document["components"]["schemas"]["RegisterIn"]
    assert sorted(schema["required"]) == ["email", "password"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {
        "email",
        "password",
        "country",
        "annual_income",
        "timezone",
    }
    assert schema["properties"]["password"]["minLength"] == 8
    assert schema["properties"]["password"]["maxLength"] == 128


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/api/auth/register", "RegisterIn"),
        ("/api/auth/login", "LoginIn"),
        ("/api/auth/refresh", "RefreshIn"),
    ],
)
def test_required_fields_are_the_ones_the_api_asks_for(
    client: FlaskClient, path: str, model: str
) -> None:
    schema = fetch(client)["components"]["schemas"][model]

    response = client.post(path, json={"unexpected": 1})

    assert response.status_code == 422
    fields = response.get_json()["error"]["fields"]
    assert fields.pop("unexpected") == "Unknown field."
    assert set(fields) == set(schema["required"])


# --- security -----------------------------------------------------------------------------------


def test_bearer_security_scheme_is_declared(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_operations_that_demand_a_token_declare_bearer_auth_and_401(
    client: FlaskClient,
) -> None:
    document = fetch(client)
    protected = set()
    for path, method, operation in operations(document):
        response = client.open(path, method=method.upper())
        demands_token = (
            response.status_code == 401
            and response.get_json()["error"]["code"] == "missing_credentials"
        )
        declared = operation.get("security") == [{"bearerAuth": []}]
        assert demands_token == declared, (method, path, response.status_code)
        if demands_token:
            protected.add((path, method))
            assert "401" in operation["responses"], (method, path)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")

    assert protected == {
        ("/api/auth/logout", "post"),
        ("/api/auth/logout-all", "post"),
        ("/api/auth/password", "post"),
        ("/api/auth/session", "get"),
        ("/api/users/me", "get"),
        ("/api/users/me", "patch"),
    }


# --- responses match behaviour ------------------------------------------------------------------


class Recorder:
    """Sends requests and checks each answer's status is documented for its operation."""

    def __init__(self, client: FlaskClient, document: dict[str, Any]) -> None:
        self.client = client
        self.document = document
        self.seen: set[tuple[str, str, int]] = set()

    def __call__(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = AuthActions.bearer(token) if token else {}
        response = self.client.open(path, method=method, headers=headers, **kwargs)
        documented = self.document["paths"][path][method.lower()]["responses"]
        assert str(response.status_code) in documented, (
            f"{method} {path} answered {response.status_code}, documented: {sorted(documented)}",
            response.get_json(),
        )
        self.seen.add((method, path, response.status_code))
        return response


def test_every_status_the_api_answers_is_documented(client: FlaskClient) -> None:
    call = Recorder(client, fetch(client))
    address = f"doc-{uuid.uuid4().hex[:8]}@example.com"
    credentials = {"email": address, "password": PASSWORD}

    call("GET", "/health")
    call("GET", "/ready")
    call("GET", "/openapi.json")
    registered = call("POST", "/api/auth/register", json=credentials).get_json()["data"]
    call("POST", "/api/auth/register", json=credentials)
    call("POST", "/api/auth/register", json={})
    call("POST", "/api/auth/register", data="{", content_type="application/json")
    call("POST", "/api/auth/register", data="x", content_type="text/plain")
    call("POST", "/api/auth/login", json={"email": address, "password": "wrong password"})
    login = call("POST", "/api/auth/login", json=credentials).get_json()["data"]
    call("POST", "/api/auth/refresh", json={"refresh_token": "not-a-refresh-token"})
    rotated = call(
        "POST", "/api/auth/refresh", json={"refresh_token": registered["refresh_token"]}
    ).get_json()["data"]
    call("POST", "/api/auth/refresh", json={"refresh_token": registered["refresh_token"]})
    token = login["access_token"]
    call("GET", "/api/auth/session", token)
    call("GET", "/api/auth/session", "not.a.token")
    call("GET", "/api/users/me", token)
    call("PATCH", "/api/users/me", token, json={"country": "FR"})
    call("PATCH", "/api/users/me", token, json={"country": "XX"})
    wrong_current = {"current_password": "not the password", "new_password": "another one!"}
    call("POST", "/api/auth/password", token, json=wrong_current)
    call("POST", "/api/auth/password", token, json={**wrong_current, "current_password": PASSWORD})
    call("POST", "/api/auth/logout", token)
    call("POST", "/api/auth/logout-all", rotated["access_token"])

    statuses = {status for _, _, status in call.seen}
    assert {200, 201, 204, 400, 401, 403, 409, 415, 422} <= statuses


def test_oversized_bodies_get_a_documented_413(client: FlaskClient, auth: AuthActions) -> None:
    document = fetch(client)
    call = Recorder(client, document)
    token = auth.register()["access_token"]
    oversized = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'

    for path, method, operation in operations(document):
        if "requestBody" not in operation:
            continue
        response = call(
            method.upper(), path, token, data=oversized, content_type="application/json"
        )
        assert response.status_code == 413, (method, path)


# --- routes added by other modules --------------------------------------------------------------


@pytest.fixture
def extended_app(doc_app: Flask) -> Flask:
    """The app with routes of a kind it does not have yet: path parameters, an admin role."""

    @returns(None)
    @login_required(role="admin")
    def admin_report() -> Response:
        """An admin-only report."""
        return ok({})

    @returns(None)
    @login_required
    def item(item_id: uuid.UUID, version: int) -> Response:
        """One item, by id and version."""
        return ok({"id": str(item_id), "version": version})

    doc_app.add_url_rule("/test-only/admin-report", "test_only.admin_report", admin_report)
    doc_app.add_url_rule("/test-only/items/<uuid:item_id>/v/<int:version>", "test_only.item", item)
    return doc_app


def test_admin_only_operation_documents_401_and_403(extended_app: Flask) -> None:
    document = fetch(extended_app.test_client())

    operation = document["paths"]["/test-only/admin-report"]["get"]

    assert operation["security"] == [{"bearerAuth": []}]
    assert {"401", "403"} <= set(operation["responses"])
    assert operation["summary"] == "An admin-only report."


def test_path_parameters_are_declared_with_their_types(extended_app: Flask) -> None:
    document = fetch(extended_app.test_client())

    operation = document["paths"]["/test-only/items/{item_id}/v/{version}"]["get"]

    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == {"item_id", "version"}
    assert all(p["in"] == "path" and p["required"] is True for p in parameters.values())
    assert parameters["item_id"]["schema"] == {"type": "string", "format": "uuid"}
    assert parameters["version"]["schema"]["type"] == "integer"
    test_document_structure_is_valid_openapi(document)
