"""A failed pipeline run, through ``function_app.app`` as the host drives it, against the loopback run
history, ingestion, Azurite and a loopback Teams or Slack webhook: the summary names the failing step as
a user reads it, and the team gets exactly one message."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amlobs import runtime
from amlobs.errors import DeliveryInProgress
from amlobs.events import WorkspaceRef
from amlobs.failure.links import studio_logs_url, studio_run_url
from tests.fakes.webhook_sink import SinkFault, WebhookSink, card_errors, slack_errors, webhook_sink
from tests.integration.conftest import App
from tests.integration.host import invoke
from tests.trace_scenario import RECORDED_ERROR, run_event, v1_pipeline, v2_pipeline

pytestmark = pytest.mark.integration

END = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
APP_INSIGHTS_ID = "/subscriptions/38e0c6f9-393e-413e-9d17-6e95dc2b5a5b/resourceGroups/rg-obs/providers/microsoft.insights/components/appi-obs"


def summaries(app: App) -> list[dict[str, str]]:
    return [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]


def workspace_ref(app: App) -> WorkspaceRef:
    ws = app.aml.workspace()
    return WorkspaceRef(ws.subscription_id, ws.resource_group, ws.name)


def terminal_event(app: App, run: dict[str, Any]) -> dict[str, Any]:
    return run_event(app.aml.workspace(), run, run["status"])


@pytest.fixture
def teams(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookSink]:
    with webhook_sink("teams") as sink:
        monkeypatch.setenv("AML_OBS_NOTIFY_WEBHOOK_URL", sink.url)
        monkeypatch.setenv("AML_OBS_NOTIFY_FORMAT", "teams")
        monkeypatch.setenv("AML_OBS_APPINSIGHTS_RESOURCE_ID", APP_INSIGHTS_ID)
        runtime.reset_processor()
        yield sink


# --- the root cause, as the summary says it ----------------------------------------------------------


def test_failed_v1_pipeline_names_its_failed_step_and_why(app: App) -> None:
    pipeline = v1_pipeline(app.aml.workspace(), end=END, steps=3, failed_step=1)
    failed_step = pipeline.runs[2]  # the root, then steps 0, 1, 2

    invoke(terminal_event(app, pipeline.root))

    [summary] = summaries(app)
    ws = workspace_ref(app)
    assert summary["status"] == "Failed"
    assert summary["root_cause_step_run_id"] == failed_step["runId"]
    assert summary["root_cause_step_name"] == "step_1"
    assert "root_cause_step_path" not in summary  # a direct step of the pipeline
    assert summary["root_cause_error_category"] == "ServiceError"
    assert summary["root_cause_error_code"] == "CommonRuntimeJobError"
    assert (
        summary["root_cause_error_code_chain"] == "ServiceError > OrchestrateJobError > CommonRuntimeJobError"
    )
    assert summary["root_cause_error_message"] == RECORDED_ERROR["error"]["message"]
    assert summary["root_cause_step_studio_url"] == studio_run_url(ws, failed_step["runId"])
    assert summary["root_cause_step_logs_url"] == studio_logs_url(ws, failed_step["runId"])
    assert summary["root_cause_step_log_file"] == "user_logs/std_log.txt"
    assert summary["studio_url"] == studio_run_url(ws, pipeline.root["runId"])
    assert "root_cause_note" not in summary
    # the summary sits in its own trace: the id it names is the one ingestion stored it under
    [envelope] = [
        e
        for e in app.ingestion.envelopes
        if e.get("data", {}).get("baseData", {}).get("name") == "AmlPipelineRunSummary"
    ]
    assert envelope["tags"]["ai.operation.id"] == summary["trace_operation_id"]


def test_failed_v2_pipeline_names_the_node_inside_its_nested_sub_pipeline(app: App) -> None:
    pipeline = v2_pipeline(app.aml.workspace(), end=END, failed_node=True)
    sub = next(r for r in pipeline.runs if r.get("displayName") == "train_and_evaluate")
    node = next(r for r in pipeline.runs if r.get("displayName") == "evaluate_model")

    invoke(terminal_event(app, pipeline.root))

    [summary] = summaries(app)
    assert node["parentRunId"] == sub["runId"] and sub["parentRunId"] == pipeline.root["runId"]
    assert summary["root_cause_step_run_id"] == node["runId"]
    assert summary["root_cause_step_name"] == "evaluate_model"
    assert summary["root_cause_step_path"] == "train_and_evaluate > evaluate_model"
    assert summary["root_cause_step_node_id"] == node["properties"]["azureml.nodeid"]
    assert summary["root_cause_error_code"] == "CommonRuntimeJobError"
    assert summary["failed_step_count"] == "1"


def test_canceled_pipeline_says_no_step_failed(app: App) -> None:
    pipeline, _ = app.aml.workspace().add_pipeline_run(steps=2, status="Canceled")

    invoke(terminal_event(app, pipeline))

    [summary] = summaries(app)
    assert summary["status"] == "Canceled"
    assert summary["root_cause_note"] == "no step failed: the pipeline run was canceled"
    assert "root_cause_step_run_id" not in summary
    assert summary["canceled_step_count"] == "2"


def test_pipeline_that_failed_with_every_step_completed_says_so(app: App) -> None:
    ws = app.aml.workspace()
    pipeline, _ = ws.add_pipeline_run(steps=2, status="Completed")
    for answer in (pipeline, ws.details[pipeline["runId"]]):
        answer["status"] = "Failed"

    invoke(terminal_event(app, pipeline))

    [summary] = summaries(app)
    assert summary["failed_step_count"] == "0"
    assert summary["root_cause_note"] == "no step failed: the pipeline run itself failed and says no error"
    assert not any(key.startswith("root_cause_step") for key in summary)


# --- one message per failed pipeline run ---------------------------------------------------------------


def test_one_teams_message_under_redelivery_and_concurrent_deliveries(app: App, teams: WebhookSink) -> None:
    pipeline = v2_pipeline(app.aml.workspace(), end=END, failed_node=True)
    event = terminal_event(app, pipeline.root)

    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            invoke(event)
        except DeliveryInProgress as busy:  # transient: Event Grid redelivers it
            errors.append(busy)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in errors:
        invoke(event)  # the redeliveries of the deliveries that were told to retry
    invoke(event)  # and Event Grid's own redelivery
    invoke({**event, "id": "another-delivery-id"})  # a second event for the same status

    [message] = teams.messages
    card = message["attachments"][0]["content"]
    assert card_errors(card) == []
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Failing step"] == "train_and_evaluate > evaluate_model"
    assert facts["Error"] == "ServiceError > OrchestrateJobError > CommonRuntimeJobError"
    assert facts["Workspace"].startswith(app.aml.workspace().name)
    links = {a["title"]: a["url"] for a in card["actions"]}
    node = next(r for r in pipeline.runs if r.get("displayName") == "evaluate_model")
    assert links["Failing step in studio"] == studio_run_url(workspace_ref(app), node["runId"])
    assert "Trace in Application Insights" in links
    assert len(summaries(app)) >= 1


def test_replayed_and_backfilled_failures_never_notify(app: App, teams: WebhookSink) -> None:
    ws = app.aml.workspace()
    replayed = v1_pipeline(ws, end=END)
    backfilled = v1_pipeline(ws, end=END + timedelta(hours=1))

    processor = runtime.get_processor()
    assert processor.process(terminal_event(app, replayed.root), source="replay").kind == "recorded"
    assert processor.process(terminal_event(app, backfilled.root), source="backfill").kind == "recorded"

    assert len(summaries(app)) == 2
    assert teams.requests == []


def test_a_refusing_webhook_leaves_a_health_record_and_the_event_is_done(
    app: App, teams: WebhookSink
) -> None:
    teams.fail(SinkFault(status=400, body="Bad Request: the flow is turned off"))
    pipeline = v1_pipeline(app.aml.workspace(), end=END)
    event = terminal_event(app, pipeline.root)

    invoke(event)  # succeeds: the message is not the event
    invoke(event)  # a redelivery: nothing is posted again

    assert len(teams.requests) == 1 and teams.messages == []
    assert event["id"] in app.processed_ids()
    [health] = [e["properties"] for e in app.ingestion.events("AmlNotificationFailed")]
    assert health["http_status"] == "400"
    assert health["response_body"] == "Bad Request: the flow is turned off"
    assert health["format"] == "teams" and health["host"] == "127.0.0.1"


def test_slack_gets_one_message_within_block_kit_limits(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    with webhook_sink("slack") as slack:
        monkeypatch.setenv("AML_OBS_NOTIFY_WEBHOOK_URL", slack.url)
        monkeypatch.setenv("AML_OBS_NOTIFY_FORMAT", "slack")
        monkeypatch.setenv("AML_OBS_NOTIFY_STATUSES", "Failed,Canceled")
        runtime.reset_processor()
        slack.fail(SinkFault(status=503))  # retried inside the invocation
        pipeline = v1_pipeline(app.aml.workspace(), end=END)
        canceled, _ = app.aml.workspace().add_pipeline_run(steps=1, status="Canceled")

        invoke(terminal_event(app, pipeline.root))
        invoke(terminal_event(app, canceled))
        invoke(terminal_event(app, pipeline.root))

        failed_message, canceled_message = slack.messages
    assert slack_errors(failed_message) == [] and slack_errors(canceled_message) == []
    assert failed_message["blocks"][0]["text"]["text"].endswith("failed: step step_1")
    assert "canceled" in canceled_message["text"]
    assert len(slack.requests) == 3  # the 503, then one message each


def test_the_webhook_url_is_never_logged_or_recorded(
    app: App, teams: WebhookSink, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    teams.fail(SinkFault(status=503), SinkFault(close=True))
    first = v1_pipeline(app.aml.workspace(), end=END)
    invoke(terminal_event(app, first.root))  # delivered after a 503 and a dropped connection
    teams.fail(SinkFault(status=403, body=f"forbidden: {teams.path}"))  # a body that echoes the URL's path
    second = v1_pipeline(app.aml.workspace(), end=END + timedelta(hours=1))
    invoke(terminal_event(app, second.root))

    assert len(teams.messages) == 1
    assert app.ingestion.events("AmlNotificationFailed")
    out, err = capfd.readouterr()
    recorded = [
        caplog.text,
        out,
        err,
        json.dumps([r.envelopes for r in app.ingestion.requests], default=str),
        json.dumps(app.storage.list_entities("processedevents"), default=str),
        json.dumps(
            [(b.name, b.content.decode("utf-8", "replace"), b.metadata) for b in app.rejected_blobs()]
        ),
    ]
    for secret in teams.secrets:
        for text in recorded:
            assert secret not in text
