"""amlobs.tracing: which spans a record owes its trace, with which ids, times and attributes (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amlobs.telemetry_unit import TelemetryUnit
from amlobs.tracing import (
    CLAMPED_ATTRIBUTE,
    SPAN_DIMENSIONS,
    Operation,
    SpanPlan,
    add_trace,
    operation_of,
    plan_trace,
    span_id_for,
    trace_id_for,
    traced_unit,
)

HOUR_MS = 3_600_000
NOW = 1_800_000_000_000
WS_KEY = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourcegroups/rg-ml"
    "/providers/microsoft.machinelearningservices/workspaces/ws1"
)
STEP: dict[str, str | int] = {
    "run_id": "step-1",
    "status": "Completed",
    "run_type": "azureml.StepRun",
    "experimentName": "churn",
    "subscriptions": "11111111-1111-1111-1111-111111111111",
    "resourceGroup": "rg-ml",
    "amlWorkSpace": "ws1",
    "parent_run_id": "pipe-1",
    "root_run_id": "pipe-1",
    "step_name": "train",
    "node_id": "a394d261",
    "compute_name": "cpu-cluster",
    "target": "cpu-cluster",
    "created_time_utc_ms": NOW - 2 * HOUR_MS,
    "start_time_utc_ms": NOW - 2 * HOUR_MS + 60_000,
    "end_time_utc_ms": NOW - HOUR_MS,
    "record_source": "live",
}
PIPELINE = {
    **{k: v for k, v in STEP.items() if k not in ("parent_run_id", "step_name", "node_id")},
    "run_id": "pipe-1",
    "run_type": "azureml.PipelineRun",
}


def step(**changes: Any) -> dict[str, str | int]:
    record = {**STEP, **changes}
    return {k: v for k, v in record.items() if v is not None}


def only(plan_spans: tuple[SpanPlan, ...], phase: str) -> SpanPlan:
    [found] = [s for s in plan_spans if s.attributes["span_phase"] == phase]
    return found


def test_ids_are_derived_from_the_workspace_and_the_run_ids() -> None:
    plan = plan_trace(STEP, now_ms=NOW)
    run, queue = only(plan.spans, "run"), only(plan.spans, "queue")
    assert run.trace_id == trace_id_for(WS_KEY, "pipe-1")
    assert run.span_id == span_id_for(WS_KEY, "step-1")
    assert run.parent_span_id == span_id_for(WS_KEY, "pipe-1")
    assert queue.parent_span_id == run.span_id and queue.trace_id == run.trace_id
    # The pipeline's own span is the step's parent, whichever arrives first, on any instance.
    [pipeline] = [s for s in plan_trace(PIPELINE, now_ms=NOW).spans if s.attributes["span_phase"] == "run"]
    assert (pipeline.trace_id, pipeline.span_id, pipeline.parent_span_id) == (
        run.trace_id,
        run.parent_span_id,
        None,
    )
    assert pipeline.root and not run.root
    # The same run in another workspace is another trace.
    other = plan_trace(step(amlWorkSpace="ws2"), now_ms=NOW)
    assert only(other.spans, "run").trace_id != run.trace_id
    # And the record of each status of the run sits under the run's span.
    assert operation_of(STEP) == Operation(run.trace_id, run.span_id)
    assert operation_of(step(status="Running")) == operation_of(STEP)


@given(st.text(min_size=1, max_size=80), st.text(min_size=1, max_size=80))
def test_derived_ids_are_valid_opentelemetry_ids(workspace: str, run_id: str) -> None:
    assert 0 < trace_id_for(workspace, run_id) < 2**128
    assert 0 < span_id_for(workspace, run_id) < 2**64
    assert span_id_for(workspace, run_id) != span_id_for(workspace, run_id, "queue")


def test_a_finished_step_spans_its_own_start_and_end_with_its_queue_time_before() -> None:
    plan = plan_trace(STEP, now_ms=NOW)
    run, queue = only(plan.spans, "run"), only(plan.spans, "queue")
    assert (run.start_ms, run.end_ms) == (STEP["start_time_utc_ms"], STEP["end_time_utc_ms"])
    assert (queue.start_ms, queue.end_ms) == (STEP["created_time_utc_ms"], STEP["start_time_utc_ms"])
    assert (run.name, queue.name) == ("train", "Queued")
    assert run.error is None and plan.skipped == ()
    assert run.attributes["peer.service"] == "cpu-cluster"  # the dependency's target
    assert run.attributes["az.namespace"] == "Microsoft.MachineLearningServices"


def test_the_pipeline_run_is_the_root_named_after_its_experiment() -> None:
    [run, _queue] = plan_trace(PIPELINE, now_ms=NOW).spans
    assert run.root and run.name == "churn" and run.parent_span_id is None
    assert "az.namespace" not in run.attributes  # a request, not a dependency


@pytest.mark.parametrize(
    ("changes", "spans"),
    [
        ({"status": "Running"}, 0),
        ({"status": "Queued"}, 0),
        ({"status": "Failed"}, 2),
        ({"status": "Canceled"}, 2),
        # NotResponding: only when run history says the run ended there.
        ({"status": "NotResponding"}, 0),
    ],
)
def test_only_finished_runs_get_spans(changes: dict[str, Any], spans: int) -> None:
    assert len(plan_trace(step(**changes), now_ms=NOW).spans) == spans


def test_a_run_that_ended_not_responding_gets_its_span_marked_as_an_error() -> None:
    record = step(status="NotResponding")
    assert plan_trace(record, now_ms=NOW, current_status="Running").spans == ()
    run = only(plan_trace(record, now_ms=NOW, current_status="NotResponding").spans, "run")
    assert run.error == "NotResponding"
    assert (
        plan_trace(
            step(status="NotResponding", end_time_utc_ms=None), now_ms=NOW, current_status="NotResponding"
        ).spans
        == ()
    )


def test_a_failed_run_carries_its_error_code_in_a_kept_attribute() -> None:
    record = step(status="Failed", error_code="CommonRuntimeJobError", error_category="ServiceError")
    run = only(plan_trace(record, now_ms=NOW).spans, "run")
    assert run.error == "CommonRuntimeJobError"
    assert run.attributes["error_code"] == "CommonRuntimeJobError"
    assert run.attributes["error_category"] == "ServiceError"
    assert only(plan_trace(step(status="Failed"), now_ms=NOW).spans, "run").error == "Failed"


def test_a_reused_step_is_marked_and_has_no_queue_span() -> None:
    start = NOW - HOUR_MS
    record = step(
        is_reused="true", created_time_utc_ms=start, start_time_utc_ms=start, end_time_utc_ms=start + 48
    )
    [run] = plan_trace(record, now_ms=NOW).spans
    assert run.name == "train (reused)" and run.end_ms - run.start_ms == 48
    assert run.attributes["is_reused"] == "true"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"enrichment_error": "run not found"}, "run_not_found"),
        ({"root_run_id": None}, "root_run_unknown"),
        ({"start_time_utc_ms": None, "created_time_utc_ms": None, "end_time_utc_ms": None}, "times_unknown"),
    ],
)
def test_a_span_that_cannot_be_placed_is_skipped_and_says_why(changes: dict[str, Any], reason: str) -> None:
    plan = plan_trace(step(**changes), now_ms=NOW)
    assert plan.spans == () and [s.reason for s in plan.skipped] == [reason]


def test_a_run_that_never_started_spans_its_queue_only_and_one_that_says_only_its_end_is_a_point() -> None:
    [run] = plan_trace(step(status="Canceled", start_time_utc_ms=None), now_ms=NOW).spans
    assert (run.start_ms, run.end_ms) == (STEP["created_time_utc_ms"], STEP["end_time_utc_ms"])
    [point] = plan_trace(step(start_time_utc_ms=None, created_time_utc_ms=None), now_ms=NOW).spans
    assert point.start_ms == point.end_ms == STEP["end_time_utc_ms"]


# --------------------------------------------------------------------------------------------------
# Ingestion's window: 48 h back, 2 h ahead, an hour of margin each side


def times(created: int, start: int, end: int) -> dict[str, str | int]:
    return step(created_time_utc_ms=created, start_time_utc_ms=start, end_time_utc_ms=end)


def test_a_run_inside_the_window_is_sent_as_it_ran() -> None:
    edge = NOW - 47 * HOUR_MS
    plan = plan_trace(times(edge, edge, edge + 1), now_ms=NOW)
    assert {s.start_ms for s in plan.spans} == {edge} and plan.skipped == ()
    assert all(CLAMPED_ATTRIBUTE not in s.attributes for s in plan.spans)


def test_a_run_that_started_before_the_window_and_ended_inside_it_is_clamped_and_says_so() -> None:
    edge = NOW - 47 * HOUR_MS
    start = NOW - 72 * HOUR_MS
    plan = plan_trace(times(start - 60_000, start, NOW - HOUR_MS), now_ms=NOW)
    [run] = plan.spans
    assert (run.start_ms, run.end_ms) == (edge, NOW - HOUR_MS)
    assert (
        run.attributes[CLAMPED_ATTRIBUTE] == "2027-01-12T08:00:00.000Z"
    )  # the real start (NOW is 2027-01-15T08:00Z)
    assert run.attributes["start_time_utc_ms"] == start
    assert [(s.key, s.reason) for s in plan.skipped] == [("step-1/queue", "ended_before_ingestion_window")]


def test_a_run_that_ended_before_the_window_is_not_sent() -> None:
    end = NOW - 47 * HOUR_MS - 1
    plan = plan_trace(times(end - 10, end - 5, end), now_ms=NOW)
    assert plan.spans == ()
    assert [s.reason for s in plan.skipped] == ["ended_before_ingestion_window"] * 2


def test_a_run_that_starts_more_than_an_hour_ahead_of_this_clock_is_not_sent() -> None:
    start = NOW + HOUR_MS + 1
    plan = plan_trace(times(NOW, start, start + 5), now_ms=NOW)
    assert [s.key for s in plan.spans] == ["step-1/queue"]
    assert [s.reason for s in plan.skipped] == ["starts_after_ingestion_window"]


@given(
    st.integers(min_value=NOW - 90 * 24 * HOUR_MS, max_value=NOW + 3 * HOUR_MS),
    st.integers(min_value=0, max_value=10 * 24 * HOUR_MS),
)
def test_no_span_is_ever_planned_outside_what_ingestion_accepts(start: int, length: int) -> None:
    plan = plan_trace(times(start - 1000, start, start + length), now_ms=NOW)
    for span in plan.spans:
        assert NOW - 48 * HOUR_MS < span.start_ms < NOW + 2 * HOUR_MS  # ingestion's limits, with margin
        assert span.start_ms <= span.end_ms
    assert len(plan.spans) + len(plan.skipped) == 2


# --------------------------------------------------------------------------------------------------
# Into the unit


def test_the_unit_holds_the_record_placed_in_the_trace_the_spans_and_the_count_of_skipped_ones() -> None:
    unit = traced_unit(STEP, now_ms=NOW)
    [event] = [i for i in unit.items if i.kind == "event"]
    assert event.operation == operation_of(STEP)
    assert sorted(i.key for i in unit.items if i.kind == "span") == ["span:step-1", "span:step-1/queue"]
    assert not [i for i in unit.items if i.name == "aml_trace_spans_skipped"]

    old = traced_unit(times(NOW - 52 * HOUR_MS, NOW - 51 * HOUR_MS, NOW - 50 * HOUR_MS), now_ms=NOW)
    [counter] = [i for i in old.items if i.name == "aml_trace_spans_skipped"]
    assert (counter.kind, counter.value, counter.dimensions) == (
        "counter",
        2,
        {"reason": "ended_before_ingestion_window"},
    )
    assert not [i for i in old.items if i.kind == "span"]


def test_a_copy_that_may_duplicate_an_earlier_send_says_so_on_its_spans_too() -> None:
    unit = TelemetryUnit()
    add_trace(unit, STEP, now_ms=NOW, maybe_duplicate=True)
    assert all(
        isinstance(s, SpanPlan) and s.attributes["delivery_maybe_duplicate"] == "true" for s in unit.spans
    )


def test_no_span_attribute_is_one_the_exporter_keeps_out_of_custom_dimensions() -> None:
    # azure-monitor-opentelemetry-exporter drops standard OpenTelemetry names from customDimensions
    # (error.type, exception.*, code.*, …): the error code must not be under one of them.
    from azure.monitor.opentelemetry.exporter.export.trace import _exporter

    dropped_prefixes = tuple(_exporter._STANDARD_OPENTELEMETRY_ATTRIBUTE_PREFIXES)
    dropped = set(_exporter._STANDARD_OPENTELEMETRY_HTTP_ATTRIBUTES) | set(
        _exporter._STANDARD_OPENTELEMETRY_ATTRIBUTES
    )
    assert "error.type" in dropped and "exception." in dropped_prefixes  # the lists are the right ones
    kept = {k for k in SPAN_DIMENSIONS if not k.startswith(dropped_prefixes) and k not in dropped}
    assert kept == SPAN_DIMENSIONS
