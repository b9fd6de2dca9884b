"""A stand-in for a Better Auth (1.7) server, for tests of the code that calls one.

It is a real HTTP server on 127.0.0.1 (a `ThreadingHTTPServer` on a daemon thread), so the code
under test goes through its real HTTP client: timeouts, refused connections, slow bodies and all.
Use the `auth_server` fixture (function scope), or `with AuthServer() as server: ...`:

    from tests.auth_server import SESSION_PATH, AuthServer, auth_server_fixture  # noqa: F401

    def test_something(auth_server: AuthServer) -> None:
        auth_server.add_session("tok1", user_id="u1", email="a@example.com")
        cookie = auth_server.session_cookie("tok1")  # "better-auth.session_token=tok1.<sig>"
        auth_server.set_mode("status", code=429, retry_after=30)
        assert auth_server.calls(SESSION_PATH) == 1

Endpoints
    GET /api/auth/get-session  the session of the credential: a cookie
        (`better-auth.session_token` or `__Secure-better-auth.session_token`) or
        `Authorization: Bearer <value>`. The value may be the raw token or the signed form
        Better Auth puts in its cookie (`session_cookie_value(token)`); a wrong signature, an
        unknown or expired token, or no credential at all answer 200 with body `null`, as
        Better Auth does.
    GET /api/auth/jwks         the published public keys (Ed25519 by default).
    anything else              404 with a JSON body.

Modes, per path: `set_mode(mode, path=SESSION_PATH, **options)`. A change applies at once, also
to requests already waiting in "hang".
    normal        as described above
    null          200 `null` whatever the credential
    status        code=401|403|429|500|503|..., retry_after=None (sent as `X-Retry-After`, as
                  Better Auth's rate limiter does; 60 by default for 429), body=None (JSON;
                  bytes are sent as they are)
    hang          read the request and never answer, until the mode changes (then answer in
                  the new mode) or the server stops (then close the connection)
    drip          status line and headers at once, then the normal body one byte every
                  `interval` seconds (0.5)
    drip_headers  status line and headers one byte every `interval` seconds (0.5), then the body
    garbage       200, `Content-Type: application/json`, a body that is not JSON (`body=`)
    wrong_shape   200 with JSON of the wrong shape: `body=` any JSON value ({"session": "x"})
    delay         the normal answer after `seconds` (0.02) per call: a stand-in for latency
    refuse        server-wide, not per path: stop listening, so connections are refused (and
                  open keep-alive connections are closed). `listen_again()`, or setting any
                  other mode, listens again on the same port.

Also: `calls(path)` / `reset_calls()` count requests per path (counted on arrival, whatever the
mode), `wait_for_calls(n, path)` waits for them, `last_headers(path)` is the last request's
headers, `reset()` puts every path back to normal and clears the counts. An unexpected
exception in a handler (a bug here, not a client hanging up) lands in `handler_errors`.

Keys: `rotate_key(kind="EdDSA"|"RS256"|"ES256", drop_old=False)`, `sign(claims, kid=None,
headers=None, with_kid=True)`, `claims(user_id, ...)` (Better Auth's default payload),
`sign_with_unpublished_key`, `sign_hs256_with_public_key` (the algorithm-confusion attack),
`public_key_pem` / `public_key_raw`, `current_kid`, `jwks()`.

Nothing outlives `stop()`: it wakes the slow modes (they wait on a stop event, never in a plain
sleep), shuts every open connection down, and joins the server's threads within a bound, raising
if one is still running after it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.conftest import free_port

SESSION_PATH = "/api/auth/get-session"
JWKS_PATH = "/api/auth/jwks"
COOKIE_NAMES = ("__Secure-better-auth.session_token", "better-auth.session_token")

# Every mode with the options it takes and their defaults ("refuse" is handled apart).
MODE_OPTIONS: dict[str, dict[str, Any]] = {
    "normal": {},
    "null": {},
    "status": {"code": 500, "retry_after": None, "body": None},
    "hang": {},
    "drip": {"interval": 0.5},
    "drip_headers": {"interval": 0.5},
    "garbage": {"body": b"<html><body>502 Bad Gateway</body></html>"},
    "wrong_shape": {"body": {"session": "x"}},
    "delay": {"seconds": 0.02},
}
KEY_KINDS = {"EdDSA": "EdDSA", "Ed25519": "EdDSA", "RS256": "RS256", "ES256": "ES256"}


@dataclass(eq=False)  # compared by identity: a hanging request waits until its object is replaced
class _Behaviour:
    mode: str
    options: dict[str, Any]


NORMAL = _Behaviour("normal", {})


@dataclass
class _Session:
    token: str
    user_id: str
    email: str
    name: str
    expires_at: datetime
    created_at: datetime
    id: str = field(default_factory=lambda: secrets.token_hex(16))

    def payload(self) -> dict[str, Any]:
        """The get-session body, in Better Auth's shape."""
        created = _iso(self.created_at)
        return {
            "session": {
                "id": self.id,
                "token": self.token,
                "userId": self.user_id,
                "expiresAt": _iso(self.expires_at),
                "createdAt": created,
                "updatedAt": created,
                "ipAddress": None,
                "userAgent": None,
            },
            "user": {
                "id": self.user_id,
                "email": self.email,
                "emailVerified": True,
                "name": self.name,
                "image": None,
                "createdAt": created,
                "updatedAt": created,
            },
        }


@dataclass
class _Key:
    kid: str
    alg: str
    private_key: Any
    published: bool = True

    def jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        to_jwk = {"EdDSA": OKPAlgorithm, "RS256": RSAAlgorithm, "ES256": ECAlgorithm}[self.alg]
        return {
            **to_jwk.to_jwk(public, as_dict=True),
            "kid": self.kid,
            "alg": self.alg,
            "use": "sig",
        }


def _utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    """ISO 8601 with milliseconds and a Z, as JavaScript's Date.toISOString() writes it."""
    return _utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_private_key(alg: str) -> Any:
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


class AuthServer:
    """The stand-in server; see the module docstring. Every method is safe to call from any
    thread at any moment, also while requests are being served."""

    def __init__(self, *, secret: str = "better-auth-test-secret-0123456789abcdef") -> None:
        self.secret = secret  # Better Auth's BETTER_AUTH_SECRET: it signs the session cookie
        self.port = free_port()
        # One condition guards all the state below; it is notified when a mode changes, a
        # request arrives or a listener closes, so waiting threads re-check at once.
        self._state = threading.Condition()
        self._modes: dict[str, _Behaviour] = {}
        self._sessions: dict[str, _Session] = {}
        self._calls: Counter[str] = Counter()
        self._last_headers: dict[str, Message] = {}
        self._keys: list[_Key] = []
        self._unpublished: dict[str, _Key] = {}  # per kind, made on first use
        self._listener: _Listener | None = None
        self._started = False
        self.handler_errors: list[BaseException] = []  # anything unexpected in a handler
        self.rotate_key()

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, as BETTER_AUTH_URL would be (also the JWTs' `iss` and `aud`)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def session_url(self) -> str:
        return self.url + SESSION_PATH

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def start(self) -> AuthServer:
        self._started = True
        if self._listener is None:
            self._listener = _Listener(self)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, end every request in flight, and join all threads within `timeout`
        seconds; raise if one is still running then."""
        self._started = False
        self._close_listener(timeout)

    def refuse(self, timeout: float = 5.0) -> None:
        """Stop listening (connections are refused) and close the open connections; the
        per-path modes are kept for when the server listens again."""
        self._close_listener(timeout)

    def listen_again(self) -> None:
        """Listen again, on the same port (SO_REUSEADDR makes the port free at once)."""
        if self._listener is None:
            self._listener = _Listener(self)

    def _close_listener(self, timeout: float) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.closing.set()
        with self._state:
            self._state.notify_all()  # wakes the "hang" handlers
        still_running = listener.close(deadline=time.monotonic() + timeout)
        if still_running:
            raise RuntimeError(
                f"auth stand-in threads still running after {timeout} s: {still_running}"
            )

    def __enter__(self) -> AuthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- behaviour ----------------------------------------------------------------------------

    def set_mode(self, mode: str, path: str = SESSION_PATH, **options: Any) -> None:
        """Switch how `path` answers (see the module docstring for the modes and options)."""
        if mode == "refuse":
            if options:
                raise TypeError(f"refuse takes no options: {sorted(options)}")
            self.refuse()
            return
        if mode not in MODE_OPTIONS:
            raise ValueError(f"unknown mode {mode!r}; one of {[*MODE_OPTIONS, 'refuse']}")
        unknown = set(options) - set(MODE_OPTIONS[mode])
        if unknown:  # a typo in an option would otherwise pass silently
            raise TypeError(f"mode {mode!r} takes no option(s) {sorted(unknown)}")
        behaviour = _Behaviour(mode, {**MODE_OPTIONS[mode], **options})
        with self._state:
            self._modes[path] = behaviour
            self._state.notify_all()
        if self._started:
            self.listen_again()

    def mode(self, path: str = SESSION_PATH) -> str:
        """The current mode of `path` ("refuse" while not listening)."""
        if self._started and not self.listening:
            return "refuse"
        with self._state:
            return self._modes.get(path, NORMAL).mode

    def reset(self) -> None:
        """Every path back to normal, counts and recorded headers cleared; sessions and keys
        are kept."""
        with self._state:
            self._modes.clear()
            self._calls.clear()
            self._last_headers.clear()
            self._state.notify_all()
        if self._started:
            self.listen_again()

    # --- what arrived ---------------------------------------------------------------------------

    def calls(self, path: str | None = None) -> int:
        """Requests received for `path` (all paths when None), whatever they were answered."""
        with self._state:
            return self._calls[path] if path is not None else sum(self._calls.values())

    def reset_calls(self) -> None:
        with self._state:
            self._calls.clear()

    def wait_for_calls(self, count: int, path: str | None = None, timeout: float = 5.0) -> bool:
        """Wait until at least `count` requests have arrived (e.g. before changing a mode while
        they hang); False when they have not after `timeout` seconds."""
        with self._state:
            return self._state.wait_for(lambda: self.calls(path) >= count, timeout)

    def last_headers(self, path: str = SESSION_PATH) -> Message | None:
        """The headers of the last request for `path` (case-insensitive: `headers["cookie"]`,
        `headers.get_all("Cookie")`), or None if none came."""
        with self._state:
            return self._last_headers.get(path)

    # --- sessions -------------------------------------------------------------------------------

    def add_session(
        self,
        token: str,
        *,
        user_id: str | None = None,
        email: str | None = None,
        name: str | None = None,
        expires_at: datetime | None = None,
    ) -> dict[str, Any]:
        """Make `token` a valid session (until `expires_at`, UTC if naive; 7 days by default).
        Returns the body get-session will answer for it."""
        now = datetime.now(UTC)
        user_id = user_id or f"user-{token[:12]}"
        session = _Session(
            token=token,
            user_id=user_id,
            email=email or f"{user_id}@example.com",
            name=name if name is not None else user_id,
            expires_at=_utc(expires_at) if expires_at else now + timedelta(days=7),
            created_at=now,
        )
        with self._state:
            self._sessions[token] = session
        return session.payload()

    def remove_session(self, token: str) -> None:
        with self._state:
            self._sessions.pop(token, None)

    def session_cookie_value(self, token: str) -> str:
        """The cookie value Better Auth sets: URL-encoded `token.base64(HMAC-SHA256(secret,
        token))`. Code that forwards the cookie must send it exactly so."""
        return quote(f"{token}.{self._signature(token)}", safe="")

    def session_cookie(self, token: str, *, secure: bool = False, signed: bool = True) -> str:
        """A `Cookie` header value carrying `token` (signed as Better Auth does by default)."""
        name = COOKIE_NAMES[0] if secure else COOKIE_NAMES[1]
        return f"{name}={self.session_cookie_value(token) if signed else token}"

    def _signature(self, token: str) -> str:
        digest = hmac.new(self.secret.encode(), token.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    def _session_answer(self, headers: Message) -> Any:
        """What a normal get-session answers: the session body, or None (JSON null)."""
        credential = _credential(headers)
        if credential is None:
            return None
        value = unquote(credential)
        with self._state:
            session = self._sessions.get(value)
            if session is None and "." in value:  # the signed form: token.signature
                token, _, signature = value.rpartition(".")
                if hmac.compare_digest(signature, self._signature(token)):
                    session = self._sessions.get(token)
        if session is None or session.expires_at <= datetime.now(UTC):
            return None
        return session.payload()

    # --- keys and tokens ------------------------------------------------------------------------

    def rotate_key(self, kind: str = "EdDSA", *, drop_old: bool = False) -> str:
        """Add a new current signing key (kind EdDSA/Ed25519, RS256 or ES256) and return its kid.
        Older keys stay published unless `drop_old` (they can still sign: a token from a
        retired key)."""
        alg = KEY_KINDS[kind]
        private_key = _new_private_key(alg)  # RSA takes a while: outside the lock
        key = _Key(kid=f"{alg.lower()}-{secrets.token_hex(6)}", alg=alg, private_key=private_key)
        with self._state:
            if drop_old:
                for old in self._keys:
                    old.published = False
            self._keys.append(key)
        return key.kid

    @property
    def current_kid(self) -> str:
        with self._state:
            return self._keys[-1].kid

    def jwks(self) -> dict[str, Any]:
        """What /api/auth/jwks publishes."""
        with self._state:
            return {"keys": [key.jwk() for key in self._keys if key.published]}

    def claims(self, user_id: str, *, email: str | None = None, **overrides: Any) -> dict[str, Any]:
        """The payload Better Auth's JWT plugin signs by default: the user, `sub` = user id,
        `iss` = `aud` = the base URL, 15 minutes of validity. `overrides` replace or add."""
        now = int(time.time())
        created = _iso(datetime.now(UTC))
        return {
            "id": user_id,
            "email": email or f"{user_id}@example.com",
            "emailVerified": True,
            "name": user_id,
            "image": None,
            "createdAt": created,
            "updatedAt": created,
            "iat": now,
            "iss": self.url,
            "aud": self.url,
            "exp": now + 15 * 60,
            "sub": user_id,
            **overrides,
        }

    def sign(
        self,
        claims: dict[str, Any],
        kid: str | None = None,
        headers: dict[str, Any] | None = None,
        *,
        with_kid: bool = True,
    ) -> str:
        """A compact JWT signed by the current key (or the key `kid`, published or not), with
        `kid` in its header unless `with_kid=False`. `headers` add to or override the header
        (`{"kid": "other"}`)."""
        key = self._key(kid)
        header = {"kid": key.kid} if with_kid else {}
        header.update(headers or {})
        return jwt.encode(claims, key.private_key, algorithm=key.alg, headers=header)

    def sign_with_unpublished_key(
        self, claims: dict[str, Any], *, kid: str | None = None, kind: str = "EdDSA"
    ) -> str:
        """A JWT signed by a key the JWKS never shows. Its header names `kid` — by default the
        current published kid, i.e. a forgery that claims a real key."""
        alg = KEY_KINDS[kind]
        with self._state:
            key = self._unpublished.get(alg)
            if key is None:
                key = _Key(f"unpublished-{alg.lower()}", alg, _new_private_key(alg), False)
                self._unpublished[alg] = key
        header_kid = kid if kid is not None else self.current_kid
        return jwt.encode(claims, key.private_key, algorithm=alg, headers={"kid": header_kid})

    def public_key_pem(self, kid: str | None = None) -> bytes:
        """The public key (current or `kid`) as PEM SubjectPublicKeyInfo."""
        return (
            self._key(kid)
            .private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def public_key_raw(self, kid: str | None = None) -> bytes:
        """The public key's raw bytes: the 32 bytes of an Ed25519 key (the JWK's `x`), the
        uncompressed point of an EC key, the DER SubjectPublicKeyInfo of an RSA key."""
        public = self._key(kid).private_key.public_key()
        if isinstance(public, ed25519.Ed25519PublicKey):
            return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        if isinstance(public, ec.EllipticCurvePublicKey):
            return public.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign_hs256_with_public_key(
        self, claims: dict[str, Any], *, form: str = "pem", kid: str | None = None
    ) -> str:
        """The algorithm-confusion attack: an HS256 token whose HMAC secret is the *public* key
        (form "pem", "raw", or "x" = the JWK's base64url text), with the real kid in its header.
        Built by hand, since PyJWT rightly refuses a PEM key as an HMAC secret."""
        key = self._key(kid)
        secret = {
            "pem": lambda: self.public_key_pem(key.kid),
            "raw": lambda: self.public_key_raw(key.kid),
            "x": lambda: str(key.jwk().get("x", "")).encode(),
        }[form]()
        header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
        signing_input = ".".join(
            _b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64url(signature)}"

    def _key(self, kid: str | None) -> _Key:
        with self._state:
            if kid is None:
                return self._keys[-1]
            for key in [*self._keys, *self._unpublished.values()]:
                if key.kid == kid:
                    return key
        raise KeyError(f"no key {kid!r}")

    # --- used by the handler --------------------------------------------------------------------

    def _arrived(self, path: str, headers: Message) -> _Behaviour:
        with self._state:
            self._calls[path] += 1
            self._last_headers[path] = headers
            self._state.notify_all()  # for wait_for_calls
            return self._modes.get(path, NORMAL)

    def _wait_while_hanging(
        self, path: str, hanging: _Behaviour, closing: threading.Event
    ) -> _Behaviour | None:
        """Block until `path` leaves this "hang" (→ the new behaviour) or the listener closes
        (→ None). Notified on both; the bounded waits are only a safety net."""
        with self._state:
            while not closing.is_set() and self._modes.get(path, NORMAL) is hanging:
                self._state.wait(0.25)
            return None if closing.is_set() else self._modes.get(path, NORMAL)

    def _normal_answer(self, path: str, method: str, headers: Message) -> tuple[int, Any]:
        if method == "GET" and path == SESSION_PATH:
            return 200, self._session_answer(headers)
        if method == "GET" and path == JWKS_PATH:
            return 200, self.jwks()
        return 404, {"code": "NOT_FOUND", "message": f"no route for {method} {path}"}


def _credential(headers: Message) -> str | None:
    """The session credential as Better Auth's bearer plugin sees it: the bearer token first
    (the plugin turns it into the session cookie), then the cookies."""
    authorization = headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    cookies: dict[str, str] = {}
    for header in headers.get_all("Cookie") or []:
        for pair in header.split(";"):
            name, sep, value = pair.strip().partition("=")
            if sep:
                cookies.setdefault(name, value)
    return next((cookies[name] for name in COOKIE_NAMES if name in cookies), None)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its handler threads and open connections, so a close can
    end both (the stock one forgets daemon threads and never touches open connections)."""

    allow_reuse_address = True  # SO_REUSEADDR: listen_again() binds the same port at once
    daemon_threads = True

    def __init__(self, stand_in: AuthServer, listener: _Listener) -> None:
        self.stand_in = stand_in
        self.listener = listener
        self._guard = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.threads: set[threading.Thread] = set()
        super().__init__(("127.0.0.1", stand_in.port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up a host name (socket.getfqdn), which can stall for
        # seconds where DNS is slow; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        # As ThreadingMixIn does, but the thread and socket are registered before the thread
        # starts, so a close that follows can never miss them.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"auth-stand-in-{self.stand_in.port}-handler",
            daemon=True,
        )
        with self._guard:
            self.connections.add(request)
            self.threads.add(thread)
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._guard:
                self.connections.discard(request)
                self.threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up, or a connection we shut down on close, is normal here.
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.stand_in.handler_errors.append(error)

    def end_connections(self) -> list[threading.Thread]:
        """Shut every open connection down (a handler blocked reading or writing wakes up)
        and return the handler threads still registered."""
        with self._guard:
            connections, threads = list(self.connections), list(self.threads)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)
        return threads


class _Listener:
    """One listening socket with its threads: what refuse() and stop() close, and
    listen_again() replaces. `closing` is the event every slow mode waits on."""

    def __init__(self, stand_in: AuthServer) -> None:
        self.closing = threading.Event()
        self.httpd = _HTTPServer(stand_in, self)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() returns within one poll interval
            name=f"auth-stand-in-{stand_in.port}",
            daemon=True,
        )
        self.thread.start()

    def close(self, deadline: float) -> list[threading.Thread]:
        """Close and join; return the threads still alive at `deadline`."""
        self.closing.set()
        if self.thread.is_alive():  # (shutdown() would wait forever for a dead loop)
            self.httpd.shutdown()  # no more accepts; waits for the serve loop to leave
        self.httpd.server_close()  # the port is closed: new connections are refused
        threads = [self.thread, *self.httpd.end_connections()]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for thread in threads if thread.is_alive()]


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive as a real server does; every answer has a length.
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read counts and headers, not an access log."""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)  # read the body, or the next request on this connection breaks
        stand_in, closing = self.server.stand_in, self.server.listener.closing
        path = urlsplit(self.path).path
        behaviour = stand_in._arrived(path, self.headers)
        while behaviour.mode == "hang":
            waited = stand_in._wait_while_hanging(path, behaviour, closing)
            if waited is None:  # the server is closing: leave without an answer
                self.close_connection = True
                return
            behaviour = waited
        options = behaviour.options

        if behaviour.mode == "delay" and closing.wait(options["seconds"]):
            self.close_connection = True
            return
        if behaviour.mode in ("normal", "delay", "drip", "drip_headers"):
            status, answer = stand_in._normal_answer(path, self.command, self.headers)
            body, headers = _json(answer), {}
        elif behaviour.mode == "null":
            status, body, headers = 200, b"null", {}
        elif behaviour.mode == "status":
            status, body, headers = _status_answer(options)
        elif behaviour.mode == "garbage":
            garbage = options["body"]
            status, headers = 200, {}
            body = garbage.encode() if isinstance(garbage, str) else bytes(garbage)
        else:  # wrong_shape
            status, body, headers = 200, _json(options["body"]), {}

        head = self._head(status, len(body), headers)
        if behaviour.mode == "drip_headers":
            if not _drip(self.wfile, head, options["interval"], closing):
                self.close_connection = True
                return
            self.wfile.write(body)
        elif behaviour.mode == "drip":
            self.wfile.write(head)
            if not _drip(self.wfile, body, options["interval"], closing):
                self.close_connection = True
        else:
            self.wfile.write(head + body)

    def _head(self, status: int, length: int, headers: dict[str, str]) -> bytes:
        """Status line and headers, as bytes, so the slow modes can send them as they like."""
        lines = [
            f"HTTP/1.1 {status} {_phrase(status)}",
            "Content-Type: application/json",
            f"Content-Length: {length}",
            f"Date: {self.date_time_string()}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:  # a code HTTP does not name, e.g. 599: allowed, with no phrase
        return ""


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _status_answer(options: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
    code = int(options["code"])
    headers: dict[str, str] = {}
    retry_after = options["retry_after"]
    if retry_after is None and code == 429:
        retry_after = 60
    if retry_after is not None:
        headers["X-Retry-After"] = str(retry_after)  # Better Auth's rate limiter's header
    body = options["body"]
    if isinstance(body, bytes):  # a raw body, e.g. a proxy's HTML error page
        return code, body, headers
    if body is None:
        phrase = _phrase(code) or "Error"
        if code == 429:
            body = {"message": "Too many requests. Please try again later."}
        else:
            body = {"code": phrase.upper().replace(" ", "_"), "message": phrase}
    return code, _json(body), headers


def _drip(wfile: Any, data: bytes, interval: float, closing: threading.Event) -> bool:
    """Send `data` one byte every `interval` seconds; False if the server closed meanwhile."""
    for index in range(len(data)):
        wfile.write(data[index : index + 1])
        wfile.flush()
        if index + 1 < len(data) and closing.wait(interval):
            return False
    return True


# Named apart from the fixture so that a test module can import it (that registers the fixture
# `auth_server`) without its test parameters shadowing the imported name (ruff F811).
@pytest.fixture(name="auth_server")
def auth_server_fixture() -> Iterator[AuthServer]:
    """A running stand-in Better Auth server, stopped (all its threads joined) afterwards."""
    with AuthServer() as server:
        yield server


__all__ = ["COOKIE_NAMES", "JWKS_PATH", "SESSION_PATH", "AuthServer", "auth_server_fixture"]
