"""The mobile app as an HTTP client of a real server: what its Dio instance sends on every call
and how it reads tokens."""

from __future__ import annotations

from typing import Any

import requests

from tests.gunicorn_server import Server


class App:
    """What the app's Dio instance does on every call: JSON content type, its bearer token."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.http = requests.Session()
        self.access: str | None = None  # the app stores "null" as no token at all
        self.refresh = ""

    def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.access}" if self.access else "Bearer null",
        }
        response = self.http.request(
            method,
            self.server.url("/api" + path),
            json=body,
            params=params or None,
            headers=headers,
            timeout=10,
            allow_redirects=False,  # dart:io follows none on POST/PUT/PATCH/DELETE
        )
        assert response.headers["Content-Type"].startswith("application/json"), path
        return response

    def take_tokens(self, response: Any) -> None:
        # login_screen.dart: top level first, then data.
        body = response.json()
        self.access = body.get("access_token") or body["data"]["access_token"]
        self.refresh = body.get("refresh_token") or body["data"].get("refresh_token", "")
        assert isinstance(self.access, str)
        assert isinstance(self.refresh, str)
