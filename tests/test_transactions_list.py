"""GET /api/transactions/ serialises its rows without building a TransactionOut for each: the
same JSON, key for key and in the same order, as TransactionOut gives, for any entry. And the
list costs the caller, the count and the page: three statements."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st

from mita_app import transactions as service
from mita_app.api.transactions import LISTED, TransactionOut, _fields_of
from mita_app.domain.categories import CATEGORIES
from tests.conftest import AuthActions, sql_statements

ZONES = [UTC, *map(ZoneInfo, ("America/New_York", "Asia/Kolkata", "Pacific/Chatham"))]
texts = st.text(max_size=30)
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.sampled_from(ZONES)
).map(lambda at: at.astimezone(UTC))
in_a_zone = st.builds(lambda at, zone: at.astimezone(zone), instants, st.sampled_from(ZONES))
entries = st.builds(
    service.Entry,
    id=st.uuids(),
    amount=st.decimals(min_value="0.01", max_value="100000", places=2),
    category=st.sampled_from(CATEGORIES),
    description=texts,
    notes=texts,
    merchant=st.none() | texts,
    location=st.none() | texts,
    is_recurring=st.booleans(),
    tags=st.lists(texts, max_size=20),
    spent_at=in_a_zone,
    spent_on=st.dates(),
    created_at=instants,
    updated_at=instants,
)


@settings(max_examples=300, deadline=None)
@given(page=st.lists(entries, max_size=5))
def test_the_rows_serialise_exactly_as_transaction_out_does(page: list[service.Entry]) -> None:
    listed = LISTED.dump_python([_fields_of(entry) for entry in page], mode="json")
    one_by_one = [TransactionOut.of(entry).model_dump(mode="json") for entry in page]
    assert listed == one_by_one
    assert json.dumps(listed) == json.dumps(one_by_one)  # the keys in the same order too


def test_listing_transactions_is_the_caller_the_count_and_the_page(
    app: Flask, client: FlaskClient, auth: AuthActions
) -> None:
    headers = auth.bearer(auth.register()["access_token"])
    for amount in (12.5, 3.25):
        body: dict[str, Any] = {
            "amount": amount,
            "category": "food",
            "spent_at": "2026-01-02T10:00:00Z",
        }
        assert client.post("/api/transactions/", json=body, headers=headers).status_code == 201
    client.get("/api/transactions/", headers=headers)  # warm

    with sql_statements(app) as seen:
        response = client.get("/api/transactions/?skip=0&limit=100", headers=headers)

    assert response.status_code == 200
    assert [row["amount"] for row in response.get_json()["data"]] == [3.25, 12.5]  # newest first
    assert response.get_json()["total"] == 2
    assert len(seen) <= 3, [statement for statement, _ in seen]
