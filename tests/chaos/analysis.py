"""What a chaos run left in Application Insights (the ingestion fake), against what AML published.

A (run, status) is *lost* when no ``AmlRunStatusChanged`` record of it was stored, *duplicated* when more
than one was. The same holds for the span each finished run owes its pipeline's trace (issue 9): one per
terminal (run, status) whose record is enriched, all of a pipeline run in one trace. An extra record is *counted* when it carries ``delivery_maybe_duplicate``: the app sent it
again after an attempt whose outcome it could not know (a POST that timed out, a worker killed while
sending), and said so. Each extra record is attributed to a cause from the delivery log: the attempt
that stored the earlier record and why it did not stop the later one.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from tests.chaos.eventgrid import Attempt
from tests.chaos.scenario import Key, Scenario
from tests.fakes.ingestion import EVENT_ENVELOPE, METRIC_ENVELOPE, SPAN_ENVELOPES, RecordedRequest

RECORD_EVENT = "AmlRunStatusChanged"
SUMMARY_EVENT = "AmlPipelineRunSummary"
MAYBE_DUPLICATE = "delivery_maybe_duplicate"
TERMINAL = ("Completed", "Failed", "Canceled")
DURATION_METRIC = "aml_run_duration_ms"

CAUSE_RACE_SAME_EVENT = "two deliveries of one event in flight at once"
CAUSE_RACE_RUN_COMPLETED = "RunCompleted and RunStatusChanged/Completed in flight at once"
CAUSE_REPLAY = "dead-letter replay of an event already recorded"
CAUSE_KILLED = "worker killed after sending, before the mark"
CAUSE_METRICS_FAILED = "events stored, then the metrics export failed"
CAUSE_TIMEOUT = "client timeout on a POST that ingestion stored"
CAUSE_PARTIAL = "206 (or a shared batch's failure) failed an invocation whose items were stored"
CAUSE_MARK_FAILED = "dedupe write failed after the flush (or its claim expired first)"
CAUSE_EVENTGRID_TIMEOUT = "Event Grid stopped waiting; the invocation finished"
CAUSE_AFTER_SUCCESS = "recorded again after a successful invocation"
CAUSE_UNKNOWN = "unattributed"


@dataclass(frozen=True)
class Stored:
    key: Key
    event_id: str
    received_at: float
    maybe_duplicate: bool
    has_duration: bool = False
    enriched: bool = True  # no enrichment_error: run history answered the requests the client sent
    # A finished step (terminal status, has a parent) or a summary, and whether it carries an estimated
    # cost: the cost lookups (Resource Manager compute GET, Retail Prices API) run inside the same claim.
    finished_step: bool = False
    estimated: bool = False
    # What the copy says, apart from the flag that marks it a possible duplicate: copies of one key
    # must say the same (a resend repeats what was sent, issue 21).
    content: str = ""


@dataclass
class Figures:
    keys: int = 0
    published: int = 0
    deliveries: int = 0
    duplicate_deliveries: int = 0
    failed_deliveries: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    deadlettered: int = 0
    lost_before_replay: int = 0
    recovered_by_replay: int = 0
    lost: int = 0
    duplicated_keys: int = 0
    extra_records: int = 0
    counted_extra_records: int = 0
    duplicated_summaries: int = 0
    counted_duplicated_summaries: int = 0
    missing_summaries: int = 0
    # Run statuses whose first record has no run history details (enrichment_error: a 404 fault, or a
    # request the AML fake refused because it drifted from the official client's form).
    unenriched_records: int = 0
    # Every run of the scenario exists: a run status none of whose copies has run history's details is
    # a record left unenriched for good.
    unenriched_keys: int = 0
    # Keys (records; pipeline summaries) with copies that say different things, the flag aside.
    disagreeing_keys: int = 0
    disagreeing_summaries: int = 0
    duration_points_expected: int = 0
    duration_points_stored: int = 0
    # Finished steps and pipeline summaries whose first record has no estimated cost (a fault on a cost
    # lookup, or a lookup that failed where it should not).
    finished_steps: int = 0
    unestimated_steps: int = 0
    unestimated_summaries: int = 0
    causes: Counter[str] = field(default_factory=Counter)
    counted_causes: Counter[str] = field(default_factory=Counter)
    # Pipeline traces: a span per terminal (run, status) whose first record was enriched.
    spans_expected: int = 0
    spans_lost: int = 0
    duplicated_spans: int = 0
    counted_duplicated_spans: int = 0
    traces_split: int = 0  # pipeline runs whose spans are in more than one trace
    delivery_seconds: float = 0.0
    replay_seconds: float = 0.0
    workers_started: int = 0

    @property
    def uncounted_extra_records(self) -> int:
        return self.extra_records - self.counted_extra_records

    @property
    def uncounted_duplicated_spans(self) -> int:
        return self.duplicated_spans - self.counted_duplicated_spans

    def as_dict(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        values["faults"] = dict(self.faults)
        values["causes"] = dict(self.causes)
        values["counted_causes"] = dict(self.counted_causes)
        values["uncounted_extra_records"] = self.uncounted_extra_records
        values["uncounted_duplicated_spans"] = self.uncounted_duplicated_spans
        return values


def stored_items(requests: Iterable[RecordedRequest]) -> tuple[list[Stored], list[Stored], int]:
    """Records, summaries and the number of duration points ingestion stored, in arrival order."""
    records: list[Stored] = []
    summaries: list[Stored] = []
    duration_points = 0
    for request in sorted(requests, key=lambda r: r.received_at):
        for index in request.accepted:
            envelope = request.envelopes[index]
            base = envelope.get("data", {}).get("baseData", {})
            properties = base.get("properties") or {}
            if envelope.get("name") == METRIC_ENVELOPE:
                for point in base.get("metrics", []):
                    if point.get("name") == DURATION_METRIC:
                        duration_points += int(point.get("count") or 1)
                continue
            if envelope.get("name") != EVENT_ENVELOPE or base.get("name") not in (
                RECORD_EVENT,
                SUMMARY_EVENT,
            ):
                continue
            item = Stored(
                (
                    properties.get("amlWorkSpace", ""),
                    properties.get("run_id", ""),
                    properties.get("status", ""),
                ),
                properties.get("event_id", ""),
                request.received_at,
                properties.get(MAYBE_DUPLICATE) == "true",
                "execution_time_ms" in properties,
                "enrichment_error" not in properties,
                properties.get("status") in TERMINAL and bool(properties.get("parent_run_id")),
                "estimated_cost" in properties,
                json.dumps({k: v for k, v in properties.items() if k != MAYBE_DUPLICATE}, sort_keys=True),
            )
            (records if base.get("name") == RECORD_EVENT else summaries).append(item)
    return records, summaries, duration_points


@dataclass(frozen=True)
class StoredSpan:
    key: Key  # (workspace, run, the run's terminal status)
    trace_id: str
    root_run_id: str
    maybe_duplicate: bool


def stored_spans(requests: Iterable[RecordedRequest]) -> list[StoredSpan]:
    """The runs' own spans (not their queue spans) ingestion stored."""
    spans = []
    for request in requests:
        for index in request.accepted:
            envelope = request.envelopes[index]
            if envelope.get("name") not in SPAN_ENVELOPES:
                continue
            properties = envelope["data"]["baseData"].get("properties") or {}
            if properties.get("span_phase") != "run":
                continue
            spans.append(
                StoredSpan(
                    (
                        properties.get("amlWorkSpace", ""),
                        properties.get("run_id", ""),
                        properties.get("status", ""),
                    ),
                    envelope.get("tags", {}).get("ai.operation.id", ""),
                    properties.get("root_run_id", ""),
                    properties.get(MAYBE_DUPLICATE) == "true",
                )
            )
    return spans


def _span_figures(figures: Figures, by_key: dict[Key, list[Stored]], spans: list[StoredSpan]) -> None:
    due = {key for key, stored in by_key.items() if key[2] in TERMINAL and stored[0].enriched}
    by_run: dict[Key, list[StoredSpan]] = defaultdict(list)
    traces: dict[str, set[str]] = defaultdict(set)
    for span in spans:
        by_run[span.key].append(span)
        traces[span.root_run_id].add(span.trace_id)
    figures.spans_expected = len(due)
    figures.spans_lost = len(due - set(by_run))
    for stored in by_run.values():
        figures.duplicated_spans += len(stored) - 1
        figures.counted_duplicated_spans += sum(1 for s in stored[1:] if s.maybe_duplicate)
    figures.traces_split = sum(1 for ids in traces.values() if len(ids) > 1)


def _producers(item: Stored, attempts: list[Attempt]) -> list[Attempt]:
    """The attempts that may have sent ``item``: same event, in flight when ingestion received it."""
    return [
        a for a in attempts if a.event_id == item.event_id and a.started <= item.received_at <= a.ended + 0.05
    ]


def _overlap(a: Attempt, b: Attempt) -> bool:
    return a.started < b.ended and b.started < a.ended


def classify(
    earlier: Stored, later: Stored, attempts: list[Attempt], replay_window: tuple[float, float]
) -> str:
    """Why ``later`` was stored although ``earlier`` already was (both of one key)."""
    if replay_window[0] <= later.received_at <= replay_window[1]:
        return CAUSE_REPLAY
    # An attempt that waited on another's claim never sent anything: it cannot be a producer.
    firsts = [a for a in _producers(earlier, attempts) if a.error != "DeliveryInProgress"]
    seconds = [a for a in _producers(later, attempts) if a.error != "DeliveryInProgress"]
    if not later.maybe_duplicate:
        # The app saw no trace of an earlier attempt: two attempts raced past the dedupe check.
        for a in firsts:
            for b in seconds:
                if a is not b and _overlap(a, b):
                    return CAUSE_RACE_SAME_EVENT if a.event_id == b.event_id else CAUSE_RACE_RUN_COMPLETED
    # The earlier record's attempt, preferring one that failed: its failure is why a copy was sent.
    first = next((a for a in firsts if a.outcome != "ok"), firsts[0] if firsts else None)
    if first is None:
        return CAUSE_UNKNOWN
    text = f"{first.error} {first.message}".lower()
    if first.outcome == "killed":
        return CAUSE_KILLED
    if first.outcome == "timeout":
        return CAUSE_EVENTGRID_TIMEOUT
    if first.outcome == "ok":
        return CAUSE_MARK_FAILED if later.maybe_duplicate else CAUSE_AFTER_SUCCESS
    if "storageunavailable" in text:
        return CAUSE_MARK_FAILED
    if "metrics:" in text:
        return CAUSE_METRICS_FAILED
    if "206" in text or "concurrent flush" in text or "accepted" in text:
        return CAUSE_PARTIAL
    if "timeout" in text or "no answer" in text or "timed out" in text:
        return CAUSE_TIMEOUT
    return f"failed after sending: {first.error or 'error'}"


def analyse(
    scenario: Scenario,
    requests: list[RecordedRequest],
    attempts: list[Attempt],
    *,
    replay_window: tuple[float, float],
) -> Figures:
    figures = Figures(keys=len(scenario.expected_keys), published=len(scenario.events))
    records, summaries, figures.duration_points_stored = stored_items(requests)

    by_key: dict[Key, list[Stored]] = defaultdict(list)
    for record in records:
        by_key[record.key].append(record)
    recorded = set(by_key)
    before_replay = {r.key for r in records if r.received_at < replay_window[0]}
    figures.lost = len(scenario.expected_keys - recorded)
    figures.lost_before_replay = len(scenario.expected_keys - before_replay)
    figures.recovered_by_replay = len((scenario.expected_keys - before_replay) & recorded)
    # One duration point is due per recorded (run, status) whose record has an execution time.
    figures.duration_points_expected = sum(1 for stored in by_key.values() if stored[0].has_duration)
    figures.unenriched_records = sum(1 for stored in by_key.values() if not stored[0].enriched)
    figures.unenriched_keys = sum(1 for stored in by_key.values() if not any(s.enriched for s in stored))
    figures.disagreeing_keys = sum(1 for stored in by_key.values() if len({s.content for s in stored}) > 1)
    steps = [stored[0] for stored in by_key.values() if stored[0].finished_step]
    figures.finished_steps = len(steps)
    figures.unestimated_steps = sum(1 for step in steps if not step.estimated)
    for stored in by_key.values():
        if len(stored) < 2:
            continue
        figures.duplicated_keys += 1
        for earlier, later in pairwise(stored):
            figures.extra_records += 1
            cause = classify(earlier, later, attempts, replay_window)
            figures.causes[cause] += 1
            if later.maybe_duplicate:
                figures.counted_extra_records += 1
                figures.counted_causes[cause] += 1

    by_pipeline: dict[Key, list[Stored]] = defaultdict(list)
    for summary in summaries:
        by_pipeline[summary.key].append(summary)
    for stored in by_pipeline.values():
        figures.duplicated_summaries += len(stored) - 1
        figures.counted_duplicated_summaries += sum(1 for s in stored[1:] if s.maybe_duplicate)
    figures.disagreeing_summaries = sum(
        1 for stored in by_pipeline.values() if len({s.content for s in stored}) > 1
    )
    figures.missing_summaries = len(scenario.expected_summaries - set(by_pipeline))
    figures.unestimated_summaries = sum(1 for stored in by_pipeline.values() if not stored[0].estimated)
    _span_figures(figures, by_key, stored_spans(requests))
    return figures
