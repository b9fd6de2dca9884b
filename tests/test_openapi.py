"""GET /openapi.json: a valid OpenAPI 3.1 document that matches the routes and how they behave.

Routes are read from the app's own url_map, so a route added later is held to the same rules.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import openapi_spec_validator
import pytest
from flask import Flask, Response
from flask.testing import FlaskClient
from pydantic import BaseModel

from mita_app.auth import login_required
from mita_app.validation import Schema, body, ok, returns
from mita_app.version import __version__
from tests.conftest import PASSWORD, AuthActions, build_app, dispose

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
STATUS_KEY = re.compile(r"[1-5](\d\d|XX)|default")
PATH_TEMPLATE = re.compile(r"{([^{}]+)}")
COMPONENT_NAME = re.compile(r"[a-zA-Z0-9._-]+")
# pydantic's names for constraints that JSON Schema spells differently.
NON_STANDARD_KEYWORDS = {"ge", "le", "gt", "lt", "max_digits", "decimal_places"}


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


def keywords(schema: Any) -> Iterator[str]:
    """Every keyword used in a schema, not counting the names of its properties."""
    if isinstance(schema, list):
        for item in schema:
            yield from keywords(item)
    elif isinstance(schema, dict):
        for key, value in schema.items():
            yield key
            named = key in ("properties", "$defs", "patternProperties")
            yield from keywords(list(value.values()) if named else value)


def request_schema(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any]:
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return resolve(document, ref)


def success_schema(document: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    code = next(code for code in operation["responses"] if code.startswith("2"))
    content = operation["responses"][code].get("content")
    return None if content is None else content["application/json"]["schema"]


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def concrete(path: str, operation: dict[str, Any]) -> str:
    """The path with each parameter filled: 1 for numbers, a fresh UUID otherwise."""
    values = {
        p["name"]: "1" if p["schema"].get("type") in ("integer", "number") else str(uuid.uuid4())
        for p in operation.get("parameters", [])
        if p["in"] == "path"
    }
    return PATH_TEMPLATE.sub(lambda match: values[match.group(1)], path)


def api_rules(app: Flask) -> Iterator[tuple[str, str, Any]]:
    """(documented path, method, view) for every route but static files and the docs pages."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("docs."):
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            yield openapi_path(rule.rule), method.lower(), app.view_functions[rule.endpoint]


# --- the document itself ------------------------------------------------------------------------


def test_openapi_json_is_an_openapi_3_1_document(doc_app: Flask) -> None:
    response = doc_app.test_client().get("/openapi.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"]
    assert document["info"]["version"] == __version__


def test_openapi_json_needs_no_credentials_is_stable_and_revalidates(doc_app: Flask) -> None:
    client = doc_app.test_client()
    first = client.get("/openapi.json")

    again = client.get("/openapi.json", headers={"If-None-Match": first.headers["ETag"]})

    assert again.status_code == 304
    assert fetch(client) == first.get_json()
    assert "no-cache" in first.headers["Cache-Control"]
    assert "security" not in first.get_json()["paths"]["/openapi.json"]["get"]


def test_servers_are_the_root_and_v1_is_described_as_an_alias(document: dict[str, Any]) -> None:
    assert [server["url"] for server in document["servers"]] == ["/"]
    assert "/api/v1" in document["info"]["description"]
    assert not [path for path in document["paths"] if path.startswith("/api/v1")]


def test_every_route_appears_with_exactly_its_methods(
    doc_app: Flask, document: dict[str, Any]
) -> None:
    expected: dict[str, set[str]] = {}
    for path, method, _ in api_rules(doc_app):
        expected.setdefault(path, set()).add(method)

    documented = {path: set(item) for path, item in document["paths"].items()}

    assert documented == expected
    assert {"/api/auth/register", "/api/users/me", "/health", "/openapi.json"} <= set(documented)
    assert documented["/api/users/me"] == {"get", "patch"}
    assert not [path for path in documented if path.startswith("/docs")]


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


def test_schemas_use_json_schema_keywords_only(document: dict[str, Any]) -> None:
    used = set(keywords(document["components"]["schemas"]))
    for _, _, operation in operations(document):
        used |= set(keywords(success_schema(document, operation)))

    assert not used & NON_STANDARD_KEYWORDS
    income = document["components"]["schemas"]["ProfileUpdate"]["properties"]["income"]
    assert {"type": "number"} in income["anyOf"][0]["anyOf"]
    assert income["anyOf"][0]["minimum"] == 0


def test_money_leaves_as_a_json_number(document: dict[str, Any]) -> None:
    user = document["components"]["schemas"]["UserOut"]["properties"]

    for field in ("income", "savings_goal", "budget_alert_threshold"):
        assert user[field]["type"] == "number", field


# --- request bodies -----------------------------------------------------------------------------


def test_request_bodies_are_those_of_body_views_and_allow_unknown_keys(
    doc_app: Flask, document: dict[str, Any]
) -> None:
    with_body = {(p, m) for p, m, view in api_rules(doc_app) if hasattr(view, "request_schema")}

    assert {(p, m) for p, m, o in operations(document) if "requestBody" in o} == with_body
    assert ("/api/users/me", "patch") in with_body
    for path, method in with_body:
        operation = document["paths"][path][method]
        body = operation["requestBody"]
        assert isinstance(body["required"], bool), (method, path)
        ref = body["content"]["application/json"]["schema"]["$ref"]
        assert ref.startswith("#/components/schemas/"), (method, path)
        schema = resolve(document, ref)
        assert schema["type"] == "object", (method, path)
        assert schema.get("additionalProperties", True) is not False, (method, path)
        assert set(schema.get("required", [])) <= set(schema["properties"]), (method, path)
        for code in ("400", "413", "415", "422"):
            assert code in operation["responses"], (method, path, code)


def test_operations_without_a_body_schema_declare_no_body(
    doc_app: Flask, document: dict[str, Any]
) -> None:
    bodyless = [(p, m) for p, m, view in api_rules(doc_app) if not hasattr(view, "request_schema")]

    assert ("/api/users/me", "get") in bodyless
    for path, method in bodyless:
        operation = document["paths"][path][method]
        assert "requestBody" not in operation, (method, path)
        assert not {"413", "415"} & set(operation["responses"]), (method, path)


def test_register_schema_requires_email_and_password_only(document: dict[str, Any]) -> None:
    schema = request_schema(document, document["paths"]["/api/auth/register"]["post"])

    assert schema is document["components"]["schemas"]["RegisterIn"]
    assert sorted(schema["required"]) == ["email", "password"]
    assert {"email", "password", "country", "annual_income", "timezone"} <= set(
        schema["properties"]
    )
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
def test_an_empty_body_names_exactly_the_required_fields_and_no_unknown_key(
    client: FlaskClient, path: str, model: str
) -> None:
    schema = fetch(client)["components"]["schemas"][model]

    response = client.post(path, json={"unexpected": 1})

    assert response.status_code == 422
    assert set(response.get_json()["error"]["fields"]) == set(schema["required"])


def test_an_unknown_key_is_ignored_and_a_known_key_with_a_bad_value_is_named(
    client: FlaskClient,
) -> None:
    address = f"doc-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": address, "password": PASSWORD, "deviceFingerprint": "abc"}

    bad = client.post("/api/auth/register", json={**body, "password": "short"})
    good = client.post("/api/auth/register", json=body)

    assert bad.status_code == 422
    assert set(bad.get_json()["error"]["fields"]) == {"password"}
    assert good.status_code == 201, good.get_json()


# --- security -----------------------------------------------------------------------------------


def test_bearer_security_scheme_is_declared(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_every_login_required_operation_declares_bearer_auth_and_401(
    doc_app: Flask, document: dict[str, Any]
) -> None:
    protected = 0
    for path, method, view in api_rules(doc_app):
        operation = document["paths"][path][method]
        if getattr(view, "auth_role", None) is None:
            assert "security" not in operation, (method, path)
            continue
        protected += 1
        assert operation["security"] == [{"bearerAuth": []}], (method, path)
        assert "401" in operation["responses"], (method, path)

    assert protected


def test_operations_that_demand_a_token_are_the_ones_that_declare_it(
    client: FlaskClient,
) -> None:
    document = fetch(client)
    protected = set()
    for path, method, operation in operations(document):
        response = client.open(concrete(path, operation), method=method.upper(), json={})
        demands_token = (
            response.status_code == 401
            and response.get_json()["error"]["code"] == "missing_credentials"
        )
        declared = operation.get("security") == [{"bearerAuth": []}]
        assert demands_token == declared, (method, path, response.status_code)
        if demands_token:
            protected.add((path, method))
            assert response.headers["WWW-Authenticate"].startswith("Bearer")

    assert {("/api/users/me", "get"), ("/api/auth/session", "get")} <= protected


# --- responses match behaviour ------------------------------------------------------------------


class Recorder:
    """Sends requests and checks each answer's status is documented for its operation, and that
    a success carries no top-level key its schema does not declare."""

    def __init__(self, client: FlaskClient, document: dict[str, Any]) -> None:
        self.client = client
        self.document = document
        self.seen: set[tuple[str, str, int]] = set()

    def __call__(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = AuthActions.bearer(token) if token else {}
        operation = self.document["paths"][path][method.lower()]
        url = concrete(path, operation)
        response = self.client.open(url, method=method, headers=headers, **kwargs)
        documented = operation["responses"]
        assert str(response.status_code) in documented, (
            f"{method} {path} answered {response.status_code}, documented: {sorted(documented)}",
            response.get_json(),
        )
        schema = success_schema(self.document, operation)
        if response.status_code < 300 and schema and "properties" in schema:
            undeclared = set(response.get_json()) - set(schema["properties"])
            assert not undeclared, f"{method} {path}: top-level {undeclared} not documented"
        self.seen.add((method, path, response.status_code))
        return response


def test_every_status_and_top_level_key_the_api_answers_is_documented(
    client: FlaskClient,
) -> None:
    call = Recorder(client, fetch(client))
    address = f"doc-{uuid.uuid4().hex[:8]}@example.com"
    credentials = {"email": address, "password": PASSWORD}

    call("GET", "/health")
    call("GET", "/ready")
    call("GET", "/openapi.json")
    registered = call("POST", "/api/auth/register", json=credentials).get_json()["data"]
    call("POST", "/api/auth/register", json=credentials | {"password": "another password"})
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
    call("POST", "/api/auth/logout", rotated["access_token"])
    call("POST", "/api/auth/logout-all", token)
    call("POST", "/api/auth/logout", token)

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


# --- what views declare, for routes of kinds the app may not have yet ---------------------------


class ItemOut(BaseModel):
    id: uuid.UUID
    token: str


class ItemIn(Schema):
    reason: str | None = None


@pytest.fixture
def extended_app(doc_app: Flask) -> Flask:
    """The app with test-only routes: an admin role, path parameters, declared top-level keys,
    a list, an optional body, one view for two methods."""

    @returns(None)
    @login_required(role="admin")
    def admin_report() -> Response:
        """An admin-only report."""
        return ok({})

    @returns(list[ItemOut], top_level={"count": int})
    @login_required
    def item(item_id: uuid.UUID, version: int) -> Response:
        """One item, by id and version.

        Longer words about it."""
        return ok([], count=0)

    @returns(ItemOut, top_level=("token",))
    def token() -> Response:
        return ok(None)

    @returns(None, 204)
    @body(ItemIn, optional=True)
    def forget(payload: ItemIn) -> Response:
        return Response(status=204)

    doc_app.add_url_rule("/test-only/admin-report", "test_only.admin_report", admin_report)
    doc_app.add_url_rule("/test-only/items/<uuid:item_id>/v/<int:version>", "test_only.item", item)
    doc_app.add_url_rule("/test-only/token", "test_only.token", token, methods=["GET", "POST"])
    doc_app.add_url_rule("/test-only/forget", "test_only.forget", forget, methods=["DELETE"])
    return doc_app


@pytest.fixture
def extended(extended_app: Flask) -> dict[str, Any]:
    return fetch(extended_app.test_client())


def test_routes_of_new_kinds_make_a_valid_document(extended: dict[str, Any]) -> None:
    openapi_spec_validator.validate(extended)
    test_document_structure_is_valid_openapi(extended)
    test_every_reference_resolves(extended)


def test_admin_only_operation_documents_401_and_403(extended: dict[str, Any]) -> None:
    operation = extended["paths"]["/test-only/admin-report"]["get"]

    assert operation["security"] == [{"bearerAuth": []}]
    assert {"401", "403"} <= set(operation["responses"])
    assert operation["summary"] == "An admin-only report."


def test_path_parameters_are_declared_with_their_types(extended: dict[str, Any]) -> None:
    operation = extended["paths"]["/test-only/items/{item_id}/v/{version}"]["get"]

    parameters = {p["name"]: p for p in operation["parameters"]}
    assert set(parameters) == {"item_id", "version"}
    assert all(p["in"] == "path" and p["required"] is True for p in parameters.values())
    assert parameters["item_id"]["schema"] == {"type": "string", "format": "uuid"}
    assert parameters["version"]["schema"]["type"] == "integer"
    assert operation["summary"] == "One item, by id and version."
    assert "Longer words about it." in operation["description"]


def test_declared_top_level_keys_are_required_beside_data(extended: dict[str, Any]) -> None:
    paths = extended["paths"]
    listed = success_schema(extended, paths["/test-only/items/{item_id}/v/{version}"]["get"])
    copied = success_schema(extended, paths["/test-only/token"]["get"])

    assert listed is not None
    assert copied is not None
    assert listed["required"] == ["success", "data", "count"]
    assert listed["properties"]["count"] == {"type": "integer"}
    assert listed["properties"]["data"]["type"] == "array"
    assert resolve(extended, listed["properties"]["data"]["items"]["$ref"])["title"] == "ItemOut"
    assert copied["required"] == ["success", "data", "token"]
    assert (
        copied["properties"]["token"]
        == resolve(extended, "#/components/schemas/ItemOut")["properties"]["token"]
    )


def test_undeclared_top_level_keys_leave_the_envelope_as_it_was(document: dict[str, Any]) -> None:
    schema = success_schema(document, document["paths"]["/health"]["get"])

    assert schema is not None
    assert schema["required"] == ["success", "data"]
    assert set(schema["properties"]) == {"success", "data"}


@pytest.mark.parametrize(
    ("model", "top_level", "error"),
    [
        (ItemOut, ("nope",), ValueError),
        (ItemOut, ("data",), ValueError),
        (ItemOut, {"success": bool}, ValueError),
        (None, ("token",), ValueError),
        (ItemOut, "token", TypeError),
    ],
)
def test_returns_refuses_top_level_keys_it_cannot_document(
    model: Any, top_level: Any, error: type[Exception]
) -> None:
    with pytest.raises(error):
        returns(model, top_level=top_level)


def test_an_optional_body_is_documented_as_not_required(
    extended_app: Flask, extended: dict[str, Any]
) -> None:
    operation = extended["paths"]["/test-only/forget"]["delete"]

    response = extended_app.test_client().delete("/test-only/forget")

    assert response.status_code == 204
    assert operation["requestBody"]["required"] is False
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ItemIn"
    )


def test_one_view_for_two_methods_gets_two_operation_ids(extended: dict[str, Any]) -> None:
    item = extended["paths"]["/test-only/token"]

    assert item["get"]["operationId"] != item["post"]["operationId"]


# --- GET /docs: Swagger UI, from our own server -------------------------------------------------


class PageParser(HTMLParser):
    """The URLs a page loads, and anything a strict Content-Security-Policy would block."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.inline: list[str] = []
        self.openapi_url: str | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script":
            self._in_script = True
            if attributes.get("src"):
                self.loads.append(str(attributes["src"]))
            else:
                self.inline.append("<script> without src")
        if tag == "link" and attributes.get("href"):
            self.loads.append(str(attributes["href"]))
        if tag == "style":
            self.inline.append("<style>")
        self.inline += [f"{tag} {name}" for name in attributes if name == "style"]
        self.inline += [f"{tag} {name}" for name in attributes if name.startswith("on")]
        self.openapi_url = attributes.get("data-openapi-url") or self.openapi_url

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("script text")


CONTENT_TYPES = {
    ".js": {"text/javascript", "application/javascript"},
    ".css": {"text/css"},
    ".png": {"image/png"},
}


def parsed_page(client: FlaskClient, path: str = "/docs") -> tuple[Any, PageParser]:
    response = client.get(path)
    parser = PageParser()
    parser.feed(response.get_data(as_text=True))
    return response, parser


def test_docs_page_loads_only_local_assets_and_the_document(doc_app: Flask) -> None:
    response, page = parsed_page(doc_app.test_client())

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert page.openapi_url == "/openapi.json"
    assert len(page.loads) >= 3
    for url in page.loads:
        parts = urlsplit(url)
        assert not parts.scheme, url
        assert not parts.netloc, url
        assert url.startswith("/"), url
        assert not url.startswith("//"), url


def test_docs_page_works_under_a_strict_content_security_policy(doc_app: Flask) -> None:
    response, page = parsed_page(doc_app.test_client())

    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert page.inline == []


def test_docs_assets_answer_200_with_their_content_types(doc_app: Flask) -> None:
    client = doc_app.test_client()
    _, page = parsed_page(client)

    for url in page.loads:
        response = client.get(url)
        assert response.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert response.mimetype in CONTENT_TYPES[suffix], (url, response.mimetype)
        assert len(response.data) > 100, url
    scripts = b"".join(client.get(url).data for url in page.loads if url.endswith(".js"))
    assert b"SwaggerUIBundle" in scripts
    assert b"validatorUrl: null" in scripts


@pytest.mark.parametrize("path", ["/docs", "/docs/"])
def test_docs_page_answers_with_or_without_trailing_slash(doc_app: Flask, path: str) -> None:
    response, page = parsed_page(doc_app.test_client(), path)

    assert response.status_code == 200
    assert page.openapi_url == "/openapi.json"


@pytest.mark.parametrize(
    "path", ["/docs/assets/index.css", "/docs/assets/oauth2-redirect.html", "/docs/assets/..%2F"]
)
def test_files_of_the_dist_the_page_does_not_use_are_json_404s(doc_app: Flask, path: str) -> None:
    response = doc_app.test_client().get(path)

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


@pytest.fixture
def production_app(tmp_path: Any) -> Iterator[Flask]:
    app = build_app(
        f"sqlite:///{tmp_path}/production.db",
        create_schema=False,
        MITA_ENV="production",
        MAIL_SERVER="127.0.0.1",
    )
    yield app
    dispose(app)


def test_docs_are_a_json_404_in_production_and_the_document_stays(
    doc_app: Flask, production_app: Flask
) -> None:
    assert production_app.config["MITA_ENV"] == "production"
    client = production_app.test_client()
    _, page = parsed_page(doc_app.test_client())

    for path in ["/docs", "/docs/", *page.loads]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "application/json", path
        assert response.get_json()["success"] is False, path
        assert response.get_json()["error"]["code"] == "not_found", path
    document = fetch(client)
    openapi_spec_validator.validate(document)
    assert set(document["paths"]) == set(fetch(doc_app.test_client())["paths"])


def test_query_parameters_are_declared_beside_the_path_parameters(
    document: dict[str, Any],
) -> None:
    progress = document["paths"]["/api/habits/{habit_id}/progress"]["get"]
    declared = {(p["name"], p["in"], p["required"]) for p in progress["parameters"]}
    assert declared == {
        ("habit_id", "path", True),
        ("start_date", "query", False),
        ("end_date", "query", False),
    }
    verify = document["paths"]["/api/auth/verify-reset-token"]["get"]
    assert [(p["name"], p["in"]) for p in verify["parameters"]] == [("token", "query")]
