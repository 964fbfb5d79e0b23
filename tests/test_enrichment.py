"""Which run history calls a record and a pipeline summary cost, on an in-memory run history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from amlobs.enrichment import MAX_PIPELINE_DEPTH, fetch_run_answers, list_pipeline
from amlobs.errors import RunNotFound
from amlobs.events import WorkspaceRef
from amlobs.summary import summarize_pipeline
from tests.fakes.aml_data import load_kind
from tests.test_summary import pipeline_event

WS = WorkspaceRef("sub", "rg", "ws")


class MemoryRuns:
    """Run history as dicts; records every call; ``missing`` answers 404."""

    def __init__(self, runs: dict[str, dict[str, Any]], details: dict[str, dict[str, Any]]) -> None:
        self.runs, self.details = runs, details
        self.definitions: dict[str, Any] = {}
        self.missing: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str]] = []

    def _call(self, name: str, run_id: str) -> None:
        self.calls.append((name, run_id))
        if (name, run_id) in self.missing or run_id not in self.runs:
            raise RunNotFound(f"{name} {run_id}: HTTP 404")

    def get_run_details(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]:
        self._call("details", run_id)
        return self.details[run_id]

    def get_run(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]:
        self._call("run", run_id)
        return self.runs[run_id]

    def get_run_data(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]:
        self._call("rundata", run_id)
        return {"runMetadata": self.runs[run_id], "runDefinition": self.definitions.get(run_id)}

    def iter_children(self, ws: WorkspaceRef, run_id: str) -> Iterator[dict[str, Any]]:
        self._call("children", run_id)
        yield from (r for r in self.runs.values() if r.get("parentRunId") == run_id)


def _kind(name: str) -> MemoryRuns:
    kind = load_kind(name)
    runs = MemoryRuns(
        {e["run"]["runId"]: e["run"] for e in kind["runs"]},
        {e["run"]["runId"]: e["details"] for e in kind["runs"]},
    )
    runs.definitions = {e["run"]["runId"]: e.get("definition") for e in kind["runs"]}
    return runs


def test_a_v2_run_reads_its_definition_from_run_data_in_place_of_the_run() -> None:
    runs = _kind("v2_pipeline")
    answers = fetch_run_answers(runs, WS, "7a5d9290-d4e1-4d9a-98c8-b0078a5bca04")
    assert runs.calls == [
        ("details", "7a5d9290-d4e1-4d9a-98c8-b0078a5bca04"),
        ("rundata", "7a5d9290-d4e1-4d9a-98c8-b0078a5bca04"),
    ]
    assert answers.definition_source == "rundata"
    assert answers.definition is not None and answers.definition["script"] is None
    assert answers.run is not None and answers.run["computeDuration"] == "00:00:10.4548575"


def test_a_v1_run_with_its_definition_in_details_costs_no_run_data_call() -> None:
    run = {"runId": "v1", "status": "Completed"}
    runs = MemoryRuns({"v1": run}, {"v1": {"runId": "v1", "runDefinition": {"script": "train.py"}}})
    answers = fetch_run_answers(runs, WS, "v1")
    assert runs.calls == [("details", "v1"), ("run", "v1")]
    assert answers.definition_source == "details"


def test_run_data_refused_falls_back_to_the_run_without_a_definition() -> None:
    runs = MemoryRuns({"r": {"runId": "r"}}, {"r": {"runId": "r", "runDefinition": None}})
    runs.missing.add(("rundata", "r"))
    answers = fetch_run_answers(runs, WS, "r")
    assert runs.calls == [("details", "r"), ("rundata", "r"), ("run", "r")]
    assert answers.run == {"runId": "r"} and answers.definition is None


def test_a_run_gone_before_its_details_is_not_found() -> None:
    with pytest.raises(RunNotFound):
        fetch_run_answers(MemoryRuns({}, {}), WS, "gone")


def _chain(depth: int) -> MemoryRuns:
    """Pipelines p1 > p2 > ... > p{depth}, each with one step s{n}."""
    runs: dict[str, dict[str, Any]] = {}
    for level in range(1, depth + 1):
        parent = f"p{level - 1}" if level > 1 else None
        runs[f"p{level}"] = {"runId": f"p{level}", "runType": "azureml.PipelineRun", "parentRunId": parent}
        runs[f"s{level}"] = {
            "runId": f"s{level}",
            "runType": "azureml.StepRun",
            "parentRunId": f"p{level}",
            "status": "Completed",
        }
    return MemoryRuns(runs, {})


def test_nested_pipelines_are_listed_down_to_the_depth_limit_and_the_rest_is_named() -> None:
    runs = _chain(MAX_PIPELINE_DEPTH + 2)
    listing = list_pipeline(runs, WS, "p1")

    listed = [run_id for name, run_id in runs.calls if name == "children"]
    assert listed == [f"p{n}" for n in range(1, MAX_PIPELINE_DEPTH + 1)]
    summary = summarize_pipeline(pipeline_event(), None, listing)
    assert summary["pipeline_depth"] == MAX_PIPELINE_DEPTH
    assert summary["step_count"] == MAX_PIPELINE_DEPTH
    assert summary["sub_pipeline_count"] == MAX_PIPELINE_DEPTH  # p2..p5 listed, p6 found but not listed
    assert summary["incomplete_sub_pipeline_count"] == 1
    assert f"p{MAX_PIPELINE_DEPTH + 1}" in summary["summary_error"]
    assert f"deeper than {MAX_PIPELINE_DEPTH} levels" in summary["summary_error"]


def test_a_flat_pipeline_is_one_listing_call() -> None:
    runs = _chain(1)
    summary = summarize_pipeline(pipeline_event(), None, list_pipeline(runs, WS, "p1"))
    assert runs.calls == [("children", "p1")]
    assert (summary["step_count"], summary["sub_pipeline_count"], summary["pipeline_depth"]) == (1, 0, 1)


def test_the_steps_of_a_nested_listing_are_the_ones_the_summary_counts() -> None:
    # One definition of "the pipeline's steps" serves the summary's step figures and the cost sum
    # (amlobs.cost_estimator adds up listing.steps()): the two always count the same runs.
    runs = _chain(MAX_PIPELINE_DEPTH + 2)
    listing = list_pipeline(runs, WS, "p1")

    steps = [step["runId"] for step in listing.steps()]

    # s1 first, then the steps of p2, p3, ...: listing order, depth first; p6's step is below the limit.
    assert steps == [f"s{n}" for n in range(1, MAX_PIPELINE_DEPTH + 1)]
    assert summarize_pipeline(pipeline_event(), None, listing)["step_count"] == len(steps)
