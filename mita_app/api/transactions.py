"""/api/transactions: the caller's expenses, the ledger every day's spending is summed from.

Instants are answered in the caller's time zone with its offset; `date` is the local day an
expense counts on. See `mita_app.transactions` for times, repeats and rebalancing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from flask import Blueprint, Response, request
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    RootModel,
    ValidationInfo,
    field_validator,
)

from .. import transactions as service
from ..auth import caller, current_user, login_required
from ..domain import budget as engine
from ..domain.categories import Category
from ..errors import ValidationFailed
from ..fields import Money, MoneyOut, When, trimmed
from ..validation import SafeStr, Schema, body, fields_serializer, json_body, ok, query, returns

bp = Blueprint("transactions", __name__, url_prefix="/api/transactions")

NOT_FOUND = "No such transaction of the caller's (or a malformed id)"
REPLAYED = "Idempotent-Replayed"
KEY_HEADER = "Idempotency-Key"
KEY_MAX = 255
MAX_AMOUNT = 100_000


def _absent_if_empty(value: Any) -> Any:
    return None if value == "" else value


Amount = Annotated[Money, Field(gt=0, le=MAX_AMOUNT)]
Description = Annotated[SafeStr, trimmed(500)]
Notes = Annotated[SafeStr, trimmed(2000)]
Place = Annotated[SafeStr, trimmed(200), AfterValidator(lambda text: text or None)]  # "": none
Tags = Annotated[list[Annotated[SafeStr, trimmed(50, required=True)]], Field(max_length=20)]
# Defaults of the optional fields; a null is the default too (the app sends null for "none").
DEFAULTS: dict[str, Any] = {
    "description": "",
    "notes": "",
    "merchant": None,
    "location": None,
    "is_recurring": False,
    "tags": [],
}


def _default(name: str | None) -> Any:
    default = DEFAULTS[name or ""]
    return list(default) if isinstance(default, list) else default


class TransactionIn(Schema):
    amount: Amount = Field(description="More than 0, at most 100000, at most 2 decimals")
    category: Category
    description: Description = ""
    notes: Notes = ""
    merchant: Place | None = None
    location: Place | None = None
    is_recurring: bool = False
    tags: Tags = Field(default_factory=list, description="At most 20, each at most 50 chars")
    spent_at: When = Field(description="With Z or an offset; naive: local time; a day: noon")

    @field_validator(*DEFAULTS, mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        return _default(info.field_name) if value is None else value


class TransactionUpdate(Schema):
    """Any of the fields; absent ones are left alone. A null sets an optional field to its
    default (no text, no tags, not recurring) and is a 422 for the others."""

    amount: Amount | None = None
    category: Category | None = None
    description: Description | None = None
    notes: Notes | None = None
    merchant: Place | None = None
    location: Place | None = None
    is_recurring: bool | None = None
    tags: Tags | None = None
    spent_at: When | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _only_optional_fields_can_be_cleared(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name in DEFAULTS:
            return _default(info.field_name)
        if value is None:
            raise ValueError("must not be null")
        return value

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ListQuery(Schema):
    skip: int = Field(0, description="Rows to skip; below 0 is 0")
    limit: int = Field(100, description="At most this many rows; clamped to 1..10000")
    start_date: Annotated[When | None, BeforeValidator(_absent_if_empty)] = Field(
        None, description="From this instant (Z or offset) or local day (YYYY-MM-DD), included"
    )
    end_date: Annotated[When | None, BeforeValidator(_absent_if_empty)] = Field(
        None, description="Up to this instant or local day, included"
    )
    category: Annotated[Category | None, BeforeValidator(_absent_if_empty)] = Field(
        None, description="This category; a parent (food) with its children (groceries, dining)"
    )


# An entry's fields as TransactionOut names them (`spent_on` is its `date`), in their order.
FIELD_NAMES = tuple("date" if name == "spent_on" else name for name in service.Entry._fields)


def _fields_of(entry: service.Entry) -> dict[str, Any]:
    return dict(zip(FIELD_NAMES, entry, strict=True))


class TransactionOut(BaseModel):
    id: uuid.UUID
    amount: MoneyOut
    category: Category
    description: str
    notes: str
    merchant: str | None
    location: str | None
    is_recurring: bool
    tags: list[str]
    spent_at: dt.datetime = Field(description="In the caller's time zone, with its offset")
    date: dt.date = Field(description="The caller's local day it counts on")
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, entry: service.Entry) -> TransactionOut:
        return cls.model_validate(_fields_of(entry))


class TransactionChanged(TransactionOut):
    rebalanced: bool = Field(description="Money moved from other days to cover it")
    rebalance_covered: MoneyOut = Field(description="How much, in money")
    rebalance_fully_covered: bool = Field(description="No overspend is left uncovered by it")

    @classmethod
    def of_recorded(cls, recorded: service.Recorded) -> TransactionChanged:
        impact = recorded.impact
        return cls.model_validate(
            {
                **_fields_of(recorded.entry),
                "rebalanced": impact.rebalanced,
                "rebalance_covered": engine.from_cents(impact.covered),
                "rebalance_fully_covered": impact.fully_covered,
            }
        )


class TransactionList(RootModel[list[TransactionOut]]):
    pass


LISTED = fields_serializer(list[TransactionOut])


class DeletedOut(BaseModel):
    deleted: Literal[True] = True
    id: uuid.UUID


def _idempotency_key() -> str | None:
    key = request.headers.get(KEY_HEADER)
    if key is not None and not 0 < len(key) <= KEY_MAX:
        raise ValidationFailed(fields={KEY_HEADER: f"must be 1 to {KEY_MAX} characters"})
    return key


@bp.get("/")
@returns(TransactionList, top_level={"total": int, "skip": int, "limit": int})
@login_required
@query(ListQuery)
def list_transactions(params: ListQuery) -> Response:
    """The caller's expenses, newest first, filtered by time or day and category.

    `total` counts every row that matches the filters; `skip` and `limit` are the ones applied.
    """
    page = service.list_page(
        caller(),
        skip=params.skip,
        limit=params.limit,
        start=params.start_date,
        end=params.end_date,
        category=params.category,
    )
    rows = LISTED.dump_python([_fields_of(entry) for entry in page.entries], mode="json")
    return ok(rows, total=page.total, skip=page.skip, limit=page.limit)


@bp.post("/")
@returns(
    TransactionChanged,
    201,
    errors={
        200: "A repeat (the same Idempotency-Key, or an identical body within 10 minutes): "
        "the original transaction, with the header Idempotent-Replayed: true",
        409: "The Idempotency-Key was used with another body",
    },
)
@login_required
@body(TransactionIn)
def create_transaction(payload: TransactionIn) -> Response:
    """Record an expense; the answer says how rebalancing covered it.

    A repeat of a create (the same `Idempotency-Key` header, or without one an identical body
    within 10 minutes) answers the original transaction, 200 with `Idempotent-Replayed: true`.
    """
    key = _idempotency_key()
    fingerprint = service.fingerprint(json_body())
    recorded = service.create(current_user, payload.model_dump(), fingerprint, key)
    if recorded.replayed:
        response = ok(TransactionChanged.of_recorded(recorded))
        response.headers[REPLAYED] = "true"
        return response
    return ok(TransactionChanged.of_recorded(recorded), 201)


@bp.get("/<transaction_id>")
@returns(TransactionOut, errors={404: NOT_FOUND})
@login_required
def get_transaction(transaction_id: str) -> Response:
    return ok(TransactionOut.of(service.get(current_user, transaction_id)))


@bp.route("/<transaction_id>", methods=["PUT", "PATCH"])
@returns(TransactionChanged, errors={404: NOT_FOUND})
@login_required
@body(TransactionUpdate)
def update_transaction(transaction_id: str, payload: TransactionUpdate) -> Response:
    """Change any of an expense's fields; the answer says how rebalancing covers it now."""
    recorded = service.update(current_user, transaction_id, payload.changes())
    return ok(TransactionChanged.of_recorded(recorded))


@bp.delete("/<transaction_id>")
@returns(DeletedOut, errors={404: NOT_FOUND})
@login_required
def delete_transaction(transaction_id: str) -> Response:
    """Delete an expense for good."""
    return ok(DeletedOut(id=service.remove(current_user, transaction_id)))
