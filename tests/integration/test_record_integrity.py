"""Every record complete, every copy the same (issue 21), through ``function_app`` against the fakes.

* A run history 404 for a recent event is "not visible yet": the invocation fails, Event Grid retries,
  and the run's record goes out once, enriched, when run history answers. Only an event older than
  ``AML_OBS_RUN_NOT_FOUND_GRACE_MINUTES`` is recorded alone, and its record says why and at what age;
  its claim says it is partial (what a reconciler lists).
* A resend after a POST that got no answer sends the unit the first attempt decided, envelope for
  envelope, apart from ``delivery_maybe_duplicate``: also when run history and the prices API answer
  differently by then.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amlobs import runtime
from amlobs.errors import RunNotYetVisible, TelemetryExportFailed
from amlobs.settings import Settings
from amlobs.storage import TableDedupeStore
from tests.fakes.aml_api import FakeWorkspace, Fault
from tests.integration.conftest import App
from tests.integration.host import invoke

EVENT_TYPE = "Microsoft.MachineLearningServices.RunStatusChanged"
FLAG = "delivery_maybe_duplicate"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_of(
    ws: FakeWorkspace, run: dict[str, Any], *, event_time: datetime, status: str | None = None
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": ws.resource_id,
        "subject": f"experiments/{run['experimentId']}/runs/{run['runId']}",
        "eventType": EVENT_TYPE,
        "eventTime": _iso(event_time),
        "dataVersion": "2",
        "data": {
            "runStatus": status or run["status"],
            "experimentId": run["experimentId"],
            "experimentName": ws.experiments[run["experimentId"]]["name"],
            "runId": run["runId"],
            "runType": run.get("runType"),
            "runTags": run.get("tags") or {},
            "runProperties": run.get("properties") or {},
        },
    }


def _recent_pipeline(ws: FakeWorkspace, steps: int = 2) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    # Runs of the last minutes: inside ingestion's window, so finished runs send their spans too.
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    return ws.add_pipeline_run("train", steps=steps, created=created, step_seconds=60)


def _claims(app: App) -> TableDedupeStore:
    settings = Settings.from_env()
    assert settings.storage is not None
    return TableDedupeStore(settings.storage)


# -- a 404 as a question of age ---------------------------------------------------------------------


def test_a_run_that_404s_twice_then_answers_gets_exactly_one_record_fully_enriched(app: App) -> None:
    ws = app.aml.workspace()
    _pipeline, [step, _other] = _recent_pipeline(ws)
    run_id = step["runId"]
    event = event_of(ws, step, event_time=datetime.now(UTC) - timedelta(seconds=20))
    # Not visible yet: run history answers 404 for it, as it does for any run it does not know.
    hidden = ws.runs.pop(run_id), ws.details.pop(run_id)

    for _delivery in range(2):
        with pytest.raises(RunNotYetVisible, match=r"younger than 15 min: not yet visible"):
            invoke(event)
    assert app.records() == []
    assert len(app.aml.requests_to(f"/runs/{run_id}/details")) == 2

    ws.runs[run_id], ws.details[run_id] = hidden
    invoke(event)  # Event Grid's third delivery
    invoke(event)  # and any later one is a duplicate

    [record] = app.records()
    assert "enrichment_error" not in record
    assert record["run_id"] == run_id
    assert record["step_name"] and record["target"] == "cpu-cluster"
    assert int(record["execution_time_ms"]) == 60_000
    assert len(app.ingestion.spans()) >= 1  # its span in the pipeline's trace too
    assert _claims(app).partial_claims() == []


def test_an_event_older_than_the_limit_whose_run_404s_is_recorded_alone_with_its_reason(app: App) -> None:
    ws = app.aml.workspace()
    _pipeline, [step] = _recent_pipeline(ws, steps=1)
    ws.runs.pop(step["runId"])
    ws.details.pop(step["runId"])
    event = event_of(ws, step, event_time=datetime.now(UTC) - timedelta(minutes=40))

    invoke(event)  # succeeds: nothing to retry for

    [record] = app.records()
    reason = record["enrichment_error"]
    assert reason.startswith("run not found in run history for an event 40 min old (a 404 within 15 min")
    assert "recorded without run details" in reason
    [partial] = _claims(app).partial_claims()
    assert partial.reason == reason
    assert (partial.run_id, partial.status, partial.source_event_id) == (
        step["runId"],
        "Completed",
        event["id"],
    )
    assert partial.key.endswith(f"|{step['runId']}|completed")
    assert partial.processed_at is not None


def test_the_limit_is_a_setting(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AML_OBS_RUN_NOT_FOUND_GRACE_MINUTES", "90")
    runtime.reset_processor()
    ws = app.aml.workspace()
    _pipeline, [step] = _recent_pipeline(ws, steps=1)
    ws.runs.pop(step["runId"])
    ws.details.pop(step["runId"])

    with pytest.raises(RunNotYetVisible, match="40 min old, younger than 90 min"):
        invoke(event_of(ws, step, event_time=datetime.now(UTC) - timedelta(minutes=40)))
    assert app.records() == []
    assert app.claim_states() and set(app.claim_states().values()) == {"retry"}


# -- a resend repeats the original -----------------------------------------------------------------


def _without_flag(envelope: dict[str, Any]) -> dict[str, Any]:
    plain = copy.deepcopy(envelope)
    properties = plain.get("data", {}).get("baseData", {}).get("properties")
    if isinstance(properties, dict):
        properties.pop(FLAG, None)
    return plain


def _flagged(envelope: dict[str, Any]) -> bool:
    properties = envelope.get("data", {}).get("baseData", {}).get("properties") or {}
    return properties.get(FLAG) == "true"


def test_a_resend_after_an_unanswered_post_repeats_the_first_send_though_run_history_and_prices_changed(
    app: App,
) -> None:
    ws = app.aml.workspace()
    pipeline, steps = _recent_pipeline(ws, steps=2)
    event = event_of(ws, pipeline, event_time=datetime.now(UTC))
    # The first attempt: the prices API is down (the summary says so), and ingestion stores the POST
    # after the client gave up on it.
    app.aml.fail("GET", "/api/retail/prices", Fault(status=503))
    app.ingestion.fail_with("slow", delay=5, times=1)
    with pytest.raises(TelemetryExportFailed, match="no answer") as raised:
        invoke(event)
    assert raised.value.maybe_delivered
    assert len(app.aml.requests_to("/api/retail/prices")) == 1  # the fault met: the API answers now
    app.ingestion.reset()  # the held request is answered now, and stored

    # Before the redelivery: another worker (no warm caches), the prices API back, and run history
    # reporting more about the run than it did (a renamed run, a third step).
    runtime.reset_processor()
    app.aml.clear_records()
    ws.runs[pipeline["runId"]]["displayName"] = "renamed meanwhile"
    ws.details[pipeline["runId"]]["displayName"] = "renamed meanwhile"
    ws.add_pipeline_run("other", steps=1, parent=pipeline)

    invoke(event)  # Event Grid's redelivery
    invoke(event)  # and any later one is a duplicate

    first, resend = (r for r in app.ingestion.track_requests() if r.accepted)
    assert len(app.ingestion.track_requests()) == 2
    assert sorted(first.accepted) == list(range(len(first.envelopes)))
    names = sorted(e["name"] for e in first.envelopes)
    assert {"Microsoft.ApplicationInsights.Event", "Microsoft.ApplicationInsights.Metric"} <= set(names)
    assert "Microsoft.ApplicationInsights.Request" in names  # the pipeline's span
    assert [_without_flag(e) for e in resend.envelopes] == first.envelopes  # byte for byte but the flag
    assert not any(_flagged(e) for e in first.envelopes)
    assert all(_flagged(e) for e in resend.envelopes if e["name"] != "Microsoft.ApplicationInsights.Metric")
    summary = next(
        e["data"]["baseData"]["properties"]
        for e in resend.envelopes
        if e["data"]["baseData"].get("name") == "AmlPipelineRunSummary"
    )
    assert "estimated_cost" not in summary and summary["step_count"] == "2"
    # The resend asked nobody: what it sent was decided by the first attempt.
    assert app.aml.requests_to("/runs/") == [] and app.aml.requests_to("/api/retail/prices") == []
    # Proof that the answers did change: a status recorded now gets the estimate and the new name.
    invoke(event_of(ws, steps[0], event_time=datetime.now(UTC)))
    fresh = next(r for r in app.records() if r["run_id"] == steps[0]["runId"])
    assert "estimated_cost" in fresh


def test_a_recent_pipeline_whose_children_listing_404s_once_gets_its_summary_with_every_step(
    app: App,
) -> None:
    ws = app.aml.workspace()
    pipeline, steps = _recent_pipeline(ws, steps=2)
    app.aml.fail(
        "GET", f"/runs/{pipeline['runId']}/children", Fault(status=404, body={"error": {"code": "UserError"}})
    )
    event = event_of(ws, pipeline, event_time=datetime.now(UTC))

    with pytest.raises(RunNotYetVisible, match=f"children of pipeline run {pipeline['runId']}"):
        invoke(event)
    invoke(event)

    [summary] = [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]
    assert summary["step_count"] == str(len(steps)) and "summary_error" not in summary
    assert len(app.records()) == 1


def test_after_a_post_that_stored_nothing_the_redelivery_decides_afresh(app: App) -> None:
    # Nothing can repeat what ingestion refused whole: the claim keeps no unit, and the redelivery's
    # record takes the estimate the prices API gives by then.
    ws = app.aml.workspace()
    _pipeline, [step] = _recent_pipeline(ws, steps=1)
    event = event_of(ws, step, event_time=datetime.now(UTC))
    app.aml.fail("GET", "/api/retail/prices", Fault(status=503))
    app.ingestion.fail_with(503, times=2)
    with pytest.raises(TelemetryExportFailed, match="503") as raised:
        invoke(event)
    assert not raised.value.maybe_delivered and not raised.value.accepted
    [claim] = app.storage.list_entities("processedevents")
    assert claim["state"] == "retry" and not any(name.startswith("unit_") for name in claim)

    runtime.reset_processor()  # another worker: no cooldown left from the failed price lookup
    invoke(event)

    [record] = app.records()
    assert "estimated_cost" in record and "delivery_maybe_duplicate" not in record


def test_after_a_206_the_redelivery_sends_the_refused_items_as_first_decided(app: App) -> None:
    ws = app.aml.workspace()
    _pipeline, [step] = _recent_pipeline(ws, steps=1)
    event = event_of(ws, step, event_time=datetime.now(UTC))
    app.aml.fail("GET", "/api/retail/prices", Fault(status=503))
    app.ingestion.fail_with("partial", matching="Metric", partial_status=503)  # metric points refused
    with pytest.raises(TelemetryExportFailed) as raised:
        invoke(event)
    assert raised.value.accepted and not raised.value.maybe_delivered
    app.ingestion.reset()
    runtime.reset_processor()

    invoke(event)

    [record] = app.records()  # stored by the first attempt, not sent again
    assert "estimated_cost" not in record
    first = next(r for r in app.ingestion.track_requests() if r.fault == "partial")
    resend = app.ingestion.track_requests()[-1]
    refused = [e for i, e in enumerate(first.envelopes) if i not in first.accepted]
    assert refused and resend.envelopes == refused  # the same points, the same time


def test_a_request_refused_for_good_is_recorded_alone_at_once_however_recent(app: App) -> None:
    # Only a 404 waits out its age: a 400 would meet every redelivery again.
    ws = app.aml.workspace()
    _pipeline, [step] = _recent_pipeline(ws, steps=1)
    refusal = {"error": {"code": "UserError", "message": "bad request"}}
    app.aml.fail("GET", f"/runs/{step['runId']}/details", Fault(status=400, body=refusal))

    invoke(event_of(ws, step, event_time=datetime.now(UTC)))

    [record] = app.records()
    assert "the request was refused and would be again" in record["enrichment_error"]
    assert not record["enrichment_error"].startswith("run not found in run history for an event")
