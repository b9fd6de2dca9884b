"""The real migrations, run on empty SQLite and PostgreSQL databases, match the models."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from mita_app.extensions import db
from tests.conftest import build_app, dispose, scratch_database

APP_TABLES = {
    *("users", "auth_sessions", "password_reset_tokens", "linked_identities"),
    *("audit_events", "audit_writers", "habits", "habit_completions", "crash_reports"),
    *("transactions", "budget_plans"),
}
VERSION_TABLE = "alembic_version"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """migrations/env.py calls logging.config.fileConfig, which replaces the root handlers and
    levels for the whole process; put them back so later tests log as before."""
    names = ["", "alembic", "flask_migrate", "sqlalchemy.engine"]
    loggers = [logging.getLogger(name or None) for name in names]
    saved = [(logger, logger.level, logger.handlers[:], logger.propagate) for logger in loggers]
    yield
    for logger, level, handlers, propagate in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A database with no tables at all, dropped (on PostgreSQL) after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrated.db"
        return
    with scratch_database(request.getfixturevalue("pg_url"), "mita_migrations") as url:
        yield url


@pytest.fixture
def bare_app(empty_database_url: str) -> Iterator[Flask]:
    """An app on the empty database; it creates no tables of its own."""
    app = build_app(empty_database_url, create_schema=False)
    yield app
    dispose(app)


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def script_directory(app: Flask) -> ScriptDirectory:
    with app.app_context():
        return ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())


def pending_diff(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "render_as_batch": True}
        )
        return compare_metadata(context, db.metadata)


def schema_snapshot(engine: Engine) -> dict[str, Any]:
    inspector = inspect(engine)
    snapshot: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        snapshot[table] = {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"])
                for column in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table),
            "unique": sorted(c["name"] or "" for c in inspector.get_unique_constraints(table)),
            "indexes": sorted(i["name"] or "" for i in inspector.get_indexes(table)),
            "foreign_keys": sorted(f["name"] or "" for f in inspector.get_foreign_keys(table)),
        }
    return snapshot


def upgrade(app: Flask) -> None:
    with app.app_context():
        flask_migrate.upgrade()


def test_flask_db_upgrade_creates_the_schema_on_an_empty_database(bare_app: Flask) -> None:
    with bare_app.app_context():
        assert tables(db.engine) == set()

    result = bare_app.test_cli_runner().invoke(args=["db", "upgrade"])

    assert result.exit_code == 0, result.output
    with bare_app.app_context():
        assert tables(db.engine) == APP_TABLES | {VERSION_TABLE}
        assert current_revision(db.engine) == script_directory(bare_app).get_current_head()


def test_migrations_have_one_head_and_descriptive_messages(bare_app: Flask) -> None:
    script = script_directory(bare_app)

    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        message = (revision.doc or "").strip()
        assert message, revision.revision
        assert message.lower() != "empty message", revision.revision


def test_migrated_schema_has_no_pending_autogenerate_diff(bare_app: Flask) -> None:
    upgrade(bare_app)

    with bare_app.app_context():
        assert pending_diff(db.engine) == []


def test_flask_db_check_finds_nothing_to_generate(bare_app: Flask) -> None:
    upgrade(bare_app)

    result = bare_app.test_cli_runner().invoke(args=["db", "check"])

    assert result.exit_code == 0, result.output


def test_autogenerate_is_configured_to_compare_types_in_batch_mode(bare_app: Flask) -> None:
    options = bare_app.extensions["migrate"].configure_args

    assert options["compare_type"] is True
    assert options["render_as_batch"] is True


def test_migrated_constraints_carry_the_naming_convention_names(bare_app: Flask) -> None:
    upgrade(bare_app)

    with bare_app.app_context():
        inspector = inspect(db.engine)
        assert inspector.get_pk_constraint("users")["name"] == "pk_users"
        assert inspector.get_pk_constraint("auth_sessions")["name"] == "pk_auth_sessions"
        assert {c["name"] for c in inspector.get_unique_constraints("users")} == {
            "uq_users_email",
            "uq_users_auth_provider",
        }
        assert {c["name"] for c in inspector.get_check_constraints("users")} == {
            "ck_users_role_valid",
            "ck_users_income_non_negative",
            "ck_users_savings_goal_non_negative",
            "ck_users_additional_income_non_negative",
            "ck_users_budget_alert_threshold_percent",
            "ck_users_region_known",
            "ck_users_budget_method_known",
            "ck_users_password_if_local",
        }
        (foreign_key,) = inspector.get_foreign_keys("auth_sessions")
        assert foreign_key["name"] == "fk_auth_sessions_user_id_users"
        assert foreign_key["options"].get("ondelete") == "CASCADE"
        indexes = inspector.get_indexes("auth_sessions")
        # PostgreSQL also reports the index behind each unique constraint.
        assert {i["name"] for i in indexes if not i.get("duplicates_constraint")} == {
            "ix_auth_sessions_user_id_created_at"
        }
        assert {c["name"] for c in inspector.get_check_constraints("transactions")} == {
            "ck_transactions_amount_positive",
            "ck_transactions_category_known",
        }


@pytest.mark.parametrize(
    "bad",
    [
        {"role": "root"},
        {"income": -1},
        {"region": "Mars"},
        {"auth_provider": "better-auth"},
    ],
    ids=["role", "income", "region", "external_with_password"],
)
def test_migrated_schema_enforces_the_check_constraints(
    bare_app: Flask, bad: dict[str, Any]
) -> None:
    upgrade(bare_app)
    insert = text(
        "INSERT INTO users (id, email, password_hash, auth_provider, role, income, region, "
        "created_at, updated_at) VALUES (:id, 'x@example.com', :password_hash, :auth_provider, "
        ":role, :income, :region, :now, :now)"
    )
    values = {
        "id": uuid.uuid4().hex,
        "password_hash": "h",
        "auth_provider": "local",
        "role": "user",
        "income": 0,
        "region": "US",
        "now": "2026-01-01",
    }

    with bare_app.app_context(), db.engine.connect() as connection:
        connection.execute(insert, values)
        connection.rollback()
        with pytest.raises(IntegrityError):
            connection.execute(insert, {**values, **bad})
        connection.rollback()


def test_migrated_database_serves_the_api(bare_app: Flask) -> None:
    upgrade(bare_app)
    client = bare_app.test_client()

    registered = client.post(
        "/api/auth/register",
        json={"email": "migrated@example.com", "password": "long enough password"},
    )
    assert registered.status_code == 201, registered.get_json()
    token = registered.get_json()["data"]["access_token"]

    response = client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.get_json()["data"]["email"] == "migrated@example.com"


def test_second_upgrade_changes_nothing_and_keeps_data(bare_app: Flask) -> None:
    upgrade(bare_app)
    runner = bare_app.test_cli_runner()
    created = runner.invoke(
        args=["user", "create", "kept@example.com", "--password", "long enough password"]
    )
    assert created.exit_code == 0, created.output
    with bare_app.app_context():
        before = (schema_snapshot(db.engine), current_revision(db.engine))

    result = runner.invoke(args=["db", "upgrade"])

    assert result.exit_code == 0, result.output
    with bare_app.app_context():
        assert (schema_snapshot(db.engine), current_revision(db.engine)) == before
    assert runner.invoke(args=["user", "show", "kept@example.com"]).exit_code == 0


def test_downgrade_to_base_leaves_no_tables(bare_app: Flask) -> None:
    upgrade(bare_app)

    with bare_app.app_context():
        flask_migrate.downgrade(revision="base")
        assert tables(db.engine) - {VERSION_TABLE} == set()
        assert current_revision(db.engine) is None


def test_upgrade_after_downgrade_rebuilds_the_same_schema(bare_app: Flask) -> None:
    upgrade(bare_app)
    with bare_app.app_context():
        first = schema_snapshot(db.engine)
        flask_migrate.downgrade(revision="base")

    upgrade(bare_app)

    with bare_app.app_context():
        assert schema_snapshot(db.engine) == first
        assert pending_diff(db.engine) == []


def test_upgrade_turns_yearly_income_into_monthly_and_keeps_every_row(bare_app: Flask) -> None:
    with bare_app.app_context():
        flask_migrate.upgrade(revision="75d3aeed30be")  # before income became monthly
        with db.engine.begin() as connection:
            for email, income in (("yearly@example.com", "52000.50"), ("none@example.com", None)):
                user_id = uuid.uuid4()
                connection.execute(
                    text(
                        "INSERT INTO users (id, email, password_hash, role, is_active, "
                        "annual_income, failed_logins, created_at, updated_at) VALUES (:id, "
                        ":email, 'h', 'user', :yes, :income, 0, :now, :now)"
                    ),
                    {
                        "id": user_id if db.engine.dialect.name == "postgresql" else user_id.hex,
                        "email": email,
                        "yes": True,
                        "income": income,
                        "now": "2026-01-01",
                    },
                )
            connection.execute(
                text(
                    "INSERT INTO auth_sessions (id, user_id, refresh_token_hash, created_at, "
                    "last_used_at, expires_at) SELECT id, id, 'x', :now, :now, :now FROM users "
                    "WHERE email = 'yearly@example.com'"
                ),
                {"now": "2026-01-01"},
            )

        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            incomes = dict(connection.execute(text("SELECT email, income FROM users")).all())
            sessions = connection.execute(text("SELECT count(*) FROM auth_sessions")).scalar()
    assert {email: str(income) for email, income in incomes.items()} in (
        {"yearly@example.com": "4333.38", "none@example.com": "0"},
        {"yearly@example.com": "4333.38", "none@example.com": "0.00"},
    )
    # Rebuilding `users` in batch mode (SQLite) must not cascade into its sessions.
    assert sessions == 1


def test_upgrade_puts_emails_in_their_normal_form_unless_that_is_another_account(
    bare_app: Flask,
) -> None:
    stored = {
        "jose\u0301@example.com": "jos\u00e9@example.com",  # decomposed é: composed
        "\uff21da@example.com": "ada@example.com",  # a fullwidth A: folded, lower case
        "zoe\u0301@example.com": "zoe\u0301@example.com",  # the composed form is taken: left
        "zo\u00e9@example.com": "zo\u00e9@example.com",
        "plain@example.com": "plain@example.com",
    }
    with bare_app.app_context():
        flask_migrate.upgrade()
        with db.engine.begin() as connection:
            for email in stored:
                user_id = uuid.uuid4()
                connection.execute(
                    text(
                        "INSERT INTO users (id, email, password_hash, role, is_active, "
                        "failed_logins, created_at, updated_at) VALUES (:id, :email, 'h', "
                        "'user', :yes, 0, :now, :now)"
                    ),
                    {
                        "id": user_id if db.engine.dialect.name == "postgresql" else user_id.hex,
                        "email": email,
                        "yes": True,
                        "now": "2026-01-01",
                    },
                )
        flask_migrate.downgrade(revision="5e882b3f3a11")  # changes no address
        flask_migrate.upgrade()

        with db.engine.connect() as connection:
            emails = set(connection.execute(text("SELECT email FROM users")).scalars())
    assert emails == set(stored.values())
