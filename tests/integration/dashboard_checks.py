"""What each workbook and alert query must return for the recorded history, one check per query.

A check runs its query through a :class:`Runner` (parameters substituted as the workbook does, the
service's own ``timestamp`` window around it) and compares the rows with the ground truth of
tests/integration/history_scenario.py. The mutants in test_dashboard_history.py run the same checks on
deliberately wrong queries.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.dashboard_sources import expand_workbook_parameters
from tests.integration.history_scenario import DAY, HOUR, HOURLY, History, ResourceUse, Status
from tests.kql_engine import Engine, spans

Rows = list[dict[str, Any]]


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


def kind(run_type: str, parent_run_id: str | None = None) -> str:
    if run_type == "azureml.PipelineRun":  # a nested sub-pipeline is a step of its pipeline run
        return "Pipeline steps" if parent_run_id else "Pipeline runs"
    return "Pipeline steps" if run_type == "azureml.StepRun" else "Other jobs"


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
            tile = tiles[kind(last.run_type, last.parent_run_id)]
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


def run_spans(h: History, table: str, since: datetime) -> dict[tuple[str, str], set[str]]:
    """(workspace, run id) → the itemIds of the run's own span stored in ``table`` (requests: a root
    run, dependencies: any other), among the spans that started after ``since`` (the panel's window)."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in spans(h.envelopes, table):
        dims = row["customDimensions"]
        if dims.get("span_phase") == "run" and row["timestamp"] > naive(since):
            found[(dims["amlWorkSpace"], dims["run_id"])].add(row["itemId"])
    return found


def check_pipeline_runs(run: Runner, h: History) -> None:
    linked = 0
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
        # Each run links to its trace (its root request) when that was sent and began in the range.
        traces = run_spans(h, "requests", h.now - view.range)
        for row in rows:
            items = traces.get((row["Workspace"], row["run_id"]), set())
            assert (row["Trace"] in items) if items else not row["Trace"], (view, row["run_id"])
            linked += bool(items)
    assert 0 < linked < sum(len(run("workbook:pipeline-runs", v)) for v in VIEWS)  # both cases were seen


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
    # Each step links into the pipeline run's trace: its own span (a dependency).
    step_spans = run_spans(h, "dependencies", h.now - 90 * DAY)
    workspace = next(s.workspace for s in h.statuses.values() if s.run_id == pipeline)
    assert all(r["Span"] in step_spans[(workspace, r["Step run"])] for r in rows), rows


def check_processor_health(run: Runner, h: History) -> None:
    rows = run("workbook:processor-invocations", TODAY)
    assert sum(r["Succeeded"] for r in rows) == sum(i.succeeded for i in h.invocations)
    assert sum(r["Failed"] for r in rows) == sum(not i.succeeded for i in h.invocations) > 0
    assert {r["reason"]: r["Rejected"] for r in run("workbook:processor-rejected-by-reason", TODAY)} == dict(
        Counter(h.rejected_reasons)
    )
    assert [r["Reason"] for r in run("workbook:processor-rejected-latest", TODAY)] == h.rejected_reasons


def _money(value: Decimal | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _finished_steps(h: History, view: View) -> dict[tuple[str, str], Status]:
    """Each finished step once (its terminal status) whose status changed in the view's range."""
    return {
        (s.workspace, s.run_id): s
        for s in statuses(h, view)
        if s.terminal and s.run_type != "azureml.PipelineRun"
    }


def check_cost_by_pipeline(run: Runner, h: History) -> None:
    for view in VIEWS:
        expected: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
        for summary in h.summaries.values():
            if summary.at > h.now - view.range and summary.cost is not None:
                expected[(f"{summary.pipeline} (USD)", floor_to(summary.at, view.grain))] += summary.cost
        rows = run("workbook:cost-by-pipeline", view)
        got = {(r["pipeline"], r["status_time"]): r["Cost"] for r in rows}
        assert got.keys() == expected.keys(), view
        for key, total in expected.items():
            assert got[key] == pytest.approx(_money(total), abs=1.5e-4), (view, key)


def check_cost_by_target(run: Runner, h: History) -> None:
    for view in VIEWS:
        groups: dict[tuple[str, str], list[Status]] = defaultdict(list)
        for step in _finished_steps(h, view).values():
            groups[(step.target or "(not reported)", step.compute_target_type or "")].append(step)
        rows = run("workbook:cost-by-target", view)
        got = {(r["Compute target"], r["Target type"]): r for r in rows}
        assert got.keys() == groups.keys(), view
        for key, steps in groups.items():
            row = got[key]
            costs = [s.cost for s in steps if s.cost is not None]
            assert row["Runs"] == len(steps), (view, key)
            assert row["Without estimate"] == len(steps) - len(costs), (view, key)
            if costs:
                assert row["Cost"] == pytest.approx(_money(sum(costs, Decimal(0))), abs=1.5e-4), (view, key)
                assert row["Currency"] == "USD"
            assert bool(row["Why not (one run)"]) == (len(costs) < len(steps)), (view, key)
    # old-ws has no compute resources: its steps on cpu-cluster are counted without estimate, and say why.
    month = {r["Compute target"]: r for r in run("workbook:cost-by-target", MONTH)}
    assert month["cpu-cluster"]["Without estimate"] >= 1
    assert "cpu-cluster was not found in the workspace" in month["cpu-cluster"]["Why not (one run)"]


def check_expensive_pipeline_runs(run: Runner, h: History) -> None:
    for view in VIEWS:
        costed = {
            s.run_id: s for s in h.summaries.values() if s.at > h.now - view.range and s.cost is not None
        }
        rows = run("workbook:expensive-pipeline-runs", view)
        assert len({r["Pipeline run"] for r in rows}) == len(rows), "a pipeline run listed twice"
        top = sorted((_money(s.cost) for s in costed.values()), reverse=True)[:25]  # type: ignore[type-var]
        assert [r["Cost"] for r in rows] == pytest.approx(top, abs=1e-4), view
        for row in rows:
            summary = costed[row["Pipeline run"]]
            assert row["Cost"] == pytest.approx(_money(summary.cost), abs=1e-4)
            assert (row["Finished"], row["Recorded"], row["Currency"]) == (
                naive(summary.at),
                summary.source,
                "USD",
            )


def check_expensive_runs(run: Runner, h: History) -> None:
    for view in VIEWS:
        costed = {s.run_id: s for s in _finished_steps(h, view).values() if s.cost is not None}
        rows = run("workbook:expensive-runs", view)
        assert len({r["Run"] for r in rows}) == len(rows), "a run listed twice"
        top = sorted((_money(s.cost) for s in costed.values()), reverse=True)[:25]  # type: ignore[type-var]
        assert [r["Cost"] for r in rows] == pytest.approx(top, abs=1e-4), view
        for row in rows:
            step = costed[row["Run"]]
            assert row["Cost"] == pytest.approx(_money(step.cost), abs=1e-4)
            assert row["Finished"] == naive(step.at) and row["Status"] == step.status
            assert row["Basis"].startswith(
                f"sku=Standard_{'DS2_v2' if step.target == 'cpu-cluster' else 'NC6s_v3'};"
            )


def check_alert_pipeline_failed(run: Runner, h: History) -> None:
    rows = run("alert:pipeline-failed")
    # The nested sub-pipeline failed live too: its pipeline run alerts, not the sub-pipeline a second time.
    assert sorted(r["run_id"] for r in rows) == sorted(
        [h.runs["live-failure"], h.runs["live-nested-failure"]]
    )
    # Each alert says where and why: the failing step (inside the sub-pipeline or not) and its links.
    by_run = {r["run_id"]: r for r in rows}
    for pipeline, step in (
        ("live-failure", "live-failure-step"),
        ("live-nested-failure", "live-nested-failure-step"),
    ):
        row = by_run[h.runs[pipeline]]
        assert f"/runs/{h.runs[step]}?" in row["failing_step_url"], row
        assert row["failing_step_logs_url"] == row["failing_step_url"] + "#outputsAndLogs"
        assert row["failing_step"] and len(row["trace_operation_id"]) == 32


def check_root_causes(run: Runner, h: History) -> None:
    for view in VIEWS:
        expected = {
            (s.run_id, naive(s.at), s.source)
            for s in h.summaries.values()
            if s.status in ("Failed", "Canceled") and s.at > h.now - view.range
        }
        rows = run("workbook:pipeline-root-causes", view)
        assert (
            len(rows) == len(expected)
            and {(r["Pipeline run"], r["Finished"], r["Recorded"]) for r in rows} == expected
        ), view
        assert [r["Finished"] for r in rows] == sorted((r["Finished"] for r in rows), reverse=True)
    rows = {r["Pipeline run"]: r for r in run("workbook:pipeline-root-causes", TODAY)}
    for pipeline, step in (
        ("live-failure", "live-failure-step"),
        ("live-nested-failure", "live-nested-failure-step"),
    ):
        row = rows[h.runs[pipeline]]
        assert f"/runs/{h.runs[step]}?" in row["Step in studio"], row
        assert row["Step logs"] == row["Step in studio"] + "#outputsAndLogs"
        assert row["Failing step"], row


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


def check_alert_cost_regression(run: Runner, h: History) -> None:
    rows = run("alert:pipeline-cost-regression")
    baseline = [
        s
        for s in h.summaries.values()
        if s.pipeline == "train"
        and s.status == "Completed"
        and s.cost is not None
        and h.now - 2 * DAY < s.at <= h.now - timedelta(minutes=30)
    ]
    # The slow run recorded live fires; the backfilled and the replayed ones just as expensive do not.
    assert [(r["run_id"], r["baseline_runs"]) for r in rows] == [(h.runs["live-slow"], len(baseline))]
    p95 = nearest_rank([s.cost for s in baseline], 95)  # type: ignore[misc]
    assert rows[0]["baseline_p95_cost"] == pytest.approx(_money(p95), abs=1e-4)  # type: ignore[arg-type]
    expensive = {h.runs["backfilled-slow"], h.runs["replayed-slow"]}
    assert all(
        h.summaries[(s.workspace, s.run_id)].cost > p95 * Decimal("1.5")
        for s in h.summaries.values()
        if s.run_id in expensive
    )  # type: ignore[operator]


def check_alert_processor_failures(run: Runner, h: History) -> None:
    assert len(run("alert:processor-failures")) == sum(not i.succeeded for i in h.invocations)


def check_alert_events_rejected(run: Runner, h: History) -> None:
    assert [r["reason"] for r in run("alert:events-rejected")] == h.rejected_reasons


def _uses(h: History, view: View) -> list[ResourceUse]:
    return [
        u
        for u in h.resource_uses.values()
        if u.at > h.now - view.range and (not view.workspaces or u.workspace in view.workspaces)
    ]


def check_efficiency_gpu_by_pipeline(run: Runner, h: History) -> None:
    for view in VIEWS:
        groups: dict[tuple[str, str, str], list[ResourceUse]] = defaultdict(list)
        for use in _uses(h, view):
            if use.gpu:
                groups[(use.pipeline, use.step, use.target)].append(use)
        rows = run("workbook:efficiency-gpu-by-pipeline", view)
        got = {(r["Pipeline"], r["Step"], r["Compute target"]): r for r in rows}
        assert got.keys() == groups.keys(), view
        for key, uses in groups.items():
            row = got[key]
            samples = [value for use in uses for value in use.gpu]  # node-minutes, not runs, weigh in
            assert row["Runs"] == len(uses), key
            assert row["GPU utilisation (%)"] == pytest.approx(round(sum(samples) / len(samples), 1)), key
            assert row["Idle GPU cost"] == pytest.approx(
                _money(sum((u.idle_gpu for u in uses), Decimal(0))), abs=1.5e-4
            )  # type: ignore[misc]
            assert row["Cost"] == pytest.approx(_money(sum((u.cost for u in uses), Decimal(0))), abs=1.5e-4)  # type: ignore[misc]
            assert row["Currency"] == "USD"
    assert len(h.resource_uses) >= 8 and any(len(u.gpu) > 100 for u in h.resource_uses.values())


def check_efficiency_idle_gpu_runs(run: Runner, h: History) -> None:
    for view in VIEWS:
        idle = {u.run_id: u for u in _uses(h, view) if u.idle_gpu is not None}
        rows = run("workbook:efficiency-idle-gpu-runs", view)
        assert len({r["Run"] for r in rows}) == len(rows), "a run listed twice"
        top = sorted((_money(u.idle_gpu) for u in idle.values()), reverse=True)[:25]  # type: ignore[type-var]
        assert [r["Idle GPU cost"] for r in rows] == pytest.approx(top, abs=1e-4), view
        for row in rows:
            use = idle[row["Run"]]
            assert row["GPU utilisation (%)"] == pytest.approx(round(use.gpu_avg, 1))  # type: ignore[arg-type]
            assert (row["Finished"], row["Compute target"], row["Nodes"]) == (naive(use.at), use.target, 1)
            assert row["Most busy node"] == row["Least busy node"] == "node-0"
    assert run("workbook:efficiency-idle-gpu-runs", TODAY)[0]["Run"] == h.runs["idle-gpu-long"]


def check_efficiency_idle_by_target(run: Runner, h: History) -> None:
    for view in VIEWS:
        groups: dict[str, list[ResourceUse]] = defaultdict(list)
        for use in _uses(h, view):
            if use.outcome == "measured":
                groups[use.target].append(use)
        rows = run("workbook:efficiency-idle-by-target", view)
        got = {r["Compute target"]: r for r in rows}
        assert got.keys() == groups.keys(), view
        for target, uses in groups.items():
            row = got[target]
            gpu = [u.idle_gpu for u in uses if u.idle_gpu is not None]
            cpu = [u.idle_cpu for u in uses if u.idle_cpu is not None]
            assert row["Runs"] == len(uses), target
            # sum() over no value is 0 in Kusto: a CPU cluster shows 0 idle GPU cost.
            assert (row["Idle GPU cost"] or 0) == pytest.approx(_money(sum(gpu, Decimal(0))), abs=1.5e-4), row
            assert (row["Idle CPU cost"] or 0) == pytest.approx(_money(sum(cpu, Decimal(0))), abs=1.5e-4), row
            assert row["Without idle cost"] == len(uses) - len(gpu) - len(cpu)


def check_efficiency_idle_by_pipeline_run(run: Runner, h: History) -> None:
    for view in VIEWS:
        groups: dict[str, list[ResourceUse]] = defaultdict(list)
        for use in _uses(h, view):
            if use.outcome == "measured":
                groups[use.pipeline_run_id].append(use)
        rows = run("workbook:efficiency-idle-by-pipeline-run", view)
        got = {r["Pipeline run"]: r for r in rows}
        assert got.keys() == groups.keys(), view
        for pipeline_run, uses in groups.items():
            row = got[pipeline_run]
            idle = [u.idle_gpu or u.idle_cpu for u in uses if (u.idle_gpu or u.idle_cpu) is not None]
            assert row["Steps"] == len(uses)
            total = (row["Idle GPU cost"] or 0) + (row["Idle CPU cost"] or 0)
            assert total == pytest.approx(_money(sum(idle, Decimal(0))), abs=2e-4), pipeline_run  # type: ignore[arg-type]


def check_efficiency_missing(run: Runner, h: History) -> None:
    for view in VIEWS:
        expected = Counter(u.outcome for u in _uses(h, view) if u.idle_gpu is None and u.idle_cpu is None)
        rows = run("workbook:efficiency-missing", view)
        assert {r["Outcome"]: r["Runs"] for r in rows} == dict(expected), view
        assert {"too_short", "no_data"} <= set(expected)
        reasons = {r["Outcome"]: r["Why (one run)"] for r in rows}
        assert reasons["too_short"] == "no idle cost: the run lasted 20 s, less than one sample (PT1M)"


def check_efficiency_idle_clusters(run: Runner, h: History) -> None:
    for view in VIEWS:
        expected = {
            (workspace, cluster, day): hours
            for (workspace, cluster, day), hours in h.idle_days.items()
            # placed at the end of its day
            if datetime.fromisoformat(day).replace(tzinfo=UTC) + DAY > h.now - view.range
        }
        rows = run("workbook:efficiency-idle-clusters", view)
        got = {(r["Workspace"], r["Cluster"], r["Day"]): r for r in rows}
        assert got.keys() == expected.keys(), view
        for (_ws, cluster, _day), hours in expected.items():
            row = got[(_ws, cluster, _day)]
            hourly = HOURLY[("sample-ws", cluster)]
            assert row["Idle node-hours"] == pytest.approx(hours)
            assert row["Idle cost"] == pytest.approx(_money(hourly * Decimal(str(hours))), abs=1e-4)
    assert len(run("workbook:efficiency-idle-clusters", TODAY)) < len(
        run("workbook:efficiency-idle-clusters", MONTH)
    )


def check_alert_idle_gpu(run: Runner, h: History) -> None:
    rows = run("alert:expensive-idle-gpu-run")
    # The long GPU step (cost above 1, 20 % busy) fires once; the cheap one at 5 % and the busy one do not.
    assert [r["run_id"] for r in rows] == [h.runs["idle-gpu-long"]]
    use = h.resource_uses[("sample-ws", h.runs["idle-gpu-long"])]
    assert rows[0]["gpu_utilization_avg"] == pytest.approx(20.0)
    assert rows[0]["idle_gpu_cost"] == pytest.approx(_money(use.idle_gpu), abs=1e-4)
    cheap = h.resource_uses[("sample-ws", h.runs["idle-gpu-cheap"])]
    assert cheap.gpu_avg is not None and cheap.gpu_avg < 30 and cheap.cost is not None and cheap.cost < 1


CHECKS: dict[str, Callable[[Runner, History], None]] = {
    "workbook:runs-over-time": check_runs_over_time,
    "workbook:parameter Workspace": check_workspace_parameter,
    "workbook:overview-tiles": check_overview_tiles,
    "workbook:pipeline-durations": check_pipeline_durations,
    "workbook:step-type-durations": check_step_type_durations,
    "workbook:slowest-steps": check_slowest_steps,
    "workbook:failures": check_failures,
    "workbook:pipeline-root-causes": check_root_causes,
    "workbook:queue-by-target": check_queue_by_target,
    "workbook:queue-over-time": check_queue_over_time,
    "workbook:pipeline-runs": check_pipeline_runs,
    "workbook:pipeline-run-steps": check_pipeline_run_steps,
    "workbook:processor-invocations": check_processor_health,
    "alert:pipeline-failed": check_alert_pipeline_failed,
    "alert:pipeline-duration-regression": check_alert_duration_regression,
    "alert:pipeline-cost-regression": check_alert_cost_regression,
    "workbook:cost-by-pipeline": check_cost_by_pipeline,
    "workbook:cost-by-target": check_cost_by_target,
    "workbook:expensive-pipeline-runs": check_expensive_pipeline_runs,
    "workbook:expensive-runs": check_expensive_runs,
    "alert:processor-failures": check_alert_processor_failures,
    "alert:events-rejected": check_alert_events_rejected,
    "alert:expensive-idle-gpu-run": check_alert_idle_gpu,
    "workbook:efficiency-gpu-by-pipeline": check_efficiency_gpu_by_pipeline,
    "workbook:efficiency-idle-gpu-runs": check_efficiency_idle_gpu_runs,
    "workbook:efficiency-idle-by-target": check_efficiency_idle_by_target,
    "workbook:efficiency-idle-by-pipeline-run": check_efficiency_idle_by_pipeline_run,
    "workbook:efficiency-missing": check_efficiency_missing,
    "workbook:efficiency-idle-clusters": check_efficiency_idle_clusters,
}
# The reconciler's sections and rule run on their own scenarios (tests/integration/test_reconciler_*.py).
CHECKED_ELSEWHERE = {
    "workbook:processor-rejected-by-reason",
    "workbook:processor-rejected-latest",
    "workbook:schedules-overview",
    "workbook:schedule-misses",
    "workbook:reconciler-passes",
    "workbook:reconciler-problems",
    "alert:schedule-missed-or-late",
}
