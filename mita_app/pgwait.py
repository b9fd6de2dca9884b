"""A client-side deadline on every wait for PostgreSQL.

`statement_timeout` is enforced by the server, so it cannot fire when the server, or the network
path to it, stops answering: libpq would then wait for ever on an open connection, and a sync
worker with it. psycopg2 can hand its waiting to a Python callback (`set_wait_callback`); ours
waits with a deadline and raises past it. psycopg2 then closes the connection, SQLAlchemy discards
it from the pool, and the request gets a 503 instead of a hung worker.

The callback is process-wide; only connections of a class made by `deadline_connection` carry
deadlines, any other psycopg2 connection waits as it would without it.
"""

from __future__ import annotations

import select
import time
from typing import Any

import psycopg2
import psycopg2.extensions as pg
from sqlalchemy import Engine, event


class DatabaseTimeout(psycopg2.OperationalError):
    """The database did not answer within the client-side deadline."""


class DeadlineConnection(pg.connection):
    connect_timeout: float | None = None
    statement_timeout: float | None = None
    ping_timeout: float | None = None
    # True from the moment the pool takes the connection back until it hands it out again:
    # the first wait after that is the pool's pre-ping, which a live server answers at once.
    idle_in_pool = False

    # psycopg2 passes `async` positionally (its stubs say keyword-only `async_`): pass it on.
    def __init__(self, dsn: str, *args: Any, **kwargs: Any) -> None:
        if pg.get_wait_callback() is not wait_with_deadline:
            pg.set_wait_callback(wait_with_deadline)
        super().__init__(dsn, *args, **kwargs)


def deadline_connection(
    connect_timeout: float, statement_timeout: float | None, ping_timeout: float | None = None
) -> type[DeadlineConnection]:
    """A connection class whose connect, each statement, commit or rollback, and the pool's
    pre-ping wait at most `connect_timeout` / `statement_timeout` / `ping_timeout` seconds
    (None: no limit; no `ping_timeout`: the statement's)."""
    return type(
        "DeadlineConnection",
        (DeadlineConnection,),
        {
            "connect_timeout": connect_timeout,
            "statement_timeout": statement_timeout,
            "ping_timeout": statement_timeout if ping_timeout is None else ping_timeout,
        },
    )


def _returned(dbapi_connection: Any, record: Any) -> None:
    if isinstance(dbapi_connection, DeadlineConnection):
        dbapi_connection.idle_in_pool = True


def _handed_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if isinstance(dbapi_connection, DeadlineConnection):
        dbapi_connection.idle_in_pool = False


def deadline_pings(engine: Engine) -> None:
    """Give the pool's pre-ping the connections' `ping_timeout`: on a server that froze while
    the connection sat in the pool, a request waits that long, not a whole statement's deadline,
    before the pool gives up on the connection (and tries a new one, within the connect
    timeout)."""
    event.listen(engine, "checkin", _returned)
    event.listen(engine, "checkout", _handed_out)


def wait_with_deadline(connection: pg.connection) -> None:
    if connection.status == pg.STATUS_SETUP:
        limit = getattr(connection, "connect_timeout", None)
    elif getattr(connection, "idle_in_pool", False):
        limit = getattr(connection, "ping_timeout", None)
    else:
        limit = getattr(connection, "statement_timeout", None)
    deadline = None if limit is None else time.monotonic() + limit
    while True:
        state = connection.poll()
        if state == pg.POLL_OK:
            return
        if state == pg.POLL_READ:
            events = select.POLLIN
        elif state == pg.POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        # A new poller each time: libpq may open a new socket while connecting (SSL fallback,
        # several hosts).
        poller = select.poll()
        poller.register(connection.fileno(), events)
        if deadline is None:
            poller.poll()
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise DatabaseTimeout(f"the database did not answer within {limit:g} s")
