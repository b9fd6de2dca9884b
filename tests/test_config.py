"""Configuration from the environment: safe defaults, fail-fast timeouts, refusal to start weak."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from mita_app import create_app
from mita_app.config import ConfigError, engine_options, from_env, normalize_database_url
from mita_app.extensions import db
from tests.conftest import FAST_HASH, TEST_SECRET, build_app, dispose

PG_URL = "postgresql+psycopg2://mita@db.internal:5432/mita"
SQLITE_FILE_URL = "sqlite:////var/lib/mita/mita.db"
STRONG_KEY = "k" * 32


def config_for(env: dict[str, str], default_database_url: str = PG_URL) -> dict[str, Any]:
    return from_env(env, default_database_url=default_database_url)


def pg_options(**env: str) -> dict[str, Any]:
    return engine_options(PG_URL, env)


@pytest.fixture
def built_apps() -> Iterator[Callable[..., Flask]]:
    """Build apps from an environment only; their engines are disposed after the test."""
    apps: list[Flask] = []

    def build(env: dict[str, str]) -> Flask:
        app = create_app({"TESTING": True}, env=env)
        apps.append(app)
        return app

    yield build
    for app in apps:
        dispose(app)


# --- database URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@host:5432/mita", "postgresql+psycopg2://u:p@host:5432/mita"),
        ("postgresql://u:p@host:5432/mita", "postgresql+psycopg2://u:p@host:5432/mita"),
        ("postgresql+psycopg2://u:p@host/mita", "postgresql+psycopg2://u:p@host/mita"),
        (
            "postgres://u@host/mita?sslmode=require",
            "postgresql+psycopg2://u@host/mita?sslmode=require",
        ),
        ("sqlite:///relative.db", "sqlite:///relative.db"),
        ("sqlite:////absolute/path/mita.db", "sqlite:////absolute/path/mita.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_normalize_database_url_selects_psycopg2_for_postgresql_only(
    given: str, expected: str
) -> None:
    assert normalize_database_url(given) == expected


def test_database_url_from_the_environment_is_normalized() -> None:
    config = config_for({"DATABASE_URL": "postgres://u@host/mita"})

    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://u@host/mita"


@pytest.mark.parametrize("env", [{}, {"DATABASE_URL": ""}])
def test_missing_database_url_falls_back_to_the_default(env: dict[str, str]) -> None:
    config = config_for(env, default_database_url="sqlite:///fallback.db")

    assert config["SQLALCHEMY_DATABASE_URI"] == "sqlite:///fallback.db"


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_heroku_style_postgres_url_connects_through_psycopg2(
    pg_url: str, scheme: str, built_apps: Callable[..., Flask]
) -> None:
    url = make_url(pg_url).render_as_string(hide_password=False)
    rewritten = f"{scheme}://{url.split('://', 1)[1]}"
    app = built_apps({"SECRET_KEY": TEST_SECRET, "DATABASE_URL": rewritten})

    with app.app_context():
        assert db.engine.dialect.driver == "psycopg2"
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1


# --- SECRET_KEY ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"SECRET_KEY": ""},
        {"SECRET_KEY": "k" * 31},
        {"SECRET_KEY": "é" * 15},
    ],
    ids=["missing", "empty", "31-bytes", "30-bytes-of-15-characters"],
)
def test_production_refuses_a_missing_or_short_secret_key(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        config_for({"MITA_ENV": "production", **env})


@pytest.mark.parametrize("key", [STRONG_KEY, "é" * 16], ids=["32-ascii", "32-bytes-utf8"])
def test_production_accepts_a_32_byte_secret_key(key: str) -> None:
    config = config_for({"MITA_ENV": "production", "SECRET_KEY": key, "MAIL_SERVER": "smtp.local"})

    assert config["MITA_ENV"] == "production"
    assert config["SECRET_KEY"] == key


def test_production_is_recognised_whatever_its_case() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        config_for({"MITA_ENV": " Production "})


def test_unknown_mita_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="MITA_ENV"):
        config_for({"MITA_ENV": "staging", "SECRET_KEY": STRONG_KEY})


def test_development_without_secret_key_uses_a_random_one_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="mita_app.config")

    first = config_for({})["SECRET_KEY"]
    second = config_for({})["SECRET_KEY"]

    assert first != second
    assert len(first.encode()) >= 32
    warnings = [r for r in caplog.records if r.name == "mita_app.config"]
    assert len(warnings) == 2
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "SECRET_KEY" in warnings[0].getMessage()
    assert first not in caplog.text


def test_development_uses_the_given_secret_key_without_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="mita_app.config")

    config = config_for({"SECRET_KEY": "short but fine in development"})

    assert config["MITA_ENV"] == "development"
    assert config["SECRET_KEY"] == "short but fine in development"
    assert not [r for r in caplog.records if r.name == "mita_app.config"]


def test_create_app_refuses_to_start_in_production_without_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("MITA_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/never.db")

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app()


@pytest.mark.parametrize("key", [None, "changeme"], ids=["missing", "weak"])
def test_create_app_refuses_a_production_env_mapping_without_a_strong_key(
    key: str | None, tmp_path: Any
) -> None:
    env = {"MITA_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/never.db"}
    if key is not None:
        env["SECRET_KEY"] = key

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(env=env)


def test_create_app_refuses_to_start_in_production_with_a_weak_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("MITA_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "changeme")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/never.db")

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app()


def test_create_app_starts_in_production_with_a_strong_secret_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("MITA_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", STRONG_KEY)
    monkeypatch.setenv("MAIL_SERVER", "smtp.local")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/prod.db")

    app = create_app()

    assert app.config["SECRET_KEY"] == STRONG_KEY
    assert app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/prod.db"
    dispose(app)


# --- numbers and booleans -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_POOL_SIZE", "abc"),
        ("DB_POOL_SIZE", "-1"),
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_SIZE", "2.5"),
        ("DB_MAX_OVERFLOW", "-1"),
        ("DB_POOL_TIMEOUT", "abc"),
        ("DB_POOL_TIMEOUT", "-3"),
        ("DB_POOL_RECYCLE", "soon"),
        ("DB_CONNECT_TIMEOUT", "0"),
        ("DB_STATEMENT_TIMEOUT_MS", "-1"),
        ("DB_CLIENT_TIMEOUT_MS", "soon"),
        ("DB_CLIENT_TIMEOUT_MS", "5000"),
        ("DB_LOCK_TIMEOUT_MS", "5s"),
        ("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "abc"),
        ("DB_KEEPALIVES_IDLE", "0"),
        ("DB_KEEPALIVES_INTERVAL", "x"),
        ("DB_KEEPALIVES_COUNT", "-2"),
        ("DB_POOL_PRE_PING", "maybe"),
        ("ACCESS_TOKEN_TTL", "0"),
        ("REFRESH_TOKEN_TTL", "30d"),
        ("AUTH_CACHE_TTL", "-1"),
        ("AUTH_CACHE_SIZE", "0"),
        ("MAX_CONTENT_LENGTH", "1MB"),
        ("LOGIN_LOCKOUT_THRESHOLD", "0"),
        ("TRUSTED_PROXY_COUNT", "-1"),
        ("RATELIMIT_ENABLED", "perhaps"),
        ("AUDIT_ENABLED", "sometimes"),
        ("AUDIT_QUEUE_SIZE", "0"),
        ("AUDIT_BATCH_SIZE", "many"),
        ("AUDIT_FLUSH_INTERVAL", "0"),
        ("AUDIT_RETRY_MAX", "nan"),
        ("AUDIT_SHUTDOWN_TIMEOUT", "-1"),
        ("AUDIT_BURST_LIMIT", "-1"),
        ("AUDIT_BURST_WINDOW", "0"),
    ],
)
def test_invalid_setting_is_refused_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        config_for({name: value})


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_setting_means_the_default(value: str) -> None:
    options = config_for({"DB_POOL_SIZE": value})["SQLALCHEMY_ENGINE_OPTIONS"]

    assert options["pool_size"] == 16


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("YES", True), ("off", False), ("0", False), ("False", False)],
)
def test_boolean_settings_accept_the_usual_spellings(value: str, expected: bool) -> None:
    config = config_for({"RATELIMIT_ENABLED": value, "DB_POOL_PRE_PING": value})

    assert config["RATELIMIT_ENABLED"] is expected
    assert config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_pre_ping"] is expected


def test_defaults_are_the_documented_ones() -> None:
    config = config_for({})

    assert config["MITA_ENV"] == "development"
    assert config["ACCESS_TOKEN_TTL"] == 3600
    assert config["REFRESH_TOKEN_TTL"] == 30 * 24 * 3600
    assert config["AUTH_CACHE_TTL"] == 5
    assert config["MAX_CONTENT_LENGTH"] == 1024 * 1024
    assert config["JWT_ALGORITHM"] == "HS256"
    assert config["PASSWORD_HASH_METHOD"] == "scrypt"
    assert config["RATELIMIT_ENABLED"] is True
    assert config["TRUSTED_PROXY_COUNT"] == 0


def test_body_over_the_default_max_content_length_gets_413(client: FlaskClient) -> None:
    body = b'{"email": "' + b"a" * (1024 * 1024) + b'"}'

    response = client.post("/api/auth/login", data=body, content_type="application/json")

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


# --- engine options -----------------------------------------------------------------------------


def test_pool_timeout_defaults_to_three_seconds_not_thirty() -> None:
    assert pg_options()["pool_timeout"] == 3
    sqlite_options = engine_options(SQLITE_FILE_URL, {})
    assert sqlite_options["pool_timeout"] == 3
    assert sqlite_options["connect_args"] == {"timeout": 3}


def test_real_engine_pool_waits_three_seconds_by_default(
    database_url: str, built_apps: Callable[..., Flask]
) -> None:
    app = built_apps({"SECRET_KEY": TEST_SECRET, "DATABASE_URL": database_url})

    with app.app_context():
        assert db.engine.pool.timeout() == 3  # type: ignore[attr-defined]


def test_postgresql_engine_options_fail_fast_by_default() -> None:
    options = pg_options()

    assert options["pool_pre_ping"] is True
    assert options["hide_parameters"] is True
    assert options["pool_size"] == 16  # a connection kept for each of a worker's 16 threads
    assert options["max_overflow"] == 0
    assert options["pool_recycle"] == 1800
    connect_args = options["connect_args"]
    assert connect_args["connect_timeout"] == 3
    assert connect_args["options"].split() == [
        "-c",
        "statement_timeout=5000",
        "-c",
        "lock_timeout=3000",
        "-c",
        "idle_in_transaction_session_timeout=30000",
    ]
    assert connect_args["keepalives"] == 1
    assert connect_args["keepalives_idle"] == 30
    assert connect_args["keepalives_interval"] == 10
    assert connect_args["keepalives_count"] == 3
    assert connect_args["application_name"] == "mita"


CONFIGURABLE_OPTIONS: list[tuple[str, str, Callable[[dict[str, Any]], Any], Any]] = [
    ("DB_POOL_SIZE", "11", lambda o: o["pool_size"], 11),
    ("DB_MAX_OVERFLOW", "4", lambda o: o["max_overflow"], 4),
    ("DB_POOL_TIMEOUT", "1.5", lambda o: o["pool_timeout"], 1.5),
    ("DB_POOL_RECYCLE", "60", lambda o: o["pool_recycle"], 60),
    ("DB_POOL_PRE_PING", "false", lambda o: o["pool_pre_ping"], False),
    ("DB_CONNECT_TIMEOUT", "7", lambda o: o["connect_args"]["connect_timeout"], 7),
    ("DB_KEEPALIVES_IDLE", "12", lambda o: o["connect_args"]["keepalives_idle"], 12),
    ("DB_KEEPALIVES_INTERVAL", "4", lambda o: o["connect_args"]["keepalives_interval"], 4),
    ("DB_KEEPALIVES_COUNT", "9", lambda o: o["connect_args"]["keepalives_count"], 9),
    (
        "DB_APPLICATION_NAME",
        "mita-worker",
        lambda o: o["connect_args"]["application_name"],
        "mita-worker",
    ),
]


@pytest.mark.parametrize(
    ("name", "value", "read", "expected"),
    CONFIGURABLE_OPTIONS,
    ids=[case[0] for case in CONFIGURABLE_OPTIONS],
)
def test_each_postgresql_option_is_configurable(
    name: str, value: str, read: Callable[[dict[str, Any]], Any], expected: Any
) -> None:
    assert read(pg_options(**{name: value})) == expected


@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("DB_STATEMENT_TIMEOUT_MS", "statement_timeout"),
        ("DB_LOCK_TIMEOUT_MS", "lock_timeout"),
        ("DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "idle_in_transaction_session_timeout"),
    ],
)
def test_each_server_timeout_is_configurable(name: str, setting: str) -> None:
    options = pg_options(**{name: "1234"})["connect_args"]["options"]

    assert f"-c {setting}=1234" in options


def deadlines(options: dict[str, Any]) -> tuple[float | None, float | None]:
    factory = options["connect_args"]["connection_factory"]
    return factory.connect_timeout, factory.statement_timeout


def test_client_side_deadline_defaults_to_one_second_past_the_statement_timeout() -> None:
    assert deadlines(pg_options()) == (3, 6.0)
    assert deadlines(pg_options(DB_STATEMENT_TIMEOUT_MS="1500", DB_CONNECT_TIMEOUT="2")) == (
        2,
        2.5,
    )


def test_client_side_deadline_is_configurable_above_the_statement_timeout() -> None:
    assert deadlines(pg_options(DB_CLIENT_TIMEOUT_MS="9000")) == (3, 9.0)


def test_client_side_deadline_at_or_below_the_statement_timeout_is_refused() -> None:
    with pytest.raises(ConfigError, match="DB_CLIENT_TIMEOUT_MS"):
        pg_options(DB_STATEMENT_TIMEOUT_MS="2000", DB_CLIENT_TIMEOUT_MS="2000")


def test_no_statement_timeout_means_no_client_side_statement_deadline() -> None:
    assert deadlines(pg_options(DB_STATEMENT_TIMEOUT_MS="0")) == (3, None)
    assert deadlines(pg_options(DB_STATEMENT_TIMEOUT_MS="0", DB_CLIENT_TIMEOUT_MS="4000")) == (
        3,
        4.0,
    )


def test_sqlite_file_busy_timeout_follows_db_pool_timeout() -> None:
    options = engine_options(SQLITE_FILE_URL, {"DB_POOL_TIMEOUT": "7"})

    assert options["connect_args"] == {"timeout": 7}
    assert options["pool_timeout"] == 7


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_gets_no_pool_sizing(url: str) -> None:
    assert engine_options(url, {}) == {"pool_pre_ping": True, "hide_parameters": True}


def test_postgresql_server_applies_the_default_timeouts(
    pg_url: str, built_apps: Callable[..., Flask]
) -> None:
    app = built_apps({"SECRET_KEY": TEST_SECRET, "DATABASE_URL": pg_url})

    with app.app_context(), db.engine.connect() as connection:
        show = {
            name: connection.execute(text(f"SHOW {name}")).scalar_one()
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        }
        application_name = connection.execute(text("SHOW application_name")).scalar_one()

    assert show == {
        "statement_timeout": "5s",
        "lock_timeout": "3s",
        "idle_in_transaction_session_timeout": "30s",
    }
    assert application_name == "mita"


def test_postgresql_server_applies_configured_timeouts(pg_url: str) -> None:
    app = build_app(
        pg_url,
        create_schema=False,
        DB_STATEMENT_TIMEOUT_MS="1234",
        DB_LOCK_TIMEOUT_MS="567",
        DB_IDLE_IN_TRANSACTION_TIMEOUT_MS="8901",
        DB_APPLICATION_NAME="mita-config-test",
        PASSWORD_HASH_METHOD=FAST_HASH,
    )
    try:
        with app.app_context(), db.engine.connect() as connection:
            values = [
                connection.execute(text(f"SHOW {name}")).scalar_one()
                for name in (
                    "statement_timeout",
                    "lock_timeout",
                    "idle_in_transaction_session_timeout",
                    "application_name",
                )
            ]
    finally:
        dispose(app)

    assert values == ["1234ms", "567ms", "8901ms", "mita-config-test"]


def test_postgresql_statement_timeout_cancels_a_slow_query(pg_url: str) -> None:
    app = build_app(pg_url, create_schema=False, DB_STATEMENT_TIMEOUT_MS="100")
    try:
        with (
            app.app_context(),
            db.engine.connect() as connection,
            pytest.raises(OperationalError, match="statement timeout"),
        ):
            connection.execute(text("SELECT pg_sleep(2)"))
    finally:
        dispose(app)


# --- AUTH_MODE ----------------------------------------------------------------------------------


def test_local_mode_is_the_default_and_reads_no_auth_server_settings() -> None:
    config = config_for({"AUTH_SERVER_URL": "not even a url"})

    assert config["AUTH_MODE"] == "local"
    assert "AUTH_SERVER_URL" not in config


def test_better_auth_mode_needs_an_auth_server_url() -> None:
    with pytest.raises(ConfigError, match="AUTH_SERVER_URL"):
        config_for({"AUTH_MODE": "better-auth"})
    with pytest.raises(ConfigError, match="AUTH_SERVER_URL"):
        config_for({"AUTH_MODE": "better-auth", "AUTH_SERVER_URL": "ftp://auth.internal"})


def test_better_auth_mode_defaults_follow_the_server_url() -> None:
    config = config_for({"AUTH_MODE": "Better-Auth", "AUTH_SERVER_URL": "https://auth.example/"})

    assert config["AUTH_MODE"] == "better-auth"
    assert config["AUTH_SERVER_URL"] == "https://auth.example"
    assert config["AUTH_JWKS_URL"] == "https://auth.example/api/auth/jwks"
    assert config["AUTH_JWT_ISSUER"] == config["AUTH_JWT_AUDIENCE"] == "https://auth.example"
    assert config["AUTH_JWT_ALGORITHMS"] == ("EdDSA", "ES256", "RS256")
    assert (config["AUTH_SESSION_TRANSPORT"], config["AUTH_SESSION_COOKIE"]) == ("auto", "")
    assert (config["AUTH_SERVER_TIMEOUT"], config["AUTH_SERVER_CONNECT_TIMEOUT"]) == (3.0, 1.0)
    assert (config["AUTH_SESSION_CACHE_TTL"], config["AUTH_NEGATIVE_CACHE_TTL"]) == (60.0, 5.0)
    assert (config["AUTH_BREAKER_FAILURES"], config["AUTH_BREAKER_RESET"]) == (3, 10.0)
    assert (config["AUTH_JWKS_MIN_REFRESH"], config["AUTH_JWKS_CACHE_TTL"]) == (30.0, 300.0)


def test_jwts_can_be_turned_off() -> None:
    env = {"AUTH_MODE": "better-auth", "AUTH_SERVER_URL": "http://auth", "AUTH_JWKS_URL": "off"}

    assert config_for(env)["AUTH_JWKS_URL"] is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTH_MODE", "oauth"),
        ("AUTH_SESSION_TRANSPORT", "header"),
        ("AUTH_JWT_ALGORITHMS", "HS256"),
        ("AUTH_JWT_ALGORITHMS", "EdDSA,none"),
        ("AUTH_SERVER_TIMEOUT", "0"),
        ("AUTH_BREAKER_FAILURES", "0"),
        ("AUTH_BREAKER_RESET", "soon"),
        ("AUTH_JWKS_URL", "file:///etc/keys"),
    ],
)
def test_bad_auth_server_settings_stop_the_app(name: str, value: str) -> None:
    env = {"AUTH_MODE": "better-auth", "AUTH_SERVER_URL": "http://auth", name: value}

    with pytest.raises(ConfigError, match=name):
        config_for(env)
