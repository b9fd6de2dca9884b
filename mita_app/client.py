"""What a request says about its client, in a form safe to store."""

from __future__ import annotations

import ipaddress

from flask import request


def valid_ip(address: str | None) -> str | None:
    """`address` if it is an IP address (in its canonical form), else None."""
    try:
        return str(ipaddress.ip_address(address or ""))
    except ValueError:
        return None


def client_ip() -> str | None:
    """The client's address if it is one (behind a trusted proxy it comes from a header)."""
    return valid_ip(request.remote_addr)


def client_user_agent() -> str | None:
    """The User-Agent, printable characters only, at most 256 of them."""
    agent = request.headers.get("User-Agent", "")[:256]
    if not agent.isprintable():  # rare: only then pay for a pass over each character
        agent = "".join(c for c in agent if c.isprintable())
    return agent or None
