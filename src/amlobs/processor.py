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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .enrichment import PipelineListing, RunAnswers, RunSource, fetch_run_answers, list_pipeline
from .errors import (
    ClaimLost,
    EventRejected,
    RunNotFound,
    StorageUnavailable,
    TelemetryExportFailed,
    TransientError,
)
from .events import RunEvent, WorkspaceRef, decode_event, parse_event
from .records import Record, build_record, parse_utc_ms
from .status_time import RecordSource, status_fields
from .summary import needs_summary, summarize_pipeline

if TYPE_CHECKING:
    from .storage.claims import Claim
    from .telemetry_unit import TelemetryUnit

logger = logging.getLogger("amlobs")

OutcomeKind = Literal["recorded", "partial", "duplicate", "rejected"]


__all__ = ["EventProcessor", "Outcome", "RunSource"]


class Telemetry(Protocol):
    def send(self, unit: TelemetryUnit) -> None: ...
    def shutdown(self) -> None: ...


class Dedupe(Protocol):
    def claim(self, key: str, context: Mapping[str, str]) -> Claim | None: ...
    def start_sending(self, claim: Claim) -> Claim: ...
    def complete(self, claim: Claim) -> None: ...
    def release(self, claim: Claim, *, accepted: frozenset[str], maybe_delivered: bool) -> None: ...


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


def _payload_text(payload: str | bytes | Mapping[str, Any]) -> str | bytes:
    if isinstance(payload, Mapping):
        try:
            return json.dumps(payload, default=str, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as exc:
            # The parser rejected the event for this very reason (not_json); raising here would fail
            # every redelivery instead of storing the rejection.
            return f"<event not representable as JSON: {type(exc).__name__}>"
    return payload


def _top_level_only(text: str) -> str:
    """JSON text with every array/object inside the outermost one replaced by ``null``.

    An event refused for its nesting still has readable top-level fields (id, eventType, topic) that
    say which event it was; this reads them with a flat, iterative scan instead of a recursive decode.
    """
    out: list[str] = []
    depth = 0
    skipping = False
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if char == '"':
            end = index + 1
            while end < size and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if not skipping:
                out.append(text[index : end + 1])
            index = end + 1
            continue
        if char in "[{":
            depth += 1
            if depth == 2 and not skipping:
                skipping = True
                out.append("null")
            elif not skipping:
                out.append(char)
        elif char in "]}":
            if not skipping:
                out.append(char)
            elif depth == 2:
                skipping = False
            depth -= 1
        elif not skipping:
            out.append(char)
        index += 1
    return "".join(out)


def _best_effort_fields(payload: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    """What can still be read of an event that failed validation (for the blob and the log line)."""
    try:
        return decode_event(payload)
    except EventRejected as rejection:
        if rejection.code != "nested_too_deeply" or isinstance(payload, Mapping):
            return {}
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        shallow = json.loads(_top_level_only(text))
    except (ValueError, RecursionError):
        return {}
    return shallow if isinstance(shallow, dict) else {}


def _field(decoded: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = decoded.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:256]
    return None


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
    ) -> None:
        self._runs = runs
        self._telemetry = telemetry
        self._dedupe = dedupe
        self._rejected = rejected
        self._costs = costs  # None: records carry no cost keys
        self._due = due  # None: no after-the-fact resource-use pass

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
            record, answers = self._enriched_record(event)
            record.update(self._record_cost(event, record, answers))
            # Decided on the enriched record, not the event's runType (which may be null).
            summary = self._pipeline_summary(event, answers) if needs_summary(record) else None
            event_time_ms = parse_utc_ms(event.event_time)
            record.update(status_fields(record, source, event_time_ms=event_time_ms))
            if summary is not None:
                summary.update(status_fields(summary, source, event_time_ms=event_time_ms))
            if self._due is not None:
                # Before the send: a failed note fails the delivery, so no finished run is forgotten.
                self._due.note(event.workspace, record)
            unit = self._unit(record, summary, claim, answers)
            claim = self._dedupe.start_sending(claim)
            self._telemetry.send(unit)
        except BaseException as failure:
            # Transient or a bug: either way the key goes back now, not when its lease expires.
            self._release(claim, failure)
            raise
        self._complete(claim)
        kind: OutcomeKind = "partial" if "enrichment_error" in record else "recorded"
        logger.info(
            "event %s: run %s %s recorded%s%s",
            event.event_id,
            event.run_id,
            record.get("status", "?"),
            " (partial: run not found)" if kind == "partial" else "",
            " (may duplicate an earlier attempt)" if claim.maybe_delivered else "",
        )
        return Outcome(kind, event.event_id, record=record, summary=summary)

    @staticmethod
    def _unit(
        record: Record, summary: Record | None, claim: Claim, answers: RunAnswers | None
    ) -> TelemetryUnit:
        # The record, its summary and (once the run finished) its spans in the pipeline's trace.
        from .tracing import traced_unit

        details = answers.details if answers is not None else None
        unit = traced_unit(record, summary, maybe_duplicate=claim.maybe_delivered, details=details)
        if claim.accepted:
            logger.info(
                "%s: %s already stored by an earlier attempt", claim.key, ", ".join(sorted(claim.accepted))
            )
        return unit.without(claim.accepted)

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
        try:
            self._dedupe.release(claim, accepted=accepted, maybe_delivered=maybe)
        except StorageUnavailable as exc:
            # The claim then expires after its lease, and the redelivery takes it over.
            logger.warning("could not release the claim on %s: %s", claim.key, exc)

    def _complete(self, claim: Claim) -> None:
        try:
            self._dedupe.complete(claim)
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
            logger.warning("run %s not found in run history: recording the event alone", event.run_id)
            return build_record(event, enrichment_error=str(missing) or "run not found"), None
        record = build_record(event, answers.details, answers.run, definition=answers.definition)
        return record, answers

    def _pipeline_summary(self, event: RunEvent, answers: RunAnswers | None) -> Record:
        if answers is None:
            # The record already found the run missing: the listing of its children would be too.
            return summarize_pipeline(
                event, None, None, summary_error="pipeline run not found in run history"
            )
        listing = list_pipeline(self._runs, event.workspace, event.run_id)
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
        readable = _best_effort_fields(payload)
        event_id = _field(readable, "id")
        blob_name = self._rejected.store(
            _payload_text(payload), reason=rejection.code, detail=rejection.detail, event_id=event_id
        )
        attributes = {
            key: value
            for key, value in {
                "event_id": event_id,
                "event_type": _field(readable, "eventType", "event_type"),
                "topic": _field(readable, "topic"),
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
