"""Pipeline run + its child (step) runs → one ``AmlPipelineRunSummary`` record.

Computed from the run history children listing, not from the step events that happened to arrive,
so a lost or late step event cannot skew it. Nested sub-pipelines (v2 pipeline components, v1
sub-pipelines) are walked down to ``MAX_PIPELINE_DEPTH`` levels (:mod:`amlobs.enrichment`): their
steps count as the pipeline's steps, and a level that could not be listed is counted in
``incomplete_sub_pipeline_count`` and named in ``summary_error`` (the step figures are then lower
bounds). Pure: the I/O is in :mod:`amlobs.enrichment` and :mod:`amlobs.processor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import run_facts as facts
from .enrichment import MAX_PIPELINE_DEPTH, PipelineListing, is_pipeline_child
from .events import TERMINAL_STATUSES, RunEvent, normalise_status
from .failure import ROOT_CAUSE_FIELDS, root_cause_fields
from .records import COST_FIELDS, Record, RecordValue, elapsed_ms, parse_utc_ms
from .status_time import STATUS_TIME_FIELDS

SUMMARY_FIELDS: tuple[str, ...] = (
    "run_id",
    "status",
    "experimentName",
    "experimentId",
    "subscriptions",
    "resourceGroup",
    "amlWorkSpace",
    "event_id",
    "step_count",
    "failed_step_count",
    "canceled_step_count",
    "reused_step_count",
    "unfinished_step_count",
    "steps_execution_time_ms",
    "slowest_step_run_id",
    "slowest_step_name",
    "slowest_step_node_id",
    "slowest_step_duration_ms",
    "wall_time_ms",
    "queue_time_ms",
    "start_time_utc_ms",
    "end_time_utc_ms",
    "summary_error",
    "sub_pipeline_count",
    "pipeline_depth",
    "incomplete_sub_pipeline_count",
    "root_run_id",
    *STATUS_TIME_FIELDS,  # stamped by the processor (amlobs.status_time)
    # The sum of the steps' estimates, and how many steps had one (amlobs.cost_estimator).
    *COST_FIELDS,
    "estimated_cost_lower_bound",  # instead of estimated_cost when some step has no estimate
    "estimated_step_count",
    "unestimated_step_count",
    # Links, and why a failed or canceled run failed: its first failed leaf step (amlobs.failure).
    *ROOT_CAUSE_FIELDS,
)

MAX_SUMMARY_ERROR_CHARS = 2048


def needs_summary(record: Mapping[str, Any] | RunEvent) -> bool:
    """A summary is due when a top-level pipeline run reaches a terminal status.

    Decided on the enriched record: an event whose ``runType`` is null still gets its summary when
    run history says the run is a pipeline. A nested sub-pipeline (it has a parent) is summarised
    inside its top-level pipeline's summary, not on its own.
    """
    if isinstance(record, RunEvent):
        return facts.is_pipeline(record.run_type) and record.run_status in TERMINAL_STATUSES
    run_type = record.get("run_type")
    return (
        facts.is_pipeline(run_type if isinstance(run_type, str) else None)
        and record.get("status") in TERMINAL_STATUSES
        and not record.get("parent_run_id")
    )


def _node_id(child: Mapping[str, Any]) -> str | None:
    for key in ("properties", "tags"):
        bag = child.get(key)
        if isinstance(bag, Mapping):
            value = facts.text(bag.get("azureml.nodeid"))
            if value:
                return value
    return None


def _duration_ms(run: Mapping[str, Any]) -> int | None:
    return elapsed_ms(parse_utc_ms(run.get("startTimeUtc")), parse_utc_ms(run.get("endTimeUtc")))


@dataclass
class _Tally:
    steps: int = 0
    failed: int = 0
    canceled: int = 0
    reused: int = 0
    unfinished: int = 0
    execution_ms: int = 0
    slowest: tuple[int, Mapping[str, Any]] | None = None
    sub_pipelines: int = 0
    depth: int = 1
    incomplete: list[str] = field(default_factory=list)

    def add_step(self, child: Mapping[str, Any]) -> None:
        self.steps += 1
        status = normalise_status(child.get("status"))
        if status == "Failed":
            self.failed += 1
        elif status == "Canceled":
            self.canceled += 1
        elif status not in TERMINAL_STATUSES:
            self.unfinished += 1
        if facts.is_reused(child):
            # Reused steps count as steps but not towards execution time or the slowest step: their
            # time was spent by an earlier pipeline run.
            self.reused += 1
            return
        duration = _duration_ms(child)
        if duration is None:
            return
        self.execution_ms += duration
        if self.slowest is None or duration > self.slowest[0]:
            self.slowest = (duration, child)

    def add_sub_pipelines(self, listing: PipelineListing, level: int) -> None:
        """How deep the listing goes, and which of its sub-pipelines could not be listed."""
        self.depth = max(self.depth, level)
        for child in listing.children or ():
            if not is_pipeline_child(child):
                continue
            self.sub_pipelines += 1
            child_id = facts.text(child.get("runId")) or "(no run id)"
            nested = listing.nested.get(child_id)
            if nested is not None and nested.children is not None:
                self.add_sub_pipelines(nested, level + 1)
            elif nested is not None:
                self.incomplete.append(f"sub-pipeline {child_id}: {nested.error or 'not listed'}")
            elif child_id in listing.unlisted:
                self.incomplete.append(
                    f"sub-pipeline {child_id}: deeper than {MAX_PIPELINE_DEPTH} levels, not listed"
                )
            else:
                self.incomplete.append(f"sub-pipeline {child_id}: not listed")


def _as_listing(
    run_id: str, children: PipelineListing | Iterable[Mapping[str, Any]] | None
) -> PipelineListing | None:
    if children is None or isinstance(children, PipelineListing):
        return children
    return PipelineListing(run_id, [dict(child) for child in children])


def summarize_pipeline(
    event: RunEvent,
    pipeline_run: Mapping[str, Any] | None,
    children: PipelineListing | Iterable[Mapping[str, Any]] | None,
    summary_error: str | None = None,
) -> Record:
    """The summary of one pipeline run. ``pipeline_run`` is ``/runs/{id}`` (None if unavailable).

    ``children`` is the pipeline's listing (nested levels included), or a flat iterable of its
    direct children. None, or a listing whose ``children`` is None, means unavailable: the step
    figures are then unknown and left out (with ``summary_error`` saying why) rather than zero.
    """
    ws = event.workspace
    listing = _as_listing(event.run_id, children)
    if listing is not None and listing.children is None:
        summary_error = summary_error or listing.error or "child runs unavailable"
        listing = None
    tally = _Tally()
    if listing is not None:
        for step in listing.steps():
            tally.add_step(step)
        tally.add_sub_pipelines(listing, 1)
    if tally.incomplete:
        missing = f"steps of {len(tally.incomplete)} sub-pipeline(s) not counted: " + "; ".join(
            tally.incomplete
        )
        summary_error = "; ".join(e for e in (summary_error, missing) if e)[:MAX_SUMMARY_ERROR_CHARS]

    run = pipeline_run or {}
    status = event.run_status or normalise_status(run.get("status"))
    start_ms = parse_utc_ms(run.get("startTimeUtc"))
    end_ms = parse_utc_ms(run.get("endTimeUtc"))
    created_ms = parse_utc_ms(run.get("createdUtc"))
    step_values: dict[str, RecordValue | None] = {
        "step_count": tally.steps,
        "failed_step_count": tally.failed,
        "canceled_step_count": tally.canceled,
        "reused_step_count": tally.reused,
        "unfinished_step_count": tally.unfinished,
        "steps_execution_time_ms": tally.execution_ms,
        "sub_pipeline_count": tally.sub_pipelines,
        "pipeline_depth": tally.depth,
        "incomplete_sub_pipeline_count": len(tally.incomplete),
    }
    values: dict[str, RecordValue | None] = {
        "run_id": event.run_id,
        "status": status,
        # As on the record: an event that names no experiment (RunCompleted may not) takes the run's.
        "experimentName": event.experiment_name or facts.text(run.get("experimentName")),
        "experimentId": event.experiment_id or facts.text(run.get("experimentId")),
        "subscriptions": ws.subscription_id,
        "resourceGroup": ws.resource_group,
        "amlWorkSpace": ws.workspace_name,
        "event_id": event.event_id,
        **(step_values if listing is not None else {}),
        "wall_time_ms": elapsed_ms(start_ms, end_ms),
        "queue_time_ms": elapsed_ms(created_ms, start_ms),
        "start_time_utc_ms": start_ms,
        "end_time_utc_ms": end_ms,
        "summary_error": summary_error,
        "root_run_id": facts.text(run.get("rootRunId")),
    }
    if tally.slowest is not None:
        duration, child = tally.slowest
        values["slowest_step_run_id"] = facts.text(child.get("runId"))
        values["slowest_step_name"] = facts.text(child.get("displayName")) or facts.text(child.get("name"))
        values["slowest_step_node_id"] = _node_id(child)
        values["slowest_step_duration_ms"] = duration
    values.update(
        root_cause_fields(
            ws, event.run_id, status, pipeline_run, listing, incomplete_levels=len(tally.incomplete)
        )
    )
    return {key: value for key, value in values.items() if value is not None}
