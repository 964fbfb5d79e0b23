"""``aml_run_events`` end to end, invoked as the host does, against the loopback fakes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from amlobs.errors import EnrichmentUnavailable, TelemetryExportFailed
from tests.fakes.aml_api import SAMPLE_PIPELINE_RUN_ID, SAMPLE_STEP_RUN_ID, Fault
from tests.integration.conftest import App, sample_event
from tests.integration.host import invoke, trigger_binding
from tests.test_records import seed_record_as_built

# The 2020 sample's README record for its step-run event, key for key, as Application Insights stores
# customDimensions (strings).
SEED_STEP_RECORD = {key: str(value) for key, value in seed_record_as_built().items()}


def test_the_host_sees_one_event_grid_function_named_as_the_subscription_expects() -> None:
    binding = trigger_binding("aml_run_events")
    assert binding.type == "eventGridTrigger"
    assert binding.name == "event"


def test_step_run_event_becomes_the_seed_record_in_application_insights(app: App) -> None:
    event = sample_event("step_run_completed")

    invoke(event)

    records = app.records()
    assert len(records) == 1
    record = records[0]
    for key, value in SEED_STEP_RECORD.items():
        assert record.get(key) == value, key
    assert record["event_id"] == event["id"]
    assert record["event_time"] == "2020-06-07T19:16:16.220451Z"  # eventTime, one spelling for all paths
    assert record["parent_run_id"] == "096a41be-218d-4bdb-857d-be3222caa891"
    assert "enrichment_error" not in record
    # Nothing invented: every dimension is a non-empty string.
    assert all(isinstance(v, str) and v for v in record.values())

    duration = app.ingestion.metrics("aml_run_duration_ms")
    assert [point["value"] for point in duration] == [111]
    assert duration[0]["properties"] == {
        "experimentName": "experimentName",
        "run_type": "azureml.StepRun",
        "status": "Completed",
        "target": "sample-compute",
        "step_type": "PythonScriptStep",
    }
    # The sample run was created before it started: its queue time is known and must be sent.
    assert int(record["queue_time_ms"]) > 0
    queue = app.ingestion.metrics("aml_run_queue_time_ms")
    assert [point["value"] for point in queue] == [int(record["queue_time_ms"])]

    assert app.processed_ids() >= {event["id"]}
    assert app.rejected_blobs() == []


def test_every_hop_uses_the_managed_identity_with_the_right_audience(app: App) -> None:
    invoke(sample_event("step_run_completed"))

    token_requests = app.aml.token_requests
    assert token_requests, "no managed identity token was requested"
    assert all(t.client_id == app.aml.client_id for t in token_requests)
    assert all(t.identity_header == app.aml.identity_secret for t in token_requests)
    resources = {t.resource for t in token_requests}
    assert any(r and r.startswith("https://management.azure.com") for r in resources)
    assert any(r and r.startswith("https://monitor.azure.com") for r in resources)

    aml_calls = [r for r in app.aml.requests if not r.path.startswith("/msi/")]
    assert aml_calls
    for request in aml_calls:
        if "/discovery" in request.path or request.path == "/api/retail/prices":
            continue
        assert (request.authorization or "").startswith("Bearer token-for-management"), request.path
    # The compute of the cost estimate is read from Resource Manager with the same token ...
    computes = app.aml.requests_to("/computes/sample-compute", "GET")
    assert len(computes) == 1 and computes[0].authorization == "Bearer token-for-management"
    # ... and the Retail Prices API, anonymous, never gets one (nor any other credential header).
    prices = app.aml.requests_to("/api/retail/prices", "GET")
    assert prices, "the sample step finished: its price was looked up"
    for request in prices:
        assert not {"authorization", "x-identity-header", "cookie"} & set(request.headers), request.headers

    track = app.ingestion.track_requests()
    assert track
    assert all((r.header("Authorization") or "").startswith("Bearer token-for-monitor") for r in track)


def _arm_workspace_gets(app: App) -> int:
    return len(
        [
            r
            for r in app.aml.requests_to("/providers/Microsoft.MachineLearningServices/workspaces/", "GET")
            if "/history/" not in r.path
        ]
    )


def test_discovery_happens_once_per_workspace_not_per_event(app: App) -> None:
    for index in range(5):
        invoke(
            sample_event("step_run_completed", id=f"step-event-{index}", data={"runStatus": f"Status{index}"})
        )
    assert len(app.records()) == 5
    assert _arm_workspace_gets(app) == 1
    assert len(app.aml.requests_to("/discovery", "GET")) == 1

    other = app.aml.add_workspace("11111111-2222-3333-4444-555555555555", "other-rg", "other-ws")
    pipeline, _steps = other.add_pipeline_run(steps=1)
    invoke(
        {
            "id": "other-ws-event",
            "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
            "topic": other.resource_id,
            "subject": f"experiments/{pipeline['experimentId']}/runs/{pipeline['runId']}",
            "eventTime": "2024-05-01T10:01:00Z",
            "data": {
                "runId": pipeline["runId"],
                "experimentId": pipeline["experimentId"],
                "experimentName": "experimentName",
                "runType": "azureml.PipelineRun",
                "runStatus": "Running",
            },
        }
    )
    assert _arm_workspace_gets(app) == 2
    assert len(app.aml.requests_to("/discovery", "GET")) == 2
    assert app.records()[-1]["amlWorkSpace"] == "other-ws"


def test_run_calls_per_event_after_the_first_are_details_and_run_only(app: App) -> None:
    invoke(sample_event("step_run_completed", id="warm-up"))
    app.aml.clear_records()
    invoke(sample_event("step_run_completed", id="second", data={"runStatus": "Finalizing"}))
    history = [r.path for r in app.aml.requests if "/history/" in r.path]
    assert len(history) == 2, history
    assert any(p.endswith("/details") for p in history)


def test_completed_pipeline_run_also_emits_its_summary_from_the_children_listing(app: App) -> None:
    workspace = app.aml.workspace()
    pipeline, steps = workspace.add_pipeline_run(steps=4, step_seconds=30)
    event = sample_event(
        "pipeline_run_completed",
        id="pipeline-done",
        data={"runId": pipeline["runId"], "experimentId": pipeline["experimentId"]},
    )

    invoke(event)

    summaries = [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["run_id"] == pipeline["runId"]
    assert summary["step_count"] == "4"
    assert summary["failed_step_count"] == "0"
    assert summary["steps_execution_time_ms"] == str(4 * 30_000)
    assert summary["slowest_step_duration_ms"] == "30000"
    assert summary["slowest_step_run_id"] in {s["runId"] for s in steps}
    assert int(summary["wall_time_ms"]) >= 4 * 30_000
    assert len(app.aml.requests_to(f"/runs/{pipeline['runId']}/children")) >= 1
    # The run is fetched once and serves both the record and the summary: a pipeline run has no
    # definition in /details, so it comes as /rundata's runMetadata and GET /runs/{id} is not sent.
    run_gets = [r for r in app.aml.requests if r.path.endswith(f"/runs/{pipeline['runId']}")]
    assert run_gets == []
    [run_data] = app.aml.requests_to("/rundata", "POST")
    assert run_data.json()["runId"] == pipeline["runId"]
    # The run record itself is emitted too, with the pipeline's own id as its pipeline run id.
    assert app.records()[0]["pipelinerunid"] == pipeline["runId"]


def test_a_running_pipeline_gets_no_summary_yet(app: App) -> None:
    invoke(sample_event("pipeline_run_completed", id="pipeline-running", data={"runStatus": "running"}))
    assert app.records()[0]["status"] == "Running"
    assert app.ingestion.events("AmlPipelineRunSummary") == []


@pytest.mark.parametrize(
    ("fault", "description"),
    [
        (Fault(status=429, headers={"Retry-After": "1"}), "throttled with Retry-After"),
        (Fault(status=500), "server error"),
        (Fault(status=503), "unavailable"),
        (Fault(status=403), "role assignment not propagated yet"),
        (Fault(status=401), "token refused"),
        (Fault(passthrough=True, delay=3.0), "timeout"),
        (Fault(close=True), "connection dropped"),
        (
            Fault(raw=b'HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n{"runId":', status=200),
            "answer cut short",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_enrichment_failures_fail_the_invocation_and_mark_nothing(
    app: App, fault: Fault, description: str
) -> None:
    event = sample_event("step_run_completed", id=f"fault-{fault.status}-{fault.close}-{fault.delay}")
    app.aml.fail("GET", f"/runs/{SAMPLE_STEP_RUN_ID}/details", *([fault] * 3))

    with pytest.raises(EnrichmentUnavailable):
        invoke(event)

    assert len(app.aml.requests_to(f"/runs/{SAMPLE_STEP_RUN_ID}/details")) == 3, description
    assert app.records() == []
    assert event["id"] not in app.processed_ids()

    # Event Grid redelivers; by then the API answers again and the event is recorded once.
    invoke(event)
    assert len(app.records()) == 1
    assert event["id"] in app.processed_ids()


def test_retry_after_is_honoured_inside_the_invocation(app: App) -> None:
    app.aml.fail(
        "GET", f"/runs/{SAMPLE_STEP_RUN_ID}/details", Fault(status=429, headers={"Retry-After": "1"})
    )
    invoke(sample_event("step_run_completed", id="throttled-once"))
    calls = app.aml.requests_to(f"/runs/{SAMPLE_STEP_RUN_ID}/details")
    assert len(calls) == 2
    assert len(app.records()) == 1


def test_a_deleted_run_is_recorded_from_the_event_with_enrichment_error(app: App) -> None:
    event = sample_event("step_run_completed", id="deleted-run", data={"runId": "run-that-was-deleted"})

    invoke(event)

    records = app.records()
    assert len(records) == 1
    record = records[0]
    assert record["run_id"] == "run-that-was-deleted"
    assert record["enrichment_error"]
    assert record["node_id"] == "254c70df"  # carried by the event itself
    for unknown in ("start_time_utc_ms", "end_time_utc_ms", "execution_time_ms", "target", "script"):
        assert unknown not in record
    assert app.ingestion.metrics("aml_run_duration_ms") == []
    assert event["id"] in app.processed_ids()


@pytest.mark.parametrize("mode", [500, 503, "partial", "down"])
def test_ingestion_failure_fails_the_invocation_and_marks_nothing(app: App, mode: Any) -> None:
    event = sample_event("step_run_completed", id=f"ingestion-{mode}")
    app.ingestion.fail_with(mode)

    with pytest.raises(TelemetryExportFailed):
        invoke(event)
    assert event["id"] not in app.processed_ids()

    assert set(app.claim_states().values()) == {"retry"}  # handed back at once, with what was stored

    app.ingestion.reset()
    invoke(event)
    assert event["id"] in app.processed_ids()
    # Exactly once: one request per invocation, and a 206's stored items are not sent again.
    delivered = [r for r in app.records() if r["event_id"] == event["id"]]
    assert len(delivered) == 1
    assert [p["count"] for p in app.ingestion.metrics("aml_run_duration_ms")] == [1]


def test_the_same_event_twice_gives_one_record_and_no_second_lookup(app: App) -> None:
    event = sample_event("step_run_completed", id="delivered-twice")
    invoke(event)
    calls_after_first = len(app.aml.requests)
    invoke(event)
    assert len(app.records()) == 1
    assert len(app.aml.requests) == calls_after_first


def test_run_completed_and_status_changed_for_the_same_run_give_one_record(app: App) -> None:
    invoke(sample_event("step_run_completed", id="status-changed"))
    completed = sample_event(
        "step_run_completed", id="run-completed", eventType="Microsoft.MachineLearningServices.RunCompleted"
    )
    del completed["data"]["runStatus"]
    invoke(completed)
    assert len(app.records()) == 1


def _rejections(app: App) -> list[dict[str, Any]]:
    return [json.loads(blob.content) for blob in app.rejected_blobs()]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda e: e.update(eventType="Microsoft.MachineLearningServices.ModelRegistered"),
            "unsupported_event_type",
        ),
        (lambda e: e["data"].pop("runId"), "missing_runId"),
        (lambda e: e["data"].update(runId=12345), "wrong_type"),
        (
            lambda e: e.update(
                topic="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/x"
            ),
            "topic_not_workspace",
        ),
        (lambda e: e.update(data="not an object"), "missing_data"),
        (lambda e: e["data"].update(runTags=["a", "list"]), "wrong_type"),
        (lambda e: e["data"].update(runProperties={"blob": "x" * 1_100_000}), "too_large"),
    ],
    ids=[
        "wrong-type",
        "no-run-id",
        "run-id-not-string",
        "wrong-topic",
        "data-not-object",
        "tags-not-object",
        "huge",
    ],
)
def test_malformed_events_are_stored_as_rejected_and_the_invocation_succeeds(
    app: App, mutate: Any, reason: str
) -> None:
    event = sample_event("step_run_completed", id=f"bad-{reason}")
    mutate(event)

    invoke(event)  # no exception: Event Grid must not retry an event that can never succeed

    assert app.records() == []
    rejections = _rejections(app)
    assert len(rejections) == 1
    assert rejections[0]["reason"] == reason
    assert rejections[0]["detail"]
    rejected_events = app.ingestion.events("AmlEventRejected")
    assert [e["properties"]["reason"] for e in rejected_events] == [reason]
    counter = app.ingestion.metrics("aml_events_rejected")
    assert [(p["value"], p["properties"].get("reason")) for p in counter] == [(1, reason)]


def test_without_storage_the_app_still_records_with_one_warning(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from amlobs import runtime

    monkeypatch.delenv("AzureWebJobsStorage")
    # A fresh worker process: the warning is once per process, and earlier tests may have used it up.
    monkeypatch.setattr("amlobs.storage._storage_off_warned", False)
    runtime.reset_processor()
    caplog.set_level("WARNING")
    invoke(sample_event("step_run_completed", id="no-storage-1"))
    invoke(sample_event("step_run_completed", id="no-storage-2", data={"runStatus": "Running"}))
    assert len(app.records()) == 2
    storage_warnings = [r for r in caplog.records if "AzureWebJobsStorage" in r.getMessage()]
    assert len(storage_warnings) == 1


def test_the_sample_pipeline_event_is_recorded(app: App) -> None:
    invoke(sample_event("pipeline_run_completed"))
    record = app.records()[0]
    assert record["run_id"] == SAMPLE_PIPELINE_RUN_ID
    assert record["run_type"] == "azureml.PipelineRun"
    assert record["status"] == "Completed"


def _finished_pipeline_event(pipeline: dict[str, Any], status: str, event_id: str) -> dict[str, Any]:
    return sample_event(
        "pipeline_run_completed",
        id=event_id,
        data={"runId": pipeline["runId"], "experimentId": pipeline["experimentId"], "runStatus": status},
    )


def test_summary_of_a_failed_pipeline_over_several_child_pages(app: App) -> None:
    """Reused, failed and still-running steps, listed three to a page, through the loopback run history."""
    workspace = app.aml.workspace()
    pipeline, steps = workspace.add_pipeline_run(steps=7, step_seconds=10)
    app.aml.page_size = 3
    reused, failed, running, slow = steps[0], steps[1], steps[2], steps[3]
    reused["properties"]["azureml.isreused"] = "true"
    reused["endTimeUtc"] = "2024-05-01T12:00:00Z"  # its copied times must not make it the slowest
    failed["status"] = "Failed"
    running["status"] = "Running"
    running["endTimeUtc"] = None
    slow_start = datetime.fromisoformat(slow["startTimeUtc"].replace("Z", "+00:00"))
    slow["endTimeUtc"] = (slow_start + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
    pipeline["status"] = "Failed"

    invoke(_finished_pipeline_event(pipeline, "Failed", "failed-pipeline"))

    [summary] = [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]
    assert summary["status"] == "Failed"
    assert summary["step_count"] == "7"
    assert summary["failed_step_count"] == "1"
    assert summary["reused_step_count"] == "1"
    assert summary["unfinished_step_count"] == "1"
    assert summary["canceled_step_count"] == "0"
    assert summary["slowest_step_run_id"] == slow["runId"]
    assert summary["slowest_step_duration_ms"] == str(30 * 60_000)
    children_calls = app.aml.requests_to(f"/runs/{pipeline['runId']}/children")
    assert len(children_calls) == 3  # 7 children, 3 per page
    # The slow one, the failed one and the three ordinary ones; not the reused or the running one.
    assert summary["steps_execution_time_ms"] == str(30 * 60_000 + 10_000 + 3 * 10_000)


def test_summary_of_an_empty_pipeline(app: App) -> None:
    workspace = app.aml.workspace()
    pipeline, _ = workspace.add_pipeline_run(steps=0)

    invoke(_finished_pipeline_event(pipeline, "Completed", "empty-pipeline"))

    [summary] = [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]
    assert summary["step_count"] == "0"
    assert summary["steps_execution_time_ms"] == "0"
    assert "slowest_step_run_id" not in summary


def test_summary_of_a_pipeline_run_history_cannot_find(app: App) -> None:
    invoke(
        sample_event(
            "pipeline_run_completed",
            id="vanished-pipeline",
            data={"runId": "pipeline-that-was-deleted", "runStatus": "Canceled"},
        )
    )
    [summary] = [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]
    assert summary["summary_error"]
    assert "step_count" not in summary  # unknown, not zero
    assert app.records()[0]["enrichment_error"]


def test_summary_counts_the_steps_of_nested_sub_pipelines(app: App) -> None:
    """A pipeline with a sub-pipeline that has its own sub-pipeline: every level's steps are counted."""
    workspace = app.aml.workspace()
    root, _ = workspace.add_pipeline_run(steps=2, step_seconds=10)
    middle, _ = workspace.add_pipeline_run(steps=2, step_seconds=20, parent=root)
    inner, inner_steps = workspace.add_pipeline_run(steps=1, step_seconds=30, parent=middle)

    invoke(_finished_pipeline_event(root, "Completed", "nested-root"))

    [summary] = [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]
    assert summary["run_id"] == root["runId"]
    assert summary["step_count"] == "5"  # 2 + 2 + 1 leaf steps; the sub-pipeline runs are not steps
    assert summary["sub_pipeline_count"] == "2"
    assert summary["pipeline_depth"] == "3"
    assert summary["incomplete_sub_pipeline_count"] == "0"
    assert summary["steps_execution_time_ms"] == str(2 * 10_000 + 2 * 20_000 + 30_000)
    assert summary["slowest_step_run_id"] == inner_steps[0]["runId"]
    assert "summary_error" not in summary
    listed = {r.path.rsplit("/runs/", 1)[-1] for r in app.aml.requests_to("/children")}
    assert listed == {f"{run['runId']}/children" for run in (root, middle, inner)}

    # A sub-pipeline's own completion is recorded, and summarised only inside its top-level pipeline.
    invoke(_finished_pipeline_event(middle, "Completed", "nested-middle"))
    assert [e["properties"]["run_id"] for e in app.ingestion.events("AmlPipelineRunSummary")] == [
        root["runId"]
    ]
    assert app.records()[-1]["parent_run_id"] == root["runId"]
    assert app.records()[-1]["root_run_id"] == root["runId"]


def test_summary_says_which_sub_pipeline_could_not_be_listed(app: App) -> None:
    workspace = app.aml.workspace()
    root, _ = workspace.add_pipeline_run(steps=1, step_seconds=10)
    gone, _ = workspace.add_pipeline_run(steps=3, parent=root)
    app.aml.fail(
        "GET", f"/runs/{gone['runId']}/children", Fault(status=404, body={"error": {"code": "UserError"}})
    )

    invoke(_finished_pipeline_event(root, "Completed", "root-with-gone-level"))

    [summary] = [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]
    assert summary["step_count"] == "1"  # what could be listed: a lower bound, and it says so
    assert summary["sub_pipeline_count"] == "1"
    assert summary["incomplete_sub_pipeline_count"] == "1"
    assert gone["runId"] in summary["summary_error"]
    assert "HTTP 404" in summary["summary_error"]
