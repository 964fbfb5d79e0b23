"""The processor's own rules with the in-process stores and sink (the storage, HTTP and exporter paths
have their own loopback tests): what it does with events the layers below cannot handle."""

from __future__ import annotations

from typing import Any

from amlobs.events import RUN_STATUS_CHANGED
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
