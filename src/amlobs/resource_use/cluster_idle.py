"""What idle cluster nodes cost, per cluster per day: the node-hours no run used × a node's hourly price.

Source: the workspace's *Quota* metrics (the supported-metrics page for
Microsoft.MachineLearningServices/workspaces, https://learn.microsoft.com/azure/azure-monitor/reference/
supported-metrics/microsoft-machinelearningservices-workspaces-metrics): ``Idle Nodes`` "Number of idle
nodes. Idle nodes are the nodes which are not running any jobs but can accept new job if available." and
``Leaving Nodes`` "nodes which just finished processing a job and will go to Idle state"; unit Count,
aggregations Average, Maximum, Minimum, Total; dimensions ``Scenario``, ``ClusterName``; time grain PT1M.
One request per workspace and day (the same ``Metrics_List`` as :mod:`.metrics_query`, 2023-10-01)::

    metricnames=Idle Nodes,Leaving Nodes&timespan=<day>T00:00:00Z/<next day>T00:00:00Z&interval=PT1H
    &aggregation=average&$filter=ClusterName eq '*'&top=100

The average of an hour × one hour is that hour's node-hours; the day's idle node-hours are their sum
(an hour without data counts 0 and is reported in ``hours_with_data``). Idle nodes are what
``min_node_count`` > 0 and the scale-down delay (``idle_seconds_before_scaledown``) keep running; leaving
nodes are counted (``leaving_node_hours``) but not priced (they are finishing a job). The price is the
cluster's node price of the cost estimate (:meth:`amlobs.cost_estimator.CostEstimator.cluster_hourly`).
One ``AmlClusterIdleCost`` per cluster per day, judged once (its claim:
``cluster_idle|<workspace>|<cluster>|<day>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

from .. import cost
from ..aml_discovery import workspace_path
from ..errors import TransientError
from ..events import WorkspaceRef
from ..telemetry_unit import TelemetryUnit, stringify
from .events import METRICS_PERMISSION, health_unit
from .metrics_query import METRIC_NAMESPACE, METRICS_API_VERSION, BadMetricsAnswer

if TYPE_CHECKING:
    from .run_pass import Claims, MetricsSource, Telemetry

logger = logging.getLogger("amlobs.resource_use")

EVENT_CLUSTER_IDLE = "AmlClusterIdleCost"
IDLE_NODES, LEAVING_NODES = "Idle Nodes", "Leaving Nodes"
CLUSTER_DIMENSION = "ClusterName"
HOURLY = "PT1H"
MAX_CLUSTERS = 100
# A day is judged once it is over and its last minutes' metrics had time to land.
DAY_DELAY = timedelta(hours=1)
# Days looked at each pass (yesterday and the one before, in case a pass was missed): the claims keep
# each (cluster, day) to one event.
DAYS_BACK = 2
CLUSTER_IDLE_FIELDS: tuple[str, ...] = (
    "subscriptions",
    "resourceGroup",
    "amlWorkSpace",
    "cluster_name",
    "day",
    "status_time",
    "idle_node_hours",
    "leaving_node_hours",
    "hours_with_data",
    "idle_cost",
    "cost_currency",
    "cost_basis",
)


def day_query(ws: WorkspaceRef, day: date) -> str:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    query = urlencode(
        {
            "api-version": METRICS_API_VERSION,
            "metricnamespace": METRIC_NAMESPACE,
            "metricnames": f"{IDLE_NODES},{LEAVING_NODES}",
            "timespan": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
            "interval": HOURLY,
            "aggregation": "average",
            "$filter": f"{CLUSTER_DIMENSION} eq '*'",
            "top": str(MAX_CLUSTERS),
        },
        quote_via=quote,
        safe="/,'*:",
    )
    return f"{workspace_path(ws)}/providers/Microsoft.Insights/metrics?{query}"


@dataclass
class ClusterDay:
    idle_node_hours: float = 0.0
    leaving_node_hours: float = 0.0
    hours: set[str] = field(default_factory=set)


def node_hours(body: Any) -> dict[str, ClusterDay]:
    """Cluster → its day's idle and leaving node-hours, from a ``Response`` at PT1H."""
    if not isinstance(body, Mapping) or not isinstance(body.get("value"), list):
        raise BadMetricsAnswer("a metrics answer without a value list")
    clusters: dict[str, ClusterDay] = {}
    for metric in body["value"]:
        name = metric.get("name", {}).get("value") if isinstance(metric, Mapping) else None
        if name not in (IDLE_NODES, LEAVING_NODES):
            continue
        for series in metric.get("timeseries") or ():
            cluster = next(
                (
                    m.get("value")
                    for m in series.get("metadatavalues") or ()
                    if str(m.get("name", {}).get("value", "")).lower() == CLUSTER_DIMENSION.lower()
                ),
                None,
            )
            if not isinstance(cluster, str):
                continue
            day = clusters.setdefault(cluster, ClusterDay())
            for point in series.get("data") or ():
                average = point.get("average")
                if isinstance(average, bool) or not isinstance(average, (int, float)):
                    continue
                day.hours.add(str(point.get("timeStamp")))
                if name == IDLE_NODES:
                    day.idle_node_hours += float(average)
                else:
                    day.leaving_node_hours += float(average)
    return clusters


class ClusterPrices(Protocol):
    def cluster_hourly(
        self, ws: WorkspaceRef, name: str
    ) -> tuple[cost.HourlyPrice, str] | cost.NoEstimate: ...


def idle_unit(ws: WorkspaceRef, cluster: str, day: date, figures: ClusterDay, price: Any) -> TelemetryUnit:
    values: dict[str, object] = {
        "subscriptions": ws.subscription_id,
        "resourceGroup": ws.resource_group,
        "amlWorkSpace": ws.workspace_name,
        "cluster_name": cluster,
        "day": day.isoformat(),
        # The workbook places it at the end of its day.
        "status_time": f"{day + timedelta(days=1):%Y-%m-%d}T00:00:00.000Z",
        "idle_node_hours": round(figures.idle_node_hours, 4),
        "leaving_node_hours": round(figures.leaving_node_hours, 4),
        "hours_with_data": len(figures.hours),
    }
    if isinstance(price, cost.NoEstimate):
        values["cost_basis"] = f"no estimate: {price.reason}"
    else:
        hourly, what = price
        amount = (hourly.amount * Decimal(str(figures.idle_node_hours))).quantize(
            cost.AMOUNT_QUANTUM, rounding=ROUND_HALF_UP
        )
        values["idle_cost"] = format(amount, "f")
        values["cost_currency"] = hourly.currency
        values["cost_basis"] = (
            f"idle_node_hours={round(figures.idle_node_hours, 4)} × hourly_price={hourly.amount} "
            f"{hourly.currency}; {what}; retail list price" + (f"; {hourly.note}" if hourly.note else "")
        )
    unit = TelemetryUnit()
    unit.add_event(EVENT_CLUSTER_IDLE, stringify(values))
    return unit


@dataclass
class IdleReport:
    clusters: int = 0
    http_calls: int = 0
    problems: list[str] = field(default_factory=list)


class ClusterIdlePass:
    """Per workspace, the days due (:data:`DAYS_BACK` complete days): one metrics GET per workspace-day."""

    def __init__(
        self,
        *,
        metrics: MetricsSource,
        prices: ClusterPrices,
        telemetry: Telemetry,
        claims: Claims,
        http_timeout_seconds: float = 10.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._metrics = metrics
        self._prices = prices
        self._telemetry = telemetry
        self._claims = claims
        self._timeout = http_timeout_seconds
        self._now = now

    def due_days(self) -> list[date]:
        last = (self._now() - DAY_DELAY).date() - timedelta(days=1)
        return [last - timedelta(days=back) for back in range(DAYS_BACK)]

    def run(self, workspaces: Iterable[WorkspaceRef]) -> IdleReport:
        report = IdleReport()
        for ws in workspaces:
            for day in self.due_days():
                try:
                    self._workspace_day(ws, day, report)
                except TransientError as error:  # this workspace-day waits for the next pass
                    report.problems.append(f"{ws.workspace_name} {day}: {error}")
        return report

    def _workspace_day(self, ws: WorkspaceRef, day: date, report: IdleReport) -> None:
        # The workspace-day is claimed first, so a day already judged costs no request in later passes.
        day_claim = self._claims.claim(
            f"cluster_idle|{ws.cache_key}|{day.isoformat()}", {"status": "idle day"}
        )
        if day_claim is None:
            return
        try:
            judged = self._judge_day(ws, day, report)
        except BaseException:
            self._claims.release(day_claim, accepted=frozenset(), maybe_delivered=False)
            raise
        if judged:
            self._claims.complete(day_claim)
        else:
            self._claims.release(day_claim, accepted=frozenset(), maybe_delivered=False)

    def _judge_day(self, ws: WorkspaceRef, day: date, report: IdleReport) -> bool:
        """True when every cluster of the day was sent (or had been)."""
        call = f"idle nodes of {ws.workspace_name} on {day} (Azure Monitor)"
        report.http_calls += 1
        answer = self._metrics.get_arm_answer(call, day_query(ws, day), attempts=1, timeout=self._timeout)
        if answer.status in (401, 403):
            detail = f"{call}: HTTP {answer.status}: needs {METRICS_PERMISSION}"
            record = {"subscriptions": ws.subscription_id, "resourceGroup": ws.resource_group,
                      "amlWorkSpace": ws.workspace_name}  # fmt: skip
            self._telemetry.send(health_unit(record, "access_refused", detail, METRICS_PERMISSION))
            report.problems.append(detail)
            return False
        if answer.status != 200:
            report.problems.append(f"{call}: HTTP {answer.status}")
            return False
        try:
            clusters = node_hours(answer.json())
        except (ValueError, BadMetricsAnswer) as bad:
            report.problems.append(f"{call}: {bad}")
            return False
        for cluster, figures in sorted(clusters.items()):
            key = f"cluster_idle|{ws.cache_key}|{cluster.lower()}|{day.isoformat()}"
            claim = self._claims.claim(key, {"run_id": cluster, "status": f"idle {day}"})
            if claim is None:
                continue  # judged already
            try:
                unit = idle_unit(ws, cluster, day, figures, self._prices.cluster_hourly(ws, cluster))
                claim = self._claims.start_sending(claim)
                self._telemetry.send(unit)
            except BaseException:
                self._claims.release(claim, accepted=frozenset(), maybe_delivered=claim.state == "sending")
                raise
            self._claims.complete(claim)
            report.clusters += 1
        return True
