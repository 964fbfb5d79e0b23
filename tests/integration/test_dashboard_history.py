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
import math
import os
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_sources import (
    ALERTS_BICEP,
    DASHBOARD_DOC,
    REPO,
    BicepFile,
    expand_workbook_parameters,
    load_workbook,
    markdown_queries,
    workbook_parameters,
    workbook_query_items,
)
from tests.fakes.azurite import Azurite
from tests.integration.history_scenario import DAY, HOUR, History, Status, recorded_history
from tests.kql_engine import Engine, iso_duration
from tests.tools_on_path import find_tool

Rows = list[dict[str, Any]]
DOC_QUERIES = markdown_queries(DASHBOARD_DOC) + markdown_queries(REPO / "README.md")


@dataclass(frozen=True)
class View:
    """The workbook's parameters as a user sets them: a time range (ending now), its grain, workspaces."""

    range: timedelta
    grain: timedelta
    workspaces: tuple[str, ...] = ()  # () = All
    pipeline_run: str = ""

    def parameters(self) -> dict[tuple[str, str | None], str]:
        days = self.range // DAY
        grain = f"{self.grain // HOUR}h" if self.grain < DAY else f"{self.grain // DAY}d"
        return {
            # A relative range expands to `> ago(...)` (learn.microsoft.com workbooks-time,
            # "Reference a time parameter with KQL"); the workbook offers no other kind.
            ("TimeRange", None): f"> ago({days}d)" if days else f"> ago({self.range // HOUR}h)",
            ("TimeRange", "grain"): grain,
            # A multi-select dropdown with quote ' and delimiter ,; All expands to its selectAllValue.
            ("Workspace", None): ",".join(f"'{w}'" for w in self.workspaces) or "'*'",
            ("PipelineRunId", None): self.pipeline_run,
        }


MONTH = View(30 * DAY, DAY)
TODAY = View(DAY, HOUR)
VIEWS = (MONTH, TODAY)


@dataclass
class Queries:
    """Every executable query by origin, with the ``timestamp`` window the service puts around it."""

    texts: dict[str, str]
    # The service's own filter on `timestamp`; an origin not listed here gets the view's time range.
    windows: dict[str, timedelta | None] = field(default_factory=dict)


@dataclass
class Runner:
    engine: Engine
    history: History
    queries: Queries
    mutations: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __call__(self, origin: str, view: View = MONTH) -> Rows:
        text = self.queries.texts[origin]
        if origin in self.mutations:
            old, new = self.mutations[origin]
            if old not in text:
                raise LookupError(f"mutant of {origin} no longer applies: {old!r} is not in the query")
            text = text.replace(old, new)
        if origin.startswith("workbook:"):
            text = expand_workbook_parameters(text, view.parameters())
        window = self.queries.windows.get(origin, view.range)
        return self.engine.run(text, now=self.history.now, timespan=window, origin=origin)

    def mutated(self, origin: str, old: str, new: str) -> Runner:
        return Runner(self.engine, self.history, self.queries, {origin: (old, new)})


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
        "param alertEmailReceivers = []\nparam systemTopicIds = []\n"
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


# --------------------------------------------------------------------------------------------------
# Ground truth → expected rows


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def floor_to(moment: datetime, grain: timedelta) -> datetime:
    epoch = datetime(1970, 1, 1)
    return epoch + ((naive(moment) - epoch) // grain) * grain


def nearest_rank(values: list[int], percent: float) -> int | None:
    """Kusto's percentile on small sets (a value of the set, nearest rank), as duckdb-kql pins it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(percent / 100 * len(ordered)), 1) - 1]


def seconds(ms: float | None) -> float | None:
    return None if ms is None else round(ms / 1000.0, 1)


def statuses(h: History, view: View) -> list[Status]:
    return [
        s
        for s in h.statuses.values()
        if s.at > h.now - view.range and (not view.workspaces or s.workspace in view.workspaces)
    ]


def per_run(items: list[Status]) -> dict[tuple[str, str], list[Status]]:
    runs: dict[tuple[str, str], list[Status]] = defaultdict(list)
    for s in items:
        runs[(s.workspace, s.run_id)].append(s)
    return runs


def latest(items: list[Status]) -> Status:
    # A terminal status wins over an intermediate one, whatever its time; then the later status.
    return max(items, key=lambda s: (s.terminal, s.at))


def kind(run_type: str) -> str:
    return {"azureml.PipelineRun": "Pipeline runs", "azureml.StepRun": "Pipeline steps"}.get(
        run_type, "Other jobs"
    )


# --------------------------------------------------------------------------------------------------
# Checks: one per query, each over the views that matter


def check_runs_over_time(run: Runner, h: History) -> None:
    for view in (*VIEWS, View(30 * DAY, DAY, ("old-ws",))):
        rows = run("workbook:runs-over-time", view)
        got = {(r["status"], r["status_time"]): r["Runs"] for r in rows}
        expected = Counter((s.status, floor_to(s.at, view.grain)) for s in statuses(h, view))
        assert got == dict(expected), view


def check_workspace_parameter(run: Runner, h: History) -> None:
    assert [r["workspace"] for r in run("workbook:parameter Workspace", TODAY)] == ["sample-ws"]
    assert [r["workspace"] for r in run("workbook:parameter Workspace", MONTH)] == ["old-ws", "sample-ws"]


def check_overview_tiles(run: Runner, h: History) -> None:
    for view in VIEWS:
        tiles: dict[str, Counter[str]] = defaultdict(Counter)
        for items in per_run(statuses(h, view)).values():
            last = latest(items)
            tile = tiles[kind(last.run_type)]
            tile["Runs"] += 1
            tile[
                last.status
                if last.status in ("Failed", "Canceled")
                else "Active"
                if not last.terminal
                else ""
            ] += 1
        got = {
            r["run_kind"]: (r["Runs"], r["Failed"], r["Canceled"], r["Active"])
            for r in run("workbook:overview-tiles", view)
        }
        assert got == {k: (c["Runs"], c["Failed"], c["Canceled"], c["Active"]) for k, c in tiles.items()}, (
            view
        )


def check_pipeline_durations(run: Runner, h: History) -> None:
    for view in VIEWS:
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for summary in h.summaries.values():
            if summary.at > h.now - view.range:
                groups[(summary.workspace, summary.pipeline)].append(summary)
        expected = {}
        for key, items in groups.items():
            walls = [s.wall_ms for s in items if s.status == "Completed"]
            expected[key] = (
                len(items),
                sum(s.status == "Failed" for s in items),
                seconds(nearest_rank(walls, 50)),
                seconds(nearest_rank(walls, 95)),
                seconds(nearest_rank([s.queue_ms for s in items], 50)),
            )
        rows = run("workbook:pipeline-durations", view)
        got = {
            (r["Workspace"], r["Pipeline"]): (
                r["Runs"],
                r["Failed"],
                r["p50 (s)"],
                r["p95 (s)"],
                r["Queue p50 (s)"],
            )
            for r in rows
        }
        assert got == expected, view


def check_step_type_durations(run: Runner, h: History) -> None:
    for view in VIEWS:
        steps = [s for s in statuses(h, view) if s.run_type == "azureml.StepRun" and s.status == "Completed"]
        durations = [s.execution_ms for s in steps if s.execution_ms is not None]
        rows = run("workbook:step-type-durations", view)
        assert [(r["Step type"], r["Steps"], r["p50 (s)"], r["p95 (s)"]) for r in rows] == [
            (
                "PythonScriptStep",
                len(durations),
                seconds(nearest_rank(durations, 50)),
                seconds(nearest_rank(durations, 95)),
            )
        ], view


def check_slowest_steps(run: Runner, h: History) -> None:
    for view in VIEWS:
        finished = {s.run_id: s for s in statuses(h, view) if s.run_type == "azureml.StepRun" and s.terminal}
        rows = run("workbook:slowest-steps", view)
        assert len({r["Step run"] for r in rows}) == len(rows), "a step listed twice"
        top = sorted((s.execution_ms for s in finished.values()), reverse=True)[:25]
        assert [r["Duration (s)"] for r in rows] == [seconds(ms) for ms in top], view
        for row in rows:
            assert row["Duration (s)"] == seconds(finished[row["Step run"]].execution_ms)
            assert row["Finished"] == naive(finished[row["Step run"]].at)


def check_failures(run: Runner, h: History) -> None:
    for view in VIEWS:
        expected = {(s.run_id, naive(s.at), s.source) for s in statuses(h, view) if s.status == "Failed"}
        rows = run("workbook:failures", view)
        assert (
            len(rows) == len(expected) and {(r["Run"], r["Time"], r["Recorded"]) for r in rows} == expected
        ), view
        assert [r["Time"] for r in rows] == sorted((r["Time"] for r in rows), reverse=True)


def _first_queue(h: History, view: View) -> list[Status]:
    return [
        min(items, key=lambda s: s.at)
        for items in per_run(statuses(h, view)).values()
        if items[0].queue_ms is not None
    ]


def check_queue_by_target(run: Runner, h: History) -> None:
    for view in VIEWS:
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for s in _first_queue(h, view):
            groups[(s.target or "(not reported)", s.compute_target_type or "")].append(s.queue_ms)  # type: ignore[arg-type]
        expected = {
            k: (len(v), seconds(nearest_rank(v, 50)), seconds(nearest_rank(v, 95)), seconds(max(v)))
            for k, v in groups.items()
        }
        rows = run("workbook:queue-by-target", view)
        got = {
            (r["Compute target"], r["Target type"]): (r["Runs"], r["p50 (s)"], r["p95 (s)"], r["Longest (s)"])
            for r in rows
        }
        assert got == expected, view


def check_queue_over_time(run: Runner, h: History) -> None:
    for view in VIEWS:
        groups: dict[tuple[str, datetime], list[int]] = defaultdict(list)
        for s in _first_queue(h, view):
            groups[(s.target or "(not reported)", floor_to(s.at, view.grain))].append(s.queue_ms)  # type: ignore[arg-type]
        expected = {k: nearest_rank(v, 95) / 1000.0 for k, v in groups.items()}  # type: ignore[operator]
        rows = run("workbook:queue-over-time", view)
        assert {(r["target"], r["status_time"]): r["p95 queue (s)"] for r in rows} == expected, view


def check_pipeline_runs(run: Runner, h: History) -> None:
    for view in VIEWS:
        expected = {
            (s.run_id, naive(s.at), s.status, s.source, seconds(s.wall_ms))
            for s in h.summaries.values()
            if s.at > h.now - view.range
        }
        rows = run("workbook:pipeline-runs", view)
        got = [(r["run_id"], r["Finished"], r["Status"], r["Recorded"], r["Wall time (s)"]) for r in rows]
        assert len(got) == len(expected) and set(got) == expected, view
        assert [r["Finished"] for r in rows] == sorted((r["Finished"] for r in rows), reverse=True)


def check_pipeline_run_steps(run: Runner, h: History) -> None:
    pipeline = h.runs["late-intermediate"]
    steps = per_run(
        [s for s in h.statuses.values() if s.pipeline_run_id == pipeline and s.run_id != pipeline]
    )
    rows = run("workbook:pipeline-run-steps", View(DAY, HOUR, pipeline_run=pipeline))
    assert [(r["Step run"], r["Status"], r["Started"]) for r in rows] == sorted(
        ((run_id, latest(items).status, naive(items[0].start)) for (_ws, run_id), items in steps.items()),  # type: ignore[arg-type]
        key=lambda row: row[2],
    )
    assert {r["Status"] for r in rows} == {"Completed"}  # the late Finalizing of a step did not win


def check_processor_health(run: Runner, h: History) -> None:
    rows = run("workbook:processor-invocations", TODAY)
    assert sum(r["Succeeded"] for r in rows) == sum(i.succeeded for i in h.invocations)
    assert sum(r["Failed"] for r in rows) == sum(not i.succeeded for i in h.invocations) > 0
    assert {r["reason"]: r["Rejected"] for r in run("workbook:processor-rejected-by-reason", TODAY)} == dict(
        Counter(h.rejected_reasons)
    )
    assert [r["Reason"] for r in run("workbook:processor-rejected-latest", TODAY)] == h.rejected_reasons


def check_alert_pipeline_failed(run: Runner, h: History) -> None:
    rows = run("alert:pipeline-failed")
    assert [r["run_id"] for r in rows] == [h.runs["live-failure"]]


def check_alert_duration_regression(run: Runner, h: History) -> None:
    rows = run("alert:pipeline-duration-regression")
    baseline = [
        s
        for s in h.summaries.values()
        if s.pipeline == "train"
        and s.status == "Completed"
        and h.now - 2 * DAY < s.at <= h.now - timedelta(minutes=30)
    ]
    assert [(r["run_id"], r["baseline_runs"]) for r in rows] == [(h.runs["live-slow"], len(baseline))]
    assert rows[0]["baseline_p95_s"] == nearest_rank([s.wall_ms for s in baseline], 95) // 1000  # type: ignore[operator]


def check_alert_processor_failures(run: Runner, h: History) -> None:
    assert len(run("alert:processor-failures")) == sum(not i.succeeded for i in h.invocations)


def check_alert_events_rejected(run: Runner, h: History) -> None:
    assert [r["reason"] for r in run("alert:events-rejected")] == h.rejected_reasons


CHECKS: dict[str, Callable[[Runner, History], None]] = {
    "workbook:runs-over-time": check_runs_over_time,
    "workbook:parameter Workspace": check_workspace_parameter,
    "workbook:overview-tiles": check_overview_tiles,
    "workbook:pipeline-durations": check_pipeline_durations,
    "workbook:step-type-durations": check_step_type_durations,
    "workbook:slowest-steps": check_slowest_steps,
    "workbook:failures": check_failures,
    "workbook:queue-by-target": check_queue_by_target,
    "workbook:queue-over-time": check_queue_over_time,
    "workbook:pipeline-runs": check_pipeline_runs,
    "workbook:pipeline-run-steps": check_pipeline_run_steps,
    "workbook:processor-invocations": check_processor_health,
    "alert:pipeline-failed": check_alert_pipeline_failed,
    "alert:pipeline-duration-regression": check_alert_duration_regression,
    "alert:processor-failures": check_alert_processor_failures,
    "alert:events-rejected": check_alert_events_rejected,
}
CHECKED_ELSEWHERE = {"workbook:processor-rejected-by-reason", "workbook:processor-rejected-latest"}


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
    event_times = [e["time"] for e in history.envelopes]
    assert min(event_times) >= history.t0.isoformat()[:19], "every record was sent during the test"


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
        f"| summarize arg_max(status_time, status, execution_time_ms, pipeline, step_type, node_id, target, pipeline_run_id) {KEY}\n",
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
]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[f"{m.origin}: {m.why}" for m in MUTANTS])
def test_a_wrong_query_is_caught(
    mutant: Mutant, run: Runner, history: History, request: pytest.FixtureRequest
) -> None:
    needs(mutant.origin, request)
    assert mutant.old in run.queries.texts[mutant.origin], "the mutant no longer applies to the query"
    with pytest.raises(AssertionError):
        CHECKS[mutant.origin](run.mutated(mutant.origin, mutant.old, mutant.new), history)
