"""Audit events of one phase: those its answers say were recorded, against the rows in
`audit_events` and the `audit_spill` lines in gunicorn's log.

Every request of the load carries its own `X-Request-ID`, which the app puts on the events it
records, so each row and each spilled line is matched to the request that caused it. Flood
control (mita_app/audit/bursts.py) records only the first events of a source one by one and
counts the rest into a `<type>.suppressed` event whose `last_request_id` is one of the phase's
requests: those counts are added to the written (or spilled) events of their type.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from bench.resilience_load import Kind, Sample
from tests.conftest import pg_connect

SUPPRESSED = ".suppressed"


@dataclass
class AuditCount:
    expected: Counter[str] = field(default_factory=Counter)  # by event type
    written: Counter[str] = field(default_factory=Counter)
    spilled: Counter[str] = field(default_factory=Counter)
    # Rows and lines of the phase that no answer accounts for: breaker transitions, events of
    # requests whose answer the client never saw (a timeout), anything unforeseen.
    other_written: Counter[str] = field(default_factory=Counter)
    other_spilled: Counter[str] = field(default_factory=Counter)
    writers: dict[str, int] | None = None  # the writers' own report in audit_writers

    @property
    def lost(self) -> int:
        """Expected events neither written nor spilled."""
        return sum(
            max(0, count - self.written[kind] - self.spilled[kind])
            for kind, count in self.expected.items()
        )


def expected_events(samples: list[Sample], kinds: list[Kind]) -> dict[str, str]:
    """{request id: the event type its answer says was recorded}."""
    by_name = {kind.name: kind for kind in kinds}
    expected = {}
    for sample in samples:
        event_type = by_name[sample.kind].events.get(sample.status)
        if event_type is not None:
            expected[sample.request_id] = event_type
    return expected


def count(
    *,
    database_url: str,
    log_path: Path,
    samples: list[Sample],
    kinds: list[Kind],
    request_prefix: str,
    since: datetime,
    until: datetime,
    server_started: datetime,
) -> AuditCount:
    """Match the phase's rows (created between `since` and `until`) and the spilled lines of its
    server's log to the answers of `samples`; add what the server's writers reported."""
    expected = expected_events(samples, kinds)
    result = AuditCount(expected=Counter(expected.values()))
    seen: set[tuple[str, str]] = set()
    for event in _rows(database_url, since, until):
        _tally(event, expected, request_prefix, seen, result.written, result.other_written)
    for event in _spilled(log_path):
        _tally(event, expected, request_prefix, seen, result.spilled, result.other_spilled)
    result.writers = _writers(database_url, server_started)
    return result


def _tally(
    event: dict[str, Any],
    expected: dict[str, str],
    request_prefix: str,
    seen: set[tuple[str, str]],
    matched: Counter[str],
    other: Counter[str],
) -> None:
    event_type = str(event.get("event_type"))
    request_id = event.get("request_id")
    details = event.get("details") or {}
    if event_type.endswith(SUPPRESSED):
        last = str(details.get("last_request_id") or "")
        if last.startswith(request_prefix + "."):
            matched[event_type.removesuffix(SUPPRESSED)] += int(details.get("count") or 0)
        else:
            other[event_type] += 1
        return
    key = (str(request_id), event_type)
    if expected.get(str(request_id)) == event_type and key not in seen:
        seen.add(key)  # a row and a spilled line of one event would be one event twice
        matched[event_type] += 1
    elif request_id is None or str(request_id).startswith(request_prefix + "."):
        other[event_type] += 1
    # Events of the set-up requests (their own request ids) are not the load's.


def _rows(database_url: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
    connection = pg_connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT event_type, request_id, details FROM audit_events"
                " WHERE created_at >= %s AND created_at <= %s",
                (since, until),
            )
            return [
                {"event_type": row[0], "request_id": row[1], "details": row[2]}
                for row in cursor.fetchall()
            ]
    finally:
        connection.close()


def _spilled(log_path: Path) -> list[dict[str, Any]]:
    """The `{"audit_spill": ...}` lines of a gunicorn log (one server, one phase)."""
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith('{"audit_spill"'):
            continue
        try:
            events.append(json.loads(line))
        except ValueError:  # a line cut short (a worker killed while writing it)
            events.append({"event_type": "(unreadable spill line)"})
    return events


def _writers(database_url: str, since: datetime) -> dict[str, int] | None:
    """What the phase's writers (one per worker) last reported of themselves, summed."""
    connection = pg_connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), sum(written), sum(spilled), sum(write_failures)"
                " FROM audit_writers WHERE started_at >= %s",
                (since,),
            )
            row = cursor.fetchone()
    except psycopg2.Error:  # a cross-check only: the table is the app's to change
        return None
    finally:
        connection.close()
    if row is None or not row[0]:
        return None
    return {
        "writers": int(row[0]),
        "written": int(row[1] or 0),
        "spilled": int(row[2] or 0),
        "write_failures": int(row[3] or 0),
    }
