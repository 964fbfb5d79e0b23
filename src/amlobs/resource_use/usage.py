"""One run's resource use from its metric samples, and the cost of what it left idle. Pure.

* per metric: the average and the 95th percentile (nearest rank) of the per-minute, per-node averages,
  and the highest per-minute maximum;
* per node: the average of its samples; the most and the least busy node by the run's main metric (GPU
  utilisation on a GPU run, else CPU); a node that answered without a sample is counted, not averaged in;
* idle cost: ``estimated_cost × (1 − average utilisation / 100)`` of the main metric, rounded like the
  estimate (six decimals, half up): a 2-node GPU run at 12 % costs 0.88 × its estimate in idle GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from .metrics_query import CPU, CPU_MEMORY, GPU, GPU_MEMORY, MetricSeries

AMOUNT_QUANTUM = Decimal("0.000001")
# Event key prefix of each metric.
METRIC_KEYS: dict[str, str] = {
    GPU: "gpu_utilization",
    GPU_MEMORY: "gpu_memory_utilization",
    CPU: "cpu_utilization",
    CPU_MEMORY: "cpu_memory_utilization",
}


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (the smallest value with at least ``pct`` % of the values at or below)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class MetricFigures:
    average: float
    maximum: float
    p95: float
    samples: int


def figures(series: MetricSeries) -> MetricFigures | None:
    averages = [s.average for samples in series.nodes.values() for s in samples]
    if not averages:
        return None
    maxima = [s.maximum if s.maximum is not None else s.average for ss in series.nodes.values() for s in ss]
    return MetricFigures(sum(averages) / len(averages), max(maxima), percentile(averages, 95), len(averages))


@dataclass(frozen=True)
class NodeSpread:
    metric: str
    most_busy: tuple[str, float]
    least_busy: tuple[str, float]
    nodes_without_samples: tuple[str, ...]


def spread(series: MetricSeries) -> NodeSpread | None:
    means = {
        node: sum(s.average for s in samples) / len(samples)
        for node, samples in series.nodes.items()
        if samples
    }
    if not means:
        return None
    most = max(means.items(), key=lambda item: (item[1], item[0]))
    least = min(means.items(), key=lambda item: (item[1], item[0]))
    empty = tuple(sorted(node for node, samples in series.nodes.items() if not samples))
    return NodeSpread(series.name, most, least, empty)


def is_gpu_sku(vm_size: str | None) -> bool:
    """Azure's GPU VM sizes are the N family (NC, ND, NV, NG:
    ``Standard_NC6s_v3``, ``Standard_ND96asr_v4``)."""
    parts = (vm_size or "").split("_")
    return len(parts) > 1 and parts[1][:1].upper() == "N"


def idle_cost(estimate: Decimal, average_pct: float) -> Decimal:
    busy = Decimal(str(min(max(average_pct, 0.0), 100.0))) / 100
    return (estimate * (1 - busy)).quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class ResourceUse:
    """What the answer said about one run (``reason`` set: no figure, and why)."""

    accelerator: str  # "gpu" or "cpu": which utilisation prices the idle time
    metrics: Mapping[str, MetricFigures]
    nodes: int
    node_spread: NodeSpread | None
    reason: str | None = None


def reduce(metrics: Mapping[str, MetricSeries], *, gpu_sku: bool) -> ResourceUse:
    figured = {name: f for name, series in metrics.items() if (f := figures(series)) is not None}
    gpu = gpu_sku or GPU in figured
    main = GPU if gpu else CPU
    nodes = {node for series in metrics.values() for node in series.nodes}
    main_series = metrics.get(main)
    node_spread = spread(main_series) if main_series is not None else None
    reason = None
    if not figured:
        errors = sorted({f"{s.name}: {s.error}" for s in metrics.values() if s.error})
        reason = "no samples for the run in the workspace's metrics" + (
            f" ({'; '.join(errors)})" if errors else ""
        )
    elif main not in figured:
        reason = f"no {METRIC_KEYS[main].replace('_', ' ')} samples for the run"
    return ResourceUse("gpu" if gpu else "cpu", figured, len(nodes), node_spread, reason)
