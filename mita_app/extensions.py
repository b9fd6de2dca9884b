"""Extension objects only; they are bound to an app in `create_app`."""

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flask_limiter
from flask import Flask
from flask.globals import request_ctx
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

from .database_breaker import GuardedSession

# Stable constraint names, so Alembic autogenerate produces the same migration everywhere.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base, session_options={"class_": GuardedSession})

# The base class of every model. mypy cannot subclass `db.Model` (an instance attribute), so it
# sees `Base`: at run time `db.Model` is Flask-SQLAlchemy's copy of `Base` (same metadata,
# registry and type map, plus its mixins), not a subclass, so never test `isinstance(x, Base)`.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


class Limiter(flask_limiter.Limiter):
    """Flask-Limiter, minus its app-wide check where there is nothing app-wide to count.

    Flask-Limiter checks every request in a `before_request` hook for the limits that apply
    beyond one view (application, default, blueprint and meta limits, and the in-memory
    fallback); a view's own limits are checked by its decorator as the view is called. mita
    configures none of the app-wide kinds, yet that hook resolved the limits of every request,
    found none and cost more than the rest of a `/health` request: it now runs only while some
    app-wide limit is configured.
    """

    def init_app(self, app: Flask) -> None:
        hooks = (app.after_request_funcs.setdefault(None, []), app.teardown_request_funcs[None])
        known = [list(funcs) for funcs in hooks]
        super().init_app(app)
        # Its after-request and teardown hooks only read and reset what its checks noted on the
        # request (the limits for the X-RateLimit-* headers): run them where a check ran.
        for funcs, before in zip(hooks, known, strict=True):
            funcs[:] = [f if f in before else _where_a_limit_was_checked(f) for f in funcs]

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if in_middleware and not self._app_wide_limits():
            return
        super()._check_request_limit(callable_name, in_middleware)

    def _app_wide_limits(self) -> bool:
        manager = self.limit_manager
        return bool(
            manager._application_limits
            or manager._default_limits
            or manager._blueprint_limits
            or self._meta_limits
            or self._in_memory_fallback
        )


def _where_a_limit_was_checked(hook: Callable[..., Any]) -> Callable[..., Any]:
    """`hook`, run only on requests where Flask-Limiter has noted something (it keeps its notes on
    the request context, created by its first check)."""

    @functools.wraps(hook)
    def run_where_checked(*args: Any) -> Any:
        if hasattr(request_ctx, "_limiter_request_context"):
            return hook(*args)
        return args[0] if args else None  # an after-request hook hands the response on

    return run_where_checked


migrate = Migrate()
limiter = Limiter(key_func=get_remote_address)
