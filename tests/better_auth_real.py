"""A real Better Auth server (the npm package, `tests/better_auth_server/`) for tests.

`node server.mjs` runs better-auth as pinned in its package-lock.json, with the jwt() and bearer()
plugins, on a PostgreSQL database of its own (made on the server TEST_DATABASE_URL names, dropped
at the end). On first use `npm ci` installs it, when node_modules is missing or older than the
lockfile. Without node, npm, TEST_DATABASE_URL or a working install the tests that use it are
skipped ("Better Auth tests need ..."); MITA_REQUIRE_BETTER_AUTH=1 turns that into a failure (CI).

    from tests.better_auth_real import (  # noqa: F401 (the fixtures)
        BetterAuthServer,
        better_auth_run_fixture,
        better_auth_server_fixture,
    )

    @pytest.mark.better_auth
    def test_something(better_auth_server: BetterAuthServer) -> None:
        user = better_auth_server.sign_up()  # the token forms one sign-in hands its client
        better_auth_server.fail()  # Better Auth's routes answer 500 (hang(): never answer)

Fixtures: `better_auth_server` is one server for the whole run (public URL = where it listens,
http), put back to normal after each test; `better_auth_https_server` is one whose public
`baseURL` is https (its cookie is `__Secure-better-auth.session_token`, its JWTs' iss and aud are
that URL), reached at http://127.0.0.1, as a server behind a proxy is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any, NoReturn

import psycopg2
import pytest
import requests
from sqlalchemy.engine import make_url

from tests.conftest import PASSWORD, free_port, pg_connect, scratch_database

SERVER_DIR = Path(__file__).parent / "better_auth_server"
BASE_PATH = "/api/auth"
SECRET = "better-auth-real-test-secret-0123456789abcdef"
START_TIMEOUT = 30.0  # node's start-up and the migrations: about a second here
NPM_CI_TIMEOUT = 300.0
STOP_TIMEOUT = 5.0
HTTP_TIMEOUT = 10.0
REQUIRE = "MITA_REQUIRE_BETTER_AUTH"


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason`, or fail when the run requires these tests (CI)."""
    message = f"Better Auth tests need {reason}"
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{REQUIRE}=1 but: {message}")
    pytest.skip(message)


@dataclasses.dataclass(frozen=True)
class SignedIn:
    """What one sign-in hands its client, in every form a client may present it."""

    user_id: str
    email: str
    token: str  # the body's `token`: the raw session token
    auth_token: str  # the `set-auth-token` header (bearer plugin): the signed value, not encoded
    cookie_name: str  # better-auth.session_token, or __Secure-... for an https baseURL
    cookie_value: str  # the Set-Cookie value: the signed value, URL-encoded
    jwt: str  # from GET /api/auth/token (jwt plugin), signed with the current key

    @property
    def cookie(self) -> str:
        """A Cookie header with the session cookie as the browser holds it."""
        return f"{self.cookie_name}={self.cookie_value}"


class BetterAuthServer:
    """One `node server.mjs` process; see the module docstring."""

    def __init__(self, database_url: str, *, public_url: str | None = None) -> None:
        self.database_url = database_url  # postgresql://..., as pg reads it
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"  # where it listens
        self.public_url = public_url or self.url  # its baseURL
        self._http = requests.Session()
        self._http.trust_env = False  # no proxy from the environment
        # No cookie jar: each call carries only the credential it is given (a sign-up with a
        # cookie of an earlier one would also need an Origin header).
        self._http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._process: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkdtemp(prefix="mita-better-auth-")) / "server.log"

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> BetterAuthServer:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", ""),
            "DATABASE_URL": self.database_url,
            "BETTER_AUTH_URL": self.public_url,
            "BETTER_AUTH_SECRET": SECRET,
            "PORT": str(self.port),
        }
        with self._log.open("wb") as log:  # the child has its own copy of the descriptor
            self._process = subprocess.Popen(
                ["node", "server.mjs"],
                cwd=SERVER_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the Better Auth server exited: {self.log()}")
            with contextlib.suppress(requests.RequestException):
                if self._http.get(self.url + "/__control/ready", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        printed = self.log()
        self.stop()
        raise RuntimeError(f"the Better Auth server was not ready in {START_TIMEOUT} s: {printed}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT seconds."""
        process, self._process = self._process, None
        self._http.close()
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        shutil.rmtree(self._log.parent, ignore_errors=True)

    def log(self) -> str:
        """What the server printed so far (its last 4 kB)."""
        try:
            return self._log.read_bytes()[-4096:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    # --- users and their credentials -------------------------------------------------------------

    def sign_up(self, email: str | None = None, password: str = PASSWORD) -> SignedIn:
        """A new user, signed up (which signs in) through `/sign-up/email`."""
        email = email or f"real-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": password, "name": email.split("@")[0]}
        return self._signed_in(self._post("/sign-up/email", body))

    def sign_in(self, email: str, password: str = PASSWORD) -> SignedIn:
        """A new session of an existing user, through `/sign-in/email`."""
        return self._signed_in(self._post("/sign-in/email", {"email": email, "password": password}))

    def sign_out(self, user: SignedIn) -> None:
        """End the session at the server (`/sign-out`, with the session cookie)."""
        response = self._http.post(
            self.url + BASE_PATH + "/sign-out",
            headers={"Cookie": user.cookie, "Origin": self.public_url},
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 200, (response.status_code, response.text)
        assert self.session(user.cookie) is None

    def session(self, cookie: str) -> Any:
        """What get-session answers for a Cookie header (None: no valid session)."""
        response = self._http.get(
            self.url + BASE_PATH + "/get-session", headers={"Cookie": cookie}, timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 200, (response.status_code, response.text)
        return response.json()

    def new_jwt(self, user: SignedIn) -> str:
        """A JWT of the jwt plugin for the user's session, signed with the current key."""
        response = self._http.get(
            self.url + BASE_PATH + "/token", headers={"Cookie": user.cookie}, timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 200, (response.status_code, response.text)
        token: str = response.json()["token"]
        return token

    def jwks(self) -> dict[str, Any]:
        response = self._http.get(self.url + BASE_PATH + "/jwks", timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, (response.status_code, response.text)
        document: dict[str, Any] = response.json()
        return document

    def expire_in(self, user: SignedIn, seconds: float) -> None:
        """Make the user's session end `seconds` from now, in the server's own table (as if it
        had been made that long before its `expiresIn`)."""
        connection = pg_connect(self.database_url)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    'UPDATE "session" SET "expiresAt" = now() + make_interval(secs => %s) '
                    "WHERE token = %s",
                    (seconds, user.token),
                )
                assert cursor.rowcount == 1
        finally:
            connection.close()

    # --- misbehaving ----------------------------------------------------------------------------

    def fail(self, path: str = BASE_PATH) -> None:
        """Better Auth's routes (those under `path`) answer 500."""
        self._control("fail", path)

    def hang(self, path: str = BASE_PATH) -> None:
        """They read the request and never answer (until the mode changes: then the connection
        is closed)."""
        self._control("hang", path)

    def normal(self) -> None:
        self._control("normal", "")

    def rotate_key(self) -> str:
        """A new JWT signing key, made by the plugin: new JWTs carry its kid, and the JWKS lists
        it beside the old ones. Returns its kid."""
        response = self._http.post(self.url + "/__control/rotate-key", timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, (response.status_code, response.text)
        kid: str = response.json()["kid"]
        return kid

    # --- the rest -------------------------------------------------------------------------------

    def _control(self, action: str, path: str) -> None:
        response = self._http.post(
            self.url + "/__control/" + action, params={"path": path}, timeout=HTTP_TIMEOUT
        )
        assert response.status_code == 204, (response.status_code, response.text)

    def _post(self, route: str, body: dict[str, Any]) -> requests.Response:
        response = self._http.post(self.url + BASE_PATH + route, json=body, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, (response.status_code, response.text)
        return response

    def _signed_in(self, response: requests.Response) -> SignedIn:
        body = response.json()
        cookies = [
            line.split(";", 1)[0].partition("=")
            for line in response.raw.headers.getlist("Set-Cookie")
        ]
        [(name, _, value)] = [c for c in cookies if c[0].endswith("better-auth.session_token")]
        partial = SignedIn(
            user_id=body["user"]["id"],
            email=body["user"]["email"],
            token=body["token"],
            auth_token=response.headers["set-auth-token"],
            cookie_name=name,
            cookie_value=value,
            jwt="",
        )
        return dataclasses.replace(partial, jwt=self.new_jwt(partial))


# --- installing and running it ---------------------------------------------------------------


def npm_install() -> None:
    """`npm ci` in the server's directory when node_modules is missing or older than the
    lockfile; one install at a time on this machine (a lock file in the temp directory)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            unavailable(f"`{tool}` on the PATH (Node 20 or later)")
    lockfile = SERVER_DIR / "package-lock.json"
    installed = SERVER_DIR / "node_modules" / ".package-lock.json"  # npm writes it last
    lock_path = Path(tempfile.gettempdir()) / "mita-better-auth-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed.exists() and installed.stat().st_mtime >= lockfile.stat().st_mtime:
            return
        try:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=SERVER_DIR,
                capture_output=True,
                timeout=NPM_CI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            unavailable(f"`npm ci` in {SERVER_DIR} to finish within {NPM_CI_TIMEOUT:g} s")
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            unavailable(f"`npm ci` in {SERVER_DIR} to succeed; it said:\n{output}")


@contextlib.contextmanager
def running_server(public_url: str | None = None) -> Iterator[BetterAuthServer]:
    """A server on a new database of its own; both gone afterwards."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        unavailable("PostgreSQL: set TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/test)")
    try:
        pg_connect(base).close()
    except psycopg2.OperationalError as error:
        unavailable(f"PostgreSQL at TEST_DATABASE_URL: {error}".strip())
    npm_install()
    with scratch_database(base, "mita_better_auth") as url:
        server = BetterAuthServer(
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
            public_url=public_url,
        )
        try:
            yield server.start()
        finally:
            server.stop()


# A test module imports both fixtures (the second needs the first).
@pytest.fixture(name="better_auth_server_of_the_run", scope="session")
def better_auth_run_fixture() -> Iterator[BetterAuthServer]:
    with running_server() as server:
        yield server


@pytest.fixture(name="better_auth_server")
def better_auth_server_fixture(
    better_auth_server_of_the_run: BetterAuthServer,
) -> Iterator[BetterAuthServer]:
    """The run's real Better Auth server (http), back to normal after the test."""
    server = better_auth_server_of_the_run
    server.normal()
    yield server
    server.normal()


@pytest.fixture(name="better_auth_https_server", scope="session")
def better_auth_https_server_fixture() -> Iterator[BetterAuthServer]:
    """A real Better Auth server whose public baseURL is https://auth.mita.test."""
    with running_server(public_url="https://auth.mita.test") as server:
        yield server


__all__ = [
    "BetterAuthServer",
    "SignedIn",
    "better_auth_https_server_fixture",
    "better_auth_run_fixture",
    "better_auth_server_fixture",
]
