"""The signed-in user's ledger: record, list, change and delete expenses.

Nothing here counts spending: a day's spending is always summed from these rows
(`budget.spending`), so creating, editing or deleting an expense is all it takes.

- **When.** `spent_at` is an instant (`Z` or an offset), a naive local time in the user's zone,
  or a `YYYY-MM-DD` day, taken as 12:00 local that day. It is stored in UTC with `spent_on`, its
  local day; it may be at most one local day ahead of the user's today (a phone's calendar may
  run ahead of the account's zone) and not before 2000-01-01.
- **Repeats.** A create with an `Idempotency-Key` returns the transaction first made with that
  key (forever; a different body with it is a 409). Without a key, a create whose body is
  identical (as canonical JSON) to one made in the last 10 minutes returns that one: the app's
  retry of a lost answer is byte-identical, its `spent_at` carrying milliseconds. Both are
  decided under the user's row lock, so concurrent repeats make one row.
- **Rebalancing.** Creates and updates (and repeats) answer `budget.impact_of` the expense as
  it now stands, against the same month without it: `covered`, the money moved from other days
  to its day's budget category because of it; `rebalanced`, whether any was; `fully_covered`,
  whether it left no overspend uncovered. An overspend nothing can cover (no plan; nothing
  left later in the month) is neither rebalanced nor fully covered.

`budget.utcnow` is the clock.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import ColumnElement, CursorResult, Select, bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError

from . import budget
from .database import find_owned, owned_id
from .domain import budget as engine
from .domain.categories import TREE, Category, members
from .domain.days import ONE_DAY, instant, local_date, zone
from .errors import Conflict, NotFound, ValidationFailed
from .extensions import db
from .models import Transaction, User

REPEAT_WINDOW = timedelta(minutes=10)
EARLIEST_DAY = date(2000, 1, 1)
MAX_LIMIT = 10_000
MAX_SKIP = 1_000_000_000
When = datetime | date  # an instant (aware), a local time (naive) or a local day


class Entry(NamedTuple):
    """A transaction as answered: `spent_at` in the user's zone, `spent_on` its local day."""

    id: uuid.UUID
    amount: Decimal
    category: str
    description: str
    notes: str
    merchant: str | None
    location: str | None
    is_recurring: bool
    tags: list[str]
    spent_at: datetime
    spent_on: date
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Transaction, user: User) -> Entry:
        return cls.listed([getattr(row, name) for name in cls._fields], zone(user.timezone))

    @classmethod
    def listed(cls, row: Sequence[Any], local: tzinfo) -> Entry:
        """An entry from a row of `ENTRY_COLUMNS` (or a transaction's values in that order), its
        `spent_at` in the zone `local`."""
        fields = list(row)
        fields[TAGS] = list(fields[TAGS] or [])
        fields[SPENT_AT] = fields[SPENT_AT].astimezone(local)
        return cls._make(fields)


TAGS, SPENT_AT = Entry._fields.index("tags"), Entry._fields.index("spent_at")


# The columns of an entry, in the order of its fields: a list reads these (as plain rows of the
# table, not whole mapped objects).
LEDGER = Transaction.__table__.c
ENTRY_COLUMNS = tuple(LEDGER[name] for name in Entry._fields)


@dataclass(frozen=True)
class Recorded:
    entry: Entry
    impact: budget.Impact
    replayed: bool = False


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    total: int  # rows matching the filters, whatever skip and limit
    skip: int
    limit: int


def transaction_not_found() -> NotFound:
    # One answer for another user's transaction, a deleted one and a malformed id.
    return NotFound("No such transaction.", code="transaction_not_found")


def fingerprint(body: dict[str, Any]) -> str:
    """SHA-256 of the body as canonical JSON (sorted keys, no spaces, ASCII)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _spent(user: User, when: When) -> tuple[datetime, date]:
    """(spent_at in UTC, its local day), or the 422 saying why it cannot be."""
    try:
        spent_at = instant(user.timezone, when)
        day = local_date(user.timezone, spent_at)
    except OverflowError:
        raise ValidationFailed(fields={"spent_at": "is out of range"}) from None
    latest = local_date(user.timezone, budget.utcnow()) + ONE_DAY
    if day > latest:
        raise ValidationFailed(fields={"spent_at": f"must not be after {latest.isoformat()}"})
    if day < EARLIEST_DAY:
        raise ValidationFailed(
            fields={"spent_at": f"must not be before {EARLIEST_DAY.isoformat()}"}
        )
    return spent_at, day


def _recorded(user: User, row: Transaction, *, replayed: bool = False) -> Recorded:
    entry = Entry.of(row, user)  # before anything commits and expires the row
    impact = budget.impact_of(user, entry.spent_on, entry.category, engine.to_cents(entry.amount))
    db.session.commit()
    return Recorded(entry, impact, replayed)


def _repeat_of(user: User, body_hash: str, key: str | None) -> Transaction | None:
    """The transaction this create repeats, if any (409 for a key reused with another body)."""
    if key is not None:
        row = db.session.scalar(
            select(Transaction).where(
                Transaction.user_id == user.id, Transaction.idempotency_key == key
            )
        )
        if row is not None and row.fingerprint != body_hash:
            db.session.rollback()
            raise Conflict(
                "This Idempotency-Key was used with another body.",
                code="idempotency_key_reused",
            )
        return row
    return db.session.scalar(
        select(Transaction)
        .where(
            Transaction.user_id == user.id,
            Transaction.fingerprint == body_hash,
            Transaction.created_at >= budget.utcnow() - REPEAT_WINDOW,
        )
        .order_by(Transaction.created_at.desc(), Transaction.id)
        .limit(1)
    )


def create(user: User, fields: dict[str, Any], body_hash: str, key: str | None) -> Recorded:
    """Record an expense from validated `fields`, or answer the one this create repeats."""
    spent_at, spent_on = _spent(user, fields["spent_at"])
    budget.lock_user(user)  # one create of this user at a time decides what is a repeat
    repeated = _repeat_of(user, body_hash, key)
    if repeated is not None:
        return _recorded(user, repeated, replayed=True)
    now = budget.utcnow()
    row = Transaction(
        id=uuid.uuid4(),
        user_id=user.id,
        **{name: value for name, value in fields.items() if name != "spent_at"},
        spent_at=spent_at,
        spent_on=spent_on,
        idempotency_key=key,
        fingerprint=body_hash,
        created_at=now,
        updated_at=now,
    )
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:  # the key's row came first (SQLite has no row lock to wait on)
        db.session.rollback()
        repeated = _repeat_of(user, body_hash, key)
        if repeated is None:
            raise
        return _recorded(user, repeated, replayed=True)
    return _recorded(user, row)


def _find(user: User, transaction_id: str) -> Transaction:
    return find_owned(Transaction, user.id, transaction_id, transaction_not_found)


def get(user: User, transaction_id: str) -> Entry:
    return Entry.of(_find(user, transaction_id), user)


def update(user: User, transaction_id: str, changes: dict[str, Any]) -> Recorded:
    """Apply validated `changes` (any field; a new `spent_at` moves its local day too)."""
    if "spent_at" in changes:
        changes["spent_at"], changes["spent_on"] = _spent(user, changes["spent_at"])
    budget.lock_user(user)
    row = _find(user, transaction_id)
    for name, value in changes.items():
        setattr(row, name, value)
    if changes:
        row.updated_at = budget.utcnow()
    db.session.flush()
    return _recorded(user, row)


def remove(user: User, transaction_id: str) -> uuid.UUID:
    """Delete an expense for good; its day's spending is summed without it from now on. Of two
    deletes at once, one answers 404."""
    key = owned_id(transaction_id, transaction_not_found)
    budget.lock_user(user)  # never between an update's read and its write
    result = db.session.execute(
        delete(Transaction).where(Transaction.id == key, Transaction.user_id == user.id)
    )
    if not cast(CursorResult[Any], result).rowcount:
        raise transaction_not_found()
    db.session.commit()
    return key


Bound = Literal["day", "instant"]  # how a list filter bounds: the local day, or the instant


def _bound(when: When, user: User, *, end: bool) -> tuple[Bound, date | datetime]:
    """A list filter: a day bounds the local day, a time (naive: local) the instant."""
    if not isinstance(when, datetime):
        return "day", when
    try:
        return "instant", instant(user.timezone, when)
    except OverflowError:
        raise ValidationFailed(
            fields={"end_date" if end else "start_date": "is out of range"}
        ) from None


@functools.cache
def _listing(
    start: Bound | None, end: Bound | None, by_category: bool
) -> tuple[Select[int], Select[Any]]:
    """The count and the page of a list filtered so: built once for each kind of filter (their
    parameters: user_id, start, end, categories, skip and limit)."""
    column = {"day": LEDGER.spent_on, "instant": LEDGER.spent_at}
    conditions: list[ColumnElement[bool]] = [LEDGER.user_id == bindparam("user_id")]
    if start is not None:
        conditions.append(column[start] >= bindparam("start"))
    if end is not None:
        conditions.append(column[end] <= bindparam("end"))
    if by_category:
        conditions.append(LEDGER.category.in_(bindparam("categories", expanding=True)))
    count = select(func.count()).select_from(Transaction.__table__).where(*conditions)
    page = (
        select(*ENTRY_COLUMNS)
        .where(*conditions)
        .order_by(*budget.NEWEST_FIRST)
        .offset(bindparam("skip"))
        .limit(bindparam("limit"))
    )
    return count, page


def list_page(
    user: User,
    *,
    skip: int = 0,
    limit: int = 100,
    start: When | None = None,
    end: When | None = None,
    category: Category | None = None,
) -> Page:
    """The user's expenses, newest first, from `start` to `end` (both included) in `category`
    (a parent with its children); `skip` and `limit` clamped to 0.. and 1..10000."""
    skip, limit = min(max(skip, 0), MAX_SKIP), min(max(limit, 1), MAX_LIMIT)
    parameters: dict[str, Any] = {"user_id": user.id, "skip": skip, "limit": limit}
    start_kind = end_kind = None
    if start is not None:
        start_kind, parameters["start"] = _bound(start, user, end=False)
    if end is not None:
        end_kind, parameters["end"] = _bound(end, user, end=True)
    if category is not None:
        parameters["categories"] = members(category) if category in TREE else (category,)
    count, page = _listing(start_kind, end_kind, category is not None)
    connection = db.session.connection()  # Core statements, rows not objects: no ORM layer
    total = connection.execute(count, parameters).scalar_one()
    rows = connection.execute(page, parameters)
    local = zone(user.timezone)
    return Page([Entry.listed(row, local) for row in rows], total, skip, limit)
