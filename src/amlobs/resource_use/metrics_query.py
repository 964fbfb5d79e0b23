"""The Azure Monitor metrics request for one run, and what its answer says, per metric and per node. Pure.

Request (Azure/azure-rest-api-specs specification/monitor/resource-manager/Microsoft.Insights/stable/
2023-10-01/metrics_API.json, operation ``Metrics_List``)::

    GET {arm}/{workspace resource id}/providers/Microsoft.Insights/metrics?api-version=2023-10-01
        &metricnamespace=Microsoft.MachineLearningServices/workspaces
        &metricnames=CpuUtilizationPercentage,CpuMemoryUtilizationPercentage,GpuUtilizationPercentage,
                     GpuMemoryUtilizationPercentage
        &timespan=<start>/<end>&interval=PT1M&aggregation=average,maximum
        &$filter=RunId eq '<run id>' and InstanceId eq '*'&top=<nodes>

``timespan`` is "startDateTime_ISO/endDateTime_ISO"; ``interval`` an ISO 8601 duration; ``$filter``
"A eq 'a1' and C eq '*'" returns one time series per value of C; ``top`` "The maximum number of records
to retrieve. Valid only if $filter is specified. Defaults to 10" (so it is set to the node count: a
16-node run would otherwise lose six nodes).

Metrics (the supported-metrics page, https://learn.microsoft.com/azure/azure-monitor/reference/
supported-metrics/microsoft-machinelearningservices-workspaces-metrics, category *Resource*; source
MicrosoftDocs/azure-monitor-docs articles/azure-monitor/reference/supported-metrics/
microsoft-machinelearningservices-workspaces-metrics.md): ``CpuUtilizationPercentage`` "Utilization
percentage of a CPU node", ``CpuMemoryUtilizationPercentage``, ``GpuUtilizationPercentage``
"Utilization percentage of a GPU device", ``GpuMemoryUtilizationPercentage``; unit ``Count`` (the
value is a percentage), aggregations Average, Maximum, Minimum, Total; dimensions ``RunId``,
``InstanceId``, ``ComputeName`` (+ ``DeviceId`` for GPU); time grain ``PT1M`` only, "aggregated in one
minute intervals". All four share ``RunId`` and ``InstanceId``, so one request with one filter serves
them (the older ``GpuUtilization``/``CpuUtilization`` spell the dimension ``runId`` and split by
``NodeId``: not mixed in). GPU figures are averaged over a node's devices (``DeviceId`` not split).

Answer (``Response``: ``{"cost", "timespan", "interval", "namespace", "resourceregion", "value": [Metric]}``;
``Metric``: ``{"id", "type", "name": {"value", "localizedValue"}, "unit", "timeseries": [{"metadatavalues":
[{"name": {"value"}, "value"}], "data": [{"timeStamp", "average", "maximum", ...}]}], "errorCode"}``,
examples GetMetric.json and GetMetricError.json: the service answers dimension names lower-cased
("tier" for a filter on "Tier"), a metric it could not serve carries an ``errorCode`` other than
"Success" and an empty ``timeseries``, and a minute without data has no ``average``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

METRICS_API_VERSION = "2023-10-01"
METRIC_NAMESPACE = "Microsoft.MachineLearningServices/workspaces"
CPU = "CpuUtilizationPercentage"
CPU_MEMORY = "CpuMemoryUtilizationPercentage"
GPU = "GpuUtilizationPercentage"
GPU_MEMORY = "GpuMemoryUtilizationPercentage"
RUN_METRICS: tuple[str, ...] = (CPU, CPU_MEMORY, GPU, GPU_MEMORY)
AGGREGATIONS = "average,maximum"
# The metrics' only time grain; a run shorter than one has no sample to speak of.
TIME_GRAIN = "PT1M"
TIME_GRAIN_MS = 60_000
RUN_DIMENSION = "RunId"
NODE_DIMENSION = "InstanceId"
# top: the API's default is 10 series; one per node is needed. Clusters go to hundreds of nodes at most.
MIN_TOP, MAX_TOP = 10, 1000
# A run id goes into an OData string literal: anything but these characters is refused, never quoted.
_PLAIN_RUN_ID = re.compile(r"^[A-Za-z0-9_\-.:]{1,256}$")


class BadMetricsAnswer(ValueError):
    """The 200 answer is not the documented shape."""


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_plain_run_id(run_id: str) -> bool:
    return bool(_PLAIN_RUN_ID.match(run_id))


def run_filter(run_id: str) -> str:
    if not is_plain_run_id(run_id):
        raise ValueError(f"run id {run_id!r} cannot go into a metrics filter")
    return f"{RUN_DIMENSION} eq '{run_id}' and {NODE_DIMENSION} eq '*'"


def run_query(workspace_path: str, run_id: str, start_ms: int, end_ms: int, nodes: int) -> str:
    """The path and query (after the Resource Manager endpoint) of one run's metrics."""
    query = urlencode(
        {
            "api-version": METRICS_API_VERSION,
            "metricnamespace": METRIC_NAMESPACE,
            "metricnames": ",".join(RUN_METRICS),
            "timespan": f"{iso(start_ms)}/{iso(end_ms)}",
            "interval": TIME_GRAIN,
            "aggregation": AGGREGATIONS,
            "$filter": run_filter(run_id),
            "top": str(min(max(nodes, MIN_TOP), MAX_TOP)),
        },
        quote_via=quote,
        safe="/,'*:",
    )
    return f"{workspace_path}/providers/Microsoft.Insights/metrics?{query}"


@dataclass(frozen=True)
class Sample:
    average: float
    maximum: float | None


@dataclass
class MetricSeries:
    """One metric of the answer: its samples per node (``InstanceId``), and why it is missing if so."""

    name: str
    unit: str | None = None
    nodes: dict[str, list[Sample]] = field(default_factory=dict)
    error: str | None = None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _dimension(series: Mapping[str, Any], wanted: str) -> str | None:
    for item in series.get("metadatavalues") or ():
        if not isinstance(item, Mapping):
            continue
        name = item.get("name")
        name_value = name.get("value") if isinstance(name, Mapping) else name
        if isinstance(name_value, str) and name_value.lower() == wanted.lower():
            value = item.get("value")
            return value if isinstance(value, str) else None
    return None


def parse_answer(body: Any, dimension: str = NODE_DIMENSION) -> dict[str, MetricSeries]:
    """Metric name → its samples per value of ``dimension`` (the node); a metric absent from the answer is
    absent here."""
    if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
        raise BadMetricsAnswer("a metrics answer without a value list")
    metrics: dict[str, MetricSeries] = {}
    for metric in body["value"]:
        if not isinstance(metric, Mapping):
            continue
        name_bag = metric.get("name")
        name = name_bag.get("value") if isinstance(name_bag, Mapping) else None
        if not isinstance(name, str):
            continue
        unit = metric.get("unit")
        series = MetricSeries(name, unit if isinstance(unit, str) else None)
        code = metric.get("errorCode")
        if isinstance(code, str) and code != "Success":
            message = metric.get("errorMessage")
            series.error = f"{code}: {message}" if isinstance(message, str) else code
        for timeseries in metric.get("timeseries") or ():
            if not isinstance(timeseries, Mapping):
                continue
            node = _dimension(timeseries, dimension) or "(node not named)"
            samples = series.nodes.setdefault(node, [])
            for point in timeseries.get("data") or ():
                if not isinstance(point, Mapping):
                    continue
                average = _number(point.get("average"))
                if average is not None:
                    samples.append(Sample(average, _number(point.get("maximum"))))
        metrics[name] = series
    return metrics


def all_nodes(metrics: Mapping[str, MetricSeries], names: Sequence[str] = RUN_METRICS) -> set[str]:
    return {node for name in names if name in metrics for node in metrics[name].nodes}
