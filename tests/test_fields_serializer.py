"""`validation.fields_serializer`: data given as dicts of each model's fields serialises to the
same JSON, key for key and in the same order, as the models themselves give; the calendar,
which serialises some 30 days of categories a request that way, for any month."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from mita_app import budget
from mita_app.api.calendar import CALENDAR, SHELL, CalendarOut, ShellOut, _day_fields
from mita_app.api.schemas.users import UserOut
from mita_app.domain import budget as engine
from mita_app.domain.categories import CATEGORIES
from mita_app.fields import MoneyOut
from mita_app.validation import fields_serializer

cents = st.integers(min_value=0, max_value=10**12)
days = st.builds(
    lambda day, limit, spent, categories: budget.DayBudget(
        date=day,
        limit=limit,
        spent=spent,
        status=engine.status(limit, spent),
        categories=categories,
    ),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    cents,
    cents,
    st.dictionaries(st.sampled_from(CATEGORIES), st.tuples(cents, cents), max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(month=st.lists(days, max_size=31))
def test_a_calendar_serialises_exactly_as_its_models_do(month: list[budget.DayBudget]) -> None:
    saved = {
        "calendar": [{**_day_fields(day), "total": engine.from_cents(day.limit)} for day in month]
    }
    shell = {"calendar": [_day_fields(day) for day in month]}
    for serializer, model, data in ((CALENDAR, CalendarOut, saved), (SHELL, ShellOut, shell)):
        fast = serializer.dump_python(data, mode="json")
        by_model = model.model_validate(data).model_dump(mode="json")
        assert fast == by_model
        assert json.dumps(fast) == json.dumps(by_model)  # the keys in the same order too


class Inner(BaseModel):
    amount: MoneyOut
    on: date


class Outer(BaseModel):
    one: Inner
    maybe: Inner | None
    many: list[Inner]
    named: dict[str, Inner]


def test_models_nested_in_lists_dicts_and_optionals_are_serialised_as_theirs() -> None:
    inner: dict[str, Any] = {"amount": Decimal("1.50"), "on": date(2026, 1, 2), "extra": "x"}
    data = {"one": inner, "maybe": None, "many": [inner, inner], "named": {"a": inner}}

    fast = fields_serializer(Outer).dump_python(data, mode="json")

    assert fast == Outer.model_validate(data).model_dump(mode="json")
    assert fast["one"] == {"amount": 1.5, "on": "2026-01-02"}  # not a field: left out
    assert fields_serializer(list[Outer]).dump_python([data], mode="json") == [fast]


def test_a_model_with_computed_fields_is_refused() -> None:
    with pytest.raises(TypeError, match="computed fields"):
        fields_serializer(UserOut)
