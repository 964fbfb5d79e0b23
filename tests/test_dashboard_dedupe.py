"""Every panel, alert and documented query counts each (run, status) once (docs/dashboard.md,
"Counting each run status once"): a possible duplicate record must never show as a second run.

This is the static rule; tests/integration/test_dashboard_history.py executes the queries on a history
whose ingestion holds duplicates and checks their rows."""

from __future__ import annotations

import re

import pytest

from tests.test_dashboard_queries import QUERIES, Query

RUN_TELEMETRY = re.compile(r"['\"](AmlRunStatusChanged|AmlPipelineRunSummary)['\"]")
# The first aggregation of the query (summarize up to the next pipe or the end of a let, or distinct).
FIRST_AGGREGATION = re.compile(r"\|\s*(?P<operator>summarize|distinct)\b(?P<body>[^|;]*)")
# Per-run aggregates only (arg_max/arg_min/min/max/take_any of plain columns), then by the run: its
# id, optionally qualified by its workspace (and subscription, resource group), optionally per status.
PER_RUN = re.compile(
    r"^\s*(?:\w+\s*=\s*)?(?:arg_max|arg_min|min|max|take_any)\([^()]*\)"
    r"(?:\s*,\s*(?:\w+\s*=\s*)?(?:arg_max|arg_min|min|max|take_any)\([^()]*\))*"
    r"\s*by\s+(?:subscription\s*,\s*resource_group\s*,\s*)?(?:workspace\s*,\s*)?run_id(?:\s*,\s*status)?\s*$"
)


def _counts_copies_on_purpose(query: Query) -> bool:
    return "delivery_maybe_duplicate" in query.kql


# A comment line (never a URL inside a string: only lines that start with //).
COMMENT_LINE = re.compile(r"(?m)^\s*//.*$")


def follows_the_rule(kql: str) -> bool:
    first = FIRST_AGGREGATION.search(COMMENT_LINE.sub("", kql))
    if first is None:
        return False  # a listing: every stored record is a row
    # distinct collapses copies by construction (they differ only in delivery_maybe_duplicate).
    return first.group("operator") == "distinct" or PER_RUN.match(first.group("body")) is not None


RUN_QUERIES = [q for q in QUERIES if RUN_TELEMETRY.search(q.kql) and not _counts_copies_on_purpose(q)]


def test_there_are_run_queries_in_each_file() -> None:
    origins = {q.origin.split(":")[0] for q in RUN_QUERIES}
    assert origins == {"workbook", "alerts.bicep", "docs/dashboard.md", "README.md"}


@pytest.mark.parametrize("query", RUN_QUERIES, ids=[q.origin for q in RUN_QUERIES])
def test_a_query_over_run_records_reduces_to_one_row_per_run_first(query: Query) -> None:
    assert follows_the_rule(query.kql), (
        f"{query.origin}: the first summarize must be arg_max/arg_min/min/max(...) by run_id, so that a "
        f"record sent twice counts once (docs/dashboard.md)\n{query.kql}"
    )


@pytest.mark.parametrize(
    ("kql", "ok"),
    [
        ("T | summarize arg_max(timestamp, status) by run_id | summarize count() by status", True),
        ("T | summarize arg_max(status_time, a) by subscription, resource_group, workspace, run_id", True),
        ("T | summarize status_time = min(status_time) by workspace, run_id, status | count", True),
        ("T | summarize arg_max(status_time, a) by workspace, pipeline", False),
        ("T | summarize arg_max(status_time, a) by subscription, resource_group, workspace", False),
        ("T | summarize first = min(timestamp), arg_max(timestamp, a, b) by run_id, status", True),
        ("T | summarize Runs = dcount(run_id) by status, bin(timestamp, 1h)", False),
        ("T | summarize count(), percentile(x, 95) by pipeline", False),
        ("T | project timestamp, run_id | order by timestamp desc", False),
        ("T | summarize arg_max(timestamp, status) by pipeline", False),
        ("T | distinct workspace = tostring(customDimensions.amlWorkSpace)", True),
    ],
)
def test_the_rule_check_tells_the_two_apart(kql: str, ok: bool) -> None:
    assert follows_the_rule(kql) is ok
