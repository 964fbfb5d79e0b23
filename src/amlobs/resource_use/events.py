"""What the resource-use pass sends: ``AmlRunResourceUse`` per run, ``AmlResourceUseHealth`` per problem.

Pure.

The event carries the run record's own keys (``run_id``, ``subscriptions``, ``resourceGroup``,
``amlWorkSpace``, ``experimentName``, ``pipelinerunid``, ``root_run_id``, ``compute_name``, ``status_time``
…) so the workbook joins it to the run record without renaming, and it is placed in the run's trace
(operation id = the pipeline's trace, parent = the run's span: :func:`amlobs.tracing.operation_of`).
Absent, never 0: a figure that could not be had is left out and ``resource_use_reason`` says why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from ..telemetry_unit import TelemetryUnit, stringify
from ..tracing import operation_of
from .due import DueRun
from .metrics_query import TIME_GRAIN, iso
from .usage import METRIC_KEYS, ResourceUse, idle_cost

EVENT_RESOURCE_USE = "AmlRunResourceUse"
EVENT_RESOURCE_USE_HEALTH = "AmlResourceUseHealth"
METRICS_PERMISSION = "Microsoft.Insights/metrics/read"
_LINK_KEYS = (
    "run_id",
    "status",
    "experimentName",
    "subscriptions",
    "resourceGroup",
    "amlWorkSpace",
    "parent_run_id",
    "root_run_id",
    "pipelinerunid",
    "step_name",
    "job_kind",
    "target",
    "compute_name",
    "compute_target_type",
    "status_time",
    "estimated_cost",
    "cost_currency",
)
# Every key an AmlRunResourceUse event may carry (the workbook and the alerts read no other).
RESOURCE_USE_FIELDS: tuple[str, ...] = (
    *_LINK_KEYS,
    "resource_use_outcome",
    "resource_use_reason",
    "vm_size",
    "window_start_utc",
    "window_end_utc",
    "window_interval",
    "accelerator",
    "node_count",
    "billed_node_count",
    *(f"{prefix}_{figure}" for prefix in METRIC_KEYS.values() for figure in ("avg", "max", "p95", "samples")),
    "spread_metric",
    "most_busy_node",
    "most_busy_node_avg",
    "least_busy_node",
    "least_busy_node_avg",
    "nodes_without_samples",
    "idle_gpu_cost",
    "idle_cpu_cost",
    "idle_cost_basis",
)
HEALTH_FIELDS: tuple[str, ...] = (
    "subscriptions",
    "resourceGroup",
    "amlWorkSpace",
    "step",
    "code",
    "detail",
    "missing_permission",
)
_SKU = re.compile(r"(?:^|; )sku=([A-Za-z0-9_\-]+)")
_NODES = re.compile(r"(?:^|; )nodes=(\d+)")


def vm_size(run: DueRun) -> str | None:
    match = _SKU.search(run.record.get("cost_basis", ""))
    return match.group(1) if match else None


def billed_nodes(run: DueRun) -> int | None:
    match = _NODES.search(run.record.get("cost_basis", ""))
    return int(match.group(1)) if match else None


def estimate_of(run: DueRun) -> Decimal | None:
    try:
        amount = Decimal(run.record["estimated_cost"])
    except (KeyError, InvalidOperation):
        return None
    return amount if amount.is_finite() else None


def _base(run: DueRun, outcome: str, window: tuple[int, int] | None) -> dict[str, object]:
    values: dict[str, object] = {key: run.record.get(key) for key in _LINK_KEYS}
    values["resource_use_outcome"] = outcome
    values["vm_size"] = vm_size(run)
    if window is not None:
        values["window_start_utc"] = iso(window[0])
        values["window_end_utc"] = iso(window[1])
        values["window_interval"] = TIME_GRAIN
    return values


def _unit(run: DueRun, values: Mapping[str, object]) -> TelemetryUnit:
    unit = TelemetryUnit()
    operation = operation_of(run.record)
    unit.add_event(
        EVENT_RESOURCE_USE,
        stringify(values),
        operation=(operation.trace_id, operation.span_id) if operation is not None else None,
    )
    return unit


def missing_unit(
    run: DueRun, outcome: str, reason: str, window: tuple[int, int] | None = None
) -> TelemetryUnit:
    """No figures for the run, and why (``outcome``: not_applicable, too_short, no_data, access_refused,
    throttled, unavailable, bad_answer)."""
    values = _base(run, outcome, window)
    values["resource_use_reason"] = reason
    values["idle_cost_basis"] = f"no idle cost: {reason}"
    return _unit(run, values)


def measured_unit(run: DueRun, use: ResourceUse, window: tuple[int, int]) -> TelemetryUnit:
    values = _base(run, "measured" if use.reason is None else "no_data", window)
    values["accelerator"] = use.accelerator
    values["node_count"] = use.nodes
    values["billed_node_count"] = billed_nodes(run)
    for metric, figures in use.metrics.items():
        prefix = METRIC_KEYS.get(metric)
        if prefix is None:
            continue
        values[f"{prefix}_avg"] = round(figures.average, 2)
        values[f"{prefix}_max"] = round(figures.maximum, 2)
        values[f"{prefix}_p95"] = round(figures.p95, 2)
        values[f"{prefix}_samples"] = figures.samples
    if use.node_spread is not None:
        spread = use.node_spread
        values["spread_metric"] = METRIC_KEYS.get(spread.metric, spread.metric)
        values["most_busy_node"], most = spread.most_busy
        values["least_busy_node"], least = spread.least_busy
        values["most_busy_node_avg"] = round(most, 2)
        values["least_busy_node_avg"] = round(least, 2)
        if spread.nodes_without_samples:
            values["nodes_without_samples"] = ", ".join(spread.nodes_without_samples)
    values["resource_use_reason"] = use.reason
    values.update(_idle(run, use))
    return _unit(run, values)


def _idle(run: DueRun, use: ResourceUse) -> dict[str, object]:
    key = "idle_gpu_cost" if use.accelerator == "gpu" else "idle_cpu_cost"
    metric = "gpu_utilization" if use.accelerator == "gpu" else "cpu_utilization"
    estimate = estimate_of(run)
    main = next((f for m, f in use.metrics.items() if METRIC_KEYS.get(m) == metric), None)
    if estimate is None:
        why = run.record.get("cost_basis", "no estimate").removeprefix("no estimate: ")
        return {"idle_cost_basis": f"no idle cost: the run has no estimated cost ({why})"}
    if main is None:
        return {"idle_cost_basis": f"no idle cost: no {metric.replace('_', ' ')} samples"}
    amount = idle_cost(estimate, main.average)
    return {
        key: format(amount, "f"),
        "idle_cost_basis": f"estimated_cost {estimate} × (1 − average {metric} {main.average:.2f} % / 100)",
    }


def health_unit(
    ws_record: Mapping[str, str], code: str, detail: str, permission: str | None
) -> TelemetryUnit:
    """One problem of the pass in a workspace; ``missing_permission`` names the role action to add."""
    unit = TelemetryUnit()
    unit.add_event(
        EVENT_RESOURCE_USE_HEALTH,
        stringify(
            {
                "subscriptions": ws_record.get("subscriptions"),
                "resourceGroup": ws_record.get("resourceGroup"),
                "amlWorkSpace": ws_record.get("amlWorkSpace"),
                "step": "resource_use",
                "code": code,
                "detail": detail[:1000],
                "missing_permission": permission,
            }
        ),
    )
    return unit
