"""AUTH_MODE=better-auth: the external auth server vouches for the caller.

The routing rule, one and explicit: a **bearer** credential with exactly two dots is a JWT from
the server's JWT plugin and is verified locally against its JWKS; every other credential (an
opaque session token, signed `token.signature` or raw, from the bearer header or the session
cookie) is a session token and is checked with the server's `GET /api/auth/get-session`. A
credential that fails its path gets 401; it never falls through to the other path.

How a session token reaches get-session (`AUTH_SESSION_TRANSPORT`): Better Auth reads only a
*signed* session cookie, under a name that depends on its baseURL (`__Secure-` in front of it
for https), while its bearer plugin takes the raw token as well as the signed one and makes the
right cookie of either. So by default (`auto`) a token goes as a bearer header first; only a
signed-looking one that the server did not know that way goes again as the session cookie, for
a server without the bearer plugin.

Good answers are cached (`AUTH_SESSION_CACHE_TTL`, never past the session's or token's end),
bad ones briefly (`AUTH_NEGATIVE_CACHE_TTL`); concurrent requests with one uncached credential
make one call (single flight). get-session and the JWKS each have a circuit breaker of their own,
so a failing JWKS (or a client sending JWTs to provoke one) never turns sessions away; an auth
server that is down, slow or talking nonsense gets the client a 503, never a 401.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import jwt
from flask import Flask, has_app_context, request

from .. import audit
from ..errors import AuthServerUnavailable, InvalidToken, MissingCredentials
from .breaker import BreakerOpen, CircuitBreaker, UpstreamFailure, retry_after_seconds
from .cache import AuthCache, Denied, TokenCheck, digest
from .credentials import bearer_token
from .external import provision
from .jwks import SigningKeys
from .upstream import NOT_JSON, AuthServerClient

log = logging.getLogger(__name__)

GET_SESSION = "/api/auth/get-session"
SESSION_COOKIES = ("__Secure-better-auth.session_token", "better-auth.session_token")
NO_JWKS = (404, 410)  # a JWKS that does not exist: the server issues no JWTs (not a failure)
MAX_CREDENTIAL_LENGTH = 4096
MISADDRESSED_EVERY = 60.0  # seconds between warnings of JWTs for another address
# What a session token (raw, or signed and URL-encoded) or a JWT can contain. Anything else is
# refused before it is forwarded anywhere: a header we could not send would count as the
# server's failure, and a client could then open the breaker for everyone.
_CREDENTIAL = re.compile(r"[A-Za-z0-9._~+/=%-]+")
_BREAKER_EVENTS = {"open": "opened", "half_open": "half_open", "closed": "closed"}


class BetterAuth:
    def __init__(self, app: Flask, cache: AuthCache) -> None:
        config = app.config
        self.app = app
        self.cache = cache
        self.negative_ttl: float = config["AUTH_NEGATIVE_CACHE_TTL"]
        self.transport: str = config["AUTH_SESSION_TRANSPORT"]
        self.session_cookie: str = config["AUTH_SESSION_COOKIE"]
        self.issuer: str = config["AUTH_JWT_ISSUER"]
        self.audience: str = config["AUTH_JWT_AUDIENCE"]
        self.breaker = self._breaker("auth-server", config["AUTH_BREAKER_RESET"])
        self.breaker.probe = self._probe
        self.client = self._client(self.breaker)
        self.keys: SigningKeys | None = None
        if config["AUTH_JWKS_URL"]:
            # Its pause is at least the refetch window: a failing JWKS, probe included, is
            # asked at most once a window.
            reset = max(config["AUTH_BREAKER_RESET"], config["AUTH_JWKS_MIN_REFRESH"])
            breaker = self._breaker("auth-server-jwks", reset)
            self.keys = SigningKeys(
                self._client(breaker),
                config["AUTH_JWKS_URL"],
                algorithms=config["AUTH_JWT_ALGORITHMS"],
                ttl=config["AUTH_JWKS_CACHE_TTL"],
                min_refresh=config["AUTH_JWKS_MIN_REFRESH"],
                absent_statuses=NO_JWKS,
            )
            breaker.probe = self.keys.probe
        self._flights: dict[bytes, Future[TokenCheck | Denied]] = {}
        self._flights_lock = threading.Lock()
        self._misaddressed_at = -MISADDRESSED_EVERY

    # --- the request's side -----------------------------------------------------------------------

    def credential(self) -> tuple[str, str]:
        """(where it came from: "bearer" or the cookie's name, the credential)."""
        source, token = "bearer", bearer_token()
        if token is None:
            present = [name for name in SESSION_COOKIES if request.cookies.get(name)]
            if not present:
                raise MissingCredentials()
            source, token = present[0], request.cookies[present[0]]
        if len(token) > MAX_CREDENTIAL_LENGTH or not _CREDENTIAL.fullmatch(token):
            raise InvalidToken("The credential is malformed.")
        return source, token

    def check(self) -> TokenCheck | Denied:
        source, token = self.credential()
        key = _cache_key(source, token)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if _is_jwt(source, token):
            return self._verify_jwt(key, token)
        return self._single_flight(key, lambda: self._check_session(key, source, token))

    def forget(self) -> None:
        """Drop what this process cached about the request's credential (logout)."""
        self.cache.drop(_cache_key(*self.credential()))

    def snapshot(self) -> dict[str, Any]:
        """For /ready: get-session's breaker, and the signing keys with the JWKS's breaker."""
        state = self.breaker.snapshot()
        keys = self.keys.snapshot() if self.keys else None
        return {
            "ok": state["state"] == "closed"
            and (keys is None or keys["breaker"]["state"] == "closed"),
            "breaker": state,
            "signing_keys": keys,
        }

    # --- JWTs of the server's JWT plugin ----------------------------------------------------------

    def _verify_jwt(self, key: str, token: str) -> TokenCheck:
        if self.keys is None:
            raise InvalidToken("JWTs are not accepted here (AUTH_JWKS_URL is off).")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError, UnicodeError):
            raise InvalidToken("The token is malformed.") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The token names no signing key.")
        try:
            signing_key = self.keys.key(kid, _issued_at(token))
        except BreakerOpen as error:  # no key at hand, and none to be had now
            raise self._unavailable(error) from None
        try:
            # The algorithm is the key's, never the token's own say (no HS256-with-a-public-key);
            # jku, jwk and x5u headers are never looked at.
            claims = jwt.decode(
                token,
                signing_key,
                algorithms=[signing_key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("The token has expired.") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError) as error:
            # Checked after the signature: a real token of the server, for another address.
            self._misaddressed(token, error)
            raise InvalidToken(
                "The token was issued for another address than this server expects."
            ) from None
        except (jwt.PyJWTError, ValueError, TypeError, UnicodeError):
            raise InvalidToken() from None
        subject, exp = claims["sub"], claims["exp"]
        if not isinstance(subject, str) or not 0 < len(subject) <= 255:
            raise InvalidToken("The token is malformed.")
        if not isinstance(exp, int | float):
            raise InvalidToken("The token is malformed.")
        try:
            expires_at = datetime.fromtimestamp(exp, UTC)
        except (OverflowError, OSError, ValueError):
            raise InvalidToken("The token is malformed.") from None
        email = claims.get("email")
        check = self._vouched(subject, email if isinstance(email, str) else None, None, expires_at)
        self.cache.put(key, check, ttl=(expires_at - datetime.now(UTC)).total_seconds())
        return check

    def _misaddressed(self, token: str, error: jwt.PyJWTError) -> None:
        """Tell the operator, once a minute at most, which settings to fix: the server signs
        with its public baseURL as `iss` and `aud`, which differs from AUTH_SERVER_URL when
        mita reaches it at another address (an internal host)."""
        now = time.monotonic()
        if now - self._misaddressed_at < MISADDRESSED_EVERY:
            return
        self._misaddressed_at = now
        claims = jwt.decode(token, options={"verify_signature": False})
        log.warning(
            "a JWT signed by the auth server was refused (%s): its iss is %r and its aud %r, "
            "but AUTH_JWT_ISSUER is %r and AUTH_JWT_AUDIENCE %r; set both to the auth "
            "server's public baseURL",
            error,
            claims.get("iss"),
            claims.get("aud"),
            self.issuer,
            self.audience,
        )

    # --- opaque session tokens: GET /api/auth/get-session -----------------------------------------

    def _check_session(self, key: str, source: str, token: str) -> TokenCheck | Denied:
        session = None
        try:
            for headers in self._forwardings(source, token):
                session = self.client.call(GET_SESSION, headers, _read_session)
                if session is not None:
                    break
        except (BreakerOpen, UpstreamFailure) as error:
            raise self._unavailable(error) from None
        if session is None:
            denied = Denied("The session is not valid.")
            self.cache.put(key, denied, ttl=self.negative_ttl)
            return denied
        check = self._vouched(
            session["user_id"], session["email"], session["session_id"], session["expires_at"]
        )
        remaining = (session["expires_at"] - datetime.now(UTC)).total_seconds()
        self.cache.put(key, check, ttl=remaining)
        return check

    def _forwardings(self, source: str, token: str) -> list[dict[str, str]]:
        """The ways to hand the credential to get-session, in the order to try them (see the
        module's doc): a bearer header, the session cookie, or (`auto`) the one, then, for a
        signed token, the other. Only the session token, never any other cookie of the client."""
        bearer = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
        if source in SESSION_COOKIES:
            names: tuple[str, ...] = (source,)
        else:
            names = (self.session_cookie,) if self.session_cookie else SESSION_COOKIES
        cookie = {
            "Accept": "application/json",
            "Cookie": "; ".join(f"{name}={token}" for name in names),
        }
        if self.transport == "bearer":
            return [bearer]
        if self.transport == "cookie":
            return [cookie]
        return [bearer, cookie] if "." in unquote(token) else [bearer]

    def _single_flight(
        self, cache_key: str, compute: Callable[[], TokenCheck | Denied]
    ) -> TokenCheck | Denied:
        key = digest(cache_key)
        with self._flights_lock:
            flight = self._flights.get(key)
            leading = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
        if not leading:
            try:
                return flight.result(timeout=self.client.timeout + 1)
            except FutureTimeout:
                raise AuthServerUnavailable(retry_after=1) from None
        try:
            result = compute()
        except BaseException as error:
            flight.set_exception(error)
            raise
        else:
            flight.set_result(result)
            return result
        finally:
            with self._flights_lock:
                del self._flights[key]

    # --- the local account behind a vouched-for credential ----------------------------------------

    def _vouched(
        self, subject: str, email: str | None, session_id: str | None, expires_at: datetime
    ) -> TokenCheck:
        user = provision(subject, email)
        return TokenCheck(
            user.id,
            session_id,
            user.role,
            expires_at,
            expires_at if user.is_active else None,
        )

    # --- the breakers -----------------------------------------------------------------------------

    def _breaker(self, name: str, reset: float) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            failure_threshold=self.app.config["AUTH_BREAKER_FAILURES"],
            reset_timeout=reset,
            on_transition=functools.partial(self._record_transition, name),
        )

    def _client(self, breaker: CircuitBreaker) -> AuthServerClient:
        config = self.app.config
        return AuthServerClient(
            config["AUTH_SERVER_URL"],
            timeout=config["AUTH_SERVER_TIMEOUT"],
            connect_timeout=config["AUTH_SERVER_CONNECT_TIMEOUT"],
            breaker=breaker,
        )

    def _unavailable(self, error: Exception) -> AuthServerUnavailable:
        if isinstance(error, BreakerOpen):
            return AuthServerUnavailable(retry_after=retry_after_seconds(error))
        log.warning("auth server call failed: %s", error)
        return AuthServerUnavailable()

    def _probe(self) -> None:
        """The breaker's own trial call (it guards it): get-session without a credential
        answers 200 null."""
        self.client.request(GET_SESSION, {"Accept": "application/json"}, _read_probe)

    def _record_transition(
        self, breaker: str, previous: str, state: str, details: dict[str, Any]
    ) -> None:
        event = f"auth.breaker.{_BREAKER_EVENTS[state]}"
        if has_app_context():
            audit.record(event, previous=previous, breaker=breaker, **details)
        else:  # the probe's own thread
            with self.app.app_context():
                audit.record(event, previous=previous, breaker=breaker, **details)


def _is_jwt(source: str, token: str) -> bool:
    """The routing rule: a bearer credential with exactly two dots is a JWT."""
    return source == "bearer" and token.count(".") == 2


def _issued_at(token: str) -> float | None:
    """The token's `iat`, not yet verified: only ever a reason to look for a newer key."""
    try:
        issued_at = jwt.decode(token, options={"verify_signature": False}).get("iat")
    except (jwt.PyJWTError, ValueError, TypeError, UnicodeError):
        return None
    return float(issued_at) if isinstance(issued_at, int | float) else None


def _cache_key(source: str, token: str) -> str:
    """What the cache knows a credential by: its path too, so that an answer on one path is
    never taken for the other's."""
    return ("jwt:" if _is_jwt(source, token) else "session:") + token


def _read_probe(status: int, document: Any) -> None:
    if status != 200:
        raise UpstreamFailure(f"get-session answered HTTP {status}")


def _read_session(status: int, document: Any) -> dict[str, Any] | None:
    """The session get-session vouches for, None when it says the credential is no good, or
    UpstreamFailure when its answer makes no sense (which counts against the server)."""
    if status in (401, 403) or (status == 200 and document is None):
        return None
    if status != 200:
        raise UpstreamFailure(f"get-session answered HTTP {status}")
    if document is NOT_JSON:
        raise UpstreamFailure("get-session answered 200 with a body that is not JSON")
    try:
        session, user = document["session"], document["user"]
        session_id, user_id = session["id"], user["id"]
        expires_at = datetime.fromisoformat(session["expiresAt"].replace("Z", "+00:00"))
        email = user.get("email")
    except (KeyError, TypeError, AttributeError, ValueError):
        raise UpstreamFailure("get-session answered with a body of the wrong shape") from None
    if not (isinstance(session_id, str) and isinstance(user_id, str)) or not (
        session_id and 0 < len(user_id) <= 255
    ):
        raise UpstreamFailure("get-session answered with a body of the wrong shape")
    if session.get("userId", user_id) != user_id:
        raise UpstreamFailure("get-session answered with a session of another user")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    if expires_at <= datetime.now(UTC):
        return None
    return {
        "session_id": session_id,
        "user_id": user_id,
        "email": email if isinstance(email, str) else None,
        "expires_at": expires_at,
    }
