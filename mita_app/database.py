"""The database: Flask-SQLAlchemy, Alembic migrations, and what SQLite needs to act like the
production database (foreign keys enforced, so deleting a user deletes what is theirs)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite

from .extensions import db, migrate


def _enforce_foreign_keys(connection: Any, record: Any) -> None:
    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


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
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _enforce_foreign_keys)
