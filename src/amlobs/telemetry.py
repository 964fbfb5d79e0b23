"""Records → Application Insights: each invocation's telemetry is one unit, sent in one request.

A :class:`~amlobs.telemetry_unit.TelemetryUnit` holds everything one invocation records: the
``AmlRunStatusChanged`` custom event, its histogram points, the pipeline summary, the rejected-event
counter, and spans (pipeline traces). The Azure Monitor sink sends a unit as *one* POST to the
Track API, whose body is an array of envelopes of any type (the exporter itself mixes them: its trace
exporter sends request, exception and message envelopes in one call). So events and metrics of an
invocation are stored together or not at all, as far as ingestion allows:

* ``200``: all stored.
* ``206``: ingestion stored some items and names the others; those are sent again in the same
  invocation (bounded attempts). What stays refused fails the invocation with the names of the items
  that *were* stored (:attr:`~amlobs.errors.TelemetryExportFailed.accepted`): the redelivery sends
  only the rest. A 206 concerns only the invocation whose request it answers: units never share a
  request.
* ``408``/``429``/``5xx``, connection refused: nothing was stored; retried, then the invocation fails.
* no answer (a timeout after the request went out, a dropped connection): ingestion may have stored
  it. The invocation fails with ``maybe_delivered``: Event Grid redelivers, and the redelivery's copy
  says ``delivery_maybe_duplicate=true``, so each possible duplicate is counted and the dashboards,
  which count each (run, status) once, are not misled (docs/dashboard.md).

Why not ``configure_azure_monitor()``: it installs *global* OpenTelemetry providers and a handler on
the root logger, which the Functions worker may also do for the host's own telemetry. The exporter is
driven with private providers instead, and nothing from OpenTelemetry or the exporter is imported
until the first unit is sent (the host imports ``function_app`` on the cold-start path). The
exporter's offline disk storage is off: a disk retry would hide a failure and later duplicate what the
redelivery already sent.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .appinsights import (
    AUTHENTICATION_STRING_SETTING,
    CONNECTION_STRING_SETTING,
    DEFAULT_INGESTION_ENDPOINT,
    EntraIngestion,
    IngestionTarget,
    parse_authentication_string,
    parse_connection_string,
)
from .settings import Settings, SettingsError
from .telemetry_unit import EVENT_PIPELINE_SUMMARY, EVENT_RUN_STATUS_CHANGED, TelemetryUnit

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from ._azure_monitor import ExportPipeline

__all__ = [
    "AUTHENTICATION_STRING_SETTING",
    "CONNECTION_STRING_SETTING",
    "DEFAULT_INGESTION_ENDPOINT",
    "EntraIngestion",
    "IngestionTarget",
    "parse_authentication_string",
    "parse_connection_string",
]

logger = logging.getLogger("amlobs.telemetry")

# Inside one invocation ingestion gets one quick retry; Event Grid's redelivery is the real retry.
MAX_EXPORT_ATTEMPTS = 2


class TelemetrySink(Protocol):
    def send(self, unit: TelemetryUnit) -> None:
        """Store the unit, or raise :class:`~amlobs.errors.TelemetryExportFailed`."""
        ...

    def shutdown(self) -> None: ...


@dataclass
class RecordingTelemetry:
    """Keeps what was sent (``replay --dry-run`` prints it; unit tests read it). Sends nothing."""

    units: list[TelemetryUnit] = field(default_factory=list)

    def send(self, unit: TelemetryUnit) -> None:
        self.units.append(unit)

    def shutdown(self) -> None:
        pass

    def events(self, name: str) -> list[Mapping[str, str]]:
        return [event for unit in self.units for event in unit.events(name)]

    @property
    def run_records(self) -> list[Mapping[str, str]]:
        return self.events(EVENT_RUN_STATUS_CHANGED)

    @property
    def pipeline_summaries(self) -> list[Mapping[str, str]]:
        return self.events(EVENT_PIPELINE_SUMMARY)


class LoggingTelemetry:
    """No connection string (local development): records go to the log, never to Azure; never raises."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self._log = log or logger
        self._log.warning(
            "%s is not set: telemetry is written to the log only, not sent to Application Insights",
            CONNECTION_STRING_SETTING,
        )

    def send(self, unit: TelemetryUnit) -> None:
        for item in unit.items:
            if item.kind == "span":
                continue
            payload = (
                dict(item.dimensions) if item.kind == "event" else {"value": item.value, **item.dimensions}
            )
            try:
                self._log.info("%s %s", item.name, json.dumps(payload, sort_keys=True, default=str))
            except Exception:  # local logging must never fail an event
                self._log.debug("could not log %s", item.name, exc_info=True)

    def shutdown(self) -> None:
        pass


@dataclass(frozen=True)
class ExportOptions:
    timeout_seconds: float = 10.0
    max_attempts: int = MAX_EXPORT_ATTEMPTS
    # A longer Retry-After fails the send at once (Event Grid backs off more cheaply than we can wait).
    max_retry_after_seconds: float = 30.0


class AzureMonitorTelemetry:
    """Application Insights through ``azure-monitor-opentelemetry-exporter``: one checked POST per unit.

    Units of concurrent invocations are sent independently (the HTTP client is shared), so one
    invocation's failure, 206 included, is never reported to another.
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
        self._lock = threading.Lock()
        self._pipeline: ExportPipeline | None = None
        self._closed = False

    def _started(self) -> ExportPipeline:
        with self._lock:
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

    def send(self, unit: TelemetryUnit) -> None:
        if unit.items:
            self._started().send(unit)

    def shutdown(self) -> None:
        with self._lock:
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
