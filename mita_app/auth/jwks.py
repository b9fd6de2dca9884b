"""The auth server's signing keys (its JWKS), fetched through the breaker and kept for a while.

An unknown `kid` (the server rotated its key) triggers a refetch, at most one per
`min_refresh` seconds, so a flood of tokens with made-up kids cannot make us hammer the server.
Keys already known keep verifying tokens while the server is unreachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import jwt

from ..errors import InvalidToken
from .breaker import BreakerOpen, UpstreamFailure
from .upstream import AuthServerClient


class SigningKeys:
    def __init__(
        self,
        client: AuthServerClient,
        url: str,
        *,
        algorithms: tuple[str, ...],
        ttl: float,
        min_refresh: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.url = url
        self.algorithms = algorithms
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._recheck_at = float("-inf")  # when the set is due for another look
        self._tried_at: float | None = None  # the last look, whatever came of it
        self._lock = threading.Lock()  # one look at a time; the others wait for its result

    def key(self, kid: str) -> jwt.PyJWK:
        """The key `kid` names: from the cache, else after at most one refetch in the window."""
        with self._lock:
            now = self.clock()
            rotation_allowed = self._tried_at is None or now - self._tried_at >= self.min_refresh
            if (
                not self._keys
                or now >= self._recheck_at
                or (kid not in self._keys and rotation_allowed)
            ):
                self._fetch(now, kid)
            key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("The token was signed with an unknown key.")
        return key

    def snapshot(self) -> dict[str, Any]:
        return {"keys": sorted(self._keys)}

    def _fetch(self, now: float, kid: str) -> None:
        self._tried_at = now
        try:
            self._keys = self.client.call(self.url, {"Accept": "application/json"}, self._read)
            self._recheck_at = now + self.ttl
        except (UpstreamFailure, BreakerOpen):
            self._recheck_at = now + self.min_refresh
            if kid not in self._keys:
                raise  # no key to verify this token with: the caller answers 503, not 401
            # else the keys we have stay good while the server is away

    def _read(self, status: int, document: Any) -> dict[str, jwt.PyJWK]:
        if status != 200 or not isinstance(document, dict):
            raise UpstreamFailure(f"JWKS answered HTTP {status}")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key we cannot use (unknown type, or not for signatures)
            if key.algorithm_name in self.algorithms:
                keys[entry["kid"]] = key
        if not keys:
            raise UpstreamFailure("JWKS holds no usable signing key")
        return keys
