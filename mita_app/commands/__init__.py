"""Operator commands (`flask user|audit|errors ...`): what they share, and their registration."""

from __future__ import annotations

import functools
import getpass
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import click
from flask import Flask
from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import InstrumentedAttribute

from ..errors import MitaError
from ..extensions import db

F = TypeVar("F", bound=Callable[..., Any])
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PRUNE_MINIMUM = timedelta(days=1)


class Duration(click.ParamType[timedelta]):
    """`90d`, `12h`, `30m`, `45s`, `2w`."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = re.fullmatch(r"\s*(\d{1,7})\s*([smhdw])\s*", str(value))
        if match is None:
            self.fail(f"{value!r} is not a duration such as 90d, 12h, 30m or 45s", param, ctx)
        return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


DURATION = Duration()


def prune_options(example: str) -> Callable[[F], F]:
    """The options every `prune` takes: `--older-than` (e.g. `example`), `--force`,
    `--batch-size`."""

    def decorator(command: F) -> F:
        for option in (
            click.option(
                "--batch-size", type=click.IntRange(1, 100_000), default=10_000, show_default=True
            ),
            click.option(
                "--force",
                is_flag=True,
                help=f"Allow a cutoff younger than {PRUNE_MINIMUM.days} day.",
            ),
            click.option("--older-than", type=DURATION, required=True, help=f"e.g. {example}"),
        ):
            command = option(command)
        return command

    return decorator


def prune_cutoff(older_than: timedelta, force: bool, what: str) -> datetime:
    """The instant before which `prune` deletes; a cutoff under a day needs `--force`."""
    if older_than < PRUNE_MINIMUM and not force:
        raise click.UsageError(
            f"--older-than {older_than} would delete recent {what}; add --force to mean it"
        )
    return datetime.now(UTC) - older_than


def delete_in_batches(
    key: InstrumentedAttribute[Any],
    when: InstrumentedAttribute[datetime],
    cutoff: datetime,
    size: int,
) -> int:
    """Delete the rows of `key`'s table whose `when` is before `cutoff`, `size` rows to a
    transaction (short locks on a busy table); how many went."""
    deleted = 0
    while True:
        batch = select(key).where(when < cutoff).limit(size)
        result = db.session.execute(
            delete(key.class_).where(key.in_(batch)).execution_options(synchronize_session=False)
        )
        count = cast(CursorResult[Any], result).rowcount
        db.session.commit()
        deleted += count
        if count < size:
            return deleted


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
