"""The database: Flask-SQLAlchemy, Alembic migrations, and what SQLite needs to act like the
production database (foreign keys enforced, so deleting a user deletes what is theirs)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from flask import Flask
from sqlalchemy import event

from .extensions import db, migrate


def _enforce_foreign_keys(connection: Any, record: Any) -> None:
    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()


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
