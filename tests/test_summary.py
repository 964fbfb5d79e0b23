"""Pipeline summary math over run history children pages (tests/data/aml/child_runs_*.json, shaped
like the API's paginated run list): reused, failed, canceled and unfinished steps, empty pipelines
and an unavailable listing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amlobs.events import RUN_COMPLETED, RunEvent, parse_event
from amlobs.summary import SUMMARY_FIELDS, needs_summary, summarize_pipeline
from amlobs.tracing import trace_id_for
from tests.test_events import SAMPLE_PIPELINE_EVENT, wire_event

DATA = Path(__file__).parent / "data" / "aml"
PIPELINE_RUN_ID = "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35"


def page(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / f"child_runs_{name}.json").read_text(encoding="utf-8"))
    return loaded


def children(*pages: str) -> Iterator[dict[str, Any]]:
    """The children as a client following continuation tokens yields them: lazily, page by page."""
    for name in pages:
        yield from page(name)["value"]


def ms(text: str) -> int:
    """Epoch milliseconds, computed independently of the code under test."""
    instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def pipeline_event(status: str | None = "Completed", **data: Any) -> RunEvent:
    payload = wire_event(SAMPLE_PIPELINE_EVENT)
    if status is None:
        del payload["data"]["runStatus"]
    else:
        payload["data"]["runStatus"] = status
    payload["data"].update(data)
    return parse_event(payload)


# GET .../runs/{pipelineRunId}: the pipeline run itself (times for wall and queue time).
PIPELINE_RUN: dict[str, Any] = {
    "runId": PIPELINE_RUN_ID,
    "runType": "azureml.PipelineRun",
    "status": "Completed",
    "createdUtc": "2020-06-07T19:15:40.0000000+00:00",
    "startTimeUtc": "2020-06-07T19:15:45.500Z",
    "endTimeUtc": "2020-06-07T19:21:08.000Z",
    "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a7",
    "properties": {"azureml.runsource": "azureml.PipelineRun", "runSource": "Designer"},
    "tags": {"azureml.Designer": "true"},
}


def test_fixture_pages_look_like_the_paginated_run_list() -> None:
    first, last = page("completed_page1"), page("completed_page2")
    assert first["continuationToken"] and last["continuationToken"] is None
    for run in [*first["value"], *last["value"]]:
        assert run["parentRunId"] == PIPELINE_RUN_ID
        assert run["properties"]["azureml.isreused"] in ("true", "false")


def test_completed_pipeline_with_a_reused_step() -> None:
    summary = summarize_pipeline(
        pipeline_event(), PIPELINE_RUN, children("completed_page1", "completed_page2")
    )

    assert summary == {
        "run_id": PIPELINE_RUN_ID,
        "status": "Completed",
        "experimentName": "experimentName",
        "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a7",
        "subscriptions": "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b",
        "resourceGroup": "sample",
        "amlWorkSpace": "sample-ws",
        "event_id": "9168ed-fb6f-5514-a60e-bb503a04",
        "step_count": 5,
        "failed_step_count": 0,
        "canceled_step_count": 0,
        "reused_step_count": 1,
        "unfinished_step_count": 0,
        # sampleStep 111 + train 225 250 + evaluate 49 900 + register 2 500; prep_data was reused
        "steps_execution_time_ms": 111 + 225_250 + 49_900 + 2_500,
        # prep_data's 30 minutes are the earlier run's: the slowest step that ran here is train
        "slowest_step_run_id": "c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
        "slowest_step_name": "train",
        "slowest_step_node_id": "7c8d9e0f",
        "slowest_step_duration_ms": 225_250,
        "wall_time_ms": ms("2020-06-07T19:21:08.000Z") - ms("2020-06-07T19:15:45.500Z"),
        "queue_time_ms": 5_500,
        "start_time_utc_ms": ms("2020-06-07T19:15:45.500Z"),
        "end_time_utc_ms": ms("2020-06-07T19:21:08.000Z"),
        "sub_pipeline_count": 0,
        "pipeline_depth": 1,
        "incomplete_sub_pipeline_count": 0,
        # the pipeline run in the studio (the form azure-ai-ml builds) and its trace's operation_Id
        "studio_url": "https://ml.azure.com/runs/129a171f-bc8d-4e0a-bd51-8fa2e8b94b35?wsid=/subscriptions/"
        "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b/resourcegroups/sample/workspaces/sample-ws",
        "trace_operation_id": f"{trace_id_for(pipeline_event().workspace.cache_key, PIPELINE_RUN_ID):032x}",
    }
    assert summary["wall_time_ms"] == 322_500
    assert set(summary) <= set(SUMMARY_FIELDS)


def test_failed_pipeline_counts_failed_canceled_and_not_started_steps() -> None:
    run = dict(
        PIPELINE_RUN, status="Failed", startTimeUtc="2020-06-08T08:00:00Z", endTimeUtc="2020-06-08T08:01:40Z"
    )
    run["createdUtc"] = "2020-06-08T07:59:59.0000000+00:00"

    summary = summarize_pipeline(pipeline_event("Failed"), run, children("failed"))

    assert summary["status"] == "Failed"
    assert (
        summary["step_count"],
        summary["failed_step_count"],
        summary["canceled_step_count"],
        summary["reused_step_count"],
        summary["unfinished_step_count"],
    ) == (4, 1, 1, 1, 1)
    # The failed step's minute was spent: it counts, and it is the slowest.
    assert summary["steps_execution_time_ms"] == 61_000
    assert summary["slowest_step_run_id"] == "c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e10"
    assert summary["slowest_step_duration_ms"] == 61_000
    assert (summary["wall_time_ms"], summary["queue_time_ms"]) == (100_000, 1_000)


def test_steps_still_running_are_unfinished_and_have_no_duration() -> None:
    run = {k: v for k, v in PIPELINE_RUN.items() if k != "endTimeUtc"}
    run.update(status="Canceled", startTimeUtc="2020-06-09T10:00:01Z", createdUtc="2020-06-09T10:00:00Z")

    summary = summarize_pipeline(pipeline_event("Canceled"), run, children("running"))

    assert (summary["step_count"], summary["unfinished_step_count"]) == (3, 2)
    assert summary["steps_execution_time_ms"] == 40_000  # only prep_data ended
    assert summary["slowest_step_name"] == "prep_data"
    assert "wall_time_ms" not in summary and "end_time_utc_ms" not in summary
    assert summary["queue_time_ms"] == 1_000


def test_empty_pipeline_is_zero_steps_not_unknown() -> None:
    summary = summarize_pipeline(pipeline_event(), PIPELINE_RUN, children("empty"))

    assert {k: summary[k] for k in summary if "step" in k} == {
        "step_count": 0,
        "failed_step_count": 0,
        "canceled_step_count": 0,
        "reused_step_count": 0,
        "unfinished_step_count": 0,
        "steps_execution_time_ms": 0,
    }


def test_unavailable_listing_leaves_step_figures_out() -> None:
    summary = summarize_pipeline(pipeline_event(), PIPELINE_RUN, None, summary_error="children listing: 404")

    assert summary["summary_error"] == "children listing: 404"
    assert not any("step" in key for key in summary)
    assert summary["wall_time_ms"] == 322_500  # what is known is still reported


def test_pipeline_run_not_found_gives_the_event_fields_and_the_error() -> None:
    summary = summarize_pipeline(pipeline_event(), None, None, summary_error="run not found")

    assert summary == {
        "run_id": PIPELINE_RUN_ID,
        "status": "Completed",
        "experimentName": "experimentName",
        "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a7",
        "subscriptions": "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b",
        "resourceGroup": "sample",
        "amlWorkSpace": "sample-ws",
        "event_id": "9168ed-fb6f-5514-a60e-bb503a04",
        "summary_error": "run not found",
        # the run id is known, so is its page; its trace is not (its root run is unknown)
        "studio_url": "https://ml.azure.com/runs/129a171f-bc8d-4e0a-bd51-8fa2e8b94b35?wsid=/subscriptions/"
        "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b/resourcegroups/sample/workspaces/sample-ws",
    }


def test_status_from_the_pipeline_run_when_the_event_has_none() -> None:
    summary = summarize_pipeline(pipeline_event(None), dict(PIPELINE_RUN, status="COMPLETED"), [])
    assert summary["status"] == "Completed"


def test_experiment_from_the_pipeline_run_when_the_event_names_none() -> None:
    # An event may name the experiment by id only; the dashboards group summaries by its name.
    event = pipeline_event(experimentName=None)
    assert event.experiment_name is None and event.experiment_id
    summary = summarize_pipeline(event, dict(PIPELINE_RUN, experimentName="nightly-train"), [])
    assert summary["experimentName"] == "nightly-train"
    assert summary["experimentId"] == event.experiment_id


def test_slowest_step_name_falls_back_to_the_run_name() -> None:
    register = [run for run in page("completed_page2")["value"] if run["name"] == "register"]
    assert register and register[0]["displayName"] is None

    summary = summarize_pipeline(pipeline_event(), PIPELINE_RUN, register)

    assert summary["slowest_step_name"] == "register"
    assert summary["slowest_step_duration_ms"] == 2_500  # its start was written with a +02:00 offset


def test_reused_flag_spelling() -> None:
    base = page("completed_page1")["value"][2]  # train, 225 250 ms
    variants = [
        dict(base, properties=dict(base["properties"], **{"azureml.isreused": flag}))
        for flag in ("True", " true ", "TRUE")
    ]
    summary = summarize_pipeline(pipeline_event(), PIPELINE_RUN, variants)
    assert summary["reused_step_count"] == 3
    assert summary["steps_execution_time_ms"] == 0
    assert "slowest_step_run_id" not in summary


def test_reused_steps_only_have_no_slowest_step() -> None:
    reused = [
        run
        for run in children("completed_page1", "failed")
        if run["properties"]["azureml.isreused"] == "true"
    ]
    summary = summarize_pipeline(pipeline_event(), PIPELINE_RUN, reused)
    assert (summary["step_count"], summary["reused_step_count"], summary["steps_execution_time_ms"]) == (
        2,
        2,
        0,
    )
    assert not any(key.startswith("slowest_") for key in summary)


@pytest.mark.parametrize(
    ("status", "run_type", "expected"),
    [
        ("Completed", "azureml.PipelineRun", True),
        ("Failed", "azureml.PipelineRun", True),
        ("Canceled", "azureml.PipelineRun", True),
        ("cancelled", "azureml.pipelinerun", True),
        ("Running", "azureml.PipelineRun", False),
        ("Finalizing", "azureml.PipelineRun", False),
        ("CancelRequested", "azureml.PipelineRun", False),
        ("Completed", "azureml.StepRun", False),
        ("Completed", "azureml.scriptrun", False),
        ("Completed", None, False),
        (None, "azureml.PipelineRun", False),
    ],
)
def test_needs_summary(status: str | None, run_type: str | None, expected: bool) -> None:
    data: dict[str, Any] = {"runType": run_type}
    assert needs_summary(pipeline_event(status, **data)) is expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        # The event said runType null; run history said pipeline (the enriched record's run_type).
        ({"run_type": "azureml.PipelineRun", "status": "Completed"}, True),
        ({"run_type": "azureml.PipelineRun", "status": "Failed"}, True),
        ({"run_type": "azureml.PipelineRun", "status": "Running"}, False),
        # A nested sub-pipeline is summarised inside its top-level pipeline's summary.
        ({"run_type": "azureml.PipelineRun", "status": "Completed", "parent_run_id": "root"}, False),
        ({"run_type": "automl", "status": "Completed"}, False),
        ({"status": "Completed"}, False),
    ],
)
def test_needs_summary_is_decided_on_the_enriched_record(record: dict[str, Any], expected: bool) -> None:
    assert needs_summary(record) is expected


def test_run_completed_pipeline_event_needs_a_summary() -> None:
    payload = wire_event(SAMPLE_PIPELINE_EVENT, eventType=RUN_COMPLETED)
    del payload["data"]["runStatus"]
    assert needs_summary(parse_event(payload))


# Any selection of children, in any order, with statuses and times changed: the counts add up and
# the time figures are the sum and the maximum of the non-reused steps that ended.
ALL_CHILDREN = [*children("completed_page1", "completed_page2", "failed", "running")]
TIMES = st.none() | st.sampled_from(
    [
        "2020-06-07T19:16:15.869Z",
        "2020-06-07T19:20:05.2500000+00:00",
        "2020-06-07T21:21:05+02:00",
        "garbage",
        "",
    ]
)
child_runs = st.builds(
    lambda base, status, start, end, keep: (
        base if keep else dict(base, status=status, startTimeUtc=start, endTimeUtc=end)
    ),
    st.sampled_from(ALL_CHILDREN),
    st.sampled_from(
        ["Completed", "Failed", "Canceled", "Running", "NotStarted", "queued", "CANCELLED", None, 3]
    ),
    TIMES,
    TIMES,
    st.booleans(),
)


def _duration(run: dict[str, Any]) -> int | None:
    try:
        start, end = ms(run["startTimeUtc"]), ms(run["endTimeUtc"])
    except (TypeError, ValueError, AttributeError):
        return None
    return end - start if end >= start else None


@settings(max_examples=200, deadline=None)
@given(st.lists(child_runs, max_size=12))
def test_summary_counts_add_up(runs: list[dict[str, Any]]) -> None:
    summary = summarize_pipeline(pipeline_event(), PIPELINE_RUN, runs)
    reversed_summary = summarize_pipeline(pipeline_event(), PIPELINE_RUN, list(reversed(runs)))

    assert summary["step_count"] == len(runs)
    assert (
        summary["failed_step_count"] + summary["canceled_step_count"] + summary["unfinished_step_count"]
        <= summary["step_count"]
    )
    ran = [run for run in runs if str(run["properties"]["azureml.isreused"]).lower() != "true"]
    assert summary["reused_step_count"] == len(runs) - len(ran)
    durations = [d for d in map(_duration, ran) if d is not None]
    assert summary["steps_execution_time_ms"] == sum(durations)
    if durations:
        assert summary["slowest_step_duration_ms"] == max(durations)
        # (the same child may be drawn twice with different times: one of them is the slowest)
        assert max(durations) in [
            _duration(run) for run in ran if run["runId"] == summary["slowest_step_run_id"]
        ]
    else:
        assert "slowest_step_duration_ms" not in summary
    for key in ("step_count", "failed_step_count", "canceled_step_count", "reused_step_count"):
        assert reversed_summary[key] == summary[key]
    assert reversed_summary["steps_execution_time_ms"] == summary["steps_execution_time_ms"]
    assert reversed_summary.get("slowest_step_duration_ms") == summary.get("slowest_step_duration_ms")
