"""Records → Application Insights: custom events and histograms, flushed (and checked) per invocation.

Why not ``configure_azure_monitor()``: it installs *global* OpenTelemetry providers and a handler on
the root logger. The Functions Python worker may already do the same for the host's own telemetry
(``PYTHON_ENABLE_OPENTELEMETRY``, ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``) and the host already
forwards ``logging`` records to Application Insights, so a second global setup would duplicate traces
or fight over the global provider. This module therefore drives the exporter with *private*
``LoggerProvider``/``MeterProvider`` instances that nothing else can see and that send only the items
named below; the host's own logging pipeline is left untouched.

Why export synchronously: the SDK's ``BatchLogRecordProcessor`` and periodic metric readers drop the
result of each export, so a flush could "succeed" while ingestion refused the data. Here ``flush()``
calls the exporters itself and looks at each result; any failure (ingestion down, 4xx/5xx, a 206
partial acceptance, a timeout) raises :class:`~amlobs.errors.TelemetryExportFailed`, the invocation
fails and Event Grid redelivers. The exporter's offline disk storage is off for the same reason: a
disk retry would hide the failure and later duplicate what the redelivery already sent.

Nothing from OpenTelemetry or the exporter is imported until the first item is emitted, because the
host imports ``function_app`` (and so this module) on the cold-start path.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .errors import TelemetryExportFailed
from .settings import Settings, SettingsError, validate_endpoint

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from ._azure_monitor import ExportPipeline

logger = logging.getLogger("amlobs.telemetry")

EVENT_RUN_STATUS_CHANGED = "AmlRunStatusChanged"
EVENT_PIPELINE_SUMMARY = "AmlPipelineRunSummary"
EVENT_REJECTED = "AmlEventRejected"
METRIC_DURATION = "aml_run_duration_ms"
METRIC_QUEUE_TIME = "aml_run_queue_time_ms"
METRIC_REJECTED = "aml_events_rejected"
# Low-cardinality record keys only: each distinct combination is a separate customMetrics series.
METRIC_DIMENSIONS: tuple[str, ...] = ("experimentName", "run_type", "status", "target", "step_type")
# Histogram name → the record key holding its value.
HISTOGRAM_SOURCES: tuple[tuple[str, str], ...] = (
    (METRIC_DURATION, "execution_time_ms"),
    (METRIC_QUEUE_TIME, "queue_time_ms"),
)

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
DEFAULT_INGESTION_ENDPOINT = "https://dc.services.visualstudio.com"
# Inside one invocation ingestion gets one quick retry; Event Grid's redelivery is the real retry.
MAX_EXPORT_ATTEMPTS = 2

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class TelemetrySink(Protocol):
    def emit_run_record(self, record: Mapping[str, str | int]) -> None: ...
    def emit_pipeline_summary(self, summary: Mapping[str, str | int]) -> None: ...
    def emit_rejected(self, reason: str, detail: str, attributes: Mapping[str, str]) -> None: ...
    def flush(self) -> None: ...
    def shutdown(self) -> None: ...


# --------------------------------------------------------------------------------------------------
# Pure mapping: record → event dimensions and metric points (unit-tested without any exporter).


def stringify(values: Mapping[str, object]) -> dict[str, str]:
    """customDimensions are strings in Application Insights; ``None`` means absent, never ``"None"``."""
    return {str(key): str(value) for key, value in values.items() if value is not None}


def metric_dimensions(record: Mapping[str, object]) -> dict[str, str]:
    return {key: str(record[key]) for key in METRIC_DIMENSIONS if record.get(key) not in (None, "")}


def metric_points(record: Mapping[str, object]) -> list[tuple[str, int | float]]:
    """The histogram values a record carries; a record without a value contributes no point."""
    points: list[tuple[str, int | float]] = []
    for metric, key in HISTOGRAM_SOURCES:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            points.append((metric, value))
    return points


def rejected_dimensions(reason: str, detail: str, attributes: Mapping[str, str]) -> dict[str, str]:
    # reason/detail last: an attribute of the same name cannot disguise why the event was rejected.
    return {**stringify(attributes), "reason": reason, "detail": detail}


# --------------------------------------------------------------------------------------------------
# Settings parsing (no SDK imports: malformed settings fail at start-up, not on the first event).


def _pairs(name: str, value: str) -> dict[str, str]:
    """``Key=Value;Key=Value`` → lower-cased keys. Empty segments (a trailing ``;``) are ignored."""
    pairs: dict[str, str] = {}
    for segment in value.split(";"):
        if not segment.strip():
            continue
        key, sep, val = segment.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{name} must be Key=Value pairs separated by ';', got segment {segment!r}")
        pairs[key.strip().lower()] = val.strip()
    return pairs


@dataclass(frozen=True)
class IngestionTarget:
    instrumentation_key: str
    ingestion_endpoint: str
    # The connection string handed to the exporter: same meaning, normalised so that its stricter
    # parser accepts it (no empty segments, lower-case key).
    connection_string: str


def parse_connection_string(value: str) -> IngestionTarget:
    pairs = _pairs(CONNECTION_STRING_SETTING, value)
    ikey = pairs.get("instrumentationkey", "")
    if not _GUID.match(ikey):
        raise SettingsError(f"{CONNECTION_STRING_SETTING} must contain InstrumentationKey=<GUID>")
    authorization = pairs.get("authorization")
    if authorization is not None and authorization.lower() != "ikey":
        raise SettingsError(f"{CONNECTION_STRING_SETTING}: Authorization must be ikey when present")
    if any("=" in v for v in pairs.values()):
        raise SettingsError(f"{CONNECTION_STRING_SETTING}: a value contains '=': check the string's quoting")
    endpoint = pairs.get("ingestionendpoint")
    if not endpoint and pairs.get("endpointsuffix"):
        location = f"{pairs['location']}." if pairs.get("location") else ""
        endpoint = f"https://{location}dc.{pairs['endpointsuffix']}"
    endpoint = validate_endpoint(
        f"{CONNECTION_STRING_SETTING} IngestionEndpoint", endpoint or DEFAULT_INGESTION_ENDPOINT
    )
    normalised = {**pairs, "instrumentationkey": ikey.lower()}
    return IngestionTarget(
        instrumentation_key=ikey.lower(),
        ingestion_endpoint=endpoint,
        connection_string=";".join(f"{k}={v}" for k, v in normalised.items()),
    )


@dataclass(frozen=True)
class EntraIngestion:
    """``Authorization=AAD[;ClientId=<guid>]``: ingestion with an Entra ID token instead of the ikey."""

    client_id: str | None


def parse_authentication_string(value: str) -> EntraIngestion:
    pairs = _pairs(AUTHENTICATION_STRING_SETTING, value)
    unknown = sorted(set(pairs) - {"authorization", "clientid"})
    if pairs.get("authorization", "").upper() != "AAD" or unknown:
        raise SettingsError(
            f"{AUTHENTICATION_STRING_SETTING} must be 'Authorization=AAD' or "
            f"'Authorization=AAD;ClientId=<client id>'"
            + (f" (unknown keys: {', '.join(unknown)})" if unknown else "")
        )
    client_id = pairs.get("clientid")
    if client_id is not None and not _GUID.match(client_id):
        raise SettingsError(f"{AUTHENTICATION_STRING_SETTING}: ClientId must be a GUID, got {client_id!r}")
    return EntraIngestion(client_id=client_id)


# --------------------------------------------------------------------------------------------------
# Sinks.


@dataclass(frozen=True)
class RejectedItem:
    reason: str
    detail: str
    attributes: dict[str, str]


@dataclass
class RecordingTelemetry:
    """Keeps what was emitted (``replay --dry-run`` prints it; unit tests read it). Sends nothing."""

    run_records: list[dict[str, str | int]] = field(default_factory=list)
    pipeline_summaries: list[dict[str, str | int]] = field(default_factory=list)
    rejected: list[RejectedItem] = field(default_factory=list)
    flush_count: int = 0

    def emit_run_record(self, record: Mapping[str, str | int]) -> None:
        self.run_records.append(dict(record))

    def emit_pipeline_summary(self, summary: Mapping[str, str | int]) -> None:
        self.pipeline_summaries.append(dict(summary))

    def emit_rejected(self, reason: str, detail: str, attributes: Mapping[str, str]) -> None:
        self.rejected.append(RejectedItem(reason, detail, dict(attributes)))

    def flush(self) -> None:
        self.flush_count += 1

    def shutdown(self) -> None:
        pass


class LoggingTelemetry:
    """No connection string (local development): records go to the log, never to Azure; never raises."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self._log = log or logger
        self._log.warning(
            "%s is not set: telemetry is written to the log only, not sent to Application Insights",
            CONNECTION_STRING_SETTING,
        )

    def _write(self, name: str, dimensions: Mapping[str, object]) -> None:
        try:
            self._log.info("%s %s", name, json.dumps(dict(dimensions), sort_keys=True, default=str))
        except Exception:  # local logging must never fail an event
            self._log.debug("could not log %s", name, exc_info=True)

    def emit_run_record(self, record: Mapping[str, str | int]) -> None:
        self._write(EVENT_RUN_STATUS_CHANGED, record)

    def emit_pipeline_summary(self, summary: Mapping[str, str | int]) -> None:
        self._write(EVENT_PIPELINE_SUMMARY, summary)

    def emit_rejected(self, reason: str, detail: str, attributes: Mapping[str, str]) -> None:
        self._write(EVENT_REJECTED, rejected_dimensions(reason, detail, attributes))

    def flush(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


# Which invocation emitted an item. The Functions worker runs each sync invocation on a pool thread
# (each with its own context) and each async one in its own task, and an invocation emits and flushes
# in the same one, so a context variable tells invocations apart without changing the API.
_OWNER: contextvars.ContextVar[int | None] = contextvars.ContextVar("amlobs_telemetry_owner", default=None)
_OWNER_IDS = itertools.count(1)
# Undelivered-owner marks are dropped beyond this many (owners that never flush again, e.g. ended tasks).
_MAX_FAILED_OWNERS = 10_000


def current_owner() -> int:
    owner = _OWNER.get()
    if owner is None:
        owner = next(_OWNER_IDS)
        _OWNER.set(owner)
    return owner


@dataclass(frozen=True)
class ExportOptions:
    timeout_seconds: float = 10.0
    max_attempts: int = MAX_EXPORT_ATTEMPTS
    # A longer Retry-After fails the flush at once (Event Grid backs off more cheaply than we can wait).
    max_retry_after_seconds: float = 30.0


class AzureMonitorTelemetry:
    """Application Insights through ``azure-monitor-opentelemetry-exporter``, checked on every flush.

    ``flush()`` exports everything emitted so far in the process, one flush at a time. When an export
    fails, every invocation that had items in it is told so by its own ``flush()`` (not only the one
    that happened to send), so no invocation reports success for telemetry that was not accepted.
    Failed items are not kept: the failing invocation's redelivery emits them again.

    Metrics use DELTA temporality, so each flush sends only this flush's histogram points. If the
    custom events of a flush fail, that flush's collected metric points are dropped rather than sent,
    so the redelivered events record them exactly once; if only the metric export fails, the points
    are lost with the failed request while the events (the source of truth) were stored, and the
    flush still fails so the event is redelivered (its event may then appear twice).
    """

    def __init__(
        self,
        connection_string: str,
        credential: TokenCredential | None = None,
        *,
        options: ExportOptions | None = None,
    ) -> None:
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            raise SettingsError(
                "OTEL_SDK_DISABLED=true would silently discard all telemetry: unset it, or unset "
                f"{CONNECTION_STRING_SETTING} to run without Application Insights"
            )
        self.target = parse_connection_string(connection_string)
        self._credential = credential
        self._options = options or ExportOptions()
        self._state_lock = threading.Lock()  # pending items, failure marks, lazy start
        self._flush_lock = threading.Lock()  # one export at a time, and flushes wait for each other
        self._pipeline: ExportPipeline | None = None
        self._failed_owners: dict[int, str] = {}
        self._closed = False

    @property
    def uses_entra_id(self) -> bool:
        return self._credential is not None

    def _started(self) -> ExportPipeline:
        # Callers hold _state_lock.
        if self._closed:
            raise RuntimeError("telemetry was shut down")
        if self._pipeline is None:
            from ._azure_monitor import ExportPipeline

            self._pipeline = ExportPipeline(
                self.target,
                self._credential,
                timeout_seconds=self._options.timeout_seconds,
                max_attempts=self._options.max_attempts,
                max_retry_after_seconds=self._options.max_retry_after_seconds,
            )
        return self._pipeline

    def emit_run_record(self, record: Mapping[str, str | int]) -> None:
        owner = current_owner()
        with self._state_lock:
            pipeline = self._started()
            pipeline.emit_event(owner, EVENT_RUN_STATUS_CHANGED, stringify(record))
            dimensions = metric_dimensions(record)
            for metric, value in metric_points(record):
                pipeline.record_histogram(owner, metric, value, dimensions)

    def emit_pipeline_summary(self, summary: Mapping[str, str | int]) -> None:
        owner = current_owner()
        with self._state_lock:
            self._started().emit_event(owner, EVENT_PIPELINE_SUMMARY, stringify(summary))

    def emit_rejected(self, reason: str, detail: str, attributes: Mapping[str, str]) -> None:
        owner = current_owner()
        with self._state_lock:
            pipeline = self._started()
            pipeline.emit_event(owner, EVENT_REJECTED, rejected_dimensions(reason, detail, attributes))
            pipeline.add_counter(owner, METRIC_REJECTED, 1, {"reason": reason})

    def flush(self) -> None:
        """Send everything emitted so far; raise :class:`TelemetryExportFailed` unless all was accepted."""
        owner = current_owner()
        with self._flush_lock:
            with self._state_lock:
                pipeline = self._pipeline
                batch = pipeline.take_batch() if pipeline is not None else None
            failure: str | None = None
            failed_owners: set[int] = set()
            if pipeline is not None and batch is not None:
                failure, failed_owners = pipeline.export(batch)
            with self._state_lock:
                for failed in failed_owners:
                    self._failed_owners[failed] = failure or "export failed"
                mine = self._failed_owners.pop(owner, None)
                while len(self._failed_owners) > _MAX_FAILED_OWNERS:
                    self._failed_owners.pop(next(iter(self._failed_owners)))
        if failure is not None:
            raise TelemetryExportFailed(f"Application Insights did not accept the telemetry: {failure}")
        if mine is not None:
            raise TelemetryExportFailed(
                f"Application Insights did not accept telemetry of this invocation sent by a concurrent "
                f"flush: {mine}"
            )

    def shutdown(self) -> None:
        try:
            self.flush()
        except TelemetryExportFailed as exc:
            logger.warning("telemetry not delivered at shutdown: %s", exc)
        with self._flush_lock, self._state_lock:
            self._closed = True
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.shutdown()


def create_telemetry(settings: Settings, credential: TokenCredential | None) -> TelemetrySink:
    """The process's sink: Application Insights when a connection string is set, else the log.

    With ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` set, ingestion uses Entra ID with ``credential``
    (the component has local auth disabled, so the ikey alone would be refused); without it the ikey
    of the connection string is used and ``credential`` is not, as the exporter itself does.
    """
    if not settings.appinsights_connection_string:
        return LoggingTelemetry()
    ingestion_credential: TokenCredential | None = None
    if settings.appinsights_authentication_string:
        entra = parse_authentication_string(settings.appinsights_authentication_string)
        if credential is None:
            raise SettingsError(
                f"{AUTHENTICATION_STRING_SETTING} asks for Entra ID ingestion but no credential is available"
            )
        if entra.client_id and settings.azure_client_id and entra.client_id != settings.azure_client_id:
            logger.warning(
                "%s names ClientId %s but the app's credential is for AZURE_CLIENT_ID %s: ingestion uses "
                "the latter, which needs the Monitoring Metrics Publisher role",
                AUTHENTICATION_STRING_SETTING,
                entra.client_id,
                settings.azure_client_id,
            )
        ingestion_credential = credential
    options = ExportOptions(
        timeout_seconds=settings.http_timeout_seconds,
        max_attempts=max(1, min(MAX_EXPORT_ATTEMPTS, settings.http_max_attempts)),
        max_retry_after_seconds=settings.max_retry_after_seconds,
    )
    return AzureMonitorTelemetry(
        settings.appinsights_connection_string, ingestion_credential, options=options
    )
