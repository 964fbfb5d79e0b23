"""Spans through the real exporter to the ingestion fake: the private provider builds exactly the planned
span, whatever the worker's own OpenTelemetry state, and leaves the global providers alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace

from amlobs.telemetry import AzureMonitorTelemetry
from amlobs.tracing import operation_of, traced_unit
from tests.fakes.ingestion import EVENT_ENVELOPE, IngestionServer
from tests.trace_scenario import spans_from

HOUR_MS = 3_600_000


@pytest.fixture
def sink(ingestion_server: IngestionServer) -> Iterator[AzureMonitorTelemetry]:
    telemetry = AzureMonitorTelemetry(ingestion_server.connection_string)
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


def record(run_id: str, **changes: str | int) -> dict[str, str | int]:
    now = int(time.time() * 1000)
    values: dict[str, str | int] = {
        "run_id": run_id,
        "status": "Completed",
        "experimentName": "churn",
        "subscriptions": "11111111-1111-1111-1111-111111111111",
        "resourceGroup": "rg-ml",
        "amlWorkSpace": "ws1",
        "created_time_utc_ms": now - 2 * HOUR_MS,
        "start_time_utc_ms": now - 2 * HOUR_MS + 30_000,
        "end_time_utc_ms": now - HOUR_MS,
        "compute_name": "cpu-cluster",
    }
    values.update(changes)
    return values


def test_a_span_started_inside_a_span_of_the_worker_keeps_its_derived_ids_and_parent(
    sink: AzureMonitorTelemetry, ingestion_server: IngestionServer
) -> None:
    # The Functions worker may run our code inside its own span: neither our root nor our records
    # may become part of its trace.
    from opentelemetry.sdk.trace import TracerProvider

    worker = TracerProvider(shutdown_on_exit=False).get_tracer("functions-worker")
    pipeline = record("pipe-1")
    step = record("step-1", parent_run_id="pipe-1", root_run_id="pipe-1", step_name="train")
    with trace.use_span(worker.start_span("invocation"), end_on_exit=True):
        sink.send(traced_unit(pipeline))
        sink.send(traced_unit(step))

    spans = {(s.run_id, s.phase): s for s in spans_from(ingestion_server.envelopes)}
    root, child = spans[("pipe-1", "run")], spans[("step-1", "run")]
    expected_root = operation_of(pipeline)
    assert expected_root is not None
    assert (root.trace_id, root.span_id, root.parent_id) == (
        expected_root.operation_id,
        expected_root.parent_id,
        None,
    )
    assert (child.trace_id, child.parent_id) == (root.trace_id, root.span_id)
    assert spans[("step-1", "queue")].parent_id == child.span_id
    # The records sit under their runs' spans, not under the worker's span.
    placed = {
        e["data"]["baseData"]["properties"]["run_id"]: (
            e["tags"]["ai.operation.id"],
            e["tags"]["ai.operation.parentId"],
        )
        for e in ingestion_server.envelopes
        if e["name"] == EVENT_ENVELOPE
    }
    assert placed == {"pipe-1": (root.trace_id, root.span_id), "step-1": (root.trace_id, child.span_id)}


def test_the_environment_s_sampler_cannot_drop_a_span_and_no_global_provider_is_set(
    sink: AzureMonitorTelemetry, ingestion_server: IngestionServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    global_provider = trace.get_tracer_provider()

    sink.send(traced_unit(record("run-1")))

    assert {s.phase for s in spans_from(ingestion_server.envelopes)} == {"run", "queue"}
    assert trace.get_tracer_provider() is global_provider  # still the process's (proxy) provider


def test_a_failed_run_is_a_failed_span_with_its_error_code(
    sink: AzureMonitorTelemetry, ingestion_server: IngestionServer
) -> None:
    sink.send(traced_unit(record("run-1", status="Failed", error_code="UserError", error_message="boom")))
    [run] = [s for s in spans_from(ingestion_server.envelopes) if s.phase == "run"]
    assert run.kind == "request" and not run.success
    assert (run.properties["error_code"], run.properties["error_message"]) == ("UserError", "boom")
    assert run.role == "azureml.ws1"
