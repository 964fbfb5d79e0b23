"""Pipeline run + its child (step) runs → one ``AmlPipelineRunSummary`` record.

Computed from the run history children listing, not from the step events that happened to arrive,
so a lost or late step event cannot skew it. Pure: the I/O is in :mod:`amlobs.processor`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .events import TERMINAL_STATUSES, RunEvent, normalise_status
from .records import Record, RecordValue, elapsed_ms, parse_utc_ms
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
    *STATUS_TIME_FIELDS,  # stamped by the processor (amlobs.status_time)
)

PIPELINE_RUN_TYPES = frozenset({"azureml.pipelinerun"})


def is_pipeline_run(run_type: str | None) -> bool:
    return run_type is not None and run_type.lower() in PIPELINE_RUN_TYPES


def needs_summary(event: RunEvent) -> bool:
    """A summary is due when a pipeline run (not a step) reaches a terminal status."""
    return is_pipeline_run(event.run_type) and event.run_status in TERMINAL_STATUSES


def _is_reused(child: Mapping[str, Any]) -> bool:
    properties = child.get("properties")
    if not isinstance(properties, Mapping):
        return False
    return str(properties.get("azureml.isreused", "")).strip().lower() == "true"


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _node_id(child: Mapping[str, Any]) -> str | None:
    for key in ("properties", "tags"):
        bag = child.get(key)
        if isinstance(bag, Mapping):
            value = _text(bag.get("azureml.nodeid"))
            if value:
                return value
    return None


def _duration_ms(run: Mapping[str, Any]) -> int | None:
    return elapsed_ms(parse_utc_ms(run.get("startTimeUtc")), parse_utc_ms(run.get("endTimeUtc")))


def summarize_pipeline(
    event: RunEvent,
    pipeline_run: Mapping[str, Any] | None,
    children: Iterable[Mapping[str, Any]] | None,
    summary_error: str | None = None,
) -> Record:
    """The summary of one pipeline run. ``pipeline_run`` is ``/runs/{id}`` (None if unavailable).

    ``children`` is None when the listing was unavailable: the step figures are then unknown and
    left out (with ``summary_error`` saying why) rather than reported as zero.

    Reused steps count as steps but not towards execution time or the slowest step: their time was
    spent by an earlier pipeline run.
    """
    ws = event.workspace
    step_count = failed = canceled = reused = unfinished = 0
    steps_execution_ms = 0
    slowest: tuple[int, Mapping[str, Any]] | None = None
    for child in children or ():
        step_count += 1
        status = normalise_status(child.get("status"))
        if status == "Failed":
            failed += 1
        elif status == "Canceled":
            canceled += 1
        elif status not in TERMINAL_STATUSES:
            unfinished += 1
        if _is_reused(child):
            reused += 1
            continue
        duration = _duration_ms(child)
        if duration is None:
            continue
        steps_execution_ms += duration
        if slowest is None or duration > slowest[0]:
            slowest = (duration, child)

    start_ms = parse_utc_ms((pipeline_run or {}).get("startTimeUtc"))
    end_ms = parse_utc_ms((pipeline_run or {}).get("endTimeUtc"))
    created_ms = parse_utc_ms((pipeline_run or {}).get("createdUtc"))
    step_values: dict[str, RecordValue | None] = {
        "step_count": step_count,
        "failed_step_count": failed,
        "canceled_step_count": canceled,
        "reused_step_count": reused,
        "unfinished_step_count": unfinished,
        "steps_execution_time_ms": steps_execution_ms,
    }
    values: dict[str, RecordValue | None] = {
        "run_id": event.run_id,
        "status": event.run_status or normalise_status((pipeline_run or {}).get("status")),
        "experimentName": event.experiment_name,
        "experimentId": event.experiment_id,
        "subscriptions": ws.subscription_id,
        "resourceGroup": ws.resource_group,
        "amlWorkSpace": ws.workspace_name,
        "event_id": event.event_id,
        **(step_values if children is not None else {}),
        "wall_time_ms": elapsed_ms(start_ms, end_ms),
        "queue_time_ms": elapsed_ms(created_ms, start_ms),
        "start_time_utc_ms": start_ms,
        "end_time_utc_ms": end_ms,
        "summary_error": summary_error,
    }
    if slowest is not None:
        duration, child = slowest
        values["slowest_step_run_id"] = _text(child.get("runId"))
        values["slowest_step_name"] = _text(child.get("displayName")) or _text(child.get("name"))
        values["slowest_step_node_id"] = _node_id(child)
        values["slowest_step_duration_ms"] = duration
    return {key: value for key, value in values.items() if value is not None}
