"""What a request says about its client, in a form safe to store."""

from __future__ import annotations

import ipaddress

from flask import request


def client_ip() -> str | None:
    """The client's address if it is one (behind a trusted proxy it comes from a header)."""
    try:
        return str(ipaddress.ip_address(request.remote_addr or ""))
    except ValueError:
        return None


def client_user_agent() -> str | None:
    """The User-Agent, printable characters only, at most 256 of them."""
    return "".join(c for c in request.user_agent.string[:256] if c.isprintable()) or None
