"""The tutorial's PyJWT `login_required` (pyjwt_decorator.py) plus the user's row read from
PostgreSQL on every request with Flask-SQLAlchemy (`pool_pre_ping=True`, as mita has it): what
a token check and one primary-key read of mita's `users` table cost in a few lines."""

import os
import uuid

from flask import Flask, abort, g
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.anchors.pyjwt_decorator import login_required


class Base(DeclarativeBase):
    pass


app = Flask(__name__)
# psycopg2, mita's driver (SQLAlchemy's default for postgresql:// is psycopg 3).
app.config["SQLALCHEMY_DATABASE_URI"] = make_url(os.environ["DATABASE_URL"]).set(
    drivername="postgresql+psycopg2"
)
app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True}
db = SQLAlchemy(app, model_class=Base)


class User(db.Model):  # type: ignore[name-defined]
    """A few columns of mita's `users` table."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str | None] = mapped_column(String(64))


@app.get("/me")
@login_required
def me() -> dict[str, str | None]:
    user = db.session.get(User, uuid.UUID(g.claims["sub"]))
    if user is None:
        abort(401)
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "currency": user.currency,
        "timezone": user.timezone,
    }
