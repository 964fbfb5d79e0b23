"""The exceptions that decide what happens to an event: rejected, retried by Event Grid, or partial."""

from __future__ import annotations

from typing import ClassVar


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
    """Application Insights did not accept (all of) the telemetry of an event.

    ``accepted`` names the items of the invocation that ingestion did store (a 206 answer), so the
    redelivery sends only the others; ``maybe_delivered`` is true when ingestion may have stored
    items nobody can name (a request sent without an answer: a timeout, a dropped connection), so
    the redelivery's copy may be a duplicate and says so.
    """

    def __init__(
        self, message: str, *, accepted: frozenset[str] = frozenset(), maybe_delivered: bool = False
    ) -> None:
        super().__init__(message)
        self.accepted = accepted
        self.maybe_delivered = maybe_delivered


class StorageUnavailable(TransientError):
    """Table or Blob storage could not be reached or refused us (connection, timeout, auth, 5xx).

    Raised before anything is marked processed, so Event Grid redelivers and nothing is lost.
    """


class RunNotFound(Exception):
    """The run history API answered 404: the run is deleted or not visible. Record what we have.

    ``answered_404``: a 404, which the processor judges by the event's age (amlobs.not_found); false for
    the subclasses that record the event alone at once (a request refused for good, an untrusted host).
    """

    answered_404: ClassVar[bool] = True


class RunNotYetVisible(TransientError):
    """Run history answered 404 for a run whose event is recent: it may not be visible yet
    (amlobs.not_found). The invocation fails and Event Grid redelivers later."""


class DeliveryInProgress(TransientError):
    """Another invocation holds a fresh claim on the same (run, status): it is being recorded now.

    Sending too would record it twice; failing lets Event Grid redeliver, and the redelivery finds the
    run status recorded (or, if that invocation died, its claim expired and takes it over).
    """


class ClaimLost(TransientError):
    """This invocation's claim expired and another invocation took the (run, status) over before
    anything was sent: this one stops without sending, the other records it."""
