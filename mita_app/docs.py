"""GET /docs: Swagger UI over /openapi.json, outside production only.

Swagger UI's files come from the flask-swagger-ui package and this app serves them itself: no
CDN. The page holds no inline script or style, so a `Content-Security-Policy` of `'self'` (the
one it is sent with, or a stricter one set later) does not break it.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Flask, Response, current_app, send_from_directory, url_for
from markupsafe import escape

from .errors import NotFound
from .openapi import undocumented

bp = Blueprint("docs", __name__, url_prefix="/docs")

# The only files of the Swagger UI dist that the page uses: nothing else there is served.
ASSETS = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"})
# Swagger UI's CSS draws its icons from data: URIs; it needs nothing else beyond 'self'.
CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MITA API</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{document}"></div>
<script src="{bundle}"></script>
<script src="{start}"></script>
</body>
</html>
"""
# validatorUrl null: Swagger UI would otherwise send the document to validator.swagger.io.
START = """"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
})();
"""


@bp.get("")
@undocumented
def page() -> Response:
    urls = {
        "css": url_for("docs.asset", name="swagger-ui.css"),
        "icon": url_for("docs.asset", name="favicon-32x32.png"),
        "bundle": url_for("docs.asset", name="swagger-ui-bundle.js"),
        "start": url_for("docs.start"),
        "document": url_for("openapi.openapi"),
    }
    html = PAGE.format(**{key: escape(url) for key, url in urls.items()})
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CSP
    return response


@bp.get("/start.js")
@undocumented
def start() -> Response:
    return Response(START, mimetype="text/javascript")


@bp.get("/assets/<name>")
@undocumented
def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound()
    return send_from_directory(current_app.extensions["mita.docs_assets"], name)


def init_app(app: Flask) -> None:
    # Production answers /docs with the JSON 404 of any unknown path: nobody browses the API
    # there, and a route that does not exist cannot be misconfigured.
    if app.config["MITA_ENV"] == "production":
        return
    app.extensions["mita.docs_assets"] = str(files("flask_swagger_ui").joinpath("dist"))
    app.register_blueprint(bp)
