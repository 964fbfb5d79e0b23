"""One event in, one outcome out: the code path shared by the Function and the ``replay`` command.

Order matters for losslessness: telemetry is flushed before the event id is marked processed, and
anything transient raises so that Event Grid redelivers; only events that can never succeed are
stored as rejected (and the invocation then succeeds).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .enrichment import PipelineListing, RunAnswers, RunSource, fetch_run_answers, list_pipeline
from .errors import EventRejected, RunNotFound
from .events import RunEvent, WorkspaceRef, decode_event, parse_event
from .records import Record, build_record, parse_utc_ms
from .status_time import RecordSource, status_fields
from .summary import needs_summary, summarize_pipeline

logger = logging.getLogger("amlobs")

OutcomeKind = Literal["recorded", "partial", "duplicate", "rejected"]


__all__ = ["EventProcessor", "Outcome", "RunSource"]


class Telemetry(Protocol):
    def emit_run_record(self, record: Mapping[str, str | int]) -> None: ...
    def emit_pipeline_summary(self, summary: Mapping[str, str | int]) -> None: ...
    def emit_rejected(self, reason: str, detail: str, attributes: Mapping[str, str]) -> None: ...
    def flush(self) -> None: ...
    def shutdown(self) -> None: ...


class Dedupe(Protocol):
    def is_processed(self, event_id: str) -> bool: ...
    def mark_processed(self, event_id: str, context: Mapping[str, str]) -> None: ...


class CostEstimates(Protocol):
    """amlobs.costing.CostEstimator: the cost keys of a finished run and of a pipeline summary."""

    def for_record(
        self, ws: WorkspaceRef, record: Mapping[str, Any], answers: RunAnswers | None
    ) -> Mapping[str, str]: ...
    def for_summary(self, ws: WorkspaceRef, listing: PipelineListing | None) -> Mapping[str, str | int]: ...
    def close(self) -> None: ...


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


def _best_effort_fields(payload: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    """What can still be read of an event that failed validation (for the blob and the log line)."""
    try:
        return decode_event(payload)
    except EventRejected:
        return {}


def _field(decoded: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = decoded.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:256]
    return None


def dedupe_keys(event: RunEvent) -> list[str]:
    """The event id, plus the run's (workspace, run, status): Event Grid ids are random, so the second
    key is what makes ``backfill`` and the live path idempotent with each other, and what collapses a
    ``RunCompleted`` and a ``RunStatusChanged``/Completed of the same run into one record."""
    keys = [event.event_id]
    if event.run_status:
        keys.append(f"run|{event.workspace.cache_key}|{event.run_id}|{event.run_status.lower()}")
    return keys


class EventProcessor:
    def __init__(
        self,
        *,
        runs: RunSource,
        telemetry: Telemetry,
        dedupe: Dedupe,
        rejected: RejectedEvents,
        costs: CostEstimates | None = None,
    ) -> None:
        self._runs = runs
        self._telemetry = telemetry
        self._dedupe = dedupe
        self._rejected = rejected
        self._costs = costs  # None: records carry no cost keys

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

        keys = dedupe_keys(event)
        if any(self._dedupe.is_processed(key) for key in keys):
            logger.info("event %s (run %s) already recorded: skipped", event.event_id, event.run_id)
            return Outcome("duplicate", event.event_id)

        record, answers = self._enriched_record(event)
        if self._costs is not None:
            record.update(self._costs.for_record(event.workspace, record, answers))
        # Decided on the enriched record, not the event's runType (which may be null).
        summary = self._pipeline_summary(event, answers) if needs_summary(record) else None
        event_time_ms = parse_utc_ms(event.event_time)
        record.update(status_fields(record, source, event_time_ms=event_time_ms))
        if summary is not None:
            summary.update(status_fields(summary, source, event_time_ms=event_time_ms))
        self._telemetry.emit_run_record(record)
        if summary is not None:
            self._telemetry.emit_pipeline_summary(summary)
        self._telemetry.flush()
        status = str(record.get("status", ""))
        context = {"source_event_id": event.event_id, "run_id": event.run_id, "status": status}
        # The run's key first: if the second write fails, the redelivery is a duplicate by the first
        # and never writes the other; only the run's key also covers RunCompleted and backfill.
        for key in reversed(keys):
            self._dedupe.mark_processed(key, context)
        kind: OutcomeKind = "partial" if "enrichment_error" in record else "recorded"
        logger.info(
            "event %s: run %s %s recorded%s",
            event.event_id,
            event.run_id,
            record.get("status", "?"),
            " (partial: run not found)" if kind == "partial" else "",
        )
        return Outcome(kind, event.event_id, record=record, summary=summary)

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
            summary.update(self._costs.for_summary(event.workspace, listing))
        return summary

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
        self._telemetry.emit_rejected(rejection.code, rejection.detail, attributes)
        self._telemetry.flush()
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
