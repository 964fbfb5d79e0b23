"""The notifier on its own: webhook vetting at start, the Teams card against Microsoft's Adaptive Card
1.5 schema, Slack's Block Kit limits, and the POST's retries against loopback Teams and Slack sinks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from amlobs.notify import Notice, NotifySettings, pipeline_failure_notice, webhook_target
from amlobs.notify.notifier import Notifier
from amlobs.notify.slack import slack_payload
from amlobs.notify.teams import CARD_VERSION, adaptive_card, teams_payload
from amlobs.notify.webhook import WebhookRefused, WebhookUnavailable, post_message
from amlobs.settings import SettingsError
from amlobs.storage import MemoryDedupeStore
from amlobs.telemetry_unit import TelemetryUnit
from tests.fakes.webhook_sink import SinkFault, card_errors, slack_errors, webhook_sink

TEAMS_URL = (
    "https://prod-42.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=s3cr3t"
)
SLACK_URL = "https://hooks.slack.com/services/T000/B000/s3cr3tT0k3n"

FAILED_SUMMARY: dict[str, Any] = {
    "run_id": "pipe-1",
    "status": "Failed",
    "experimentName": "nightly-train",
    "subscriptions": "sub",
    "resourceGroup": "rg",
    "amlWorkSpace": "ws",
    "wall_time_ms": "754000",
    "end_time_utc_ms": "1714557600000",
    "step_count": "5",
    "failed_step_count": "1",
    "estimated_cost": "0.4213",
    "cost_currency": "USD",
    "root_cause_step_name": "train",
    "root_cause_step_path": "prepare_and_train > train",
    "root_cause_error_category": "ServiceError",
    "root_cause_error_code": "CommonRuntimeJobError",
    "root_cause_error_code_chain": "ServiceError > OrchestrateJobError > CommonRuntimeJobError",
    "root_cause_error_message": "AzureMLCompute job failed.\nOrchestrateJobError: <boom> & more",
    "root_cause_step_studio_url": "https://ml.azure.com/runs/step-1?wsid=/subscriptions/sub/resourcegroups/rg/workspaces/ws",
    "root_cause_step_logs_url": "https://ml.azure.com/runs/step-1?wsid=/subscriptions/sub/resourcegroups/rg/workspaces/ws#outputsAndLogs",
    "studio_url": "https://ml.azure.com/runs/pipe-1?wsid=/subscriptions/sub/resourcegroups/rg/workspaces/ws",
    "trace_operation_id": "0123456789abcdef0123456789abcdef",
}
APP_INSIGHTS_ID = "/subscriptions/sub/resourceGroups/rg-obs/providers/microsoft.insights/components/appi-x"


# --- start: the webhook is vetted before anything runs -------------------------------------------


@pytest.mark.parametrize(
    ("url", "fmt"),
    [
        (TEAMS_URL, "teams"),
        (
            "https://default0123.ab.environment.api.powerplatform.com:443/powerautomate/automations/direct/workflows/x/triggers/manual/paths/invoke?sig=y",
            "teams",
        ),
        (SLACK_URL, "slack"),
    ],
)
def test_teams_and_slack_hosts_are_recognised(url: str, fmt: str) -> None:
    settings = NotifySettings.from_env({"AML_OBS_NOTIFY_WEBHOOK_URL": url})
    assert settings.target is not None
    assert settings.target.format == fmt
    assert url not in repr(settings)  # the URL is a secret: not even a repr shows it


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://hooks.slack.com/services/T/B/s3cr3t", "must be an https:// URL"),
        (
            "https://hooks.slack.com.evil.example/services/T/B/s3cr3t",
            "not a Microsoft Teams Workflows or Slack",
        ),
        ("https://evil.example/services/T/B/s3cr3t", "not a Microsoft Teams Workflows or Slack"),
        ("https://hooks.slack.com:8443/services/T/B/s3cr3t", "port 8443 is not 443"),
        ("https://user:pw@hooks.slack.com/services/T/B/s3cr3t", "no user info"),
        ("ftp://hooks.slack.com/s3cr3t", "must be an https:// URL"),
    ],
)
def test_unsafe_webhook_urls_are_refused_at_start_without_quoting_them(url: str, says: str) -> None:
    with pytest.raises(SettingsError, match="AML_OBS_NOTIFY_WEBHOOK_URL") as refused:
        NotifySettings.from_env({"AML_OBS_NOTIFY_WEBHOOK_URL": url})
    assert says in str(refused.value)
    assert "s3cr3t" not in str(refused.value)


def test_an_explicitly_allowed_host_needs_its_format() -> None:
    env = {
        "AML_OBS_NOTIFY_WEBHOOK_URL": "https://relay.example.com/hook/s3cr3t",
        "AML_OBS_NOTIFY_ALLOWED_HOSTS": "relay.example.com",
    }
    with pytest.raises(SettingsError, match="AML_OBS_NOTIFY_FORMAT"):
        NotifySettings.from_env(env)
    target = NotifySettings.from_env({**env, "AML_OBS_NOTIFY_FORMAT": "slack"}).target
    assert target is not None and target.format == "slack"
    with pytest.raises(SettingsError, match="is a slack webhook host"):
        webhook_target(SLACK_URL, declared="teams")


def test_a_loopback_webhook_is_for_the_test_suite_only() -> None:
    env = {
        "AML_OBS_NOTIFY_WEBHOOK_URL": "http://127.0.0.1:8080/hook/s3cr3t",
        "AML_OBS_NOTIFY_FORMAT": "slack",
    }
    with pytest.raises(SettingsError, match="AML_OBS_TEST_ALLOW_LOOPBACK") as refused:
        NotifySettings.from_env(env)
    assert "s3cr3t" not in str(refused.value)
    assert NotifySettings.from_env({**env, "AML_OBS_TEST_ALLOW_LOOPBACK": "true"}).enabled
    with pytest.raises(SettingsError, match="Azure host"):
        NotifySettings.from_env({**env, "AML_OBS_TEST_ALLOW_LOOPBACK": "true", "WEBSITE_SITE_NAME": "func-x"})


def test_an_unresolved_key_vault_reference_is_named_not_used() -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://kv-x.vault.azure.net/secrets/notify-webhook-url/)"
    with pytest.raises(SettingsError, match="notify-webhook-url"):
        NotifySettings.from_env({"AML_OBS_NOTIFY_WEBHOOK_URL": reference})


def test_which_statuses_notify_is_a_setting() -> None:
    assert NotifySettings.from_env({}).statuses == {"Failed"}
    assert NotifySettings.from_env({"AML_OBS_NOTIFY_STATUSES": "failed, Canceled"}).statuses == {
        "Failed",
        "Canceled",
    }
    with pytest.raises(SettingsError, match="Completed"):
        NotifySettings.from_env({"AML_OBS_NOTIFY_STATUSES": "Failed,Completed"})
    assert not NotifySettings.from_env({}).enabled


# --- the message ------------------------------------------------------------------------------------


def test_the_failure_notice_names_the_step_its_error_chain_cost_and_links() -> None:
    notice = pipeline_failure_notice(FAILED_SUMMARY, APP_INSIGHTS_ID)

    assert notice.title == "Pipeline nightly-train failed: step prepare_and_train > train"
    facts = dict(notice.facts)
    assert facts["Workspace"] == "ws (rg)"
    assert facts["Duration"] == "12 min 34 s"
    assert facts["Failing step"] == "prepare_and_train > train"
    assert facts["Error"] == "ServiceError > OrchestrateJobError > CommonRuntimeJobError"
    assert facts["Estimated cost so far"] == "0.4213 USD"
    assert facts["Steps"] == "5 steps, 1 failed"
    assert notice.detail == FAILED_SUMMARY["root_cause_error_message"]
    links = dict(notice.links)
    assert links["Failing step in studio"].endswith(
        "/runs/step-1?wsid=/subscriptions/sub/resourcegroups/rg/workspaces/ws"
    )
    assert links["Step logs (user_logs/std_log.txt)"].endswith("#outputsAndLogs")
    trace = links["Trace in Application Insights"]
    assert trace.startswith(
        "https://portal.azure.com/#blade/Microsoft_OperationsManagementSuite_Workspace/AnalyticsBlade/"
    )
    assert "isQueryBase64Compressed/true" in trace


def test_the_trace_link_carries_the_query_of_the_operation() -> None:
    import base64
    import gzip
    from urllib.parse import unquote

    trace = dict(pipeline_failure_notice(FAILED_SUMMARY, APP_INSIGHTS_ID).links)[
        "Trace in Application Insights"
    ]
    encoded = unquote(trace.split("/query/")[1].split("/")[0])
    query = gzip.decompress(base64.b64decode(encoded)).decode()
    assert "operation_Id == '0123456789abcdef0123456789abcdef'" in query
    scope = json.loads(unquote(trace.split("/scope/")[1].split("/")[0]))
    assert scope == {"resources": [{"resourceId": APP_INSIGHTS_ID}]}
    assert unquote(trace.rsplit("/timespan/", 1)[1]) == "2024-04-29T10:00:00Z/2024-05-01T16:00:00Z"


def test_the_teams_card_validates_against_the_adaptive_card_1_5_schema() -> None:
    card = adaptive_card(pipeline_failure_notice(FAILED_SUMMARY, APP_INSIGHTS_ID))
    assert card["version"] == CARD_VERSION == "1.5"
    assert card_errors(card) == []
    assert [a["type"] for a in card["actions"]] == ["Action.OpenUrl"] * 4
    # the schema is not a rubber stamp: a card it does not describe fails
    broken = json.loads(json.dumps(card))
    broken["body"][1]["type"] = "FactList"
    assert card_errors(broken)


def test_a_notice_with_every_part_at_its_limit_stays_within_slacks_block_kit_limits() -> None:
    huge = Notice(
        title="T" * 400,
        status="Failed",
        facts=tuple((f"label {i}" * 20, "<value> & " * 500) for i in range(23)),
        detail="```" + "x" * 10_000,
        links=(
            *((f"link {i} " * 30, f"https://ml.azure.com/runs/{i}") for i in range(30)),
            ("too long", "https://ml.azure.com/" + "a" * 3100),
        ),
    )
    message = slack_payload(huge)
    assert slack_errors(message) == []
    assert len(message["blocks"][0]["text"]["text"]) == 150
    assert len(message["blocks"]) == 1 + 3 + 1 + 1  # header, 23 facts in sections of 10, detail, actions
    assert "<value>" not in json.dumps(message)  # escaped: text from a run cannot become a link or mention
    assert all("a" * 3100 not in b["url"] for b in message["blocks"][-1]["elements"])


def test_a_teams_message_over_28_kb_is_refused_before_sending() -> None:
    notice = Notice(title="x", status="Failed", facts=tuple((f"k{i}", "v" * 1000) for i in range(40)))
    with pytest.raises(ValueError, match="28672-byte limit"):
        teams_payload(notice)


# --- the POST -----------------------------------------------------------------------------------------


def _settings(url: str, fmt: str, **overrides: Any) -> NotifySettings:
    base = NotifySettings.from_env(
        {
            "AML_OBS_NOTIFY_WEBHOOK_URL": url,
            "AML_OBS_NOTIFY_FORMAT": fmt,
            "AML_OBS_TEST_ALLOW_LOOPBACK": "true",
        }
    )
    return NotifySettings(**{**base.__dict__, "max_retry_after_seconds": 2.0, **overrides})


@pytest.mark.parametrize("fmt", ["teams", "slack"])
def test_a_message_reaches_the_sink_without_any_credential(fmt: str) -> None:
    with webhook_sink(fmt) as sink:  # type: ignore[arg-type]
        settings = _settings(sink.url, fmt)
        assert settings.target is not None
        notice = pipeline_failure_notice(FAILED_SUMMARY, APP_INSIGHTS_ID)
        payload = teams_payload(notice) if fmt == "teams" else slack_payload(notice)
        delivery = post_message(settings.target, payload, settings)

        assert delivery.status == (202 if fmt == "teams" else 200)
        [request] = sink.requests
        assert request.accepted and "authorization" not in request.headers
        assert sink.messages == [payload]


def test_429_and_5xx_and_a_dropped_connection_are_retried_with_backoff_within_bounds() -> None:
    slept: list[float] = []
    with webhook_sink("slack") as sink:
        sink.fail(
            SinkFault(status=429, headers={"Retry-After": "1"}, body="rate_limited"),
            SinkFault(status=503),
            SinkFault(close=True),
        )
        settings = _settings(sink.url, "slack")
        assert settings.target is not None
        delivery = post_message(
            settings.target, slack_payload(Notice("t", "Failed")), settings, sleep=slept.append
        )

    assert delivery.attempts == 4
    assert slept[0] == 1.0  # Slack's Retry-After
    assert 0.4 <= slept[1] <= 1.2 and 0.8 <= slept[2] <= 2.4  # exponential backoff with jitter
    assert len(sink.messages) == 1


def test_a_webhook_that_keeps_failing_gives_up_after_its_attempts() -> None:
    with webhook_sink("teams") as sink:
        sink.fail(*[SinkFault(status=502, body="bad gateway")] * 6)
        settings = _settings(sink.url, "teams", max_attempts=3)
        assert settings.target is not None
        with pytest.raises(WebhookUnavailable) as gave_up:
            post_message(
                settings.target, teams_payload(Notice("t", "Failed")), settings, sleep=lambda _: None
            )
    assert gave_up.value.attempts == 3 and gave_up.value.status == 502
    assert len(sink.requests) == 3


def test_a_timeout_is_retried_and_the_time_budget_bounds_the_whole_delivery() -> None:
    with webhook_sink("teams") as sink:
        sink.fail(*[SinkFault(delay=0.6)] * 5)
        settings = _settings(sink.url, "teams", timeout_seconds=0.3, budget_seconds=1.0)
        assert settings.target is not None
        import time

        started = time.monotonic()
        with pytest.raises(WebhookUnavailable, match="TimeoutError"):
            post_message(settings.target, teams_payload(Notice("t", "Failed")), settings)
        assert time.monotonic() - started < 2.5


def test_a_retry_after_beyond_the_cap_is_not_waited_for() -> None:
    with webhook_sink("slack") as sink:
        sink.fail(SinkFault(status=429, headers={"Retry-After": "3600"}))
        settings = _settings(sink.url, "slack")
        assert settings.target is not None
        with pytest.raises(WebhookUnavailable, match="over the 2 s cap"):
            post_message(settings.target, slack_payload(Notice("t", "Failed")), settings, sleep=pytest.fail)
    assert len(sink.requests) == 1


def test_a_permanent_4xx_is_reported_with_its_body_and_not_retried() -> None:
    with webhook_sink("slack") as sink:
        sink.fail(SinkFault(status=404, body="channel_not_found"))
        settings = _settings(sink.url, "slack")
        assert settings.target is not None
        with pytest.raises(WebhookRefused) as refused:
            post_message(settings.target, slack_payload(Notice("t", "Failed")), settings, sleep=pytest.fail)
    assert (refused.value.status, refused.value.body) == (404, "channel_not_found")
    assert len(sink.requests) == 1
    assert sink.url not in str(refused.value)


def test_a_redirect_is_not_followed() -> None:
    with webhook_sink("slack") as sink:
        sink.fail(SinkFault(status=302, headers={"Location": "http://127.0.0.1:9/elsewhere"}))
        settings = _settings(sink.url, "slack")
        assert settings.target is not None
        with pytest.raises(WebhookRefused, match="HTTP 302"):
            post_message(settings.target, slack_payload(Notice("t", "Failed")), settings)
    assert len(sink.requests) == 1


# --- once per key -----------------------------------------------------------------------------------


class _Telemetry:
    def __init__(self) -> None:
        self.units: list[TelemetryUnit] = []

    def send(self, unit: TelemetryUnit) -> None:
        self.units.append(unit)


def test_one_message_per_key_and_history_never_notifies() -> None:
    with webhook_sink("teams") as sink:
        telemetry = _Telemetry()
        notifier = Notifier(_settings(sink.url, "teams"), MemoryDedupeStore(), telemetry)

        assert notifier.pipeline_finished(FAILED_SUMMARY, source="replay").result == "ignored"
        assert notifier.pipeline_finished(FAILED_SUMMARY, source="backfill").result == "ignored"
        assert (
            notifier.pipeline_finished({**FAILED_SUMMARY, "status": "Canceled"}, source="live").result
            == "ignored"
        )
        assert notifier.pipeline_finished(FAILED_SUMMARY, source="live").result == "sent"
        assert notifier.pipeline_finished(FAILED_SUMMARY, source="live").result == "duplicate"

    assert len(sink.messages) == 1
    assert telemetry.units == []


def test_a_refused_message_leaves_a_health_record_and_is_not_tried_again() -> None:
    with webhook_sink("slack") as sink:
        sink.fail(SinkFault(status=400, body="invalid_payload"))
        telemetry = _Telemetry()
        notifier = Notifier(_settings(sink.url, "slack"), MemoryDedupeStore(), telemetry)

        outcome = notifier.pipeline_finished(FAILED_SUMMARY, source="live")
        again = notifier.pipeline_finished(FAILED_SUMMARY, source="live")

    assert (outcome.result, again.result) == ("not_sent", "duplicate")
    [health] = telemetry.units[0].events("AmlNotificationFailed")
    assert health["http_status"] == "400" and health["response_body"] == "invalid_payload"
    assert health["host"] == "127.0.0.1" and health["format"] == "slack"
    assert len(sink.requests) == 1


def test_a_missed_schedule_is_one_message_through_the_same_notifier() -> None:
    from amlobs.notify import schedule_notice, schedule_notify_key

    with webhook_sink("slack") as sink:
        notifier = Notifier(_settings(sink.url, "slack"), MemoryDedupeStore(), _Telemetry())
        notice = schedule_notice(
            status="Missed", schedule="nightly-train", workspace="ws", due_utc="2024-05-01T02:00Z"
        )
        key = schedule_notify_key("sub/rg/ws", "nightly-train", "2024-05-01T02:00Z", "Missed")

        assert notifier.send(key, notice).result == "sent"
        assert notifier.send(key, notice).result == "duplicate"

    [message] = sink.messages
    assert message["blocks"][0]["text"]["text"] == "Schedule nightly-train missed: due 2024-05-01T02:00Z"
    assert slack_errors(message) == []
    card = adaptive_card(notice)
    assert card_errors(card) == []
