"""Extension objects only; they are bound to an app in `create_app`."""

from typing import TYPE_CHECKING

from flask_limiter import Limiter
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

migrate = Migrate()
limiter = Limiter(key_func=get_remote_address)
