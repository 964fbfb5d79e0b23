"""A finished run → its spans in its pipeline's trace (pure: no OpenTelemetry import).

Every run that reaches a terminal status becomes one span of one trace per *root* run (the top-level
pipeline, or the run itself when it has no parent), so Application Insights' end-to-end transaction
view draws a pipeline run as a timeline of its steps, nested as the pipeline is:

* ids are **derived**, never random: trace id from (workspace, root run id), span id from (workspace,
  run id), the parent span id from (workspace, parent run id). Spans of one pipeline run therefore
  assemble into one trace whatever order, instance, redelivery or ``backfill`` sent them, and a step
  that arrives before its pipeline already points at the pipeline's span;
* the root run is a ``SERVER`` span (the exporter makes it a ``requests`` item, named after the
  experiment), every other run an ``INTERNAL`` span (a ``dependencies`` item, named after its step),
  plus an ``INTERNAL`` child span ``Queued`` for the time between creation and start when both are
  known (``azure/monitor/opentelemetry/exporter/export/trace/_exporter.py``,
  ``_convert_span_to_envelope``: SERVER/CONSUMER → Request, every other kind → RemoteDependency);
* span times are the run's own (``start_time_utc_ms`` → ``end_time_utc_ms``); a failed run's span has
  status error and carries ``error_code``;
* attributes are record fields under the record's own names (``run_id``, ``step_name``, …), so the
  same KQL reads ``customEvents``, ``requests`` and ``dependencies``. None of them is a name the
  exporter keeps out of ``customDimensions`` (``_STANDARD_OPENTELEMETRY_ATTRIBUTE_PREFIXES`` and
  ``_STANDARD_OPENTELEMETRY_HTTP_ATTRIBUTES`` of the same file: ``error.type``, ``exception.*``,
  ``code.*``, ``peer.*``, …). ``peer.service`` is set on purpose: it becomes the dependency's
  ``target`` (the compute) and is not repeated in ``customDimensions``.

**The ingestion window.** The Track API refuses an item whose ``time`` (a span's start) is older than
48 hours or more than 2 hours ahead, item by item: ``400`` ``"103: Field 'time' on type 'Envelope' is
older than the allowed min date. Expected: now - 172800000ms"`` (``104: … is newer than the max date.
Expected: now + 7200000ms``), inside a ``206`` when other items were accepted, as the whole answer
otherwise (microsoft/ApplicationInsights-node.js#1466, microsoft/ApplicationInsights-JS#2283, and the
JS SDK's own test fixture, ``legacy/JavaScript/JavaScriptSDK.Tests/CheckinTests/Sender.tests.ts``).
A redelivery would meet the same refusal, forever. So the decision is made here, before anything is
sent, with an hour of margin for clock skew and retries (:data:`CLOCK_MARGIN_MS`):

* a span that **ended** before ``now - 47 h`` is not sent (a backfilled month, a replay of old dead
  letters); the run's record is sent as always, and the skip is counted
  (:data:`METRIC_TRACE_SPANS_SKIPPED`, dimension ``reason``);
* a span that **started** before ``now - 47 h`` but ended after it (a pipeline that ran three days) is
  sent with its start clamped to ``now - 47 h`` and the attribute ``span_start_clamped_from`` giving
  the real start (its ``start_time_utc_ms`` too): the transaction view shows the last 47 hours of it;
* a span that would start more than an hour ahead of this clock is not sent (a skewed clock).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NamedTuple

from . import run_facts as facts
from .events import TERMINAL_STATUSES, WorkspaceRef, normalise_status
from .status_time import iso_from_ms
from .telemetry_unit import run_record_unit

if TYPE_CHECKING:
    from .telemetry_unit import TelemetryUnit

# Ingestion's limits, as its own error messages state them ("Expected: now - 172800000ms",
# "Expected: now + 7200000ms"): see the module docstring for the sources.
INGESTION_MAX_AGE_MS = 172_800_000
INGESTION_MAX_AHEAD_MS = 7_200_000
# Host clock vs ingestion clock, the time between this decision and ingestion (retries inside the
# invocation are bounded to seconds): an hour is far more than either.
CLOCK_MARGIN_MS = 3_600_000

# A terminal status gets the run's span; NotResponding only when the run ended there (run history
# still says NotResponding and gives an end time), so a run that recovers gets its span later, once.
SPAN_STATUSES = TERMINAL_STATUSES
NOT_RESPONDING = "NotResponding"

METRIC_TRACE_SPANS_SKIPPED = "aml_trace_spans_skipped"
QUEUE_SPAN_NAME = "Queued"
# The dependency type Application Insights shows: "InProc | Microsoft.MachineLearningServices".
AZURE_NAMESPACE_ATTRIBUTE = "az.namespace"
AZURE_NAMESPACE = "Microsoft.MachineLearningServices"
PEER_SERVICE_ATTRIBUTE = "peer.service"
CLAMPED_ATTRIBUTE = "span_start_clamped_from"
PHASE_ATTRIBUTE = "span_phase"
SERVICE_FALLBACK = "azureml"

# Record fields a run span carries (present ones only), under the record's names.
SPAN_FIELDS: tuple[str, ...] = (
    "run_id", "root_run_id", "parent_run_id", "pipelinerunid", "experimentName", "amlWorkSpace", "status",
    "run_type", "job_kind", "display_name", "step_name", "step_type", "node_id", "is_reused", "reused_run_id",
    "target", "compute_name", "compute_target_type", "created_time_utc_ms", "start_time_utc_ms",
    "end_time_utc_ms", "queue_time_ms", "execution_time_ms", "compute_duration_ms", "error_category",
    "error_code", "error_code_chain", "error_message", "record_source",
)  # fmt: skip
QUEUE_SPAN_FIELDS: tuple[str, ...] = (
    "run_id", "step_name", "node_id", "target", "compute_name", "created_time_utc_ms", "start_time_utc_ms",
    "queue_time_ms", "record_source",
)  # fmt: skip
# Every customDimensions key a span may carry (the dashboard checks read this).
SPAN_DIMENSIONS: frozenset[str] = frozenset(
    {*SPAN_FIELDS, PHASE_ATTRIBUTE, CLAMPED_ATTRIBUTE, AZURE_NAMESPACE_ATTRIBUTE, "delivery_maybe_duplicate"}
)

SpanValue = str | int


class Operation(NamedTuple):
    """Where an item sits in a trace: its trace id and the id of the span it belongs to."""

    trace_id: int
    span_id: int

    @property
    def operation_id(self) -> str:
        """``operation_Id`` in Application Insights (the exporter's ``"{:032x}"``)."""
        return f"{self.trace_id:032x}"

    @property
    def parent_id(self) -> str:
        return f"{self.span_id:016x}"


@dataclass(frozen=True)
class SpanPlan:
    """One span to send: everything the private tracer provider needs, nothing it decides."""

    key: str  # unique within a trace: the run id, or "<run id>/queue"
    name: str
    root: bool  # SERVER (→ requests) when true, INTERNAL (→ dependencies) otherwise
    trace_id: int
    span_id: int
    parent_span_id: int | None
    start_ms: int
    end_ms: int
    workspace: str  # the cloud role the span is shown under
    attributes: Mapping[str, SpanValue] = field(default_factory=dict)
    error: str | None = None  # set for a failed run: the span's status is then ERROR

    @property
    def operation(self) -> Operation:
        return Operation(self.trace_id, self.span_id)


@dataclass(frozen=True)
class Skipped:
    key: str
    reason: str


@dataclass(frozen=True)
class TracePlan:
    spans: tuple[SpanPlan, ...] = ()
    skipped: tuple[Skipped, ...] = ()


# --------------------------------------------------------------------------------------------------
# Derived ids


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("|".join(parts).encode("utf-8")).digest()


def trace_id_for(workspace_key: str, root_run_id: str) -> int:
    """128-bit trace id of a root run (never 0: OpenTelemetry treats 0 as invalid)."""
    return int.from_bytes(_digest("aml-trace", workspace_key, root_run_id)[:16], "big") or 1


def span_id_for(workspace_key: str, run_id: str, phase: str = "run") -> int:
    """64-bit span id of a run (``phase`` "queue": its queue time span), never 0."""
    return int.from_bytes(_digest("aml-span", workspace_key, run_id, phase)[:8], "big") or 1


def _text(record: Mapping[str, object], key: str) -> str | None:
    return facts.text(record.get(key))


def _int(record: Mapping[str, object], key: str) -> int | None:
    return facts.integer(record.get(key))


def workspace_key(record: Mapping[str, object]) -> str | None:
    parts = (_text(record, "subscriptions"), _text(record, "resourceGroup"), _text(record, "amlWorkSpace"))
    if not all(parts):
        return None
    subscription, group, name = (p for p in parts if p is not None)
    return WorkspaceRef(subscription, group, name).cache_key


def root_run_id(record: Mapping[str, object]) -> str | None:
    """The run whose trace this run belongs to: run history's ``rootRunId``, or the run itself when it
    has no parent. None when a run has a parent but no known root (it cannot be placed)."""
    root = _text(record, "root_run_id")
    if root is not None:
        return root
    return _text(record, "run_id") if _text(record, "parent_run_id") is None else None


def operation_of(record: Mapping[str, object]) -> Operation | None:
    """Where a record (or a pipeline summary) belongs in its trace: under its run's span.

    None for a record built from the event alone (run history did not find the run): its parent, and
    so its trace, is unknown.
    """
    run_id, key = _text(record, "run_id"), workspace_key(record)
    root = root_run_id(record)
    if run_id is None or key is None or root is None or "enrichment_error" in record:
        return None
    return Operation(trace_id_for(key, root), span_id_for(key, run_id))


# --------------------------------------------------------------------------------------------------
# Which span, when


def gets_span(record: Mapping[str, object], current_status: str | None) -> bool:
    """A terminal status, or NotResponding that run history says the run ended in."""
    status = record.get("status")
    if status in SPAN_STATUSES:
        return True
    ended = _int(record, "end_time_utc_ms") is not None
    return status == NOT_RESPONDING and current_status == NOT_RESPONDING and ended


@dataclass(frozen=True)
class Window:
    """The span starts ingestion accepts, judged on this host's clock with a margin each side."""

    oldest_ms: int
    newest_ms: int

    @classmethod
    def at(cls, now_ms: int) -> Window:
        return cls(
            now_ms - INGESTION_MAX_AGE_MS + CLOCK_MARGIN_MS, now_ms + INGESTION_MAX_AHEAD_MS - CLOCK_MARGIN_MS
        )

    def fit(self, start_ms: int, end_ms: int) -> tuple[int, str | None] | str:
        """``(start to send, the real start if clamped)``, or the reason the span is not sent."""
        if start_ms > self.newest_ms:
            return "starts_after_ingestion_window"
        if end_ms < self.oldest_ms:
            return "ended_before_ingestion_window"
        if start_ms < self.oldest_ms:
            return self.oldest_ms, iso_from_ms(start_ms)
        return start_ms, None


def _run_name(record: Mapping[str, object], root: bool) -> str:
    keys = ("experimentName", "display_name") if root else ("step_name", "display_name", "node_id")
    name = next((n for n in (_text(record, k) for k in keys) if n), None) or _text(record, "run_id") or "run"
    if not root and record.get("is_reused") == "true":
        name += " (reused)"
    return name


def _run_times(record: Mapping[str, object]) -> tuple[int, int] | None:
    """The run's own start and end. A run that never started (canceled while queued) spans its
    creation to its end; one that says only when it ended is a point at its end."""
    end = facts.first_known(_int(record, "end_time_utc_ms"), _int(record, "status_time_utc_ms"))
    start = facts.first_known(_int(record, "start_time_utc_ms"), _int(record, "created_time_utc_ms"), end)
    if start is None or end is None:
        return None
    return start, max(start, end)


@dataclass(frozen=True)
class _Run:
    """What every span of one run shares."""

    record: Mapping[str, object]
    run_id: str
    workspace_key: str
    trace_id: int
    span_id: int
    workspace: str
    compute: str | None

    def attributes(self, fields: tuple[str, ...], phase: str) -> dict[str, SpanValue]:
        found: dict[str, SpanValue] = {}
        for key in fields:
            value = self.record.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
                found[key] = value
        found[PHASE_ATTRIBUTE] = phase
        return found

    def dependency(self, attributes: dict[str, SpanValue]) -> dict[str, SpanValue]:
        """A dependency's type names AML; its target is the compute (``peer.service``)."""
        attributes[AZURE_NAMESPACE_ATTRIBUTE] = AZURE_NAMESPACE
        if self.compute:
            attributes[PEER_SERVICE_ATTRIBUTE] = self.compute
        return attributes


def _run_span(run: _Run, window: Window, times: tuple[int, int]) -> SpanPlan | Skipped:
    parent = _text(run.record, "parent_run_id")
    attributes = run.attributes(SPAN_FIELDS, "run")
    if parent is not None:
        attributes = run.dependency(attributes)
    fitted = window.fit(*times)
    if isinstance(fitted, str):
        return Skipped(run.run_id, fitted)
    start, clamped_from = fitted
    if clamped_from is not None:
        attributes[CLAMPED_ATTRIBUTE] = clamped_from
    status = run.record.get("status")
    failed = status in ("Failed", NOT_RESPONDING)
    return SpanPlan(
        key=run.run_id,
        name=_run_name(run.record, parent is None),
        root=parent is None,
        trace_id=run.trace_id,
        span_id=run.span_id,
        parent_span_id=None if parent is None else span_id_for(run.workspace_key, parent),
        start_ms=start,
        end_ms=times[1],
        workspace=run.workspace,
        attributes=attributes,
        error=(_text(run.record, "error_code") or str(status)) if failed else None,
    )


def _queue_span(run: _Run, window: Window) -> SpanPlan | Skipped | None:
    created = _int(run.record, "created_time_utc_ms")
    started = _int(run.record, "start_time_utc_ms")
    if created is None or started is None or started <= created:
        return None  # unknown, or nothing to show (a reused step is created started)
    key = f"{run.run_id}/queue"
    fitted = window.fit(created, started)
    if isinstance(fitted, str):
        return Skipped(key, fitted)
    start, clamped_from = fitted
    attributes = run.dependency(run.attributes(QUEUE_SPAN_FIELDS, "queue"))
    if clamped_from is not None:
        attributes[CLAMPED_ATTRIBUTE] = clamped_from
    return SpanPlan(
        key=key,
        name=QUEUE_SPAN_NAME,
        root=False,
        trace_id=run.trace_id,
        span_id=span_id_for(run.workspace_key, run.run_id, "queue"),
        parent_span_id=run.span_id,
        start_ms=start,
        end_ms=started,
        workspace=run.workspace,
        attributes=attributes,
    )


def plan_trace(record: Mapping[str, object], *, now_ms: int, current_status: str | None = None) -> TracePlan:
    """The spans a record's run owes its trace (none unless :func:`gets_span`), and those it cannot send."""
    run_id = _text(record, "run_id")
    if run_id is None or not gets_span(record, current_status):
        return TracePlan()
    if "enrichment_error" in record:
        return TracePlan(skipped=(Skipped(run_id, "run_not_found"),))
    key, root = workspace_key(record), root_run_id(record)
    if key is None or root is None:
        return TracePlan(skipped=(Skipped(run_id, "root_run_unknown"),))
    times = _run_times(record)
    if times is None:
        return TracePlan(skipped=(Skipped(run_id, "times_unknown"),))
    run = _Run(
        record,
        run_id,
        key,
        trace_id_for(key, root),
        span_id_for(key, run_id),
        _text(record, "amlWorkSpace") or SERVICE_FALLBACK,
        _text(record, "compute_name") or _text(record, "target"),
    )
    window = Window.at(now_ms)
    planned = [_run_span(run, window, times), _queue_span(run, window)]
    return TracePlan(
        tuple(p for p in planned if isinstance(p, SpanPlan)),
        tuple(p for p in planned if isinstance(p, Skipped)),
    )


# --------------------------------------------------------------------------------------------------
# Into the invocation's telemetry unit


def add_trace(
    unit: TelemetryUnit,
    record: Mapping[str, object],
    *,
    now_ms: int,
    current_status: str | None = None,
    maybe_duplicate: bool = False,
) -> TracePlan:
    """Add the run's spans to ``unit`` (sent in the same request as its record) and count the spans
    that cannot be sent. Returns the plan (what was added, what was skipped)."""
    plan = plan_trace(record, now_ms=now_ms, current_status=current_status)
    for span in plan.spans:
        flagged = {**span.attributes, "delivery_maybe_duplicate": "true"} if maybe_duplicate else None
        unit.add_span(span.key, span if flagged is None else replace(span, attributes=flagged))
    if plan.skipped:
        # One point per invocation (unit keys are unique); the reason of the run's own span first.
        unit.add_counter(METRIC_TRACE_SPANS_SKIPPED, len(plan.skipped), {"reason": plan.skipped[0].reason})
    return plan


def traced_unit(
    record: Mapping[str, str | int],
    summary: Mapping[str, str | int] | None = None,
    *,
    maybe_duplicate: bool = False,
    details: Mapping[str, object] | None = None,
    now_ms: int | None = None,
) -> TelemetryUnit:
    """The unit of one recorded run status: its record and summary placed in the run's trace, and the
    run's spans when it finished. ``details`` is run history's answer (its current status decides
    whether a NotResponding run ended there)."""
    unit = run_record_unit(
        record,
        summary,
        maybe_duplicate=maybe_duplicate,
        operation=operation_of(record),
        summary_operation=operation_of(summary) if summary is not None else None,
    )
    status = details.get("status") if details is not None else None
    add_trace(
        unit,
        record,
        now_ms=time.time_ns() // 1_000_000 if now_ms is None else now_ms,
        current_status=normalise_status(status) if isinstance(status, str) else None,
        maybe_duplicate=maybe_duplicate,
    )
    return unit
