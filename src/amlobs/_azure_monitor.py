"""The exporter side of :mod:`amlobs.telemetry`: a unit's items → envelopes → one Track API request.

Imported on the first unit only (cold start). Conversion uses the exporter's own per-item converters,
so envelopes are exactly what ``AzureMonitorLogExporter``/``MetricExporter``/``TraceExporter`` would
send: ``_log_to_envelope`` (a custom event is a log record carrying ``microsoft.custom_event.name``),
``_point_to_envelope`` (one histogram or counter point) and ``_span_to_envelope`` +
``_span_events_to_envelopes``. Sending uses the log exporter's generated client, ``client.track(list of
envelopes)``: the same call its ``_transmit`` makes, which posts one JSON array to ``/v2.1/track``
and returns the Breeze answer (``itemsReceived``/``itemsAccepted``/``errors[index, statusCode]``).
``_transmit`` itself is not used: it folds every outcome into one result and would retry and redirect
behind our back; here each outcome is classified (stored, refused, not sent, maybe stored).

Thread-safe: units of concurrent invocations convert under one lock (the capture of log records) and
are sent concurrently over the shared client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.policies import RetryPolicy
from azure.monitor.opentelemetry.exporter import (
    AzureMonitorLogExporter,
    AzureMonitorMetricExporter,
    AzureMonitorTraceExporter,
)
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.resource.detector.azure.functions import AzureFunctionsResourceDetector
from opentelemetry.sdk._logs import Logger as SdkLogger
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk.metrics.export import HistogramDataPoint, NumberDataPoint
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from . import __version__
from ._trace_provider import TraceSpans, remote_parent
from .errors import TelemetryExportFailed
from .retry_after import retry_after_seconds
from .settings import SettingsError
from .telemetry_unit import TelemetryItem, TelemetryUnit
from .tracing import CLOCK_MARGIN_MS, INGESTION_MAX_AGE_MS, SpanPlan

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from .appinsights import IngestionTarget

logger = logging.getLogger("amlobs.telemetry")

SERVICE_NAME = "aml-run-observability"
SCOPE_NAME = "amlobs"
# The exporter turns a log record carrying this attribute into a customEvents item of that name.
CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"
# Item statuses of a 206 (and whole-request statuses) that mean "not stored, try again".
RETRYABLE_STATUSES = frozenset({408, 429, 439, 500, 502, 503, 504})
BACKOFF_SECONDS = 0.5
# Ingestion's codes for an item whose time is outside what it accepts ("103: Field 'time' on type
# 'Envelope' is older than the allowed min date…", "104: … is newer than the max date…").
TIME_REFUSALS = ("103:", "104:")


class _Capture(LogRecordProcessor):
    """Hands each emitted log record back instead of queueing it for a background thread."""

    def __init__(self) -> None:
        self.captured: list[ReadableLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        # Without an instrumentation scope the exporter adds no "logger_name" property, so the event's
        # customDimensions are exactly the record.
        self.captured.append(
            ReadableLogRecord(
                log_record=log_record.log_record,
                resource=log_record.resource or Resource.get_empty(),
                instrumentation_scope=None,
                limits=log_record.limits,
            )
        )

    def shutdown(self) -> None:
        self.captured.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _resource() -> Resource:
    # Deliberately not Resource.create(): it runs whatever OTEL_EXPERIMENTAL_RESOURCE_DETECTORS names,
    # including the Azure VM detector that calls the instance metadata endpoint. The Functions detector
    # and the OTEL_* variables only read the environment.
    base = Resource({"service.name": SERVICE_NAME, "service.version": __version__})
    return base.merge(AzureFunctionsResourceDetector().detect()).merge(OTELResourceDetector().detect())


@dataclass
class _Post:
    """How ingestion answered one request: which envelopes (by position) it stored or refused."""

    stored: set[int] = field(default_factory=set)
    refused: dict[int, int] = field(default_factory=dict)  # position → item status
    messages: dict[int, str] = field(default_factory=dict)  # position → ingestion's message
    status: int | None = None  # the whole request's status when it was refused as a whole
    retry_after: float | None = None
    sent_unanswered: bool = False  # the request left, no answer came: it may have been stored
    detail: str = ""


def _read_item_errors(post: _Post, errors: Any, count: int) -> None:
    for error in errors:
        if error.index is not None and 0 <= error.index < count:
            post.refused[error.index] = int(error.status_code or 0)
            post.messages[error.index] = str(error.message or "")
    post.stored = set(range(count)) - set(post.refused)


def _first_error(post: _Post) -> str:
    index = min(post.refused)
    return f"item {index}: {post.refused[index]} {post.messages.get(index, '')}".rstrip()


def _envelope_time_ns(decided_at_ms: int | None, now_ns: int) -> int:
    """The time of a unit's event and metric envelopes: when the unit was decided, so that a resend
    repeats it; now for a unit never kept, or one whose time ingestion would refuse by now (a
    dead-lettered event replayed days later: ingestion takes items of the last 48 hours, see
    amlobs.tracing) — the content is the same, only the time then says when it was finally sent."""
    if decided_at_ms is None:
        return now_ns
    oldest_ms = now_ns // 1_000_000 - INGESTION_MAX_AGE_MS + CLOCK_MARGIN_MS
    return now_ns if decided_at_ms < oldest_ms else decided_at_ms * 1_000_000


class ExportPipeline:
    def __init__(
        self,
        target: IngestionTarget,
        credential: TokenCredential | None,
        *,
        timeout_seconds: float,
        max_attempts: int,
        max_retry_after_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._resource = _resource()
        self._scope = InstrumentationScope(SCOPE_NAME, __version__)
        self._capture = _Capture()
        # shutdown_on_exit=False: no atexit hooks. The NoOp meter provider keeps the SDK's
        # self-metrics (if enabled) off the global provider.
        self._logger_provider = LoggerProvider(
            resource=self._resource, shutdown_on_exit=False, meter_provider=NoOpMeterProvider()
        )
        self._logger_provider.add_log_record_processor(self._capture)
        self._logger = self._logger_provider.get_logger(SCOPE_NAME, __version__)
        if not isinstance(self._logger, SdkLogger):
            raise SettingsError("OpenTelemetry SDK is disabled (OTEL_SDK_DISABLED): telemetry would be lost")
        self._emit_lock = threading.Lock()
        self._timeout = timeout_seconds
        self._max_attempts = max(1, max_attempts)
        self._max_retry_after = max_retry_after_seconds
        self._sleep = sleep
        # azure-core refuses bearer tokens over http; settings allow http for loopback hosts only.
        self._call_options: dict[str, Any] = {
            "connection_timeout": timeout_seconds,
            "read_timeout": timeout_seconds,
        }
        if credential is not None and target.ingestion_endpoint.startswith("http://"):
            self._call_options["enforce_https"] = False
        options: dict[str, Any] = {
            "connection_string": target.connection_string,
            # Always passed, even None: otherwise the exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING
            # itself and builds its own managed identity credential behind our back.
            "credential": credential,
            "disable_offline_storage": True,
            "timeout": timeout_seconds,  # the exporter's connect timeout
            "read_timeout": timeout_seconds,  # azure-core's default is 300 s
            # No retry inside the client: a retried POST whose first try was stored but unanswered would
            # be a duplicate nobody counts. send() retries only what it knows was not stored.
            "retry_policy": RetryPolicy(retry_total=0),
        }
        self._log_exporter = AzureMonitorLogExporter(**options)
        self._metric_exporter = AzureMonitorMetricExporter(**options)
        self._trace_options = options
        self._trace_exporter: AzureMonitorTraceExporter | None = None
        self._trace_spans = TraceSpans()

    # -- conversion ----------------------------------------------------------------------------------
    def _event_envelope(self, item: TelemetryItem, at_ns: int) -> list[Any]:
        # An event placed in a pipeline trace carries its operation (operation_Id = the trace id,
        # operation_ParentId = its run's span id: the log exporter's _convert_log_to_envelope reads
        # them from the log record, which takes them from this context). Without one the SDK uses the
        # current context, as it always did.
        context: Context | None = None
        if item.operation is not None:
            context = remote_parent(*item.operation)
        with self._emit_lock:
            self._logger.emit(
                timestamp=at_ns,
                observed_timestamp=at_ns,
                context=context,
                severity_number=SeverityNumber.INFO,
                body=item.name,
                attributes={**item.dimensions, CUSTOM_EVENT_ATTRIBUTE: item.name},
            )
            records, self._capture.captured = self._capture.captured, []
        return [self._log_exporter._log_to_envelope(record) for record in records]

    def _metric_envelope(self, item: TelemetryItem, now: int) -> list[Any]:
        point: HistogramDataPoint | NumberDataPoint
        if item.kind == "histogram":
            point = HistogramDataPoint(
                attributes=dict(item.dimensions),
                start_time_unix_nano=now,
                time_unix_nano=now,
                count=1,
                sum=item.value,
                bucket_counts=[1],
                explicit_bounds=[],
                min=item.value,
                max=item.value,
            )
        else:
            point = NumberDataPoint(
                attributes=dict(item.dimensions),
                start_time_unix_nano=now,
                time_unix_nano=now,
                value=item.value,
            )
        envelope = self._metric_exporter._point_to_envelope(point, item.name, self._resource, self._scope)
        # None: the exporter sends custom metrics nowhere (APPLICATIONINSIGHTS_METRICS_TO_LOGANALYTICS_ENABLED
        # is false); the item then counts as stored, as the exporter's own export() would report it.
        return [envelope] if envelope is not None else []

    def _span_envelopes(self, item: TelemetryItem) -> list[Any]:
        with self._emit_lock:
            if self._trace_exporter is None:
                self._trace_exporter = AzureMonitorTraceExporter(**self._trace_options)
            exporter = self._trace_exporter
        span = self._trace_spans.finished_span(item.span) if isinstance(item.span, SpanPlan) else item.span
        if not isinstance(span, ReadableSpan):
            raise TypeError(f"telemetry item {item.key} is not a finished OpenTelemetry span")
        return [exporter._span_to_envelope(span), *exporter._span_events_to_envelopes(span)]

    def envelopes(self, unit: TelemetryUnit) -> tuple[list[Any], list[str]]:
        """The unit's envelopes and, position by position, the key of the item each belongs to."""
        envelopes: list[Any] = []
        owners: list[str] = []
        at_ns = _envelope_time_ns(unit.decided_at_ms, time.time_ns())
        for item in unit.items:
            if item.kind == "event":
                converted = self._event_envelope(item, at_ns)
            elif item.kind == "span":
                converted = self._span_envelopes(item)
            else:
                converted = self._metric_envelope(item, at_ns)
            envelopes.extend(converted)
            owners.extend(item.key for _ in converted)
        return envelopes, owners

    # -- sending -------------------------------------------------------------------------------------
    def _post(self, envelopes: list[Any]) -> _Post:
        post = _Post()
        try:
            result: Any = self._log_exporter.client.track(
                envelopes,
                cls=lambda pipeline_response, body, _: (body, pipeline_response.http_response),
                **self._call_options,
            )
        except ServiceResponseError as exc:  # sent; the answer timed out or the connection broke
            post.sent_unanswered = True
            post.detail = f"no answer from ingestion: {type(exc).__name__}: {exc}"
            return post
        except (ServiceRequestError, ClientAuthenticationError) as exc:
            if isinstance(exc, ClientAuthenticationError) and exc.response is not None:
                post.status, post.detail = 401, "ingestion answered HTTP 401"
            else:  # not sent: no connection, or no token to send
                post.detail = f"not sent: {type(exc).__name__}: {exc}"
            return post
        except HttpResponseError as exc:
            if exc.response is None:  # an answer cut short while it was read
                post.sent_unanswered = True
                post.detail = f"no answer from ingestion: {type(exc).__name__}: {exc}"
                return post
            item_errors = getattr(getattr(exc, "model", None), "errors", None)
            if exc.status_code == 400 and item_errors:
                # Items refused each with its reason (the generated client deserialises a 400's body
                # as a TrackResponse): judged item by item, as a 206 is.
                _read_item_errors(post, item_errors, len(envelopes))
            if post.refused:
                post.detail = f"ingestion answered HTTP 400 ({_first_error(post)})"
            else:
                post.stored.clear()
                post.status = exc.status_code
                post.retry_after = retry_after_seconds(getattr(exc.response, "headers", None))
                post.detail = f"ingestion answered HTTP {exc.status_code}"
            return post
        except Exception as exc:  # a bug in the exporter must fail the send, not pass it
            post.detail = f"{type(exc).__name__}: {exc}"
            return post
        answer, response = result
        _read_item_errors(post, answer.errors or [], len(envelopes))
        post.retry_after = retry_after_seconds(response.headers)
        if post.refused:
            post.detail = (
                f"ingestion answered HTTP {response.status_code} ({answer.items_accepted} of "
                f"{answer.items_received} items accepted; {_first_error(post)})"
            )
        return post

    def send(self, unit: TelemetryUnit) -> None:
        envelopes, owners = self.envelopes(unit)
        pending = list(range(len(envelopes)))
        stored: set[int] = set()
        attempt = 0
        while pending:
            attempt += 1
            post = self._post([envelopes[i] for i in pending])
            stored |= {pending[i] for i in post.stored}
            stored |= self._drop_spans_outside_the_window(post, [owners[i] for i in pending], pending)
            if post.sent_unanswered:
                self._fail(unit, owners, stored, post.detail, maybe_delivered=True)
            retryable = (
                [pending[i] for i, status in post.refused.items() if status in RETRYABLE_STATUSES]
                if post.refused
                else (pending if post.status is None or post.status in RETRYABLE_STATUSES else [])
            )
            remaining = (
                [pending[i] for i in post.refused] if post.refused else (pending if not post.stored else [])
            )
            if not remaining:
                return
            if len(retryable) < len(remaining) or attempt >= self._max_attempts:
                self._fail(unit, owners, stored, post.detail, maybe_delivered=False)
            delay = post.retry_after if post.retry_after is not None else BACKOFF_SECONDS * attempt
            if delay > self._max_retry_after:
                self._fail(
                    unit, owners, stored, f"{post.detail}; Retry-After {delay:.0f} s", maybe_delivered=False
                )
            self._sleep(delay)
            pending = retryable

    @staticmethod
    def _drop_spans_outside_the_window(post: _Post, owners: list[str], positions: list[int]) -> set[int]:
        """Spans ingestion refused for their time are given up, never sent again.

        amlobs.tracing keeps spans outside ingestion's window out of the unit before sending; this is
        the net under it (a clock far off): a refusal that every redelivery would meet again must not
        fail the invocation forever. The record is stored; the span is logged as lost.
        """
        dropped = {
            index
            for index, status in post.refused.items()
            if status == 400
            and owners[index].startswith("span:")
            and post.messages.get(index, "").startswith(TIME_REFUSALS)
        }
        for index in sorted(dropped):
            logger.warning(
                "ingestion refused %s for its time, not sent again: %s", owners[index], post.messages[index]
            )
            del post.refused[index]
            post.stored.add(index)
        return {positions[index] for index in dropped}

    @staticmethod
    def _fail(
        unit: TelemetryUnit, owners: list[str], stored: set[int], detail: str, *, maybe_delivered: bool
    ) -> None:
        by_item: dict[str, list[bool]] = {}
        for position, key in enumerate(owners):
            by_item.setdefault(key, []).append(position in stored)
        # Items without envelopes (metrics the exporter sends nowhere) count as stored.
        accepted = frozenset(item.key for item in unit.items if all(by_item.get(item.key, [True])))
        # An item half stored (a span and some of its events) cannot be sent again without repeating
        # the stored half: say that its copy may be a duplicate.
        partly = any(any(flags) and not all(flags) for flags in by_item.values())
        raise TelemetryExportFailed(
            f"Application Insights did not accept the telemetry: {detail or 'the request failed'}",
            accepted=accepted,
            maybe_delivered=maybe_delivered or partly,
        )

    def shutdown(self) -> None:
        exporters: list[Any] = [
            self._log_exporter,
            self._metric_exporter,
            self._trace_exporter,
            self._trace_spans,
        ]
        for close in [*(e.shutdown for e in exporters if e is not None), self._logger_provider.shutdown]:
            try:
                close()
            except Exception:  # shutting down must not mask the caller's outcome
                logger.debug("telemetry shutdown step failed", exc_info=True)
