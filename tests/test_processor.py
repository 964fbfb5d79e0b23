"""The processor's own rules with the in-process stores and sink (the storage, HTTP and exporter paths
have their own loopback tests): what it does with events the layers below cannot handle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from amlobs.errors import RunNotFound, StorageUnavailable
from amlobs.events import RUN_COMPLETED, RUN_STATUS_CHANGED
from amlobs.processor import EventProcessor
from amlobs.storage import MemoryDedupeStore, MemoryRejectedEventStore
from amlobs.telemetry import RecordingTelemetry

WORKSPACE = (
    "/subscriptions/38e0c6f9-393e-413e-9d17-6e95dc2b5a5b/resourceGroups/sample"
    "/providers/Microsoft.MachineLearningServices/workspaces/sample-ws"
)


class _NoRunHistory:
    """The processor must not call the run history for an event it rejects."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"run history called ({name}) for a rejected event")


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_an_event_nested_too_deeply_for_json_is_stored_as_rejected_not_raised() -> None:
    # The Functions worker hands over the event already decoded; one nested deeper than json.dumps can
    # recurse from inside the invocation must still take the rejection path. Raising instead would fail
    # every redelivery until Event Grid dead-letters it, against "never retried forever".
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
    assert [item.reason for item in telemetry.rejected] == ["not_json"]
    assert telemetry.flush_count == 1


class _DeletedRuns:
    """Every run is gone (404): the processor records what the event carries."""

    def get_run_details(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RunNotFound("HTTP 404")

    get_run = get_run_details


class _SecondWriteFails(MemoryDedupeStore):
    """Table storage that fails one write, the second one, as a blip between two upserts would."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def mark_processed(self, event_id: str, context: Mapping[str, str]) -> None:
        self.writes += 1
        if self.writes == 2:
            raise StorageUnavailable("marking event processed failed: HTTP 503")
        super().mark_processed(event_id, context)


def _run_event(event_id: str, event_type: str = RUN_STATUS_CHANGED, **data: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "eventType": event_type,
        "topic": WORKSPACE,
        "eventTime": "2024-05-01T10:00:00Z",
        "data": {"runId": "run-1", "experimentId": "exp-1", "runType": "azureml.StepRun", **data},
    }


def test_a_dedupe_write_failing_half_way_still_deduplicates_the_run_status() -> None:
    # An event is marked under two keys: its id and (workspace, run, status). When only one write lands,
    # the redelivery is skipped as a duplicate and the other key is never written again; the one that
    # landed must therefore be the run's key, which also covers RunCompleted and backfill.
    telemetry, dedupe = RecordingTelemetry(), _SecondWriteFails()
    processor = EventProcessor(
        runs=_DeletedRuns(), telemetry=telemetry, dedupe=dedupe, rejected=MemoryRejectedEventStore()
    )
    status_changed = _run_event("status-changed", runStatus="Completed")

    with pytest.raises(StorageUnavailable):
        processor.process(status_changed)  # telemetry flushed, then the second write fails
    assert processor.process(status_changed).kind == "duplicate"  # Event Grid's redelivery
    run_completed = processor.process(_run_event("run-completed", RUN_COMPLETED))

    assert run_completed.kind == "duplicate"
    assert len(telemetry.run_records) == 1
