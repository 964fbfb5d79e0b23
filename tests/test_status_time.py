"""The time a status change happened and the record's origin (amlobs.status_time)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amlobs.events import KNOWN_STATUSES, RUN_STATUS_CHANGED, TERMINAL_STATUSES, WorkspaceRef
from amlobs.processor import EventProcessor
from amlobs.records import parse_utc_ms
from amlobs.status_time import (
    RECORD_SOURCES,
    STATUS_TIME_FIELDS,
    iso_from_ms,
    status_fields,
    status_time_ms,
)
from amlobs.storage import MemoryDedupeStore, MemoryRejectedEventStore
from amlobs.telemetry import RecordingTelemetry

CREATED, START, END, EVENT = 1_000_000, 2_000_000, 3_000_000, 3_500_000
TIMES = {"created_ms": CREATED, "start_ms": START, "end_ms": END}


@pytest.mark.parametrize("source", ["live", "replay", "backfill"])
@pytest.mark.parametrize("status", sorted(TERMINAL_STATUSES))
def test_a_terminal_status_happened_when_the_run_ended_however_late_it_arrives(
    source: str, status: str
) -> None:
    assert status_time_ms(status, source, event_time_ms=EVENT, **TIMES) == END  # type: ignore[arg-type]


@pytest.mark.parametrize("source", ["live", "replay"])
@pytest.mark.parametrize("status", ["Queued", "Running", "Finalizing", "Completed"])
def test_an_event_without_a_known_end_happened_at_the_event_time(source: str, status: str) -> None:
    times = {**TIMES, "end_ms": None}
    assert status_time_ms(status, source, event_time_ms=EVENT, **times) == EVENT  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("NotStarted", CREATED),
        ("Queued", CREATED),
        ("Preparing", CREATED),
        ("Running", START),
        ("Finalizing", START),
        ("CancelRequested", START),
        ("Completed", END),
        (None, END),
        ("SomethingNew", END),
    ],
)
def test_a_backfilled_status_is_dated_from_the_run_s_own_timestamps(
    status: str | None, expected: int
) -> None:
    # The synthetic event's time says nothing: backfill reads the run's times.
    assert status_time_ms(status, "backfill", event_time_ms=EVENT, **TIMES) == expected


def test_a_backfilled_run_missing_a_time_falls_back_to_the_latest_it_has() -> None:
    assert (
        status_time_ms("Canceled", "backfill", event_time_ms=None, created_ms=CREATED, start_ms=START)
        == START
    )
    assert status_time_ms("Running", "backfill", event_time_ms=None, created_ms=CREATED) == CREATED
    assert status_time_ms("Failed", "backfill", event_time_ms=None, created_ms=CREATED) == CREATED
    assert status_time_ms("Queued", "backfill", event_time_ms=None) is None


def test_fields_name_the_source_and_the_time_in_iso_and_epoch_milliseconds() -> None:
    record = {"status": "Completed", "start_time_utc_ms": START, "end_time_utc_ms": 1_714_557_626_123}
    fields = status_fields(record, "backfill", event_time_ms=None)
    assert fields == {
        "record_source": "backfill",
        "status_time": "2024-05-01T10:00:26.123Z",
        "status_time_utc_ms": 1_714_557_626_123,
    }
    assert set(fields) == set(STATUS_TIME_FIELDS)


def test_an_unknown_time_is_left_out_but_the_source_is_always_there() -> None:
    assert status_fields({"status": "Running"}, "live", event_time_ms=None) == {"record_source": "live"}


def test_an_unknown_source_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not one of live, replay, backfill, reconcile"):
        status_fields({}, "tomorrow", event_time_ms=None)  # type: ignore[arg-type]
    assert RECORD_SOURCES == ("live", "replay", "backfill", "reconcile")


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_the_iso_form_reads_back_as_the_same_millisecond(epoch_ms: int) -> None:
    text = iso_from_ms(epoch_ms)
    assert text.endswith("Z") and len(text) == len("2024-05-01T10:00:26.123Z")
    assert parse_utc_ms(text) == epoch_ms


@given(
    st.sampled_from([*KNOWN_STATUSES, None]),
    st.sampled_from(RECORD_SOURCES),
    st.one_of(st.none(), st.integers(0, 2**41)),
    st.one_of(st.none(), st.integers(0, 2**41)),
    st.one_of(st.none(), st.integers(0, 2**41)),
    st.one_of(st.none(), st.integers(0, 2**41)),
)
def test_the_time_is_always_one_of_the_times_given(
    status: str | None,
    source: str,
    event: int | None,
    created: int | None,
    start: int | None,
    end: int | None,
) -> None:
    found = status_time_ms(
        status, source, event_time_ms=event, created_ms=created, start_ms=start, end_ms=end
    )  # type: ignore[arg-type]
    assert found is None or found in {event, created, start, end}


def test_iso_form_is_utc() -> None:
    assert iso_from_ms(0) == "1970-01-01T00:00:00.000Z"
    assert datetime(2024, 5, 1, tzinfo=UTC).timestamp() * 1000 == parse_utc_ms(iso_from_ms(1_714_521_600_000))


WORKSPACE = "/subscriptions/s-1/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
RUN = {
    "runId": "pipeline-1",
    "status": "Completed",
    "createdUtc": "2024-05-01T09:59:00Z",
    "startTimeUtc": "2024-05-01T10:00:00Z",
    "endTimeUtc": "2024-05-01T10:30:00.250Z",
}


class _OneFinishedPipeline:
    """Run history for one finished pipeline run with no steps."""

    def get_run_details(self, ws: WorkspaceRef, run_id: str, **_: object) -> dict[str, object]:
        return dict(RUN)

    def get_run(self, ws: WorkspaceRef, run_id: str, **_: object) -> dict[str, object]:
        return dict(RUN)

    def get_run_data(self, ws: WorkspaceRef, run_id: str, **_: object) -> dict[str, object]:
        # POST /rundata: the run as runMetadata (a v2 job's /details carries no definition)
        return {"runMetadata": dict(RUN)}

    def iter_children(self, ws: WorkspaceRef, run_id: str, **_: object) -> list[dict[str, object]]:
        return []


@pytest.mark.parametrize("source", ["live", "replay", "backfill"])
def test_the_processor_stamps_the_record_and_the_summary_with_the_source_it_was_given(source: str) -> None:
    telemetry = RecordingTelemetry()
    processor = EventProcessor(
        runs=_OneFinishedPipeline(),  # type: ignore[arg-type]
        telemetry=telemetry,
        dedupe=MemoryDedupeStore(),
        rejected=MemoryRejectedEventStore(),
    )
    event = {
        "id": f"evt-{source}",
        "eventType": RUN_STATUS_CHANGED,
        "eventTime": "2024-05-03T08:00:00Z",  # delivered two days late: not when it finished
        "topic": WORKSPACE,
        "data": {
            "runId": "pipeline-1",
            "experimentName": "train",
            "runType": "azureml.PipelineRun",
            "runStatus": "Completed",
        },
    }

    outcome = processor.process(event, source=source)  # type: ignore[arg-type]

    assert outcome.kind == "recorded"
    for stamped in (telemetry.run_records[0], telemetry.pipeline_summaries[0]):
        assert stamped["record_source"] == source
        assert stamped["status_time"] == "2024-05-01T10:30:00.250Z"  # the run's end
        # Custom event dimensions go out as strings.
        assert stamped["status_time_utc_ms"] == str(parse_utc_ms("2024-05-01T10:30:00.250Z"))


def test_the_function_s_default_source_is_live() -> None:
    telemetry = RecordingTelemetry()
    processor = EventProcessor(
        runs=_OneFinishedPipeline(),  # type: ignore[arg-type]
        telemetry=telemetry,
        dedupe=MemoryDedupeStore(),
        rejected=MemoryRejectedEventStore(),
    )
    event = {
        "id": "evt-running",
        "eventType": RUN_STATUS_CHANGED,
        "eventTime": "2024-05-01T10:00:01Z",
        "topic": WORKSPACE,
        "data": {
            "runId": "pipeline-1",
            "experimentName": "train",
            "runType": "azureml.StepRun",
            "runStatus": "Running",
        },
    }
    processor.process(event)
    [record] = telemetry.run_records
    assert (record["record_source"], record["status_time"]) == ("live", "2024-05-01T10:00:01.000Z")


def test_a_reconciled_status_is_dated_from_the_run_s_own_times_like_backfill() -> None:
    # The reconciler's synthetic event was never sent by AML: its time says nothing either.
    assert status_time_ms("Running", "reconcile", event_time_ms=EVENT, **TIMES) == TIMES["start_ms"]
    assert status_time_ms("Queued", "reconcile", event_time_ms=EVENT, **TIMES) == TIMES["created_ms"]
