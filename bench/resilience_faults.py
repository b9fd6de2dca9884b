"""The faults of the resilience run, one function each, and the phases that apply them.

Each fault is a context manager: on when entered, off on the way out, whatever happened (a
frozen PostgreSQL gets its SIGCONT, a lock is released, the stand-in auth server answers again).
They act only on what the run owns: its PostgreSQL cluster (tests/pg_cluster.py) and its
stand-in Better Auth server (tests/auth_server.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg2

from tests.auth_server import JWKS_PATH, SESSION_PATH, AuthServer
from tests.conftest import pg_connect
from tests.pg_cluster import PostgresCluster

LOCAL, EXTERNAL = "local", "better-auth"  # AUTH_MODE of the phase's server


@dataclass(frozen=True)
class Dependencies:
    """What mita depends on in the run, and what the faults act on."""

    cluster: PostgresCluster
    database_url: str
    stand_in: AuthServer | None

    def auth_server(self) -> AuthServer:
        if self.stand_in is None:
            raise RuntimeError("the run has no stand-in auth server")
        return self.stand_in


def postgres_stopped(deps: Dependencies) -> contextlib.AbstractContextManager[None]:
    """`pg_ctl stop -m fast` (open connections are cut, as in an outage), then start again."""
    return deps.cluster.stopped()


def postgres_frozen(deps: Dependencies) -> contextlib.AbstractContextManager[None]:
    """SIGSTOP on the postmaster, then on each of its processes; SIGCONT afterwards.
    Connections stay open but nothing answers."""
    return deps.cluster.frozen()


@contextlib.contextmanager
def users_table_locked(deps: Dependencies) -> Iterator[None]:
    """Another connection holds LOCK TABLE users IN ACCESS EXCLUSIVE MODE for the fault."""
    connection = pg_connect(deps.database_url, autocommit=False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'")  # waits only for requests in flight
            cursor.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        with contextlib.suppress(psycopg2.Error):
            connection.rollback()
        connection.close()


@contextlib.contextmanager
def auth_server_failing(deps: Dependencies) -> Iterator[None]:
    """get-session and the JWKS answer 500."""
    stand_in = deps.auth_server()
    try:
        for path in (SESSION_PATH, JWKS_PATH):
            stand_in.set_mode("status", path=path, code=500)
        yield
    finally:
        for path in (SESSION_PATH, JWKS_PATH):
            stand_in.set_mode("normal", path=path)


@contextlib.contextmanager
def auth_server_hanging(deps: Dependencies) -> Iterator[None]:
    """get-session and the JWKS read the request and never answer (until the fault ends)."""
    stand_in = deps.auth_server()
    try:
        for path in (SESSION_PATH, JWKS_PATH):
            stand_in.set_mode("hang", path=path)
        yield
    finally:
        for path in (SESSION_PATH, JWKS_PATH):
            stand_in.set_mode("normal", path=path)


@contextlib.contextmanager
def auth_server_refusing(deps: Dependencies) -> Iterator[None]:
    """The auth server is stopped: its port refuses connections."""
    stand_in = deps.auth_server()
    try:
        stand_in.refuse()
        yield
    finally:
        stand_in.listen_again()


@contextlib.contextmanager
def jwks_missing(deps: Dependencies) -> Iterator[None]:
    """The JWKS answers 404 (a server without the JWT plugin); get-session stays healthy."""
    stand_in = deps.auth_server()
    try:
        stand_in.set_mode("status", path=JWKS_PATH, code=404)
        yield
    finally:
        stand_in.set_mode("normal", path=JWKS_PATH)


@dataclass(frozen=True)
class Phase:
    name: str
    title: str
    auth_mode: str
    fault: Callable[[Dependencies], contextlib.AbstractContextManager[None]]
    # On before the server starts, so that nothing of the dependency is cached when the load
    # begins: the fault lasts the `before` and `fault` seconds, and there is no baseline.
    from_start: bool = False


PHASES = (
    Phase("pg-stop", "PostgreSQL stopped (fast shutdown), then started", LOCAL, postgres_stopped),
    Phase("pg-sigstop", "PostgreSQL frozen (SIGSTOP), then SIGCONT", LOCAL, postgres_frozen),
    Phase(
        "table-lock",
        "LOCK TABLE users IN ACCESS EXCLUSIVE MODE held past DB_LOCK_TIMEOUT_MS",
        LOCAL,
        users_table_locked,
    ),
    Phase("auth-500", "the auth server answers 500", EXTERNAL, auth_server_failing),
    Phase("auth-hang", "the auth server never answers", EXTERNAL, auth_server_hanging),
    Phase("auth-refused", "the auth server refuses connections", EXTERNAL, auth_server_refusing),
    # A server without the JWT plugin: its JWKS has never answered, so mita holds no keys
    # (with keys, it would not look again within AUTH_JWKS_MIN_REFRESH, 30 s, of its last look).
    Phase(
        "jwks-404",
        "the JWKS answers 404 from the start (get-session healthy), then serves its keys",
        EXTERNAL,
        jwks_missing,
        from_start=True,
    ),
)
