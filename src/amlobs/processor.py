"""One event in, one outcome out: the code path shared by the Function and the ``replay`` and
``backfill`` commands (each passes its ``source``, stamped on the record with the status time).

Each (workspace, run, status) is recorded once (``amlobs.storage.claims``): the invocation claims its
key before anything else, so a concurrent delivery of the same event, the ``RunCompleted`` that
arrives with a ``RunStatusChanged``/Completed, or a replay or backfill of a status recorded live,
waits for it or is told to retry later (or finds it recorded) instead of recording it too. The
claim moves to "sending" right before the telemetry goes out, to "done" after ingestion stored it.
Anything transient releases the claim (saying which items ingestion did store) and raises, so that
Event Grid redelivers; only events that can never succeed are stored as rejected (and the invocation
then succeeds).

What a run status sends is decided once (``_decide_unit``) and kept with the claim as it moves to
"sending": a later attempt on the key sends that unit again (``amlobs.resend``), flagged as a possible
duplicate when an earlier one may have stored it, instead of asking run history and the prices API
afresh. A run history 404 is judged by the event's age (``amlobs.not_found``): transient for a recent
event, the run's deletion for an old one, whose record says why and whose claim is marked partial.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .enrichment import PipelineListing, RunAnswers, RunSource, fetch_run_answers, list_pipeline
from .errors import (
    ClaimLost,
    EventRejected,
    RunNotFound,
    RunNotYetVisible,
    StorageUnavailable,
    TelemetryExportFailed,
    TransientError,
)
from .events import RunEvent, WorkspaceRef, parse_event
from .not_found import NotFoundRule
from .records import Record, build_record, parse_utc_ms
from .rejected_fields import best_effort_fields, field_text, payload_text
from .status_time import RecordSource, status_fields
from .summary import needs_summary, summarize_pipeline

if TYPE_CHECKING:
    from .notify import Notifier
    from .storage.claims import Claim, PartialClaim
    from .telemetry_unit import TelemetryUnit

logger = logging.getLogger("amlobs")

#: the dimension on the copy the reconciler sends to complete a run status recorded partial
COMPLETES_PARTIAL = "completes_partial"

OutcomeKind = Literal["recorded", "partial", "duplicate", "rejected"]


__all__ = ["EventProcessor", "Outcome", "RunSource"]


class Telemetry(Protocol):
    def send(self, unit: TelemetryUnit) -> None: ...
    def shutdown(self) -> None: ...


class Dedupe(Protocol):
    def claim(self, key: str, context: Mapping[str, str]) -> Claim | None: ...
    def start_sending(self, claim: Claim, kept: bytes | None = None) -> Claim: ...
    def complete(self, claim: Claim, *, partial_reason: str | None = None) -> None: ...
    def release(self, claim: Claim, *, accepted: frozenset[str], maybe_delivered: bool) -> None: ...
    def partial_claims(self) -> list[PartialClaim]: ...
    def clear_partial(self, key: str) -> str | None: ...
    def mark_partial(self, key: str, reason: str) -> None: ...


class CostEstimates(Protocol):
    """amlobs.cost_estimator.CostEstimator: the cost keys of a finished run and of a pipeline summary."""

    def for_record(
        self, ws: WorkspaceRef, record: Mapping[str, Any], answers: RunAnswers | None
    ) -> Mapping[str, str]: ...
    def for_summary(self, ws: WorkspaceRef, listing: PipelineListing | None) -> Mapping[str, str | int]: ...
    def close(self) -> None: ...


class DueNotes(Protocol):
    """amlobs.resource_use.due.DueNoter: notes a finished run for the after-the-fact resource-use pass."""

    def note(self, ws: WorkspaceRef, record: Mapping[str, Any]) -> None: ...


class RejectedEvents(Protocol):
    def store(
        self, payload: str | bytes, *, reason: str, detail: str, event_id: str | None
    ) -> str | None: ...


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    event_id: str | None
    record: Record | None = None
    summary: Record | None = None
    reason: str | None = None
    detail: str | None = None
    blob_name: str | None = None


def _cost_keys(estimate: Callable[[], Mapping[str, str | int]], event: RunEvent) -> Mapping[str, str | int]:
    """An estimate, or why there is none: the cost is never a reason to fail or redeliver an event.

    The estimator already turns every lookup failure into "no estimate: <why>"; this catches what it
    did not foresee, so a bug there costs the estimate, not the record (nor its claim).
    """
    try:
        return dict(estimate())
    except Exception as unexpected:
        logger.exception("cost estimate of run %s failed", event.run_id)
        return {"cost_basis": f"no estimate: the estimate failed unexpectedly ({type(unexpected).__name__})"}


def _keepable(unit: TelemetryUnit, key: str) -> bytes | None:
    """The unit as the claim keeps it, or None (then a resend builds it again, as it always did)."""
    from .resend import UnitNotKeepable, encode_unit

    try:
        return encode_unit(unit)
    except UnitNotKeepable as reason:
        logger.warning("%s: telemetry not kept with the claim: %s", key, reason)
        return None


def _records_of(unit: TelemetryUnit) -> tuple[Record, Record | None]:
    """The record and summary a kept unit carries (for the outcome: what was decided then)."""
    from .telemetry_unit import EVENT_PIPELINE_SUMMARY, EVENT_RUN_STATUS_CHANGED

    records = unit.events(EVENT_RUN_STATUS_CHANGED)
    summaries = unit.events(EVENT_PIPELINE_SUMMARY)
    record: Record = dict(records[0]) if records else {}
    return record, (dict(summaries[0]) if summaries else None)


def dedupe_key_of(event: RunEvent) -> str:
    """The run's (workspace, run, status), or the event id for an event without a status.

    Event Grid ids are random, so the run key is what makes ``backfill``, ``replay`` and the live path
    idempotent with each other, and what collapses a ``RunCompleted`` and a ``RunStatusChanged``/
    Completed of the same run into one record. (The previous version wrote the same run keys, so its
    table carries over.)
    """
    if event.run_status:
        return f"run|{event.workspace.cache_key}|{event.run_id}|{event.run_status.lower()}"
    return event.event_id


class EventProcessor:
    def __init__(
        self,
        *,
        runs: RunSource,
        telemetry: Telemetry,
        dedupe: Dedupe,
        rejected: RejectedEvents,
        costs: CostEstimates | None = None,
        due: DueNotes | None = None,
        notifier: Notifier | None = None,
        not_found: NotFoundRule | None = None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._runs = runs
        self._telemetry = telemetry
        self._dedupe = dedupe
        self._rejected = rejected
        self._costs = costs  # None: records carry no cost keys
        self._due = due  # None: no after-the-fact resource-use pass
        self._notifier = notifier  # None: no webhook configured
        self._not_found = not_found or NotFoundRule()
        self._clock_ms = clock_ms

    @property
    def notifier(self) -> Notifier | None:
        """The team's messages (``amlobs.notify.Notifier``), None without a webhook: other entry points
        (the reconciler's missed and late schedules) send theirs through the same one."""
        return self._notifier

    @property
    def runs(self) -> RunSource:
        """The run history client the records are enriched from (the reconciler lists runs with it)."""
        return self._runs

    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    def send_once(self, key: str, context: Mapping[str, str], unit: TelemetryUnit) -> bool:
        """Send ``unit`` unless ``key`` is already recorded, under the same claim protocol as a run
        status (the reconciler's judgements of a schedule's fire time). False: already recorded."""
        claim = self._dedupe.claim(key, context)
        if claim is None:
            return False
        try:
            claim = self._dedupe.start_sending(claim)
            self._telemetry.send(unit.without(claim.accepted))
        except BaseException as failure:
            self._release(claim, failure)
            raise
        self._complete(claim)
        return True

    def close(self) -> None:
        self._telemetry.shutdown()
        if self._costs is not None:
            self._costs.close()
        close_runs = getattr(self._runs, "close", None)
        if callable(close_runs):
            close_runs()

    def process(self, payload: str | bytes | Mapping[str, Any], *, source: RecordSource = "live") -> Outcome:
        """Record one event. Raises :class:`amlobs.errors.TransientError` when it must be redelivered.

        ``source`` says how the event reached us (the Function: live; the CLI: replay or backfill); it is
        recorded with the status time so that dashboards and alerts can tell late history from news.
        """
        try:
            event = parse_event(payload)
        except EventRejected as rejection:
            return self._reject(payload, rejection)

        key = dedupe_key_of(event)
        context = {
            "source_event_id": event.event_id,
            "run_id": event.run_id,
            "status": event.run_status or "",
        }
        claim = self._dedupe.claim(key, context)
        if claim is None:
            logger.info("event %s (run %s) already recorded: skipped", event.event_id, event.run_id)
            return Outcome("duplicate", event.event_id)
        try:
            kept = self._kept_unit(claim)
            if kept is None:
                unit, record, summary = self._decide_unit(event, source)
                if self._due is not None:
                    # Before the send: a failed note fails the delivery, so no finished run is forgotten
                    # (a resend of a kept unit follows an attempt that noted it before its send).
                    self._due.note(event.workspace, record)
            else:
                unit, record, summary = kept, *_records_of(kept)
            claim = self._dedupe.start_sending(claim, _keepable(unit, claim.key) if kept is None else None)
            self._telemetry.send(self._outgoing(unit, claim))
        except BaseException as failure:
            # Transient or a bug: either way the key goes back now, not when its lease expires.
            self._release(claim, failure)
            raise
        if summary is not None:
            # Before the status is marked done: an invocation that dies here is redelivered, and the
            # message's own claim (amlobs.notify) keeps it to one.
            self._notify(summary, source)
        partial = record.get("enrichment_error")
        self._complete(claim, str(partial) if partial else None)
        kind: OutcomeKind = "partial" if partial else "recorded"
        logger.info(
            "event %s: run %s %s recorded%s%s%s",
            event.event_id,
            event.run_id,
            record.get("status", "?"),
            " (partial: run not found)" if kind == "partial" else "",
            " (may duplicate an earlier attempt)" if claim.maybe_delivered else "",
            " (as an earlier attempt decided it)" if kept is not None else "",
        )
        return Outcome(kind, event.event_id, record=record, summary=summary)

    def partial_claims(self) -> list[PartialClaim]:
        """The run statuses recorded without run history's details (what the reconciler completes)."""
        return self._dedupe.partial_claims()

    def complete_partial(self, payload: Mapping[str, Any]) -> Outcome:
        """Send one complete copy of a run status recorded partial, when run history now answers.

        The record is enriched afresh through the same path as a live event; a record still partial
        is not sent (kind ``partial``). The claim's partial mark is taken off (ETag-conditional) before
        the send, so of two racing passes one sends (the other gets ``duplicate``); a failed send puts
        the mark back for a later pass. The copy says ``completes_partial`` = ``"true"``.
        """
        event = parse_event(payload)
        key = dedupe_key_of(event)
        unit, record, summary = self._decide_unit(event, "reconcile", extra={COMPLETES_PARTIAL: "true"})
        if record.get("enrichment_error"):
            return Outcome("partial", event.event_id, record=record, summary=summary)
        reason = self._dedupe.clear_partial(key)
        if reason is None:
            return Outcome("duplicate", event.event_id)
        try:
            self._telemetry.send(unit)
        except BaseException:
            self._dedupe.mark_partial(key, reason)
            raise
        logger.info("event %s: run %s %s completed (was partial)", event.event_id, event.run_id, key)
        return Outcome("recorded", event.event_id, record=record, summary=summary)

    def _decide_unit(
        self, event: RunEvent, source: RecordSource, extra: Mapping[str, str] | None = None
    ) -> tuple[TelemetryUnit, Record, Record | None]:
        """Everything a run status sends, decided now from run history's and the prices API's answers."""
        record, answers = self._enriched_record(event)
        record.update(extra or {})
        record.update(self._record_cost(event, record, answers))
        # Decided on the enriched record, not the event's runType (which may be null).
        summary = self._pipeline_summary(event, answers) if needs_summary(record) else None
        event_time_ms = parse_utc_ms(event.event_time)
        record.update(status_fields(record, source, event_time_ms=event_time_ms))
        if summary is not None:
            summary.update(status_fields(summary, source, event_time_ms=event_time_ms))
        from .tracing import traced_unit

        details = answers.details if answers is not None else None
        now_ms = self._clock_ms()
        unit = traced_unit(record, summary, details=details, now_ms=now_ms)
        unit.decided_at_ms = now_ms
        return unit, record, summary

    @staticmethod
    def _kept_unit(claim: Claim) -> TelemetryUnit | None:
        """What an earlier attempt on this key decided to send, if it kept it."""
        if claim.kept is None:
            return None
        from .resend import decode_unit

        try:
            return decode_unit(claim.kept)
        except ValueError as unreadable:
            logger.warning("%s: the kept telemetry is unreadable (%s): built again", claim.key, unreadable)
            return None

    @staticmethod
    def _outgoing(unit: TelemetryUnit, claim: Claim) -> TelemetryUnit:
        """The unit as this attempt sends it: flagged when an earlier one may have stored it, without
        the items an earlier one is known to have stored."""
        from .resend import flag_duplicate

        if claim.accepted:
            logger.info(
                "%s: %s already stored by an earlier attempt", claim.key, ", ".join(sorted(claim.accepted))
            )
        return (flag_duplicate(unit) if claim.maybe_delivered else unit).without(claim.accepted)

    def _notify(self, summary: Record, source: RecordSource) -> None:
        """The team's message; it can never fail the event (the notifier leaves a health record)."""
        if self._notifier is None:
            return
        try:
            self._notifier.pipeline_finished(summary, source=source)
        except Exception:
            logger.exception("notification of pipeline run %s failed unexpectedly", summary.get("run_id"))

    def _release(self, claim: Claim, failure: BaseException) -> None:
        """Hand the key back for the redelivery, with what this attempt left stored (best effort)."""
        if isinstance(failure, ClaimLost):
            return  # not ours any more
        accepted, maybe = claim.accepted, claim.maybe_delivered
        if isinstance(failure, TelemetryExportFailed):
            accepted |= failure.accepted
            maybe = maybe or failure.maybe_delivered
        elif claim.state == "sending" and not isinstance(failure, TransientError):
            maybe = True  # something broke after the claim said "sending": the POST may have gone out
        if not accepted and not maybe and claim.kept is not None:
            # Nothing of the unit can have been stored: no copy exists that a later one must repeat, so
            # the redelivery decides afresh (a prices API back by then gives its estimate).
            claim = replace(claim, kept=None)
        try:
            self._dedupe.release(claim, accepted=accepted, maybe_delivered=maybe)
        except StorageUnavailable as exc:
            # The claim then expires after its lease, and the redelivery takes it over.
            logger.warning("could not release the claim on %s: %s", claim.key, exc)

    def _complete(self, claim: Claim, partial_reason: str | None = None) -> None:
        try:
            self._dedupe.complete(claim, partial_reason=partial_reason)
        except StorageUnavailable as exc:
            # The telemetry is stored: failing now would only make Event Grid send it again. The claim
            # stays "sending" until its lease expires; a later delivery would then resend it, flagged
            # as a possible duplicate.
            logger.warning("recorded %s but could not mark it done: %s", claim.key, exc)

    def _enriched_record(self, event: RunEvent) -> tuple[Record, RunAnswers | None]:
        """The record, and the run history answers it used (None when the run was not found)."""
        try:
            answers = fetch_run_answers(self._runs, event.workspace, event.run_id)
        except RunNotFound as missing:
            if not missing.answered_404:  # refused for good: a redelivery would meet the same answer
                logger.warning("run %s: recording the event alone: %s", event.run_id, missing)
                return build_record(event, enrichment_error=str(missing) or "run not found"), None
            verdict = self._not_found.judge(
                parse_utc_ms(event.event_time), self._clock_ms(), str(missing) or "404"
            )
            if verdict.transient:
                raise RunNotYetVisible(verdict.reason) from missing
            logger.warning("run %s: %s", event.run_id, verdict.reason)
            return build_record(event, enrichment_error=verdict.reason), None
        record = build_record(event, answers.details, answers.run, definition=answers.definition)
        return record, answers

    def _pipeline_summary(self, event: RunEvent, answers: RunAnswers | None) -> Record:
        if answers is None:
            # The record already found the run missing: the listing of its children would be too.
            return summarize_pipeline(
                event, None, None, summary_error="pipeline run not found in run history"
            )
        listing = list_pipeline(self._runs, event.workspace, event.run_id)
        if listing.children is None and listing.answered_404:
            # The run answered a moment ago: a 404 on its children is judged by age like the run's own.
            verdict = self._not_found.judge(
                parse_utc_ms(event.event_time), self._clock_ms(), listing.error or "404"
            )
            if verdict.transient:
                raise RunNotYetVisible(f"children of pipeline run {event.run_id}: {verdict.reason}")
        summary = summarize_pipeline(event, answers.run, listing)
        if self._costs is not None:
            costs = self._costs
            summary.update(_cost_keys(lambda: costs.for_summary(event.workspace, listing), event))
        return summary

    def _record_cost(
        self, event: RunEvent, record: Record, answers: RunAnswers | None
    ) -> Mapping[str, str | int]:
        """The record's cost keys (none without an estimator); bounded in time by the estimator."""
        if self._costs is None:
            return {}
        costs = self._costs
        return _cost_keys(lambda: costs.for_record(event.workspace, record, answers), event)

    def _reject(self, payload: str | bytes | Mapping[str, Any], rejection: EventRejected) -> Outcome:
        readable = best_effort_fields(payload)
        event_id = field_text(readable, "id")
        blob_name = self._rejected.store(
            payload_text(payload), reason=rejection.code, detail=rejection.detail, event_id=event_id
        )
        attributes = {
            key: value
            for key, value in {
                "event_id": event_id,
                "event_type": field_text(readable, "eventType", "event_type"),
                "topic": field_text(readable, "topic"),
                "blob_name": blob_name,
            }.items()
            if value
        }
        from .telemetry_unit import rejected_unit

        self._telemetry.send(rejected_unit(rejection.code, rejection.detail, attributes))
        logger.warning(
            "event %s rejected (%s): %s%s",
            event_id or "<no id>",
            rejection.code,
            rejection.detail,
            f"; stored as {blob_name}" if blob_name else "",
        )
        return Outcome(
            "rejected", event_id, reason=rejection.code, detail=rejection.detail, blob_name=blob_name
        )
