"""Execute the dashboard's KQL offline: duckdb-kql over Application Insights tables built from what the
ingestion fake accepted.

Kusto.Language (tests/tools/kql_check.js) judges syntax and result types; this engine judges values.
It runs only what it can translate faithfully and raises ``KqlUnsupportedError`` for the rest, which
:meth:`Engine.run` turns into a test failure naming the construct: a query author who reaches for a
function the engine cannot run learns it here, with the rule to follow (docs/dashboard.md, "Writing
queries").

Two things the service does around a query are reproduced rather than assumed away:

- the *time context* of a workbook panel or the *window* of an alert rule, which the service applies
  as a filter on ``timestamp`` (the time a record was sent) before the query runs: ``timespan``;
- ``now()``: the data are real envelopes sent during the test, so their ``timestamp`` is the real
  time of sending; each query is run with ``now()`` pinned (duckdb-kql's ``query_now``) to one instant
  taken after the last envelope was accepted, so every ``ago()`` is measured from the same moment.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb_kql
import pytest

from tests.dashboard_sources import APP_INSIGHTS_TABLES
from tests.fakes.ingestion import DEPENDENCY_ENVELOPE, EVENT_ENVELOPE, METRIC_ENVELOPE, REQUEST_ENVELOPE

KUSTO_TO_DUCKDB = {
    "datetime": "TIMESTAMP",
    "string": "VARCHAR",
    "dynamic": "JSON",
    "int": "INTEGER",
    "long": "BIGINT",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
}
# Envelope tags → the classic columns that carry them.
TAG_COLUMNS = {
    "ai.operation.id": "operation_Id",
    "ai.operation.parentId": "operation_ParentId",
    "ai.operation.name": "operation_Name",
    "ai.cloud.role": "cloud_RoleName",
    "ai.cloud.roleInstance": "cloud_RoleInstance",
    "ai.internal.sdkVersion": "sdkVersion",
}
RULE_FOR_AUTHORS = "docs/dashboard.md, 'Writing queries the tests can run'"


def table_schema(table: str) -> list[tuple[str, str]]:
    """``[(column, kusto type)]`` of one of the Application Insights tables Kusto.Language binds against."""
    columns = APP_INSIGHTS_TABLES[table].strip("()")
    return [(name.strip(), kind.strip()) for name, kind in (c.split(":") for c in columns.split(","))]


def _utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


def _common(envelope: Mapping[str, Any], item_type: str) -> dict[str, Any]:
    tags = envelope.get("tags") or {}
    row: dict[str, Any] = {
        "timestamp": _utc(envelope["time"]),
        "itemType": item_type,
        "iKey": envelope.get("iKey"),
    }
    for tag, column in TAG_COLUMNS.items():
        if tag in tags:
            row[column] = tags[tag]
    return row


def custom_events(envelopes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for envelope in envelopes:
        if envelope.get("name") != EVENT_ENVELOPE:
            continue
        base = envelope["data"]["baseData"]
        rows.append(
            {
                **_common(envelope, "customEvent"),
                "name": base["name"],
                "customDimensions": base.get("properties") or {},
                "customMeasurements": base.get("measurements") or {},
                "itemCount": 1,
            }
        )
    return rows


def custom_metrics(envelopes: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for envelope in envelopes:
        if envelope.get("name") != METRIC_ENVELOPE:
            continue
        base = envelope["data"]["baseData"]
        for point in base.get("metrics", []):
            count = point.get("count") or 1
            rows.append(
                {
                    **_common(envelope, "customMetric"),
                    "name": point["name"],
                    "customDimensions": base.get("properties") or {},
                    "value": point["value"],
                    "valueSum": point["value"],
                    "valueCount": count,
                    "valueMin": point.get("min", point["value"]),
                    "valueMax": point.get("max", point["value"]),
                    "valueStdDev": point.get("stdDev", 0.0),
                }
            )
    return rows


def _duration_ms(text: str) -> float:
    """The envelope's ``d.hh:mm:ss.fff`` → the table's milliseconds."""
    days, _, clock = text.partition(".")
    hours, minutes, seconds = clock.split(":")
    return ((int(days) * 24 + int(hours)) * 60 + int(minutes)) * 60_000 + float(seconds) * 1000


def _item_id(envelope: Mapping[str, Any]) -> str:
    """Ingestion gives every stored item an ``itemId`` (what a workbook's details link opens): a
    stable stand-in per envelope."""
    base = envelope["data"]["baseData"]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{envelope['name']}|{base.get('id')}|{envelope['time']}"))


def spans(envelopes: Iterable[Mapping[str, Any]], table: str) -> list[dict[str, Any]]:
    """``requests`` (Request envelopes) or ``dependencies`` (RemoteDependency envelopes): the traces."""
    wanted, item_type = (
        (REQUEST_ENVELOPE, "request") if table == "requests" else (DEPENDENCY_ENVELOPE, "dependency")
    )
    rows = []
    for envelope in envelopes:
        if envelope.get("name") != wanted:
            continue
        base = envelope["data"]["baseData"]
        row = {
            **_common(envelope, item_type),
            "name": base["name"],
            "id": base["id"],
            "success": bool(base["success"]),
            "resultCode": base.get("responseCode") or base.get("resultCode"),
            "duration": _duration_ms(base["duration"]),
            "customDimensions": base.get("properties") or {},
            "customMeasurements": base.get("measurements") or {},
            "itemId": _item_id(envelope),
            "itemCount": 1,
        }
        if table == "dependencies":
            row.update(target=base.get("target"), type=base.get("type"), data=base.get("data"))
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Invocation:
    """One call of the Function as the Functions host would record it in ``requests``: in Azure the host
    writes these, not our exporter; the test records what it invoked and whether the function raised."""

    function: str
    started: datetime
    duration: timedelta
    succeeded: bool
    operation_id: str


def requests(invocations: Iterable[Invocation]) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": i.started.astimezone(UTC).replace(tzinfo=None),
            "itemType": "request",
            "name": i.function,
            "operation_Name": i.function,
            "operation_Id": i.operation_id,
            "id": i.operation_id,
            "success": i.succeeded,
            "resultCode": "0" if i.succeeded else "1",
            "duration": i.duration.total_seconds() * 1000,
            "itemCount": 1,
            "customDimensions": {},
            "itemId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"invocation|{i.operation_id}")),
        }
        for i in invocations
    ]


class Engine:
    """One in-memory DuckDB holding ``customEvents``, ``customMetrics``, ``requests`` and ``dependencies``."""

    def __init__(self, tables: Mapping[str, list[dict[str, Any]]]) -> None:
        self._con = duckdb_kql.connect()
        self.tables = dict(tables)
        for table, rows in tables.items():
            schema = table_schema(table)
            columns = ", ".join(f'"{name}" {KUSTO_TO_DUCKDB[kind]}' for name, kind in schema)
            self._con.execute(f'CREATE TABLE "_{table}" ({columns})')
            placeholders = ", ".join("?" for _ in schema)
            values = [tuple(_cell(row.get(name), kind) for name, kind in schema) for row in rows]
            if values:
                self._con.executemany(f'INSERT INTO "_{table}" VALUES ({placeholders})', values)

    def run(
        self, kql: str, *, now: datetime, timespan: timedelta | None, origin: str = "query"
    ) -> list[dict[str, Any]]:
        """The rows of ``kql`` at ``now``; ``timespan``: the service's own ``timestamp`` filter (None: none)."""
        start = (now - timespan) if timespan is not None else datetime(1, 1, 1, tzinfo=UTC)
        bounds = (start.astimezone(UTC).replace(tzinfo=None), now.astimezone(UTC).replace(tzinfo=None))
        for table in self.tables:
            self._con.execute(
                f'CREATE OR REPLACE VIEW "{table}" AS SELECT * FROM "_{table}" '
                f"WHERE timestamp >= TIMESTAMP '{bounds[0].isoformat(sep=' ')}' "
                f"AND timestamp <= TIMESTAMP '{bounds[1].isoformat(sep=' ')}'"
            )
        try:
            relation = duckdb_kql.kql(self._con, kql, query_now=now)
        except duckdb_kql.KqlError as exc:  # unsupported, or a syntax this engine does not parse
            pytest.fail(
                f"{origin}: the offline engine cannot run this query ({type(exc).__name__}: {exc}). "
                f"Kusto.Language judges the syntax; keep to what both Kusto and duckdb-kql run: {RULE_FOR_AUTHORS}.",
                pytrace=False,
            )
        return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def _cell(value: Any, kind: str) -> Any:
    return json.dumps(value) if kind == "dynamic" and value is not None else value


_ISO_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?)?$")


def iso_duration(text: str) -> timedelta:
    """``PT15M``, ``P2D``, ``PT1H30M`` (the forms alert rules use) as a timedelta."""
    match = _ISO_DURATION.match(text)
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"not an ISO 8601 duration this helper reads: {text!r}")
    parts = {k: int(v or 0) for k, v in match.groupdict().items()}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"])
