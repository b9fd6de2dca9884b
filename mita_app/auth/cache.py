"""What authentication concluded about a credential, cached per process.

Keys are SHA-256 digests of the credential, never the credential itself. A hit spares the
signature check, the database round trip and any call to an auth server; expiry is still
checked on every request, so an entry never outlives its token or its session.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """A credential found good: whose it is, and until when."""

    user_id: uuid.UUID
    session_id: uuid.UUID | str | None  # ours; the auth server's; none for its JWTs
    role: str
    token_expires_at: datetime
    live_until: datetime | None  # the session's end; None: revoked, or its user disabled


@dataclass(frozen=True, slots=True)
class Denied:
    """A credential found bad (cached briefly, so a client retrying it costs nothing)."""

    message: str
    user_id: None = None
    session_id: None = None


def digest(credential: str) -> bytes:
    return hashlib.sha256(credential.encode("utf-8", "surrogatepass")).digest()


class AuthCache:
    """A small thread-safe TTL cache of `TokenCheck` (or `Denied`) by credential."""

    def __init__(self, ttl: float, max_size: int, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl  # the default lifetime of an entry; 0 turns the cache off
        self.max_size = max_size
        self.clock = clock
        self._entries: dict[bytes, tuple[float, TokenCheck | Denied]] = {}
        self._lock = threading.Lock()

    def get(self, credential: str) -> TokenCheck | Denied | None:
        if self.ttl <= 0:
            return None
        key = digest(credential)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                del self._entries[key]
                return None
            return entry[1]

    def put(self, credential: str, check: TokenCheck | Denied, ttl: float | None = None) -> None:
        lifetime = self.ttl if ttl is None else min(ttl, self.ttl)
        if self.ttl <= 0 or lifetime <= 0:
            return
        key = digest(credential)
        with self._lock:
            now = self.clock()
            if len(self._entries) >= self.max_size:
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                while len(self._entries) >= self.max_size:
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = (now + lifetime, check)

    def drop(self, credential: str) -> None:
        with self._lock:
            self._entries.pop(digest(credential), None)

    def drop_session(self, session_id: uuid.UUID | str) -> None:
        with self._lock:
            self._entries = {
                k: v for k, v in self._entries.items() if v[1].session_id != session_id
            }

    def drop_user(self, user_id: uuid.UUID) -> None:
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if v[1].user_id != user_id}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
