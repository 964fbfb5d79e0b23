"""The workbook and the alert rules, executed on what the real function sent for a month of history.

The scenario (tests/integration/history_scenario.py) records a 30-day backfill, a day of live events
and a dead-letter replay through the product's own entry points; every workbook query (its parameters
substituted as the workbook does) and every alert query (as ``bicep snapshot`` renders the deployed
rule) then runs on the envelopes ingestion accepted (tests/kql_engine.py), and its rows are compared
with the scenario's ground truth. Kusto.Language still judges syntax and types
(tests/test_dashboard_queries.py); here the engine judges values.

The mutants at the end are deliberately wrong variants of the queries: each must make its check fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_sources import (
    ALERTS_BICEP,
    DASHBOARD_DOC,
    REPO,
    BicepFile,
    load_workbook,
    markdown_queries,
    workbook_parameters,
    workbook_query_items,
)
from tests.fakes.azurite import Azurite
from tests.integration.dashboard_checks import CHECKED_ELSEWHERE, CHECKS, Queries, Runner
from tests.integration.history_scenario import DAY, History, recorded_history
from tests.kql_engine import Engine, iso_duration
from tests.tools_on_path import find_tool

DOC_QUERIES = markdown_queries(DASHBOARD_DOC) + markdown_queries(REPO / "README.md")


# --------------------------------------------------------------------------------------------------
# Fixtures: the scenario once per module, the queries as deployed


@pytest.fixture(scope="module")
def history(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    with recorded_history(azurite, tmp_path_factory.mktemp("history")) as recorded:
        yield recorded


def deployed_alert_rules(work: Path) -> dict[str, dict[str, Any]]:
    """The log alert rules as Resource Manager would receive them: `bicep snapshot` of the module with its
    default parameters evaluates every expression (the `replace()`s that put the regression factor in)."""
    bicep = find_tool(
        "bicep",
        env_var="BICEP",
        how_to_install="the alert queries are rendered with `bicep snapshot` (CI takes bicep from ../shared/bin)",
    )
    params = work / "alerts.bicepparam"
    module = os.path.relpath(ALERTS_BICEP, work).replace(os.sep, "/")
    params.write_text(
        f"using '{module}'\n"
        "param location = 'eastus'\nparam tags = {}\nparam resourceToken = 'tok'\n"
        "param appInsightsId = '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
        "/providers/Microsoft.Insights/components/appi'\n"
        "param alertEmailReceivers = []\nparam eventSources = []\n"
    )
    done = subprocess.run(
        [bicep, "snapshot", str(params), "--mode", "overwrite", "--subscription-id",
         "00000000-0000-0000-0000-000000000000", "--resource-group", "rg", "--location", "eastus"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    snapshot = json.loads((work / "alerts.snapshot.json").read_text())
    deployed = {
        r["properties"]["displayName"]: r["properties"]
        for r in snapshot["predictedResources"]
        if r["type"] == "Microsoft.Insights/scheduledQueryRules"
    }
    # Keyed as the module keys its rules (resource names are another module's concern).
    source = BicepFile.load(ALERTS_BICEP)
    keys = {
        rule["displayName"].value(): rule["key"].value()
        for rule in source.evaluate(source.variables["logRules"])
    }
    assert set(deployed) == set(keys), "the snapshot and the module disagree on the rules"
    return {keys[name]: properties for name, properties in deployed.items()}


@pytest.fixture(scope="module")
def queries() -> Queries:
    """The workbook's and the docs' queries; the alert rules' are added by ``alert_queries``, which needs
    the Bicep CLI (so a machine without it still runs everything else)."""
    workbook = load_workbook()
    texts: dict[str, str] = {}
    windows: dict[str, timedelta | None] = {}
    for item in workbook_query_items(workbook):
        origin = f"workbook:{item['name']}"
        texts[origin] = item["content"]["query"]
        if "timeContextFromParameter" not in item["content"]:  # a fixed time context of its own
            windows[origin] = timedelta(milliseconds=item["content"]["timeContext"]["durationMs"])
    for parameter in workbook_parameters(workbook):
        if parameter.get("query"):
            texts[f"workbook:parameter {parameter['name']}"] = parameter["query"]
    for query in DOC_QUERIES:
        texts[f"doc:{query.origin}"] = query.kql
        windows[f"doc:{query.origin}"] = None  # pasted into Logs, whose time picker says "Set in query"
    return Queries(texts, windows)


@pytest.fixture(scope="module")
def alert_queries(queries: Queries, tmp_path_factory: pytest.TempPathFactory) -> Queries:
    for key, rule in deployed_alert_rules(tmp_path_factory.mktemp("bicep")).items():
        origin = f"alert:{key}"
        queries.texts[origin] = rule["criteria"]["allOf"][0]["query"]
        queries.windows[origin] = iso_duration(rule["windowSize"])  # the rule's own timestamp filter
    return queries


@pytest.fixture(scope="module")
def run(history: History, queries: Queries) -> Runner:
    return Runner(Engine(history.tables()), history, queries)


def needs(origin: str, request: pytest.FixtureRequest) -> None:
    if origin.startswith("alert:"):
        request.getfixturevalue("alert_queries")


@pytest.mark.parametrize("origin", sorted(CHECKS))
def test_query_returns_what_the_history_says(
    origin: str, run: Runner, history: History, request: pytest.FixtureRequest
) -> None:
    needs(origin, request)
    CHECKS[origin](run, history)


def test_every_workbook_and_alert_query_is_checked(alert_queries: Queries) -> None:
    queries = alert_queries
    executable = {o for o in queries.texts if not o.startswith("doc:")}
    assert executable == set(CHECKS) | CHECKED_ELSEWHERE


def test_the_scenario_is_what_the_checks_rely_on(history: History) -> None:
    """The checks are only as strong as the data: the cases they must tell apart are really there."""
    sources = Counter(s.source for s in history.statuses.values())
    assert sources["backfill"] > 40 and sources["live"] > 20 and sources["replay"] == 3
    assert min(s.at for s in history.statuses.values()) < history.now - 27 * DAY  # a month of history
    assert any(s.at < history.now - DAY for s in history.statuses.values() if s.source == "backfill")
    assert {i.succeeded for i in history.invocations} == {True, False}
    # Records and metrics are stamped when sent; spans carry their run's own start.
    event_times = [
        e["time"] for e in history.envelopes if not e["name"].endswith(("Request", "RemoteDependency"))
    ]
    assert min(event_times) >= history.t0.isoformat()[:19], "every record was sent during the test"
    tables = history.tables()
    assert tables["dependencies"] and [r for r in tables["requests"] if r["customDimensions"]]


@pytest.mark.parametrize("origin", [f"doc:{q.origin}" for q in DOC_QUERIES])
def test_the_queries_of_the_docs_run(origin: str, run: Runner) -> None:
    """What readers paste into Logs runs too (and reads only what is sent: test_dashboard_queries.py)."""
    rows = run(origin)
    assert isinstance(rows, list)


# --------------------------------------------------------------------------------------------------
# Mutants: deliberately wrong queries that the checks above must reject


@dataclass(frozen=True)
class Mutant:
    origin: str
    old: str
    new: str
    why: str


STATUS_TIME = "coalesce(todatetime(customDimensions.status_time), timestamp)"
RANGE = "| where status_time {TimeRange}\n"
KEY = "by subscription, resource_group, workspace, run_id"
BEST_COPY = "| summarize arg_max(copy_rank, *) by subscription, resource_group, workspace, run_id, status\n"
MUTANTS = [
    Mutant("workbook:runs-over-time", STATUS_TIME, "timestamp", "bins on arrival time (the old dashboard)"),
    Mutant(
        "workbook:runs-over-time",
        f"min(status_time) {KEY}",
        f"min(timestamp) {KEY}",
        "bins on the first arrival",
    ),
    Mutant("workbook:runs-over-time", RANGE, "", "no status-time range: arrivals of the range decide"),
    Mutant(
        "workbook:runs-over-time",
        f"| summarize status_time = min(status_time) {KEY}, status\n",
        "",
        "counts duplicates",
    ),
    Mutant(
        "workbook:runs-over-time",
        RANGE,
        RANGE + "| where timestamp < status_time + 1d\n",
        "prefilter assumes records arrive within a day",
    ),
    Mutant(
        "workbook:parameter Workspace",
        "| where status_time {TimeRange}\n",
        "",
        "lists workspaces whose history arrived in the range",
    ),
    Mutant(
        "workbook:overview-tiles", "status_time + 36500d", "status_time", "a late intermediate status wins"
    ),
    Mutant("workbook:overview-tiles", RANGE, "", "counts runs whose statuses arrived in the range"),
    Mutant("workbook:overview-tiles", KEY, "by run_id", "one run of two workspaces that share a run id"),
    Mutant(
        "workbook:pipeline-durations",
        "iff(status == 'Completed', wall_time_ms, long(null))",
        "wall_time_ms",
        "p95 over failed runs too",
    ),
    Mutant("workbook:pipeline-durations", RANGE, "", "p95 over backfilled runs of any age"),
    Mutant(
        "workbook:pipeline-durations",
        f"| summarize arg_max(status_time, pipeline, status, wall_time_ms, queue_time_ms) {KEY}\n",
        "",
        "counts a duplicated summary twice",
    ),
    Mutant(
        "workbook:step-type-durations",
        "status == 'Completed'",
        "status in ('Completed', 'Failed')",
        "failed steps in the durations",
    ),
    Mutant("workbook:slowest-steps", RANGE, "", "old backfilled steps among today's slowest"),
    Mutant(
        "workbook:slowest-steps",
        f"| summarize arg_max(status_time, status, execution_time_ms, pipeline, step_name, step_type, node_id, target, pipeline_run_id) {KEY}\n",
        "",
        "a duplicated step listed twice",
    ),
    Mutant(
        "workbook:failures",
        f"| summarize arg_max(status_time, run_type, pipeline, error_code, error_message, pipeline_run_id, target, record_source) {KEY}\n",
        "",
        "a duplicated failure listed twice",
    ),
    Mutant("workbook:failures", STATUS_TIME, "timestamp", "failures dated by arrival"),
    Mutant(
        "workbook:failures",
        "| where status == 'Failed'",
        "| where status in ('Failed', 'Canceled')",
        "canceled runs listed as failures",
    ),
    Mutant(
        "workbook:pipeline-root-causes",
        f"| summarize arg_max(status_time, pipeline, status, failing_step, error_chain, error_message, step_url, logs_url, record_source) {KEY}\n",
        "",
        "a duplicated failed pipeline run listed twice",
    ),
    Mutant(
        "workbook:pipeline-root-causes",
        "step_url = tostring(customDimensions.root_cause_step_studio_url)",
        "step_url = tostring(customDimensions.studio_url)",
        "the failing step's link opens the pipeline instead",
    ),
    Mutant(
        "alert:pipeline-failed",
        "failing_step_url = tostring(customDimensions.root_cause_step_studio_url)",
        "failing_step_url = tostring(customDimensions.studio_url)",
        "the alert links the pipeline, not its failing step",
    ),
    Mutant(
        "workbook:queue-by-target",
        f"| summarize arg_min(status_time, queue_time_ms, target, compute_target_type) {KEY}\n",
        "",
        "a run's queue counted per record",
    ),
    Mutant(
        "workbook:queue-over-time",
        "arg_min(status_time,",
        "arg_max(status_time,",
        "queue binned at the run's last status",
    ),
    Mutant("workbook:pipeline-runs", STATUS_TIME, "timestamp", "finished = arrival time"),
    Mutant("workbook:pipeline-runs", "take_any(itemId)", "take_any(id)", "links the span id, not the item"),
    Mutant(
        "workbook:pipeline-runs",
        "| join kind=leftouter (requests",
        "| join kind=leftouter (dependencies",
        "links a run to a step's span",
    ),
    Mutant(
        "workbook:pipeline-run-steps",
        "| join kind=leftouter (dependencies",
        "| join kind=leftouter (requests",
        "steps link to nothing",
    ),
    Mutant(
        "workbook:pipeline-run-steps", "status_time + 36500d", "status_time", "a step's late Finalizing wins"
    ),
    Mutant(
        "alert:pipeline-failed",
        " and record_source !in ('backfill', 'replay')",
        "",
        "backfilled and replayed failures page",
    ),
    Mutant(
        "alert:pipeline-failed",
        "| where status_time > ago(window)",
        "| where timestamp > ago(window)",
        "window on arrival time: late failures page",
    ),
    Mutant("alert:pipeline-failed", "| where status_time > ago(window)\n", "", "no status-time window"),
    Mutant(
        "alert:pipeline-failed", "let window = 15m;", "let window = 30m;", "a window wider than the rule's"
    ),
    Mutant(
        "alert:pipeline-failed",
        f"| summarize arg_max(status_time, pipeline, error_code) {KEY}\n",
        "",
        "a duplicated failure twice",
    ),
    Mutant(
        "alert:pipeline-duration-regression",
        " and record_source !in ('backfill', 'replay')",
        "",
        "backfilled and replayed slow runs page",
    ),
    Mutant(
        "alert:pipeline-duration-regression",
        f"status_time = {STATUS_TIME}",
        "status_time = timestamp",
        "baseline and judging on arrival time",
    ),
    Mutant(
        "alert:pipeline-duration-regression",
        " and status_time > ago(window)",
        "",
        "baseline over backfilled runs of any age",
    ),
    Mutant(
        "alert:pipeline-cost-regression",
        " and record_source !in ('backfill', 'replay')",
        "",
        "backfilled and replayed expensive runs page",
    ),
    Mutant(
        "alert:pipeline-cost-regression",
        f"status_time = {STATUS_TIME}",
        "status_time = timestamp",
        "cost baseline and judging on arrival time",
    ),
    Mutant(
        "alert:pipeline-cost-regression",
        "p95_cost * factor",
        "p95_cost",
        "the configured factor ignored",
    ),
    Mutant("workbook:cost-by-pipeline", STATUS_TIME, "timestamp", "cost binned on arrival time"),
    Mutant(
        "workbook:cost-by-pipeline",
        "| summarize arg_max(status_time, pipeline, estimated_cost, currency) by subscription, resource_group, workspace, run_id\n",
        "",
        "a duplicated summary's cost counted twice",
    ),
    Mutant("workbook:cost-by-target", RANGE, "", "costs of runs whose records arrived in the range"),
    Mutant(
        "workbook:cost-by-target",
        "| summarize arg_max(status_time, estimated_cost, currency, target, compute_target_type, cost_basis) by subscription, resource_group, workspace, run_id\n",
        "",
        "a duplicated step's cost counted twice",
    ),
    Mutant(
        "workbook:expensive-pipeline-runs",
        "| summarize arg_max(status_time, pipeline, status, estimated_cost, currency, unestimated, wall_time_ms, record_source) by subscription, resource_group, workspace, run_id\n",
        "",
        "a duplicated pipeline run listed twice",
    ),
    Mutant(
        "workbook:expensive-runs",
        "| summarize arg_max(status_time, status, estimated_cost, currency, pipeline, step_name, job_kind, target, cost_basis, pipeline_run_id) by subscription, resource_group, workspace, run_id\n",
        "",
        "a duplicated step listed twice",
    ),
    Mutant("workbook:expensive-runs", RANGE, "", "old backfilled runs among the range's most expensive"),
    # A run status whose partial copy went out first and a complete copy later (issue 21).
    Mutant("workbook:failures", BEST_COPY, "", "a partial copy wins: the failure dated by its event"),
    Mutant("workbook:pipeline-runs", BEST_COPY, "", "a partial summary wins: no wall time"),
    Mutant(
        "workbook:failures",
        "copy_rank = iff(isempty(",
        "copy_rank = iff(isnotempty(",
        "the partial copy preferred",
    ),
    Mutant(
        "workbook:efficiency-gpu-by-pipeline",
        "sum(gpu_avg * gpu_samples) / sum(gpu_samples)",
        "avg(gpu_avg)",
        "an average of averages: a 5-minute run weighs as much as a 2-hour one",
    ),
    Mutant(
        "workbook:efficiency-idle-gpu-runs",
        "| summarize arg_max(status_time, pipeline, step, target, gpu_avg, idle, cost, currency, nodes, most_busy, least_busy, least_avg) by subscription, resource_group, workspace, run_id\n",
        "",
        "a duplicated resource-use event listed twice",
    ),
    Mutant(
        "workbook:efficiency-idle-by-target",
        "| summarize arg_max(status_time, target, accelerator, idle_gpu, idle_cpu, cost, currency) by subscription, resource_group, workspace, run_id\n",
        "",
        "a duplicated resource-use event counted twice",
    ),
    Mutant(
        "workbook:efficiency-missing",
        "| where isnull(idle_gpu) and isnull(idle_cpu)\n",
        "",
        "measured runs counted as missing",
    ),
    Mutant(
        "workbook:efficiency-idle-clusters",
        "| where status_time {TimeRange}\n",
        "",
        "days before the range shown",
    ),
    Mutant("alert:expensive-idle-gpu-run", " and estimated_cost > min_cost", "", "a cheap idle run pages"),
    Mutant(
        "alert:expensive-idle-gpu-run",
        "| summarize arg_max(timestamp, pipeline, step, target, estimated_cost, currency, gpu, idle) by subscription, resource_group, workspace, run_id\n",
        "",
        "a duplicated event alerts twice",
    ),
]


def _counting_copies(mutant: Mutant, run: Runner) -> Runner:
    """The runner for ``mutant``: one that removes a per-run reduction also loses the reduction of each
    run status's copies that precedes it (else that one would still count each copy once)."""
    if mutant.new or not mutant.old.startswith("| summarize") or BEST_COPY in mutant.old:
        return run
    texts = {**run.queries.texts, mutant.origin: run.queries.texts[mutant.origin].replace(BEST_COPY, "")}
    return Runner(run.engine, run.history, Queries(texts, run.queries.windows))


@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{m.origin}: {m.why}" for m in MUTANTS])
def test_a_wrong_query_is_caught(
    mutant: Mutant, run: Runner, history: History, request: pytest.FixtureRequest
) -> None:
    needs(mutant.origin, request)
    assert mutant.old in run.queries.texts[mutant.origin], "the mutant no longer applies to the query"
    with pytest.raises(AssertionError):
        CHECKS[mutant.origin](
            _counting_copies(mutant, run).mutated(mutant.origin, mutant.old, mutant.new), history
        )


def test_the_readme_monthly_cost_query_counts_each_pipeline_run_once(run: Runner, history: History) -> None:
    """The README's cost-by-month query: the sum of the pipeline summaries' estimates per month and experiment
    (steps are not counted again; the summary a duplicate POST left twice in ingestion is counted once)."""
    from collections import defaultdict
    from decimal import Decimal

    from tests.integration.dashboard_checks import naive

    [origin] = [
        o for o, text in run.queries.texts.items() if o.startswith("doc:README") and "startofmonth(" in text
    ]
    expected: dict[tuple[object, str], Decimal] = defaultdict(Decimal)
    for summary in history.summaries.values():
        if summary.cost is not None:
            month = naive(summary.at).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            expected[(month, summary.pipeline)] += summary.cost
    rows = run(origin)
    got = {(r["month"], r["experiment"]): r["estimated_cost"] for r in rows}
    assert got.keys() == expected.keys()
    for key, total in expected.items():
        assert got[key] == pytest.approx(round(float(total), 2), abs=0.011), key
    assert {r["currency"] for r in rows} == {"USD"}


def _record_row(
    sent: datetime, run_id: str, *, partial: bool, parent: str | None, at: datetime
) -> dict[str, Any]:
    """A failed pipeline run's record as the customEvents table holds it: a partial copy knows only what
    its event said (no parent, no error code, its event's time), the complete one what run history did."""
    dims: dict[str, Any] = {
        "run_id": run_id,
        "status": "Failed",
        "run_type": "azureml.PipelineRun",
        "experimentName": "etl",
        "amlWorkSpace": "ws",
        "subscriptions": "sub",
        "resourceGroup": "rg",
        "record_source": "live",
    }
    if partial:
        dims.update(status_time=(at + timedelta(seconds=1)).isoformat(), enrichment_error="run not found")
    else:
        dims.update(status_time=at.isoformat(), error_code="UserError", root_run_id=parent or run_id)
        if parent:
            dims["parent_run_id"] = parent
    return {
        "timestamp": sent.astimezone(UTC).replace(tzinfo=None),
        "itemType": "customEvent",
        "name": "AmlRunStatusChanged",
        "customDimensions": dims,
        "itemCount": 1,
    }


@pytest.mark.parametrize("partial_first", [True, False], ids=["partial copy first", "complete copy first"])
def test_the_complete_copy_of_a_failed_sub_pipeline_decides_the_alert_whichever_arrived_first(
    alert_queries: Queries, partial_first: bool
) -> None:
    """A nested sub-pipeline's partial copy looks like a top-level pipeline (it knows no parent): the
    alert must judge the complete copy of the same run status, so only the top-level pipeline pages."""
    now = datetime.now(UTC)
    failed_at = now - timedelta(minutes=3)
    sent = [now - timedelta(minutes=2), now - timedelta(minutes=1)]
    partial_sent, complete_sent = sent if partial_first else sent[::-1]
    rows = [
        _record_row(now - timedelta(minutes=2), "pipeline", partial=False, parent=None, at=failed_at),
        _record_row(partial_sent, "sub-pipeline", partial=True, parent=None, at=failed_at),
        _record_row(complete_sent, "sub-pipeline", partial=False, parent="pipeline", at=failed_at),
    ]
    history = History(t0=now, now=now + timedelta(seconds=1))
    runner = Runner(Engine({"customEvents": rows}), history, alert_queries)

    alerts = runner("alert:pipeline-failed")

    assert [(r["run_id"], r["error_code"]) for r in alerts] == [("pipeline", "UserError")]
    # Without the choice of the complete copy, the partial one pages for the sub-pipeline.
    wrong = runner.mutated("alert:pipeline-failed", BEST_COPY, "")("alert:pipeline-failed")
    assert sorted(r["run_id"] for r in wrong) == ["pipeline", "sub-pipeline"]
