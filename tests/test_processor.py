"""The processor's own rules with the in-process stores and a scripted sink (the storage, HTTP and
exporter paths have their own loopback tests): each (run, status) recorded once, whatever fails where."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amlobs.errors import (
    EnrichmentUnavailable,
    RunNotFound,
    StorageUnavailable,
    TelemetryExportFailed,
    TransientError,
)
from amlobs.events import RUN_COMPLETED, RUN_STATUS_CHANGED
from amlobs.processor import EventProcessor, dedupe_key_of
from amlobs.storage import ClaimPolicy, MemoryDedupeStore, MemoryRejectedEventStore
from amlobs.telemetry import RecordingTelemetry
from amlobs.telemetry_unit import (
    EVENT_PIPELINE_SUMMARY,
    EVENT_RUN_STATUS_CHANGED,
    MAYBE_DUPLICATE,
    TelemetryUnit,
)

WORKSPACE = (
    "/subscriptions/38e0c6f9-393e-413e-9d17-6e95dc2b5a5b/resourceGroups/sample"
    "/providers/Microsoft.MachineLearningServices/workspaces/sample-ws"
)
RUN = {
    "runId": "run-1",
    "status": "Completed",
    "startTimeUtc": "2024-05-01T10:00:00Z",
    "endTimeUtc": "2024-05-01T10:01:00Z",
    "createdUtc": "2024-05-01T09:59:00Z",
    # An SDK v1 run: its definition is in /details, so the run is read with GET /runs/{id} (no /rundata).
    "runDefinition": {"script": "train.py"},
}


class _NoRunHistory:
    """The processor must not call the run history for an event it rejects."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"run history called ({name}) for a rejected event")


class _Runs:
    """Run history that answers from RUN, can fail the next calls, and counts them."""

    def __init__(self, *, missing: bool = False, delay: float = 0.0) -> None:
        self.missing = missing
        self.delay = delay
        self.failures = 0
        self.calls = 0

    def get_run_details(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        time.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise EnrichmentUnavailable("run details: HTTP 503 after 3 attempt(s)")
        if self.missing:
            raise RunNotFound("HTTP 404")
        return dict(RUN)

    get_run = get_run_details

    def iter_children(self, *args: Any, **kwargs: Any) -> Any:
        return iter([])


class _Ingestion(RecordingTelemetry):
    """What ingestion stored (``units`` holds the items stored, one unit per accepted request), with
    scripted failures: ``fail_next(accept=..., maybe=...)`` stores only ``accept`` of the next unit."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[Callable[[TelemetryUnit], None]] = []
        self.sent: list[TelemetryUnit] = []

    def fail_next(self, *, accept: frozenset[str] = frozenset(), maybe: bool = False) -> None:
        def fail(unit: TelemetryUnit) -> None:
            stored = TelemetryUnit([item for item in unit.items if item.key in accept])
            if maybe:  # a POST that timed out: ingestion stored it all, the client never heard
                stored = unit
            if stored.items:
                self.units.append(stored)
            raise TelemetryExportFailed(
                "scripted failure", accepted=frozenset() if maybe else accept, maybe_delivered=maybe
            )

        self.script.append(fail)

    def send(self, unit: TelemetryUnit) -> None:
        self.sent.append(unit)
        if self.script:
            self.script.pop(0)(unit)
            return
        super().send(unit)


def _processor(
    runs: Any = None, telemetry: Any = None, dedupe: MemoryDedupeStore | None = None
) -> tuple[EventProcessor, _Ingestion, MemoryDedupeStore]:
    ingestion = telemetry or _Ingestion()
    store = dedupe or MemoryDedupeStore(ClaimPolicy(lease_seconds=60, wait_seconds=2, poll_seconds=0.01))
    processor = EventProcessor(
        runs=runs or _Runs(), telemetry=ingestion, dedupe=store, rejected=MemoryRejectedEventStore()
    )
    return processor, ingestion, store


def _run_event(event_id: str, event_type: str = RUN_STATUS_CHANGED, **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "eventType": event_type,
        "topic": WORKSPACE,
        "eventTime": "2024-05-01T10:00:00Z",
        "data": {"runId": "run-1", "experimentId": "exp-1", "runType": "azureml.StepRun", **data},
    }


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


COMPLETED = _run_event("status-changed", runStatus="Completed")


def test_an_event_nested_too_deeply_for_json_is_stored_as_rejected_not_raised() -> None:
    # replay hands over decoded events; one nested deeper than json.dumps can recurse from inside the
    # invocation must still take the rejection path. Raising instead would fail every redelivery
    # until Event Grid dead-letters it, against "never retried forever".
    telemetry, rejected = RecordingTelemetry(), MemoryRejectedEventStore()
    processor = EventProcessor(
        runs=_NoRunHistory(),  # type: ignore[arg-type]
        telemetry=telemetry,
        dedupe=MemoryDedupeStore(),
        rejected=rejected,
    )
    event = {"id": "deep", "eventType": RUN_STATUS_CHANGED, "topic": WORKSPACE, "data": _nested(100_000)}

    outcome = processor.process(event)

    assert (outcome.kind, outcome.reason) == ("rejected", "not_json")
    [stored] = rejected.stored
    assert stored.document["reason"] == "not_json"
    assert stored.document["payload"]  # something says what arrived, even if not the whole event
    assert [event["reason"] for event in telemetry.events("AmlEventRejected")] == ["not_json"]
    assert len(telemetry.units) == 1


def test_run_completed_and_status_changed_completed_are_one_key() -> None:
    status_changed = dedupe_key_of(_parse(COMPLETED))
    assert status_changed == dedupe_key_of(_parse(_run_event("rc", RUN_COMPLETED)))
    assert status_changed != dedupe_key_of(_parse(_run_event("r", runStatus="Running")))


def _parse(event: dict[str, Any]) -> Any:
    from amlobs.events import parse_event

    return parse_event(event)


def test_the_same_run_status_is_recorded_once_sequentially() -> None:
    processor, ingestion, _ = _processor()
    assert processor.process(COMPLETED).kind == "recorded"
    assert processor.process(COMPLETED).kind == "duplicate"  # Event Grid's second delivery
    assert processor.process(_run_event("run-completed", RUN_COMPLETED)).kind == "duplicate"
    assert len(ingestion.run_records) == 1


def test_replay_and_backfill_go_through_the_same_claim_as_live_deliveries() -> None:
    processor, ingestion, _ = _processor()
    replayed = _run_event("dead-lettered", RUN_COMPLETED)
    assert processor.process(replayed, source="replay").kind == "recorded"
    # The live RunStatusChanged/Completed and a backfill of the same status find it recorded.
    assert processor.process(COMPLETED).kind == "duplicate"
    assert processor.process(_run_event("synthesised", runStatus="Completed"), source="backfill").kind == (
        "duplicate"
    )
    [record] = ingestion.run_records
    assert record["record_source"] == "replay"  # the one that recorded it says how it arrived


def test_a_backfill_waits_for_a_live_delivery_recording_the_same_status() -> None:
    runs = _Runs(delay=0.3)
    processor, ingestion, _ = _processor(runs)
    outcomes: dict[str, str] = {}

    def deliver(source: str) -> None:
        outcomes[source] = processor.process(COMPLETED, source=source).kind  # type: ignore[arg-type]

    live = threading.Thread(target=deliver, args=("live",))
    live.start()
    time.sleep(0.1)  # the live delivery holds the claim while it enriches
    deliver("backfill")
    live.join(10)
    assert outcomes == {"live": "recorded", "backfill": "duplicate"}
    assert [r["record_source"] for r in ingestion.run_records] == ["live"]


def test_concurrent_deliveries_and_run_completed_record_once() -> None:
    # Both event types of one completion, each delivered twice, all in flight together: one records,
    # the others wait for it and find it recorded. Enrichment is slow enough for them all to overlap.
    runs = _Runs(delay=0.2)
    processor, ingestion, _ = _processor(runs)
    events = [COMPLETED, COMPLETED, _run_event("rc", RUN_COMPLETED), _run_event("rc", RUN_COMPLETED)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(events))

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        outcomes.append(processor.process(event).kind)

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(outcomes) == ["duplicate"] * 3 + ["recorded"]
    assert len(ingestion.run_records) == 1
    assert runs.calls == 2  # details + run, once: the others never enriched


def test_an_enrichment_failure_releases_the_key_for_the_redelivery() -> None:
    runs = _Runs()
    runs.failures = 1
    processor, ingestion, dedupe = _processor(runs)
    with pytest.raises(EnrichmentUnavailable):
        processor.process(COMPLETED)
    assert dedupe.state_of(dedupe_key_of(_parse(COMPLETED))) == "retry"  # no wait for a lease

    assert processor.process(COMPLETED).kind == "recorded"
    [record] = ingestion.run_records
    assert MAYBE_DUPLICATE not in record  # nothing had been sent before


def test_items_stored_by_a_206_are_not_sent_again() -> None:
    # Ingestion stored the custom event and refused the metric points (206); the invocation fails and
    # the redelivery sends only what is missing: no duplicate event.
    processor, ingestion, _ = _processor()
    ingestion.fail_next(accept=frozenset({f"event:{EVENT_RUN_STATUS_CHANGED}"}))
    with pytest.raises(TelemetryExportFailed):
        processor.process(COMPLETED)

    assert processor.process(COMPLETED).kind == "recorded"

    assert len(ingestion.run_records) == 1
    retried = ingestion.sent[-1]
    # (The 2024 run's span is outside ingestion's window: not sent, counted.)
    assert retried.keys == {
        "metric:aml_run_duration_ms",
        "metric:aml_run_queue_time_ms",
        "metric:aml_trace_spans_skipped",
    }


def test_a_post_without_an_answer_makes_the_redelivery_a_counted_maybe_duplicate() -> None:
    processor, ingestion, _ = _processor()
    ingestion.fail_next(maybe=True)  # stored, but the client timed out
    with pytest.raises(TelemetryExportFailed):
        processor.process(COMPLETED)

    processor.process(COMPLETED)

    first, second = ingestion.run_records
    assert MAYBE_DUPLICATE not in first
    assert second[MAYBE_DUPLICATE] == "true"  # the dashboards count (run, status) once anyway
    assert processor.process(COMPLETED).kind == "duplicate"


def test_a_pipeline_summary_goes_in_the_same_unit_and_is_not_sent_twice() -> None:
    pipeline = _run_event("p", runStatus="Completed", runType="azureml.PipelineRun")
    processor, ingestion, _ = _processor()
    ingestion.fail_next(
        accept=frozenset({f"event:{EVENT_RUN_STATUS_CHANGED}", f"event:{EVENT_PIPELINE_SUMMARY}"})
    )
    with pytest.raises(TelemetryExportFailed):
        processor.process(pipeline)
    processor.process(pipeline)
    processor.process(_run_event("p-rc", RUN_COMPLETED, runType="azureml.PipelineRun"))

    assert len(ingestion.events(EVENT_PIPELINE_SUMMARY)) == 1
    assert EVENT_PIPELINE_SUMMARY in {item.name for item in ingestion.sent[0].items}


class _DoneWriteFails(MemoryDedupeStore):
    def complete(self, claim: Any, *, partial_reason: str | None = None) -> None:
        raise StorageUnavailable("moving a claim to done failed: HTTP 503")


def test_a_failed_mark_after_the_send_still_succeeds_and_a_late_copy_is_flagged() -> None:
    now = [datetime(2026, 11, 1, tzinfo=UTC)]
    dedupe = _DoneWriteFails(
        ClaimPolicy(lease_seconds=60, wait_seconds=0, poll_seconds=0), clock=lambda: now[0]
    )
    processor, ingestion, _ = _processor(dedupe=dedupe)

    assert processor.process(COMPLETED).kind == "recorded"  # stored: failing would only resend it

    with pytest.raises(TransientError):  # a duplicate delivery within the lease waits its turn
        processor.process(COMPLETED)
    now[0] += timedelta(seconds=61)
    processor.process(COMPLETED)  # after the lease: resent, and counted as a possible duplicate
    assert [r.get(MAYBE_DUPLICATE) for r in ingestion.run_records] == [None, "true"]


def test_a_bug_while_sending_releases_the_key_as_maybe_delivered() -> None:
    class _Broken(_Ingestion):
        def send(self, unit: TelemetryUnit) -> None:
            raise RuntimeError("exporter bug")

    processor, _, dedupe = _processor(telemetry=_Broken())
    with pytest.raises(RuntimeError):
        processor.process(COMPLETED)
    claim = dedupe.claim(dedupe_key_of(_parse(COMPLETED)), {})
    assert claim is not None and claim.maybe_delivered and claim.taken_over == "retry"


def test_a_404_is_recorded_partially_once() -> None:
    processor, ingestion, _ = _processor(_Runs(missing=True))
    assert processor.process(COMPLETED).kind == "partial"
    assert processor.process(_run_event("rc", RUN_COMPLETED)).kind == "duplicate"
    [record] = ingestion.run_records
    assert record["enrichment_error"]


class _Costs:
    """A cost estimator (amlobs.cost_estimator.CostEstimator's interface) that answers fixed keys or fails."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.failure = failure
        self.calls: list[str] = []

    def for_record(self, ws: Any, record: Any, answers: Any) -> dict[str, str]:
        self.calls.append(f"record {record.get('run_id')}")
        if self.failure is not None:
            raise self.failure
        return {"estimated_cost": "1.500000", "cost_currency": "USD", "cost_basis": "sku=Standard_D2_v3"}

    def for_summary(self, ws: Any, listing: Any) -> dict[str, str | int]:
        self.calls.append("summary")
        if self.failure is not None:
            raise self.failure
        return {"estimated_cost": "3.000000", "cost_currency": "USD", "unestimated_step_count": 0}

    def close(self) -> None:
        pass


def _costed(costs: _Costs) -> tuple[EventProcessor, _Ingestion]:
    ingestion = _Ingestion()
    processor = EventProcessor(
        runs=_Runs(),
        telemetry=ingestion,
        dedupe=MemoryDedupeStore(ClaimPolicy(lease_seconds=60, wait_seconds=2, poll_seconds=0.01)),
        rejected=MemoryRejectedEventStore(),
        costs=costs,
    )
    return processor, ingestion


PIPELINE_COMPLETED = _run_event("p", runStatus="Completed", runType="azureml.PipelineRun")


def test_the_estimates_travel_in_the_one_unit_with_the_record_and_the_summary() -> None:
    costs = _Costs()
    processor, ingestion = _costed(costs)
    assert processor.process(PIPELINE_COMPLETED).kind == "recorded"
    assert processor.process(_run_event("p-rc", RUN_COMPLETED, runType="azureml.PipelineRun")).kind == (
        "duplicate"
    )

    [unit] = ingestion.sent
    assert {item.name for item in unit.items} >= {EVENT_RUN_STATUS_CHANGED, EVENT_PIPELINE_SUMMARY}
    [record], [summary] = ingestion.run_records, ingestion.pipeline_summaries
    assert record["estimated_cost"] == "1.500000" and summary["estimated_cost"] == "3.000000"
    # The claim comes first: the duplicate delivery looked nothing up.
    assert costs.calls == ["record run-1", "summary"]


@pytest.mark.parametrize(
    "failure", [RuntimeError("a bug in the estimate"), EnrichmentUnavailable("compute: HTTP 503")]
)
def test_an_estimate_that_raises_costs_the_estimate_never_the_record(failure: Exception) -> None:
    processor, ingestion = _costed(_Costs(failure))
    assert processor.process(PIPELINE_COMPLETED).kind == "recorded"
    assert processor.process(PIPELINE_COMPLETED).kind == "duplicate"  # recorded once, claim done

    [record], [summary] = ingestion.run_records, ingestion.pipeline_summaries
    why = f"no estimate: the estimate failed unexpectedly ({type(failure).__name__})"
    assert record["cost_basis"] == why and summary["cost_basis"] == why
    assert "estimated_cost" not in record and "estimated_cost" not in summary


class _DueFails:
    """The due list of the resource-use pass (amlobs.resource_use.due.DueNoter), failing the next notes."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.noted: list[str] = []

    def note(self, ws: Any, record: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageUnavailable("noting a run due: table storage unreachable")
        self.noted.append(str(record.get("run_id")))


def test_a_failed_due_note_fails_the_delivery_before_anything_is_sent_and_the_redelivery_notes_it() -> None:
    due = _DueFails(failures=1)
    ingestion = _Ingestion()
    dedupe = MemoryDedupeStore(ClaimPolicy(lease_seconds=60, wait_seconds=2, poll_seconds=0.01))
    processor = EventProcessor(
        runs=_Runs(), telemetry=ingestion, dedupe=dedupe, rejected=MemoryRejectedEventStore(), due=due
    )
    with pytest.raises(StorageUnavailable):
        processor.process(COMPLETED)
    assert ingestion.sent == [] and dedupe.state_of(dedupe_key_of(_parse(COMPLETED))) == "retry"

    assert processor.process(COMPLETED).kind == "recorded"  # Event Grid's redelivery
    assert due.noted == [RUN["runId"]] and len(ingestion.run_records) == 1
