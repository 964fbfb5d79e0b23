"""amlobs.telemetry through the real Azure Monitor exporter to the loopback ingestion fake."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from amlobs.errors import TelemetryExportFailed
from amlobs.settings import Settings, SettingsError
from amlobs.telemetry import (
    EVENT_PIPELINE_SUMMARY,
    EVENT_REJECTED,
    EVENT_RUN_STATUS_CHANGED,
    METRIC_DIMENSIONS,
    METRIC_DURATION,
    METRIC_QUEUE_TIME,
    METRIC_REJECTED,
    AzureMonitorTelemetry,
    LoggingTelemetry,
    RecordingTelemetry,
    RejectedItem,
    TelemetrySink,
    create_telemetry,
    parse_authentication_string,
    parse_connection_string,
)
from tests.fakes.ingestion import EVENT_ENVELOPE, IngestionServer

TIMEOUT = 0.5
CLIENT_ID = "00000000-0000-0000-0000-0000000000c1"

RECORD: dict[str, str | int] = {
    "run_id": "train_1",
    "status": "Completed",
    "run_type": "azureml.StepRun",
    "experimentName": "churn",
    "experimentId": "6f0c1b9e-6a55-4e0c-9d2b-0a9c3f1e2d44",
    "subscriptions": "11111111-1111-1111-1111-111111111111",
    "resourceGroup": "rg-ml",
    "amlWorkSpace": "ws1",
    "start_time_utc_ms": 1_700_000_060_000,
    "end_time_utc_ms": 1_700_000_185_250,
    "execution_time_ms": 125_250,
    "created_time_utc_ms": 1_700_000_000_000,
    "queue_time_ms": 60_000,
    "target": "cpu-cluster",
    "event_id": "evt-1",
}


def record(run_id: str, **changes: str | int) -> dict[str, str | int]:
    return {**RECORD, "run_id": run_id, "event_id": f"evt-{run_id}", **changes}


class FakeCredential:
    """An in-process TokenCredential: what the exporter asks for and what it sends."""

    def __init__(self, token: str = "fake-entra-token") -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def settings_for(
    connection_string: str | None, authentication_string: str | None = None, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "appinsights_connection_string": connection_string,
        "appinsights_authentication_string": authentication_string,
        "azure_client_id": None,
        "storage": None,
        "http_timeout_seconds": TIMEOUT,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_sink(ingestion_server: IngestionServer) -> Iterator[Callable[..., TelemetrySink]]:
    sinks: list[TelemetrySink] = []

    def make(credential: Any = None, authentication_string: str | None = None) -> TelemetrySink:
        sink = create_telemetry(
            settings_for(ingestion_server.connection_string, authentication_string), credential
        )
        sinks.append(sink)
        return sink

    yield make
    ingestion_server.reset()
    for sink in sinks:
        sink.shutdown()


@pytest.fixture
def sink(make_sink: Callable[..., TelemetrySink]) -> TelemetrySink:
    return make_sink()


def run_ids(server: IngestionServer, name: str = EVENT_RUN_STATUS_CHANGED) -> list[str]:
    return [event["properties"].get("run_id", "") for event in server.events(name)]


# --- what lands in Application Insights --------------------------------------------------------


def test_run_record_becomes_one_custom_event_with_the_record_as_custom_dimensions(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    assert isinstance(sink, AzureMonitorTelemetry)
    sink.emit_run_record(RECORD)
    sink.flush()

    events = [e for e in ingestion_server.envelopes if e["name"] == EVENT_ENVELOPE]
    assert len(events) == 1
    assert events[0]["iKey"] == ingestion_server.instrumentation_key
    assert events[0]["data"]["baseType"] == "EventData"
    base = events[0]["data"]["baseData"]
    assert base["name"] == "AmlRunStatusChanged" == EVENT_RUN_STATUS_CHANGED
    # Exactly the record, every value a string: no exporter-internal attribute leaks into KQL.
    assert base["properties"] == {key: str(value) for key, value in RECORD.items()}


def test_histograms_carry_the_record_values_and_only_the_dimensions_present(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    sink.emit_run_record(RECORD)  # has no step_type
    sink.flush()

    expected_dimensions = {
        "experimentName": "churn",
        "run_type": "azureml.StepRun",
        "status": "Completed",
        "target": "cpu-cluster",
    }
    assert set(expected_dimensions) < set(METRIC_DIMENSIONS)
    for name, value in ((METRIC_DURATION, 125_250), (METRIC_QUEUE_TIME, 60_000)):
        points = ingestion_server.metrics(name)
        assert len(points) == 1, name
        assert (points[0]["value"], points[0]["count"]) == (value, 1)
        assert (points[0]["min"], points[0]["max"]) == (value, value)
        assert points[0]["properties"] == expected_dimensions
    assert (METRIC_DURATION, METRIC_QUEUE_TIME) == ("aml_run_duration_ms", "aml_run_queue_time_ms")


def test_histogram_points_aggregate_per_dimension_set_within_one_flush(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    sink.emit_run_record(record("a", execution_time_ms=1000, step_type="PythonScriptStep"))
    sink.emit_run_record(record("b", execution_time_ms=3000, step_type="PythonScriptStep"))
    sink.emit_run_record(record("c", execution_time_ms=500, status="Failed"))
    sink.flush()

    by_status = {p["properties"]["status"]: p for p in ingestion_server.metrics(METRIC_DURATION)}
    assert set(by_status) == {"Completed", "Failed"}
    completed = by_status["Completed"]
    assert completed["properties"]["step_type"] == "PythonScriptStep"
    assert (completed["value"], completed["count"], completed["min"], completed["max"]) == (
        4000,
        2,
        1000,
        3000,
    )
    assert (by_status["Failed"]["value"], by_status["Failed"]["count"]) == (500, 1)
    assert "step_type" not in by_status["Failed"]["properties"]


def test_a_record_without_times_sends_the_event_but_no_histogram_points(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    running = {
        k: v
        for k, v in record("r", status="Running").items()
        if k not in ("execution_time_ms", "queue_time_ms")
    }
    sink.emit_run_record(running)
    sink.flush()

    assert run_ids(ingestion_server) == ["r"]
    assert ingestion_server.metrics(METRIC_DURATION) == []
    assert ingestion_server.metrics(METRIC_QUEUE_TIME) == []


def test_pipeline_summary_is_its_own_custom_event(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    summary: dict[str, str | int] = {
        "pipelinerunid": "p1",
        "status": "Completed",
        "steps_total": 3,
        "steps_failed": 0,
    }
    sink.emit_pipeline_summary(summary)
    sink.flush()

    events = ingestion_server.events(EVENT_PIPELINE_SUMMARY)
    assert EVENT_PIPELINE_SUMMARY == "AmlPipelineRunSummary"
    assert [e["properties"] for e in events] == [{k: str(v) for k, v in summary.items()}]
    assert ingestion_server.events(EVENT_RUN_STATUS_CHANGED) == []


def test_rejected_events_send_an_event_with_the_reason_and_a_counter_per_reason(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    attributes = {"event_id": "e-9", "topic": "/subscriptions/x", "blob_name": "2024/01/e-9.json"}
    sink.emit_rejected("not_json", "event is not valid JSON", attributes)
    sink.emit_rejected("not_json", "event is not valid JSON", {})
    sink.emit_rejected("unsupported_event_type", "eventType 'X' is not supported", {"event_type": "X"})
    sink.flush()

    events = ingestion_server.events(EVENT_REJECTED)
    assert EVENT_REJECTED == "AmlEventRejected"
    assert [e["properties"] for e in events] == [
        {"reason": "not_json", "detail": "event is not valid JSON", **attributes},
        {"reason": "not_json", "detail": "event is not valid JSON"},
        {"reason": "unsupported_event_type", "detail": "eventType 'X' is not supported", "event_type": "X"},
    ]
    counts = {p["properties"]["reason"]: p["value"] for p in ingestion_server.metrics(METRIC_REJECTED)}
    assert METRIC_REJECTED == "aml_events_rejected"
    assert counts == {"not_json": 2, "unsupported_event_type": 1}
    assert all(set(p["properties"]) == {"reason"} for p in ingestion_server.metrics(METRIC_REJECTED))


def test_an_attribute_cannot_overwrite_the_rejection_reason(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    sink.emit_rejected("missing_id", "id is missing", {"reason": "fine", "detail": "nothing"})
    sink.flush()
    (event,) = ingestion_server.events(EVENT_REJECTED)
    assert (event["properties"]["reason"], event["properties"]["detail"]) == ("missing_id", "id is missing")


# --- Entra ID ingestion ------------------------------------------------------------------------


def test_with_the_authentication_string_every_request_carries_the_credentials_bearer_token(
    make_sink: Callable[..., TelemetrySink], ingestion_server: IngestionServer
) -> None:
    credential = FakeCredential()
    sink = make_sink(credential, f"Authorization=AAD;ClientId={CLIENT_ID}")
    sink.emit_run_record(RECORD)
    sink.flush()

    requests = ingestion_server.track_requests()
    assert len(requests) == 2  # events, metrics
    assert {r.header("Authorization") for r in requests} == {"Bearer fake-entra-token"}
    assert credential.scopes and {s for s in credential.scopes} == {("https://monitor.azure.com//.default",)}
    assert run_ids(ingestion_server) == ["train_1"]


def test_without_the_authentication_string_no_token_is_requested_or_sent(
    make_sink: Callable[..., TelemetrySink], ingestion_server: IngestionServer
) -> None:
    credential = FakeCredential()
    sink = make_sink(credential, None)
    sink.emit_run_record(RECORD)
    sink.flush()

    assert ingestion_server.track_requests()
    assert all(r.header("Authorization") is None for r in ingestion_server.track_requests())
    assert credential.scopes == []


def test_authentication_string_without_a_credential_is_a_settings_error(
    ingestion_server: IngestionServer,
) -> None:
    with pytest.raises(SettingsError, match="APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        create_telemetry(settings_for(ingestion_server.connection_string, "Authorization=AAD"), None)


@pytest.mark.parametrize(
    "value",
    [
        "Authorization=ikey",
        "ClientId=" + CLIENT_ID,
        "Authorization=AAD;ClientId=not-a-guid",
        "Authorization=AAD;Client_Id=" + CLIENT_ID,
        "Authorization",
        "AAD",
    ],
)
def test_malformed_authentication_string_is_a_settings_error(
    value: str, ingestion_server: IngestionServer
) -> None:
    with pytest.raises(SettingsError, match="APPLICATIONINSIGHTS_AUTHENTICATION_STRING"):
        create_telemetry(settings_for(ingestion_server.connection_string, value), FakeCredential())
    assert ingestion_server.requests == []


@pytest.mark.parametrize(
    ("value", "client_id"),
    [("Authorization=AAD", None), (f"authorization=aad; clientid={CLIENT_ID};", CLIENT_ID)],
)
def test_authentication_string_forms(value: str, client_id: str | None) -> None:
    assert parse_authentication_string(value).client_id == client_id


# --- connection string -------------------------------------------------------------------------


def test_connection_string_is_validated_before_anything_is_sent() -> None:
    ikey = "4b0a5d1e-2f3c-4d5e-8f90-1a2b3c4d5e6f"
    target = parse_connection_string(
        f"InstrumentationKey={ikey.upper()};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;"
    )
    assert target.instrumentation_key == ikey
    assert target.ingestion_endpoint == "https://westeurope-5.in.applicationinsights.azure.com"
    assert (
        parse_connection_string(f"InstrumentationKey={ikey}").ingestion_endpoint
        == "https://dc.services.visualstudio.com"
    )
    for bad in (
        "IngestionEndpoint=https://x.in.applicationinsights.azure.com/",
        "InstrumentationKey=abc",
        f"InstrumentationKey={ikey};IngestionEndpoint=http://ingest.example.com/",
        f"InstrumentationKey={ikey};Authorization=AAD",
        "garbage",
    ):
        with pytest.raises(SettingsError, match="APPLICATIONINSIGHTS_CONNECTION_STRING"):
            create_telemetry(settings_for(bad), None)


def test_a_disabled_opentelemetry_sdk_is_refused_rather_than_silently_dropping_telemetry(
    monkeypatch: pytest.MonkeyPatch, ingestion_server: IngestionServer
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    with pytest.raises(SettingsError, match="OTEL_SDK_DISABLED"):
        create_telemetry(settings_for(ingestion_server.connection_string), None)


# --- flush outcome -----------------------------------------------------------------------------


FAILURES: list[tuple[Any, dict[str, Any]]] = [
    (500, {}),
    (503, {}),
    (429, {}),
    (400, {}),
    ("partial", {}),
    ("down", {}),
    ("slow", {"delay": 10 * TIMEOUT}),
]


@pytest.mark.parametrize(("mode", "options"), FAILURES, ids=[str(m) for m, _ in FAILURES])
def test_flush_raises_when_ingestion_does_not_accept_and_works_again_once_it_recovers(
    mode: Any, options: dict[str, Any], sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    ingestion_server.fail_with(mode, **options)
    sink.emit_run_record(record("lost-1"))
    sink.emit_run_record(record("lost-2"))  # with two items a 206 accepts one of them: still a failure
    started = time.monotonic()
    with pytest.raises(TelemetryExportFailed):
        sink.flush()
    # Bounded: two attempts at most, each within the timeout (the slow fake would hold 5 s).
    assert time.monotonic() - started < 2 * TIMEOUT + 1.5

    ingestion_server.reset()
    already = len(ingestion_server.track_requests())
    sink.emit_run_record(record("after"))
    sink.flush()

    # The failed items are not re-sent by the next flush: their event's redelivery sends them again.
    resent = [
        envelope["data"]["baseData"].get("properties", {}).get("run_id")
        for request in ingestion_server.track_requests()[already:]
        for envelope in request.envelopes
        if envelope["name"] == EVENT_ENVELOPE
    ]
    assert resent == ["after"]
    assert run_ids(ingestion_server).count("after") == 1


def test_the_failure_message_says_what_ingestion_answered(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    ingestion_server.fail_with("partial", partial_status=400)
    sink.emit_run_record(record("x"))
    sink.emit_run_record(record("y"))
    with pytest.raises(TelemetryExportFailed, match=r"HTTP 206 \(1 of 2 items accepted; item 0: 400"):
        sink.flush()


def test_a_single_transient_503_is_retried_within_the_flush(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    ingestion_server.fail_with(503, times=1)
    sink.emit_run_record(RECORD)
    sink.flush()
    assert run_ids(ingestion_server) == ["train_1"]
    assert [r.status for r in ingestion_server.track_requests()][:2] == [503, 200]


def test_a_long_retry_after_fails_at_once_instead_of_waiting(ingestion_server: IngestionServer) -> None:
    sink = create_telemetry(
        settings_for(ingestion_server.connection_string, max_retry_after_seconds=1.0), None
    )
    try:
        ingestion_server.fail_with(503, retry_after=120)
        sink.emit_run_record(RECORD)
        started = time.monotonic()
        with pytest.raises(TelemetryExportFailed, match="503"):
            sink.flush()
        assert time.monotonic() - started < 2
        assert len(ingestion_server.track_requests()) == 1
    finally:
        ingestion_server.reset()
        sink.shutdown()


def test_failed_exports_write_nothing_to_disk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ingestion_server: IngestionServer
) -> None:
    # The exporter's offline storage lives under tempfile.gettempdir(); point that at an empty folder.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sink = create_telemetry(settings_for(ingestion_server.connection_string), None)
    try:
        ingestion_server.fail_with(500)
        sink.emit_run_record(RECORD)
        with pytest.raises(TelemetryExportFailed):
            sink.flush()
        ingestion_server.fail_with("partial")
        sink.emit_run_record(record("a"))
        sink.emit_run_record(record("b"))
        with pytest.raises(TelemetryExportFailed):
            sink.flush()
    finally:
        ingestion_server.reset()
        sink.shutdown()
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_each_flush_sends_only_what_is_new(sink: TelemetrySink, ingestion_server: IngestionServer) -> None:
    sink.emit_run_record(record("first", execution_time_ms=1000))
    sink.emit_rejected("not_json", "bad", {})
    sink.flush()
    sink.emit_run_record(record("second", execution_time_ms=2000))
    sink.emit_rejected("not_json", "bad", {})
    sink.flush()
    requests_after_two = len(ingestion_server.track_requests())
    sink.flush()

    assert run_ids(ingestion_server) == ["first", "second"]
    # DELTA temporality: the second flush does not repeat the first point (a cumulative reader would).
    assert sorted((p["value"], p["count"]) for p in ingestion_server.metrics(METRIC_DURATION)) == [
        (1000, 1),
        (2000, 1),
    ]
    assert [p["value"] for p in ingestion_server.metrics(METRIC_REJECTED)] == [1, 1]
    assert len(ingestion_server.track_requests()) == requests_after_two  # nothing new, nothing sent


def test_when_the_events_fail_their_metric_points_are_not_sent_either(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    ingestion_server.fail_with(500)
    sink.emit_run_record(record("lost", execution_time_ms=1000))
    with pytest.raises(TelemetryExportFailed):
        sink.flush()
    ingestion_server.reset()
    sink.emit_run_record(record("redelivered", execution_time_ms=1000))
    sink.flush()

    # The redelivery records the point again, so sending it with the failed events would count it twice.
    assert [(p["value"], p["count"]) for p in ingestion_server.metrics(METRIC_DURATION)] == [(1000, 1)]
    assert not any(
        envelope["name"].endswith("Metric")
        for request in ingestion_server.track_requests()
        if request.status != 200
        for envelope in request.envelopes
    )


def test_a_failed_metric_export_fails_the_flush_even_though_the_events_were_stored(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    ingestion_server.fail_with(503, matching="Metric")
    sink.emit_run_record(RECORD)
    with pytest.raises(TelemetryExportFailed, match="metrics: ingestion answered HTTP 503"):
        sink.flush()
    assert run_ids(ingestion_server) == ["train_1"]
    assert ingestion_server.metrics(METRIC_DURATION) == []


def test_an_invocation_whose_items_failed_in_another_invocations_flush_is_told_so(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    emitted, failed_elsewhere = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def other_invocation() -> None:
        sink.emit_run_record(record("other"))
        emitted.set()
        failed_elsewhere.wait(10)
        for _ in range(2):
            try:
                sink.flush()
                outcomes.append("ok")
            except TelemetryExportFailed:
                outcomes.append("failed")

    worker = threading.Thread(target=other_invocation)
    worker.start()
    assert emitted.wait(10)
    ingestion_server.fail_with(500)
    sink.emit_run_record(record("mine"))
    with pytest.raises(TelemetryExportFailed):
        sink.flush()  # sends "mine" and "other" together, and fails
    ingestion_server.reset()
    failed_elsewhere.set()
    worker.join(10)

    # The other invocation must not report success although ingestion is healthy again: its record
    # was in the failed request. It is told once; its next flush (next event) succeeds.
    assert outcomes == ["failed", "ok"]
    assert run_ids(ingestion_server) == []


def test_concurrent_invocations_each_get_their_records_sent_exactly_once(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    errors: list[BaseException] = []

    def invocation(n: int) -> None:
        try:
            for i in range(5):
                sink.emit_run_record(record(f"t{n}-{i}", execution_time_ms=100))
                sink.flush()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=invocation, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert sorted(run_ids(ingestion_server)) == sorted(f"t{n}-{i}" for n in range(6) for i in range(5))
    assert sum(p["count"] for p in ingestion_server.metrics(METRIC_DURATION)) == 30


# --- process hygiene ---------------------------------------------------------------------------


def test_no_global_provider_or_root_handler_is_installed(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    from opentelemetry import metrics
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider

    root_handlers = list(logging.getLogger().handlers)
    sink.emit_run_record(RECORD)
    sink.flush()
    logging.getLogger("amlobs.processor").warning("an ordinary log line")

    assert not isinstance(get_logger_provider(), LoggerProvider)
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)
    assert logging.getLogger().handlers == root_handlers
    # Only the custom event went out: the host, not this sink, forwards ordinary logging.
    assert [
        e["data"]["baseData"].get("name") for e in ingestion_server.envelopes if e["name"] == EVENT_ENVELOPE
    ] == [EVENT_RUN_STATUS_CHANGED]
    assert not [e for e in ingestion_server.envelopes if e["name"].endswith("Message")]


def test_importing_and_creating_the_sink_does_not_load_opentelemetry() -> None:
    code = (
        "import sys\n"
        "from amlobs.settings import Settings\n"
        "import amlobs.telemetry as t\n"
        "s = Settings(appinsights_connection_string='InstrumentationKey=4b0a5d1e-2f3c-4d5e-8f90-1a2b3c4d5e6f;"
        "IngestionEndpoint=http://127.0.0.1:9/', appinsights_authentication_string=None, azure_client_id=None,"
        " storage=None)\n"
        "sink = t.create_telemetry(s, None)\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'azure.monitor')))\n"
        "print(type(sink).__name__, heavy)\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(src)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "AzureMonitorTelemetry []"


# --- the other sinks ---------------------------------------------------------------------------


def test_without_a_connection_string_records_are_logged_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="amlobs.telemetry")
    sink = create_telemetry(settings_for(None), FakeCredential())
    assert isinstance(sink, LoggingTelemetry)
    sink.emit_run_record(RECORD)
    sink.emit_rejected("not_json", "bad", {"event_id": "e1"})
    sink.flush()
    sink.shutdown()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "APPLICATIONINSIGHTS_CONNECTION_STRING" in warnings[0].getMessage()
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos[0].startswith(EVENT_RUN_STATUS_CHANGED + " ")
    assert json.loads(infos[0].split(" ", 1)[1]) == RECORD
    assert json.loads(infos[1].split(" ", 1)[1]) == {"reason": "not_json", "detail": "bad", "event_id": "e1"}


def test_recording_telemetry_keeps_what_was_emitted_in_order() -> None:
    sink = RecordingTelemetry()
    sink.emit_run_record(RECORD)
    sink.emit_pipeline_summary({"pipelinerunid": "p1"})
    sink.emit_rejected("not_json", "bad", {"event_id": "e1"})
    sink.flush()

    assert sink.run_records == [RECORD]
    assert sink.run_records[0] is not RECORD  # a copy: later changes by the caller do not rewrite history
    assert sink.pipeline_summaries == [{"pipelinerunid": "p1"}]
    assert sink.rejected == [RejectedItem("not_json", "bad", {"event_id": "e1"})]
    assert sink.flush_count == 1
