"""Operator commands (`flask user|audit ...`): what they share, and their registration."""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

import click
from flask import Flask

from ..errors import MitaError
from ..extensions import db

F = TypeVar("F", bound=Callable[..., Any])


def operator() -> str:
    """The operating-system user running the command, for the audit log."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return f"uid:{os.getuid()}"


def reported(command: F) -> F:
    """Turn the API's errors into click errors (message on stderr, exit status 1)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MitaError as error:
            db.session.rollback()
            details = "; ".join(f"{k}: {v}" for k, v in (error.fields or {}).items())
            raise click.ClickException(f"{error.message} {details}".strip()) from None

    return cast(F, wrapper)


def init_app(app: Flask) -> None:
    from .audit import audit_cli
    from .errors import errors_cli
    from .users import user_cli

    app.cli.add_command(user_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(errors_cli)
