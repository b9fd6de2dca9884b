"""Reading the credential a request presents."""

from __future__ import annotations

from flask import request

from ..errors import InvalidToken


def bearer_token() -> str | None:
    """The token of `Authorization: Bearer <token>`; None without one (or with another scheme,
    which RFC 6750 answers with a bare challenge). More than one token is an error."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    tokens = credentials.split()
    if len(tokens) != 1:
        raise InvalidToken("The Authorization header must hold exactly one bearer token.")
    return tokens[0]
