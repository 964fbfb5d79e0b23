"""The reconciler's workbook sections and alert rule, executed on what the fakes' ingestion accepted
(the same offline engine and deployed-rule rendering as tests/integration/test_dashboard_history.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.dashboard_sources import expand_workbook_parameters, load_workbook, workbook_query_items
from tests.fakes.ingestion import IngestionServer
from tests.integration.dashboard_checks import View
from tests.kql_engine import Engine, custom_events, custom_metrics, iso_duration, spans

# The queries the reconciler's tests execute (tests/integration/dashboard_checks.py lists them as
# checked elsewhere).
RECONCILER_QUERIES = frozenset(
    {
        "workbook:schedules-overview",
        "workbook:schedule-misses",
        "workbook:reconciler-passes",
        "workbook:reconciler-problems",
        "alert:schedule-missed-or-late",
    }
)


def engine_of(ingestion: IngestionServer) -> Engine:
    envelopes = list(ingestion.envelopes)
    return Engine(
        {
            "customEvents": custom_events(envelopes),
            "customMetrics": custom_metrics(envelopes),
            "requests": spans(envelopes, "requests"),
            "dependencies": spans(envelopes, "dependencies"),
        }
    )


def workbook_rows(engine: Engine, name: str, view: View) -> list[dict[str, Any]]:
    (item,) = [i for i in workbook_query_items(load_workbook()) if i["name"] == name]
    text = expand_workbook_parameters(item["content"]["query"], view.parameters())
    now = datetime.now(UTC) + timedelta(seconds=1)
    return engine.run(text, now=now, timespan=view.range, origin=f"workbook:{name}")


def alert_rows(engine: Engine, key: str, work: Path) -> list[dict[str, Any]]:
    from tests.integration.test_dashboard_history import deployed_alert_rules

    rule = deployed_alert_rules(work)[key]
    now = datetime.now(UTC) + timedelta(seconds=1)
    return engine.run(
        rule["criteria"]["allOf"][0]["query"],
        now=now,
        timespan=iso_duration(rule["windowSize"]),
        origin=f"alert:{key}",
    )
