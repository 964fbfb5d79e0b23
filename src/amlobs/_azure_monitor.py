"""The OpenTelemetry side of :mod:`amlobs.telemetry`: private providers + the Azure Monitor exporters.

Imported on the first emitted item only (cold start). Not thread-safe on its own: the caller
serialises emits/``take_batch`` with one lock and exports with another.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy
from azure.monitor.opentelemetry.exporter import AzureMonitorLogExporter, AzureMonitorMetricExporter
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.resource.detector.azure.functions import AzureFunctionsResourceDetector
from opentelemetry.sdk._logs import Logger as SdkLogger
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics import Meter as SdkMeter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource

from . import __version__
from .settings import SettingsError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from .telemetry import IngestionTarget

logger = logging.getLogger("amlobs.telemetry")

SERVICE_NAME = "aml-run-observability"
SCOPE_NAME = "amlobs"
# The exporter turns a log record carrying this attribute into a customEvents item of that name.
CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"
# DELTA: each flush sends only the points recorded since the previous one, so nothing is counted twice.
DELTA_TEMPORALITY: dict[type, AggregationTemporality] = {
    Histogram: AggregationTemporality.DELTA,
    Counter: AggregationTemporality.DELTA,
}


class _Capture(LogRecordProcessor):
    """Hands each emitted log record back to the pipeline instead of queueing it for a background thread."""

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


class _IngestionDiagnostics(SansIOHTTPPolicy[Any, Any]):
    """Remembers how ingestion answered (the exporter only logs it), for the exception message.

    Also lets a bearer token go to a plain-http *loopback* ingestion endpoint (the test fake):
    azure-core refuses bearer tokens over http, and settings only accept http for loopback hosts.
    """

    def __init__(self, allow_http_bearer: bool) -> None:
        self._allow_http_bearer = allow_http_bearer
        self.outcome: str | None = None

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if self._allow_http_bearer:
            request.context["enforce_https"] = False

    def on_response(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> None:
        status = response.http_response.status_code
        detail = ""
        if status in (200, 206):
            try:
                body = json.loads(response.http_response.text() or "{}")
                errors = body.get("errors") or []
                detail = f" ({body.get('itemsAccepted')} of {body.get('itemsReceived')} items accepted"
                if errors:
                    first = errors[0]
                    detail += f"; item {first.get('index')}: {first.get('statusCode')} {first.get('message')}"
                detail += ")"
            except (ValueError, AttributeError):
                detail = ""
        self.outcome = f"ingestion answered HTTP {status}{detail}"

    def on_exception(self, request: PipelineRequest[Any]) -> None:
        exc = sys.exc_info()[1]
        self.outcome = f"no answer from ingestion: {type(exc).__name__}: {exc}"


class _IngestionRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's retry, except that a Retry-After longer than our budget is not waited for."""

    def __init__(self, max_retry_after_seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._max_retry_after_seconds = max_retry_after_seconds

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        retry_after = self.get_retry_after(response)
        if retry_after is not None and retry_after > self._max_retry_after_seconds:
            return False
        return bool(super().is_retry(settings, response))


def _resource() -> Resource:
    # Deliberately not Resource.create(): it runs whatever OTEL_EXPERIMENTAL_RESOURCE_DETECTORS names,
    # including the Azure VM detector that calls the instance metadata endpoint. The Functions detector
    # and the OTEL_* variables only read the environment.
    base = Resource({"service.name": SERVICE_NAME, "service.version": __version__})
    return base.merge(AzureFunctionsResourceDetector().detect()).merge(OTELResourceDetector().detect())


@dataclass
class Batch:
    logs: list[tuple[int, ReadableLogRecord]]
    metrics: MetricsData | None
    metric_owners: set[int] = field(default_factory=set)

    @property
    def metric_point_count(self) -> int:
        if self.metrics is None:
            return 0
        return sum(
            len(metric.data.data_points)
            for resource_metrics in self.metrics.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        )


class ExportPipeline:
    def __init__(
        self,
        target: IngestionTarget,
        credential: TokenCredential | None,
        *,
        timeout_seconds: float,
        max_attempts: int,
        max_retry_after_seconds: float,
    ) -> None:
        resource = _resource()
        self._capture = _Capture()
        # shutdown_on_exit=False: no atexit hooks; every invocation flushes before it returns anyway.
        # The NoOp meter provider keeps the SDK's self-metrics (if enabled) off the global provider.
        self._logger_provider = LoggerProvider(
            resource=resource, shutdown_on_exit=False, meter_provider=NoOpMeterProvider()
        )
        self._logger_provider.add_log_record_processor(self._capture)
        self._reader = InMemoryMetricReader(preferred_temporality=DELTA_TEMPORALITY)
        self._meter_provider = MeterProvider(
            metric_readers=[self._reader],
            resource=resource,
            exemplar_filter=AlwaysOffExemplarFilter(),
            shutdown_on_exit=False,
        )
        self._logger = self._logger_provider.get_logger(SCOPE_NAME, __version__)
        meter = self._meter_provider.get_meter(SCOPE_NAME, __version__)
        if not isinstance(self._logger, SdkLogger) or not isinstance(meter, SdkMeter):
            raise SettingsError("OpenTelemetry SDK is disabled (OTEL_SDK_DISABLED): telemetry would be lost")
        self._meter = meter
        self._histograms: dict[str, Any] = {}
        self._counters: dict[str, Any] = {}
        self._pending: list[tuple[int, ReadableLogRecord]] = []
        self._metric_owners: set[int] = set()

        allow_http_bearer = credential is not None and target.ingestion_endpoint.startswith("http://")
        self.log_diagnostics = _IngestionDiagnostics(allow_http_bearer)
        self.metric_diagnostics = _IngestionDiagnostics(allow_http_bearer)
        self._log_exporter = AzureMonitorLogExporter(
            **self._exporter_options(
                target,
                credential,
                self.log_diagnostics,
                timeout_seconds,
                max_attempts,
                max_retry_after_seconds,
            )
        )
        self._metric_exporter = AzureMonitorMetricExporter(
            **self._exporter_options(
                target,
                credential,
                self.metric_diagnostics,
                timeout_seconds,
                max_attempts,
                max_retry_after_seconds,
            )
        )

    @staticmethod
    def _exporter_options(
        target: IngestionTarget,
        credential: TokenCredential | None,
        diagnostics: _IngestionDiagnostics,
        timeout_seconds: float,
        max_attempts: int,
        max_retry_after_seconds: float,
    ) -> dict[str, Any]:
        return {
            "connection_string": target.connection_string,
            # Always passed, even None: otherwise the exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING
            # itself and builds its own managed identity credential behind our back.
            "credential": credential,
            "disable_offline_storage": True,
            "timeout": timeout_seconds,  # the exporter's connect timeout
            "read_timeout": timeout_seconds,  # azure-core's default is 300 s
            "retry_policy": _IngestionRetryPolicy(
                max_retry_after_seconds,
                retry_total=max_attempts - 1,
                retry_backoff_factor=0.5,
                retry_backoff_max=2,
                timeout=timeout_seconds * max_attempts + 2,
            ),
            "per_call_policies": [diagnostics],
        }

    # -- emitting (caller holds the state lock) ----------------------------------------------------
    def emit_event(self, owner: int, name: str, dimensions: dict[str, str]) -> None:
        self._logger.emit(
            severity_number=SeverityNumber.INFO,
            body=name,
            attributes={**dimensions, CUSTOM_EVENT_ATTRIBUTE: name},
        )
        self._pending.extend((owner, record) for record in self._capture.captured)
        self._capture.captured.clear()

    def record_histogram(self, owner: int, name: str, value: float, dimensions: dict[str, str]) -> None:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = self._meter.create_histogram(name, unit="ms")
        histogram.record(value, dimensions)
        self._metric_owners.add(owner)

    def add_counter(self, owner: int, name: str, value: int, dimensions: dict[str, str]) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self._meter.create_counter(name)
        counter.add(value, dimensions)
        self._metric_owners.add(owner)

    def take_batch(self) -> Batch:
        """Everything emitted so far; metrics are collected in the same critical section as the owners."""
        logs, self._pending = self._pending, []
        owners, self._metric_owners = self._metric_owners, set()
        metrics = self._reader.get_metrics_data() if owners else None
        return Batch(logs, metrics, owners)

    # -- exporting (caller holds the flush lock, not the state lock) --------------------------------
    def export(self, batch: Batch) -> tuple[str | None, set[int]]:
        """``(None, set())`` when all was accepted, else ``(reason, owners whose items were not)``."""
        if batch.logs:
            failure = self._export_logs([record for _, record in batch.logs])
            if failure is not None:
                # The metric points are dropped too: the redelivered events will record them again.
                return failure, {owner for owner, _ in batch.logs} | batch.metric_owners
        if batch.metrics is not None and batch.metric_point_count:
            failure = self._export_metrics(batch.metrics)
            if failure is not None:
                return failure, set(batch.metric_owners)
        return None, set()

    def _export_logs(self, records: list[ReadableLogRecord]) -> str | None:
        self.log_diagnostics.outcome = None
        try:
            result = self._log_exporter.export(records)
        except Exception as exc:  # any exporter bug must fail the flush, not pass it
            return f"custom events: {type(exc).__name__}: {exc}"
        if result == LogRecordExportResult.SUCCESS:
            return None
        return f"custom events: {self.log_diagnostics.outcome or 'the exporter refused to send them'}"

    def _export_metrics(self, metrics: MetricsData) -> str | None:
        self.metric_diagnostics.outcome = None
        try:
            result = self._metric_exporter.export(metrics)
        except Exception as exc:
            return f"metrics: {type(exc).__name__}: {exc}"
        if result == MetricExportResult.SUCCESS:
            return None
        return f"metrics: {self.metric_diagnostics.outcome or 'the exporter refused to send them'}"

    def shutdown(self) -> None:
        for close in (
            self._log_exporter.shutdown,
            self._metric_exporter.shutdown,
            self._logger_provider.shutdown,
            self._meter_provider.shutdown,
        ):
            try:
                close()
            except Exception:  # shutting down must not mask the caller's outcome
                logger.debug("telemetry shutdown step failed", exc_info=True)
