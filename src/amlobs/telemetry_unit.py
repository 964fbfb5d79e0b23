"""One invocation's telemetry as one unit: the items a sink sends together, in one request.

A :class:`TelemetryUnit` holds everything one invocation records: the ``AmlRunStatusChanged`` custom
event, its histogram points, the pipeline summary, the rejected-event counter, and spans (pipeline
traces: :meth:`TelemetryUnit.add_span`, filled by :mod:`amlobs.tracing`). Pure data: built and
unit-tested without any exporter; how a unit is sent, and what a partial answer means, is
:mod:`amlobs.telemetry`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

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
# The dimension a possible duplicate carries (an earlier attempt's POST went unanswered).
MAYBE_DUPLICATE = "delivery_maybe_duplicate"

ItemKind = Literal["event", "histogram", "counter", "span"]


@dataclass(frozen=True)
class TelemetryItem:
    """One item of a unit. ``key`` is unique within the unit: the dedupe claim remembers the keys of
    the items ingestion stored, so a redelivery never sends them again."""

    key: str
    kind: ItemKind
    name: str
    dimensions: Mapping[str, str] = field(default_factory=dict)
    value: float = 0.0
    span: object = None  # kind "span": an amlobs.tracing.SpanPlan or an OpenTelemetry ReadableSpan
    # A custom event's place in a pipeline trace (amlobs.tracing.operation_of): its operation_Id and
    # operation_ParentId, so the transaction view lists a run's records under the run's span.
    operation: tuple[int, int] | None = None


@dataclass
class TelemetryUnit:
    items: list[TelemetryItem] = field(default_factory=list)
    # When what the unit sends was decided (epoch ms): the time of its event and metric envelopes, so
    # that a resend of a kept unit (amlobs.resend) repeats it. None: the moment it is converted.
    decided_at_ms: int | None = None

    def _add(self, item: TelemetryItem) -> None:
        if any(existing.key == item.key for existing in self.items):
            raise ValueError(f"telemetry item {item.key!r} is already in this unit")
        self.items.append(item)

    def add_event(
        self, name: str, dimensions: Mapping[str, str], *, operation: tuple[int, int] | None = None
    ) -> None:
        self._add(TelemetryItem(f"event:{name}", "event", name, dict(dimensions), operation=operation))

    def add_histogram(self, name: str, value: float, dimensions: Mapping[str, str]) -> None:
        self._add(TelemetryItem(f"metric:{name}", "histogram", name, dict(dimensions), value))

    def add_counter(self, name: str, value: float, dimensions: Mapping[str, str]) -> None:
        self._add(TelemetryItem(f"metric:{name}", "counter", name, dict(dimensions), value))

    def add_span(self, key: str, span: object) -> None:
        """A span (an ``amlobs.tracing.SpanPlan``, or a finished ``ReadableSpan``), sent in the same
        request as the rest of the unit."""
        self._add(TelemetryItem(f"span:{key}", "span", key, {}, 0.0, span))

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(item.key for item in self.items)

    def without(self, keys: Iterable[str]) -> TelemetryUnit:
        skip = frozenset(keys)
        return TelemetryUnit([item for item in self.items if item.key not in skip], self.decided_at_ms)

    def events(self, name: str) -> list[Mapping[str, str]]:
        return [item.dimensions for item in self.items if item.kind == "event" and item.name == name]

    @property
    def spans(self) -> list[object]:
        return [item.span for item in self.items if item.kind == "span"]


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


def run_record_unit(
    record: Mapping[str, str | int],
    summary: Mapping[str, str | int] | None = None,
    *,
    maybe_duplicate: bool = False,
    operation: tuple[int, int] | None = None,
    summary_operation: tuple[int, int] | None = None,
) -> TelemetryUnit:
    """The custom event of a record, its histogram points and the pipeline summary, as one unit.

    ``operation``/``summary_operation``: where the record and the summary sit in the pipeline's trace
    (``amlobs.tracing.operation_of``); None leaves them outside any trace.
    """
    flag = {MAYBE_DUPLICATE: "true"} if maybe_duplicate else {}
    unit = TelemetryUnit()
    unit.add_event(EVENT_RUN_STATUS_CHANGED, {**stringify(record), **flag}, operation=operation)
    dimensions = metric_dimensions(record)
    for metric, value in metric_points(record):
        unit.add_histogram(metric, value, dimensions)
    if summary is not None:
        unit.add_event(EVENT_PIPELINE_SUMMARY, {**stringify(summary), **flag}, operation=summary_operation)
    return unit


def rejected_unit(reason: str, detail: str, attributes: Mapping[str, str]) -> TelemetryUnit:
    unit = TelemetryUnit()
    unit.add_event(EVENT_REJECTED, rejected_dimensions(reason, detail, attributes))
    unit.add_counter(METRIC_REJECTED, 1, {"reason": reason})
    return unit
