"""The database: Flask-SQLAlchemy, Alembic migrations, and what SQLite needs to act like the
production database (foreign keys enforced, so deleting a user deletes what is theirs)."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import ExceptionContext

from . import database_breaker, pgwait
from .errors import DATABASE_DOWN, note_database_failure
from .extensions import db, migrate


def _enforce_foreign_keys(connection: Any, record: Any) -> None:
    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


def _remember_failure(context: ExceptionContext) -> None:
    if isinstance(context.sqlalchemy_exception, DATABASE_DOWN):
        note_database_failure(context.sqlalchemy_exception)


def insert_or_skip(
    model: type[Any], values: dict[str, Any], conflict_on: Sequence[Any]
) -> postgresql.Insert | sqlite.Insert:
    """INSERT ... ON CONFLICT (`conflict_on`) DO NOTHING, in the session's dialect: a row that
    is already there (or being inserted by a concurrent request) is skipped, never a unique
    violation."""
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        return (
            postgresql.insert(model)
            .values(values)
            .on_conflict_do_nothing(index_elements=conflict_on)
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(model).values(values).on_conflict_do_nothing(index_elements=conflict_on)
        )
    raise RuntimeError(f"mita needs PostgreSQL or SQLite, not {dialect}")


Owned = TypeVar("Owned")


def owned_id(text: str, not_found: Callable[[], Exception]) -> uuid.UUID:
    """The id a path names; `not_found()` for a malformed one (the same answer as for a row
    that is missing or another user's: nothing leaks)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise not_found() from None


def find_owned(
    model: type[Owned], user_id: uuid.UUID, text: str, not_found: Callable[[], Exception]
) -> Owned:
    """The row of `model` (with `id` and `user_id` columns) that the id `text` names and that
    belongs to `user_id`; `not_found()` for a malformed id, a missing row and another user's."""
    columns = cast(Any, model)
    row: Owned | None = db.session.scalar(
        select(model).where(columns.id == owned_id(text, not_found), columns.user_id == user_id)
    )
    if row is None:
        raise not_found()
    return row


def init_app(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(
        app,
        db,
        directory=os.path.join(app.root_path, os.pardir, "migrations"),
        render_as_batch=True,
        compare_type=True,
    )
    with app.app_context():
        event.listen(db.engine, "handle_error", _remember_failure)
        database_breaker.init_app(app, db.engine)
        pre_ping = app.config["SQLALCHEMY_ENGINE_OPTIONS"].get("pool_pre_ping")
        if db.engine.dialect.name == "postgresql" and pre_ping:
            pgwait.deadline_pings(db.engine)
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _enforce_foreign_keys)
