"""Azure Monitor's metrics API for a workspace, as documented, for the loopback AML fake to serve.

``GET {arm}/{workspace id}/providers/Microsoft.Insights/metrics`` (Azure/azure-rest-api-specs
specification/monitor/resource-manager/Microsoft.Insights/stable/2023-10-01/metrics_API.json, ``Metrics_List``).
The fake refuses, with Resource Manager's 400 error shape, any request that is not the form
``amlobs.resource_use`` is meant to send, so a drift fails a test:

* ``api-version=2023-10-01``; ``metricnamespace=Microsoft.MachineLearningServices/workspaces``;
* ``metricnames``: names of the workspace's documented metrics only (the supported-metrics page for
  Microsoft.MachineLearningServices/workspaces, categories *Resource* and *Quota*; quoted in
  ``src/amlobs/resource_use/metrics_query.py`` and ``cluster_idle.py``);
* ``timespan`` "startDateTime_ISO/endDateTime_ISO", start before end; ``interval`` an ISO 8601 duration of
  whole minutes or hours (the metrics' time grain is PT1M); ``aggregation`` among average, maximum, minimum,
  total, count;
* ``$filter``: ``RunId eq '<id>' and InstanceId eq '*'`` for the Resource metrics (their dimensions:
  ``RunId``, ``InstanceId``, ``DeviceId``, ``ComputeName``), ``ClusterName eq '*'`` for the Quota ones
  (``Scenario``, ``ClusterName``); ``top`` an integer (only with ``$filter``, per the spec).

The answer is the documented ``Response`` (``cost``, ``timespan``, ``interval``, ``value`` of ``Metric``
with ``name``/``unit``/``timeseries``/``errorCode``, ``namespace``, ``resourceregion``), each time series
with its dimension lower-cased in ``metadatavalues`` as the service answers (examples GetMetric.json: a
filter on ``Tier`` answers ``tier``), one point per interval; a minute without data has no ``average``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

API_VERSION = "2023-10-01"
NAMESPACE = "Microsoft.MachineLearningServices/workspaces"
RESOURCE_METRICS = frozenset(
    {
        "CpuUtilizationPercentage",
        "CpuMemoryUtilizationPercentage",
        "GpuUtilizationPercentage",
        "GpuMemoryUtilizationPercentage",
        "GpuEnergyJoules",
        "CpuCapacityMillicores",
        "GpuCapacityMilliGPUs",
    }
)
QUOTA_METRICS = frozenset({"Idle Nodes", "Active Nodes", "Leaving Nodes", "Total Nodes", "Preempted Nodes"})
AGGREGATIONS = frozenset({"average", "maximum", "minimum", "total", "count"})
_RUN_FILTER = re.compile(r"^RunId eq '(?P<run>[A-Za-z0-9_\-.:]+)' and InstanceId eq '\*'$")
_CLUSTER_FILTER = "ClusterName eq '*'"
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$")
_DURATION = re.compile(r"^PT(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?$")


# One minute (or hour) of one series: its average, or (average, maximum); None: no data that minute.
Sample = float | tuple[float, float] | None


class MetricsRequestRefused(Exception):
    pass


def _time(text: str) -> datetime:
    if not _ISO.match(text):
        raise MetricsRequestRefused(f"timespan bound {text!r} is not an ISO 8601 UTC time")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _interval(text: str) -> timedelta:
    match = _DURATION.match(text)
    if not match or not (match["h"] or match["m"]):
        raise MetricsRequestRefused(f"interval {text!r} is not an ISO 8601 duration of minutes or hours")
    return timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))


@dataclass
class MetricsData:
    """Per run: node → metric → per-minute samples from the run's start.
    Per workspace: cluster → metric → per-hour averages from a day's start."""

    runs: dict[str, dict[str, dict[str, list[Sample]]]] = field(default_factory=dict)
    run_starts: dict[str, datetime] = field(default_factory=dict)
    clusters: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)

    def set_run(self, run_id: str, start: datetime, nodes: dict[str, dict[str, list[Sample]]]) -> None:
        self.runs[run_id] = nodes
        self.run_starts[run_id] = start

    def answer(self, query: dict[str, str], resource_id: str) -> tuple[int, Any]:
        try:
            return 200, self._answer(query, resource_id)
        except MetricsRequestRefused as refused:
            return 400, {"error": {"code": "BadRequest", "message": str(refused)}}

    def _answer(self, query: dict[str, str], resource_id: str) -> dict[str, Any]:
        if query.get("api-version") != API_VERSION:
            raise MetricsRequestRefused(f"api-version {query.get('api-version')!r} is not {API_VERSION}")
        if query.get("metricnamespace") != NAMESPACE:
            raise MetricsRequestRefused(f"metricnamespace {query.get('metricnamespace')!r}")
        names = [n for n in query.get("metricnames", "").split(",") if n]
        if not names or not set(names) <= RESOURCE_METRICS | QUOTA_METRICS:
            raise MetricsRequestRefused(f"metricnames {names!r} are not the workspace's documented metrics")
        aggregations = [a for a in query.get("aggregation", "").split(",") if a]
        if not aggregations or not set(aggregations) <= AGGREGATIONS:
            raise MetricsRequestRefused(f"aggregation {query.get('aggregation')!r}")
        start_text, _, end_text = query.get("timespan", "").partition("/")
        start, end = _time(start_text), _time(end_text)
        if end <= start:
            raise MetricsRequestRefused("timespan ends before it starts")
        step = _interval(query.get("interval", ""))
        top = query.get("top")
        if top is not None and (not top.isdigit() or "$filter" not in query):
            raise MetricsRequestRefused("top must be an integer, with $filter")
        expression = query.get("$filter", "")
        run = _RUN_FILTER.match(expression)
        if set(names) <= RESOURCE_METRICS and run:
            value = self._run_metrics(names, run["run"], start, end, step, aggregations, int(top or 10))
        elif set(names) <= QUOTA_METRICS and expression == _CLUSTER_FILTER:
            value = self._cluster_metrics(names, start, end, step, aggregations)
        else:
            raise MetricsRequestRefused(f"$filter {expression!r} does not fit metrics {names!r}")
        return {
            "cost": 0,
            "timespan": f"{start_text}/{end_text}",
            "interval": query["interval"],
            "value": [
                {"id": f"{resource_id}/providers/Microsoft.Insights/metrics/{v['name']['value']}", **v}
                for v in value
            ],
            "namespace": NAMESPACE.lower(),
            "resourceregion": "eastus",
        }

    @staticmethod
    def _points(
        values: list[Sample],
        first: datetime,
        start: datetime,
        end: datetime,
        step: timedelta,
        aggs: list[str],
    ) -> list[dict[str, Any]]:
        points = []
        moment = start
        while moment < end:
            index = int((moment - first) / step)
            sample = values[index] if 0 <= index < len(values) else None
            point: dict[str, Any] = {"timeStamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}
            if sample is not None:
                average, maximum = sample if isinstance(sample, tuple) else (sample, sample)
                for agg in aggs:
                    point[agg] = maximum if agg == "maximum" else average
            points.append(point)
            moment += step
        return points

    def _run_metrics(
        self,
        names: list[str],
        run_id: str,
        start: datetime,
        end: datetime,
        step: timedelta,
        aggs: list[str],
        top: int,
    ) -> list[dict[str, Any]]:
        nodes = self.runs.get(run_id, {})
        first = self.run_starts.get(run_id, start)
        value = []
        for name in names:
            series = [
                {
                    "metadatavalues": [
                        {"name": {"value": "instanceid", "localizedValue": "instanceid"}, "value": node}
                    ],
                    "data": self._points(metrics[name], first, start, end, step, aggs),
                }
                for node, metrics in sorted(nodes.items())
                if name in metrics
            ][:top]
            value.append(
                {
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": name, "localizedValue": name},
                    "displayDescription": "",
                    "unit": "Count",
                    "timeseries": series,
                    "errorCode": "Success",
                }
            )
        return value

    def _cluster_metrics(
        self, names: list[str], start: datetime, end: datetime, step: timedelta, aggs: list[str]
    ) -> list[dict[str, Any]]:
        first = start.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        value = []
        for name in names:
            series = [
                {
                    "metadatavalues": [
                        {"name": {"value": "clustername", "localizedValue": "clustername"}, "value": cluster}
                    ],
                    "data": self._points(list[Sample](metrics[name]), first, start, end, step, aggs),
                }
                for cluster, metrics in sorted(self.clusters.items())
                if name in metrics
            ]
            value.append(
                {
                    "type": "Microsoft.Insights/metrics",
                    "name": {"value": name, "localizedValue": name},
                    "unit": "Count",
                    "timeseries": series,
                    "errorCode": "Success",
                }
            )
        return value
