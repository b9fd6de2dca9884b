"""`flask user ...`: operators manage accounts; a failure exits non-zero with a clear message."""

from __future__ import annotations

import json
from typing import Any

import click
from flask.cli import AppGroup
from sqlalchemy import func, select

from .. import audit
from ..auth import accounts as users
from ..auth.sessions import revoke_user_sessions
from ..extensions import db
from ..fields import Email, Password
from ..models import ROLES, AuthSession, User, utcnow
from ..validation import Schema, validate
from . import F, operator, reported

user_cli = AppGroup("user", help="Manage user accounts.")


class _NewUser(Schema):
    email: Email
    password: Password


class _NewPassword(Schema):
    password: Password


def _describe(user: User) -> dict[str, Any]:
    live = db.session.scalar(
        select(func.count())
        .select_from(AuthSession)
        .where(
            AuthSession.user_id == user.id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > utcnow(),
        )
    )
    return {
        "id": str(user.id),
        "email": user.email,
        "role": user.role,
        "is_active": user.is_active,
        "country": user.country,
        "name": user.name,
        "income": str(user.income),
        "timezone": user.timezone,
        "created_at": user.created_at.isoformat(),
        "locked_until": user.locked_until.isoformat() if user.locked_until else None,
        "live_sessions": live,
    }


def _password_option(command: F) -> F:
    return click.option(
        "--password",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="Prompted for (hidden) when not given.",
    )(command)


@user_cli.command("create")
@click.argument("email")
@_password_option
@click.option("--role", type=click.Choice(ROLES), default="user", show_default=True)
@reported
def create(email: str, password: str, role: str) -> None:
    """Create a user."""
    data = validate(_NewUser, {"email": email, "password": password})
    user = users.create_user(data.email, data.password, role=role)
    db.session.commit()
    audit.record(
        "admin.user.create", user_id=user.id, email=user.email, role=role, operator=operator()
    )
    click.echo(f"created {user.email} ({user.id}) role={user.role}")


@user_cli.command("list")
@click.option("--role", type=click.Choice(ROLES), help="Only users with this role.")
@click.option("--disabled", is_flag=True, help="Only disabled users.")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True)
def list_users(role: str | None, disabled: bool, limit: int) -> None:
    """List users, newest first."""
    query = select(User).order_by(User.created_at.desc()).limit(limit)
    if role:
        query = query.where(User.role == role)
    if disabled:
        query = query.where(User.is_active.is_(False))
    for user in db.session.scalars(query):
        state = "active" if user.is_active else "disabled"
        click.echo(f"{user.id}  {user.email}  {user.role}  {state}")


@user_cli.command("show")
@click.argument("user")
@reported
def show(user: str) -> None:
    """Show one user (by email or id) as JSON."""
    click.echo(json.dumps(_describe(users.get_user(user)), indent=2))


@user_cli.command("disable")
@click.argument("user")
@reported
def disable(user: str) -> None:
    """Disable a user and revoke all their sessions."""
    account = users.get_user(user)
    users.set_active(account, False)
    audit.record("admin.user.disable", user_id=account.id, email=account.email, operator=operator())
    click.echo(f"disabled {account.email}; sessions revoked")


@user_cli.command("enable")
@click.argument("user")
@reported
def enable(user: str) -> None:
    """Re-enable a disabled user (and clear any login lockout)."""
    account = users.get_user(user)
    users.set_active(account, True)
    audit.record("admin.user.enable", user_id=account.id, email=account.email, operator=operator())
    click.echo(f"enabled {account.email}")


@user_cli.command("set-role")
@click.argument("user")
@click.argument("role", type=click.Choice(ROLES))
@reported
def set_role(user: str, role: str) -> None:
    """Give a user the role `user` or `admin`."""
    account = users.get_user(user)
    previous = account.role
    users.set_role(account, role)
    audit.record(
        "admin.user.set_role",
        user_id=account.id,
        email=account.email,
        role=role,
        previous_role=previous,
        operator=operator(),
    )
    click.echo(f"{account.email} is now {role}")


@user_cli.command("revoke-sessions")
@click.argument("user")
@reported
def revoke_sessions(user: str) -> None:
    """Sign a user out everywhere."""
    account = users.get_user(user)
    revoke_user_sessions(account.id, "operator")
    audit.record(
        "admin.user.revoke_sessions", user_id=account.id, email=account.email, operator=operator()
    )
    click.echo(f"revoked all sessions of {account.email}")


@user_cli.command("set-password")
@click.argument("user")
@_password_option
@reported
def set_password(user: str, password: str) -> None:
    """Set a user's password and revoke all their sessions."""
    account = users.get_user(user)
    data = validate(_NewPassword, {"password": password})
    users.set_password(account, data.password)
    audit.record(
        "admin.user.set_password", user_id=account.id, email=account.email, operator=operator()
    )
    click.echo(f"password of {account.email} set; sessions revoked")
