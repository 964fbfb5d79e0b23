"""The exceptions that decide what happens to an event: rejected, retried by Event Grid, or partial."""

from __future__ import annotations


class EventRejected(Exception):
    """The event can never be processed (malformed or unsupported): store it as rejected, succeed.

    ``code`` is a short, stable machine-readable reason (used as a metric dimension and in the
    rejected-event blob); ``detail`` is the human explanation.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class TransientError(Exception):
    """Something outside the event failed (AML API, ingestion, storage) and may work later.

    The invocation must fail so that Event Grid redelivers the event; nothing is marked processed.
    """


class EnrichmentUnavailable(TransientError):
    """The AML run history API could not be reached or refused us (401/403/408/429/5xx/timeout)."""


class TelemetryExportFailed(TransientError):
    """Application Insights did not accept the telemetry of an event."""


class StorageUnavailable(TransientError):
    """Table or Blob storage could not be reached or refused us (connection, timeout, auth, 5xx).

    Raised before anything is marked processed, so Event Grid redelivers and nothing is lost.
    """


class RunNotFound(Exception):
    """The run history API answered 404: the run is deleted or not visible. Record what we have."""
