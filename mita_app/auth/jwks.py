"""An issuer's signing keys (its JWKS), fetched through the client's breaker and kept a while.

Each look at the key set is remembered: the keys found are kept for `ttl` seconds; "there is no
key set" (a status in `absent_statuses`: Better Auth without its JWT plugin answers 404) and a
failed fetch are remembered for `min_refresh` seconds. Within that window a token naming a key
we do not hold is answered from what the last look found, without a new one: a flood of tokens
with made-up key ids costs at most one fetch per window, whatever the last look found.

That answer is a 401 only when the look could have seen the key: for a token issued before it
began. One issued later (by its `iat`, unverified, with `CLOCK_SKEW` to spare) may be signed
with a key the issuer made since (a rotation): it gets a 503 with `Retry-After` (the seconds
until the next look is allowed), never a 401 that would sign its user out.

One look at a time (single flight): the request that needs it makes it, and requests that need
its result wait for it, never past its deadline (the client's timeout). The lock covers only
the bookkeeping, never the fetch, and a request whose key is known never waits for a look.
Keys already known keep verifying tokens while the issuer is unreachable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

import jwt

from ..errors import InvalidToken
from .breaker import BreakerOpen, UpstreamFailure
from .upstream import AuthServerClient

log = logging.getLogger(__name__)

HEADERS = {"Accept": "application/json"}
WAIT_SLACK = 0.25  # how long past a look's deadline its waiters give it to report
# Seconds by which the issuer's clock (a token's `iat`) may run behind ours: a token issued that
# long before a look is still taken for one that look may have missed the key of.
CLOCK_SKEW = 5.0


class KeysUnavailable(BreakerOpen):
    """No look is made now (the last one failed, or the one under way ran out of time), and no
    key we hold can verify the token: a 503 with `retry_after`, never a 401."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(retry_after)
        self.args = (f"{reason}; next look in {retry_after:.1f} s",)


# What a look found: the usable keys by kid, and the kids of keys for algorithms not accepted.
KeySet = tuple[dict[str, jwt.PyJWK], frozenset[str]]


class _Look:
    """One fetch of the key set under way: its deadline, and how it ended."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline  # time.monotonic(), whatever clock the windows use
        self.done = threading.Event()
        self.refused: BreakerOpen | None = None  # the breaker did not let it out


class SigningKeys:
    def __init__(
        self,
        client: AuthServerClient,
        url: str,
        *,
        algorithms: tuple[str, ...],
        ttl: float,
        min_refresh: float,
        absent_statuses: tuple[int, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.url = url
        self.algorithms = algorithms
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.absent_statuses = absent_statuses
        self.clock = clock  # of the windows (tests drive it by hand); deadlines are real time
        self.wall = wall  # the time of day, to which a token's `iat` is compared
        self._lock = threading.Lock()  # the state below; never held while fetching
        self._keys: dict[str, jwt.PyJWK] = {}
        self._unusable: frozenset[str] = frozenset()  # kids published for algorithms not ours
        self._published: bool | None = None  # False: the last look found no key set at all
        self._failure: str | None = None  # why the last look failed, if it did
        self._looked_at: float | None = None  # when the last look began
        self._due_at = float("-inf")  # when the set must be looked at again, whatever the kid
        self._look: _Look | None = None

    def key(self, kid: str, issued_at: float | None = None) -> jwt.PyJWK:
        """The key `kid` names, for a token issued at `issued_at` (its `iat`, if it has one).
        InvalidToken (401) when the issuer has no such key, as far as the last look tells;
        BreakerOpen (503) when that cannot be known now."""
        with self._lock:
            now = self.clock()
            known = self._keys.get(kid)
            look = self._look
            leading = look is None and (
                now >= self._due_at or (known is None and self._may_look(now))
            )
            if leading:
                look = self._look = _Look(time.monotonic() + self.client.timeout)
        if known is not None and not leading:
            return known  # good while a look is under way or not yet due
        if look is not None:
            if leading:
                self._fetch(look, now)
            elif not look.done.wait(max(0.0, look.deadline + WAIT_SLACK - time.monotonic())):
                raise KeysUnavailable("the key set did not arrive in time", retry_after=1.0)
        with self._lock:
            key = self._keys.get(kid)
            if key is not None:
                return key
            if look is not None and look.refused is not None:
                raise BreakerOpen(look.refused.retry_after)
            self._missing(kid, self.clock(), issued_at)

    def probe(self) -> None:
        """The breaker's trial when its pause ends (it guards the call itself): one look,
        whose keys are kept."""
        started = self.clock()
        try:
            found = self.client.request(self.url, HEADERS, self._read)
        except UpstreamFailure as error:
            with self._lock:
                self._failed(started, error)
            raise
        with self._lock:
            self._found(started, found)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            state = {
                "keys": sorted(self._keys),
                "published": self._published,
                "last_error": self._failure,
            }
        return {**state, "breaker": self.client.breaker.snapshot()}

    # --- one look ---------------------------------------------------------------------------------

    def _may_look(self, now: float) -> bool:
        """For a kid we do not hold: not while the last look's window lasts."""
        return self._looked_at is None or now - self._looked_at >= self.min_refresh

    def _fetch(self, look: _Look, started: float) -> None:
        """Make the look and record what it found; its waiters are released whatever happens."""
        answered, found, failure = False, None, None
        try:
            found = self.client.call(self.url, HEADERS, self._read)
            answered = True
        except BreakerOpen as error:
            look.refused = error  # nothing was asked: nothing to remember
        except UpstreamFailure as error:
            failure = error
            log.warning("signing keys at %s: %s", self.url, error)
        finally:
            with self._lock:
                if answered:
                    self._found(started, found)
                elif failure is not None:
                    self._failed(started, failure)
                self._look = None
            look.done.set()

    def _found(self, started: float, found: KeySet | None) -> None:
        """Record an answer: the keys, or (None) that the issuer publishes none."""
        if found is None:
            if self._published is not False:
                log.warning("signing keys at %s: none published; JWTs are refused", self.url)
            self._published, self._due_at = False, started + self.min_refresh
        else:
            self._published, self._due_at = True, started + self.ttl
        self._keys, self._unusable = found or ({}, frozenset())
        self._failure, self._looked_at = None, started

    def _failed(self, started: float, error: UpstreamFailure) -> None:
        # The keys we hold stay good while the issuer is away.
        self._failure = f"{type(error).__name__}: {error}"[:200]
        self._looked_at, self._due_at = started, started + self.min_refresh

    def _missing(self, kid: str, now: float, issued_at: float | None) -> NoReturn:
        """What a kid we do not hold gets, from what the last look found."""
        if self._looked_at is None:
            raise KeysUnavailable("the key set has not been fetched yet", retry_after=1.0)
        next_look = max(0.0, self._looked_at + self.min_refresh - now)
        if self._failure is not None:  # whether the issuer has the key cannot be known
            raise KeysUnavailable(self._failure, retry_after=next_look)
        if self._published is False:
            raise InvalidToken("The issuer publishes no signing keys: it issues no JWTs.")
        if kid in self._unusable:
            raise InvalidToken("The token was signed with a key of an algorithm not accepted.")
        # When the token was issued, on the windows' clock.
        issued = None if issued_at is None else now - (self.wall() - issued_at)
        if issued is not None and issued > self._looked_at - CLOCK_SKEW:
            raise KeysUnavailable(
                "the token may be signed with a key made since the last look",
                retry_after=max(next_look, 1.0),
            )
        raise InvalidToken("The token was signed with an unknown key.")

    def _read(self, status: int, document: Any) -> KeySet | None:
        """The usable keys, and the kids of the keys for other algorithms; None when the issuer
        says it has no key set (a success: nothing failed); UpstreamFailure for anything else
        that holds no usable key."""
        if status in self.absent_statuses:
            return None
        if status != 200 or not isinstance(document, dict):
            raise UpstreamFailure(f"JWKS answered HTTP {status}")
        keys: dict[str, jwt.PyJWK] = {}
        unusable: set[str] = set()
        for entry in document.get("keys") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key we cannot use (unknown type, or not for signatures)
            if key.algorithm_name in self.algorithms:
                keys[entry["kid"]] = key
            else:
                unusable.add(entry["kid"])
        if not keys:
            raise UpstreamFailure("JWKS holds no usable signing key")
        return keys, frozenset(unusable - keys.keys())
