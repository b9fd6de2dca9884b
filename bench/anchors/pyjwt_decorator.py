"""Flask with the `login_required` a tutorial writes with PyJWT: mita's access token (HS256, its
SECRET_KEY, issuer and audience) verified on every request, and nothing else: no session
lookup, no revocation, no database. What checking a bearer token costs in a few lines."""

import functools
import os
from collections.abc import Callable
from typing import Any

import jwt
from flask import Flask, abort, g, request

SECRET_KEY = os.environ["SECRET_KEY"]
ISSUER = os.environ.get("JWT_ISSUER", "mita")
AUDIENCE = os.environ.get("JWT_AUDIENCE", "mita-api")

app = Flask(__name__)


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            abort(401)
        try:
            g.claims = jwt.decode(
                token, SECRET_KEY, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER
            )
        except jwt.PyJWTError:
            abort(401)
        return view(*args, **kwargs)

    return wrapper


@app.get("/me")
@login_required
def me() -> dict[str, str]:
    return {"sub": g.claims["sub"]}
