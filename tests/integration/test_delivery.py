"""What Event Grid's delivery does to ``aml_run_events``: events the Functions library could not even
decode, concurrent deliveries of one run status, and sends whose outcome nobody knows."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from amlobs.errors import TelemetryExportFailed
from tests.integration.conftest import App, sample_event
from tests.integration.host import invoke

RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"


def _deeply_nested_event(levels: int) -> str:
    """The sample step event with ``data.runProperties.deep`` nested so that the event has ``levels``."""
    event = sample_event("step_run_completed", id=f"deep-{levels}")
    marker = '"__deep__"'
    event["data"]["runProperties"]["deep"] = "__deep__"
    text = json.dumps(event)
    inner = levels - 3  # the event, its data and runProperties are the first three
    return text.replace(marker, "[" * inner + "1" + "]" * inner)


@pytest.mark.parametrize("levels", [900, 990, 5_000])
def test_an_event_too_deep_to_decode_is_stored_as_rejected_with_its_body_and_the_invocation_succeeds(
    app: App, levels: int
) -> None:
    body = _deeply_nested_event(levels)

    invoke(body)  # no exception: Event Grid must not retry an event that can never succeed

    assert app.records() == []
    [blob] = app.rejected_blobs()
    stored = json.loads(blob.content)
    assert stored["reason"] == "nested_too_deeply"
    assert stored["payload"] == body  # the body as received, byte for byte (well under the size limit)
    assert stored["payload_truncated"] is False
    assert stored["event_id"] == f"deep-{levels}"  # read without decoding the whole event
    [rejected] = app.ingestion.events("AmlEventRejected")
    assert rejected["properties"]["reason"] == "nested_too_deeply"


def test_the_libraries_event_grid_converter_is_not_what_decodes_the_trigger(app: App) -> None:
    # Why the trigger binds the raw text: the library's converter json.loads the event before any of
    # our code runs, and fails on deep nesting with a RecursionError (every delivery, until dead-letter).
    import azure.functions as func
    from azure.functions import meta

    converter = func.get_binding_registry().get("eventGridTrigger")
    with pytest.raises(RecursionError):
        converter.decode(meta.Datum(_deeply_nested_event(5_000), "json"), trigger_metadata={})
    invoke(_deeply_nested_event(5_000))
    assert len(app.rejected_blobs()) == 1


def test_an_event_within_the_nesting_limit_is_recorded(app: App) -> None:
    invoke(_deeply_nested_event(100))
    assert len(app.records()) == 1
    assert app.rejected_blobs() == []


def test_concurrent_deliveries_of_one_completion_record_it_once(app: App) -> None:
    # RunCompleted and RunStatusChanged/Completed of one run arrive together, and Event Grid may deliver
    # each twice: all in flight on the worker's threads at once.
    status_changed = sample_event("step_run_completed", id="sc")
    completed = sample_event("step_run_completed", id="rc", eventType=RUN_COMPLETED)
    del completed["data"]["runStatus"]
    deliveries = [status_changed, completed, status_changed, completed]
    barrier = threading.Barrier(len(deliveries))
    errors: list[BaseException] = []

    def deliver(event: dict[str, Any]) -> None:
        barrier.wait()
        try:
            invoke(event)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(event,)) for event in deliveries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []  # the later ones waited for the first instead of failing
    assert len(app.records()) == 1
    assert sum(p["count"] for p in app.ingestion.metrics("aml_run_duration_ms")) == 1
    assert len(app.aml.requests_to("/details")) == 1  # the others did not even enrich


def test_a_post_that_timed_out_is_sent_again_and_counted_as_maybe_delivered(app: App) -> None:
    event = sample_event("step_run_completed", id="timed-out")
    app.ingestion.fail_with("slow", delay=5, times=1)  # stored after the client gave up (1.5 s)

    with pytest.raises(TelemetryExportFailed, match="no answer") as raised:
        invoke(event)
    assert raised.value.maybe_delivered
    app.ingestion.reset()  # ingestion answers the held request now, and stores it

    invoke(event)  # Event Grid's redelivery
    invoke(event)  # and any later one is a duplicate

    first, second = app.records()
    assert "delivery_maybe_duplicate" not in first
    assert second["delivery_maybe_duplicate"] == "true"
    assert event["id"] in app.processed_ids()
