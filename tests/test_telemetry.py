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
    AzureMonitorTelemetry,
    LoggingTelemetry,
    RecordingTelemetry,
    TelemetrySink,
    create_telemetry,
    parse_authentication_string,
    parse_connection_string,
)
from amlobs.telemetry_unit import (
    EVENT_PIPELINE_SUMMARY,
    EVENT_REJECTED,
    EVENT_RUN_STATUS_CHANGED,
    MAYBE_DUPLICATE,
    METRIC_DIMENSIONS,
    METRIC_DURATION,
    METRIC_QUEUE_TIME,
    METRIC_REJECTED,
    TelemetryUnit,
    rejected_unit,
    run_record_unit,
)
from tests.fakes.ingestion import (
    EVENT_ENVELOPE,
    METRIC_ENVELOPE,
    IngestionFault,
    IngestionServer,
    RecordedRequest,
)

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


def send(sink: TelemetrySink, *records: dict[str, str | int]) -> None:
    """One invocation per record: its unit (event + histogram points) in one send."""
    for one in records:
        sink.send(run_record_unit(one))


def kinds(request: RecordedRequest) -> list[str]:
    return sorted(envelope["name"].rsplit(".", 1)[-1] for envelope in request.envelopes)


# --- what lands in Application Insights --------------------------------------------------------


def test_run_record_becomes_one_custom_event_with_the_record_as_custom_dimensions(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    assert isinstance(sink, AzureMonitorTelemetry)
    send(sink, RECORD)

    events = [e for e in ingestion_server.envelopes if e["name"] == EVENT_ENVELOPE]
    assert len(events) == 1
    assert events[0]["iKey"] == ingestion_server.instrumentation_key
    assert events[0]["data"]["baseType"] == "EventData"
    base = events[0]["data"]["baseData"]
    assert base["name"] == "AmlRunStatusChanged" == EVENT_RUN_STATUS_CHANGED
    # Exactly the record, every value a string: no exporter-internal attribute leaks into KQL.
    assert base["properties"] == {key: str(value) for key, value in RECORD.items()}


def test_an_invocations_event_and_metric_points_travel_in_one_request(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    # One unit, one POST: ingestion stores the event and its points together or not at all, so a failed
    # metric export can no longer leave the event stored and the invocation failed (and resent).
    send(sink, RECORD)
    [request] = ingestion_server.track_requests()
    assert kinds(request) == ["Event", "Metric", "Metric"]
    assert request.status == 200


def test_histograms_carry_the_record_values_and_only_the_dimensions_present(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    send(sink, RECORD)  # has no step_type

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


def test_points_of_many_invocations_add_up_per_dimension_set(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    # Each invocation sends its own point (count 1); KQL's sum(valueSum)/sum(valueCount) adds them up.
    send(
        sink,
        record("a", execution_time_ms=1000, step_type="PythonScriptStep"),
        record("b", execution_time_ms=3000, step_type="PythonScriptStep"),
        record("c", execution_time_ms=500, status="Failed"),
    )
    totals: dict[str, list[float]] = {}
    for point in ingestion_server.metrics(METRIC_DURATION):
        total = totals.setdefault(point["properties"]["status"], [0, 0])
        total[0] += point["value"]
        total[1] += point["count"]
    assert totals == {"Completed": [4000, 2], "Failed": [500, 1]}


def test_a_record_without_times_sends_the_event_but_no_histogram_points(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    running = {
        k: v
        for k, v in record("r", status="Running").items()
        if k not in ("execution_time_ms", "queue_time_ms")
    }
    send(sink, running)

    assert run_ids(ingestion_server) == ["r"]
    assert ingestion_server.metrics(METRIC_DURATION) == []
    assert ingestion_server.metrics(METRIC_QUEUE_TIME) == []


def test_pipeline_summary_is_its_own_custom_event_in_the_pipeline_runs_unit(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    summary: dict[str, str | int] = {
        "pipelinerunid": "p1",
        "status": "Completed",
        "steps_total": 3,
        "steps_failed": 0,
    }
    sink.send(run_record_unit(record("p1", run_type="azureml.PipelineRun"), summary))

    events = ingestion_server.events(EVENT_PIPELINE_SUMMARY)
    assert EVENT_PIPELINE_SUMMARY == "AmlPipelineRunSummary"
    assert [e["properties"] for e in events] == [{k: str(v) for k, v in summary.items()}]
    assert run_ids(ingestion_server) == ["p1"]
    assert len(ingestion_server.track_requests()) == 1


def test_a_possible_duplicate_says_so_on_its_events_only(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    sink.send(run_record_unit(RECORD, {"run_id": "p"}, maybe_duplicate=True))
    [record_event] = ingestion_server.events(EVENT_RUN_STATUS_CHANGED)
    [summary_event] = ingestion_server.events(EVENT_PIPELINE_SUMMARY)
    assert (
        record_event["properties"][MAYBE_DUPLICATE] == summary_event["properties"][MAYBE_DUPLICATE] == "true"
    )
    # Metric dimensions stay the five documented ones (a new one would split every series).
    assert all(MAYBE_DUPLICATE not in p["properties"] for p in ingestion_server.metrics(METRIC_DURATION))


def test_rejected_events_send_an_event_with_the_reason_and_a_counter_per_reason(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    attributes = {"event_id": "e-9", "topic": "/subscriptions/x", "blob_name": "2024/01/e-9.json"}
    sink.send(rejected_unit("not_json", "event is not valid JSON", attributes))
    sink.send(rejected_unit("not_json", "event is not valid JSON", {}))
    sink.send(rejected_unit("unsupported_event_type", "eventType 'X' is not supported", {"event_type": "X"}))

    events = ingestion_server.events(EVENT_REJECTED)
    assert EVENT_REJECTED == "AmlEventRejected"
    assert [e["properties"] for e in events] == [
        {"reason": "not_json", "detail": "event is not valid JSON", **attributes},
        {"reason": "not_json", "detail": "event is not valid JSON"},
        {"reason": "unsupported_event_type", "detail": "eventType 'X' is not supported", "event_type": "X"},
    ]
    counts: dict[str, float] = {}
    for point in ingestion_server.metrics(METRIC_REJECTED):
        counts[point["properties"]["reason"]] = counts.get(point["properties"]["reason"], 0) + point["value"]
    assert METRIC_REJECTED == "aml_events_rejected"
    assert counts == {"not_json": 2, "unsupported_event_type": 1}
    assert all(set(p["properties"]) == {"reason"} for p in ingestion_server.metrics(METRIC_REJECTED))


def test_an_attribute_cannot_overwrite_the_rejection_reason(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    sink.send(rejected_unit("missing_id", "id is missing", {"reason": "fine", "detail": "nothing"}))
    (event,) = ingestion_server.events(EVENT_REJECTED)
    assert (event["properties"]["reason"], event["properties"]["detail"]) == ("missing_id", "id is missing")


def test_a_span_goes_in_the_same_request_as_the_record(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    # Pipeline traces join the unit: a finished span of a private provider, converted by the exporter's
    # own trace conversion, posted with the event and points of the same invocation.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import SpanKind

    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("test")
    span = tracer.start_span("step", kind=SpanKind.INTERNAL)
    span.end()
    unit = run_record_unit(RECORD)
    unit.add_span("train_1", span)
    sink.send(unit)

    [request] = ingestion_server.track_requests()
    assert kinds(request) == ["Event", "Metric", "Metric", "RemoteDependency"]
    with pytest.raises(ValueError, match="already"):
        unit.add_span("train_1", span)


# --- Entra ID ingestion ------------------------------------------------------------------------


def test_with_the_authentication_string_every_request_carries_the_credentials_bearer_token(
    make_sink: Callable[..., TelemetrySink], ingestion_server: IngestionServer
) -> None:
    credential = FakeCredential()
    sink = make_sink(credential, f"Authorization=AAD;ClientId={CLIENT_ID}")
    send(sink, RECORD, record("second"))

    requests = ingestion_server.track_requests()
    assert len(requests) == 2  # one per invocation
    assert {r.header("Authorization") for r in requests} == {"Bearer fake-entra-token"}
    assert credential.scopes and {s for s in credential.scopes} == {("https://monitor.azure.com//.default",)}
    assert run_ids(ingestion_server) == ["train_1", "second"]


def test_without_the_authentication_string_no_token_is_requested_or_sent(
    make_sink: Callable[..., TelemetrySink], ingestion_server: IngestionServer
) -> None:
    credential = FakeCredential()
    sink = make_sink(credential, None)
    send(sink, RECORD)

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
        # The endpoint receives the Entra token: it must mean the same host to every URL parser.
        f"InstrumentationKey={ikey};IngestionEndpoint=https://evil.test\\\\.in.applicationinsights.azure.com/",
        f"InstrumentationKey={ikey};IngestionEndpoint=https://x.in.applicationinsights.azure.com:8443/",
        f"InstrumentationKey={ikey};IngestionEndpoint=https://x.in.applicationinsights.azure.com./",
    ):
        with pytest.raises(SettingsError, match="APPLICATIONINSIGHTS_CONNECTION_STRING"):
            create_telemetry(settings_for(bad), None)


def test_a_disabled_opentelemetry_sdk_is_refused_rather_than_silently_dropping_telemetry(
    monkeypatch: pytest.MonkeyPatch, ingestion_server: IngestionServer
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    with pytest.raises(SettingsError, match="OTEL_SDK_DISABLED"):
        create_telemetry(settings_for(ingestion_server.connection_string), None)


# --- send outcome ------------------------------------------------------------------------------

ALL_ITEMS = frozenset(
    {f"event:{EVENT_RUN_STATUS_CHANGED}", f"metric:{METRIC_DURATION}", f"metric:{METRIC_QUEUE_TIME}"}
)
# mode, fail_with options, items stored (accepted), maybe delivered
FAILURES: list[tuple[Any, dict[str, Any], frozenset[str], bool]] = [
    (500, {}, frozenset(), False),
    (503, {}, frozenset(), False),
    (429, {}, frozenset(), False),
    (400, {}, frozenset(), False),
    ("partial", {}, ALL_ITEMS - {f"event:{EVENT_RUN_STATUS_CHANGED}"}, False),
    ("down", {}, frozenset(), False),
    ("slow", {"delay": 10 * TIMEOUT}, frozenset(), True),
]


@pytest.mark.parametrize(
    ("mode", "options", "accepted", "maybe"), FAILURES, ids=[str(m) for m, *_ in FAILURES]
)
def test_send_raises_with_what_was_stored_when_ingestion_does_not_accept_it_all(
    mode: Any,
    options: dict[str, Any],
    accepted: frozenset[str],
    maybe: bool,
    sink: TelemetrySink,
    ingestion_server: IngestionServer,
) -> None:
    ingestion_server.fail_with(mode, **options)
    started = time.monotonic()
    with pytest.raises(TelemetryExportFailed) as raised:
        send(sink, record("lost"))
    # Bounded: two attempts at most, each within the timeout (the slow fake would hold 5 s).
    assert time.monotonic() - started < 2 * TIMEOUT + 1.5
    assert raised.value.accepted == accepted  # what the redelivery need not send again
    assert raised.value.maybe_delivered is maybe  # only a request left unanswered may have been stored
    if maybe:
        assert len(ingestion_server.track_requests()) == 1  # never re-sent blind: that could duplicate it

    ingestion_server.reset()
    already = len(ingestion_server.track_requests())
    send(sink, record("after"))
    # Nothing of the failed unit rides along: its event's redelivery sends what is missing.
    [after] = ingestion_server.track_requests()[already:]
    assert kinds(after) == ["Event", "Metric", "Metric"]
    events = [
        e["data"]["baseData"]["properties"]["run_id"] for e in after.envelopes if e["name"] == EVENT_ENVELOPE
    ]
    assert events == ["after"]


def test_items_refused_by_a_206_are_resent_alone_within_the_send(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    ingestion_server.fail_with("partial", times=1)  # item 0 (the event) refused with a 500
    send(sink, RECORD)

    first, second = ingestion_server.track_requests()
    assert (first.status, second.status) == (206, 200)
    assert kinds(second) == ["Event"]
    assert run_ids(ingestion_server) == ["train_1"]
    assert len(ingestion_server.metrics(METRIC_DURATION)) == 1  # stored once, by the first request


def test_an_item_refused_for_good_fails_at_once_and_says_what_ingestion_answered(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    ingestion_server.fail_with("partial", partial_status=400)
    with pytest.raises(
        TelemetryExportFailed, match=r"HTTP 206 \(2 of 3 items accepted; item 0: 400"
    ) as raised:
        send(sink, RECORD)
    assert len(ingestion_server.track_requests()) == 1  # a 400 will not improve on a retry
    assert raised.value.accepted == ALL_ITEMS - {f"event:{EVENT_RUN_STATUS_CHANGED}"}


def test_a_single_transient_503_is_retried_within_the_send(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    ingestion_server.fail_with(503, times=1)
    send(sink, RECORD)
    assert run_ids(ingestion_server) == ["train_1"]
    assert [r.status for r in ingestion_server.track_requests()][:2] == [503, 200]


def test_a_long_retry_after_fails_at_once_instead_of_waiting(ingestion_server: IngestionServer) -> None:
    sink = create_telemetry(
        settings_for(ingestion_server.connection_string, max_retry_after_seconds=1.0), None
    )
    try:
        ingestion_server.fail_with(503, retry_after=120)
        started = time.monotonic()
        with pytest.raises(TelemetryExportFailed, match="503"):
            send(sink, RECORD)
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
        with pytest.raises(TelemetryExportFailed):
            send(sink, RECORD)
        ingestion_server.fail_with("partial")
        with pytest.raises(TelemetryExportFailed):
            send(sink, record("a"))
    finally:
        ingestion_server.reset()
        sink.shutdown()
    assert sorted(p.name for p in tmp_path.rglob("*")) == []


def test_an_empty_unit_sends_nothing(sink: TelemetrySink, ingestion_server: IngestionServer) -> None:
    sink.send(TelemetryUnit())
    sink.send(run_record_unit(RECORD).without(ALL_ITEMS))
    assert ingestion_server.track_requests() == []


def test_concurrent_invocations_succeed_or_fail_each_on_their_own(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    # One invocation's request is refused while others are in flight: only that invocation fails (a
    # shared batch used to fail every invocation in it, including those ingestion had accepted).
    def refuse_doomed(request: RecordedRequest) -> IngestionFault | None:
        ids = {e["data"]["baseData"].get("properties", {}).get("run_id") for e in request.envelopes}
        return IngestionFault(500) if "doomed" in ids else None

    ingestion_server.fault_hook = refuse_doomed
    outcomes: dict[str, str] = {}

    def invocation(name: str) -> None:
        try:
            for i in range(5):
                send(sink, record(f"{name}-{i}" if name != "doomed" else "doomed", execution_time_ms=100))
            outcomes[name] = "ok"
        except TelemetryExportFailed:
            outcomes[name] = "failed"

    names = [f"t{n}" for n in range(5)] + ["doomed"]
    threads = [threading.Thread(target=invocation, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ingestion_server.fault_hook = None

    assert outcomes == {**{f"t{n}": "ok" for n in range(5)}, "doomed": "failed"}
    assert sorted(run_ids(ingestion_server)) == sorted(f"t{n}-{i}" for n in range(5) for i in range(5))
    assert sum(p["count"] for p in ingestion_server.metrics(METRIC_DURATION)) == 25


# --- process hygiene ---------------------------------------------------------------------------


def test_no_global_provider_or_root_handler_is_installed(
    sink: TelemetrySink, ingestion_server: IngestionServer
) -> None:
    from opentelemetry import metrics
    from opentelemetry._logs import get_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider

    root_handlers = list(logging.getLogger().handlers)
    send(sink, RECORD)
    logging.getLogger("amlobs.processor").warning("an ordinary log line")

    assert not isinstance(get_logger_provider(), LoggerProvider)
    assert not isinstance(metrics.get_meter_provider(), MeterProvider)
    assert logging.getLogger().handlers == root_handlers
    # Only the custom event went out: the host, not this sink, forwards ordinary logging.
    assert [
        e["data"]["baseData"].get("name") for e in ingestion_server.envelopes if e["name"] == EVENT_ENVELOPE
    ] == [EVENT_RUN_STATUS_CHANGED]
    assert not [e for e in ingestion_server.envelopes if e["name"].endswith("Message")]
    assert {e["name"] for e in ingestion_server.envelopes} == {EVENT_ENVELOPE, METRIC_ENVELOPE}


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
    sink.send(run_record_unit(RECORD))
    sink.send(rejected_unit("not_json", "bad", {"event_id": "e1"}))
    sink.shutdown()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "APPLICATIONINSIGHTS_CONNECTION_STRING" in warnings[0].getMessage()
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos[0].startswith(EVENT_RUN_STATUS_CHANGED + " ")
    assert json.loads(infos[0].split(" ", 1)[1]) == {k: str(v) for k, v in RECORD.items()}
    assert infos[1].startswith(METRIC_DURATION + " ")
    rejected = next(line for line in infos if line.startswith(EVENT_REJECTED))
    assert json.loads(rejected.split(" ", 1)[1]) == {"reason": "not_json", "detail": "bad", "event_id": "e1"}


def test_recording_telemetry_keeps_what_was_sent_in_order() -> None:
    sink = RecordingTelemetry()
    mutable = dict(RECORD)
    sink.send(run_record_unit(mutable, {"pipelinerunid": "p1"}))
    sink.send(rejected_unit("not_json", "bad", {"event_id": "e1"}))
    mutable["run_id"] = "changed later"

    assert sink.run_records == [{k: str(v) for k, v in RECORD.items()}]  # a copy: history is not rewritten
    assert sink.events(EVENT_PIPELINE_SUMMARY) == [{"pipelinerunid": "p1"}]
    assert sink.events(EVENT_REJECTED) == [{"event_id": "e1", "reason": "not_json", "detail": "bad"}]
    assert len(sink.units) == 2
