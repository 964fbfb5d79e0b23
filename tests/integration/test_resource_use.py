"""The resource-use pass through ``function_app`` as the host runs it: the event function notes finished
runs, the timer function ``aml_resource_use`` reads each one's Azure Monitor metrics from the loopback fake
(tests/fakes/azure_monitor_metrics.py: the documented request form, anything else refused with 400) and sends
``AmlRunResourceUse``. Expected figures are computed here from the samples the fake serves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from amlobs import runtime
from amlobs.resource_use.run_pass import PassOptions
from amlobs.tracing import operation_of
from tests.fakes.aml_api import Fault
from tests.fakes.azure_monitor_metrics import MetricsData
from tests.fakes.retail_prices import price_of
from tests.integration.conftest import App
from tests.integration.host import invoke
from tests.integration.test_cost import event_of, on_compute, record_for

TIMER = json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False})
METRICS_PATH = "/providers/Microsoft.Insights/metrics"


def run_timer() -> None:
    invoke(TIMER, "aml_resource_use")


def uses(app: App) -> list[dict[str, Any]]:
    return [e["properties"] for e in app.ingestion.events("AmlRunResourceUse")]


def metrics_requests(app: App) -> list[Any]:
    """The runs' metrics requests (the idle-cluster pass asks the same API for the workspace's days)."""
    return [
        r for r in app.aml.requests_to(METRICS_PATH, "GET") if r.query.get("$filter", "").startswith("RunId")
    ]


def idle_requests(app: App) -> list[Any]:
    return [
        r for r in app.aml.requests_to(METRICS_PATH, "GET") if r.query.get("$filter") == "ClusterName eq '*'"
    ]


def iso(value: str) -> str:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gpu_step(app: App, *, seconds: float = 120, nodes: int = 2) -> dict[str, Any]:
    ws = app.aml.workspace()
    _pipeline, [step] = ws.add_pipeline_run("train", steps=1, step_seconds=seconds, target="gpu-cluster")
    on_compute(ws, step, "gpu-cluster", nodes=nodes)
    return step


def serve(app: App, step: dict[str, Any], nodes: dict[str, dict[str, list[Any]]]) -> None:
    start = datetime.fromisoformat(step["startTimeUtc"].replace("Z", "+00:00"))
    app.aml.metrics.setdefault("sample-ws", MetricsData()).set_run(step["runId"], start, nodes)


def test_a_two_node_gpu_run_at_12_percent_costs_88_percent_of_its_estimate_in_idle_gpus(app: App) -> None:
    step = gpu_step(app)
    # Node A: 10 % then 12 % (peaking at 30 % inside the first minute); node B: 13 % twice. Mean 12 %.
    serve(
        app,
        step,
        {
            "node-a": {
                "GpuUtilizationPercentage": [(10.0, 30.0), 12.0],
                "CpuUtilizationPercentage": [50.0, 70.0],
            },
            "node-b": {"GpuUtilizationPercentage": [13.0, 13.0], "CpuUtilizationPercentage": [40.0, 40.0]},
        },
    )
    invoke(event_of(app.aml.workspace(), step))
    assert metrics_requests(app) == []  # never on the live path
    record = record_for(app, step["runId"])

    run_timer()

    [request] = metrics_requests(app)
    ws = app.aml.workspace()
    assert request.path == f"{ws.resource_id}{METRICS_PATH}"
    assert request.query == {
        "api-version": "2023-10-01",
        "metricnamespace": "Microsoft.MachineLearningServices/workspaces",
        "metricnames": "CpuUtilizationPercentage,CpuMemoryUtilizationPercentage,GpuUtilizationPercentage,"
        "GpuMemoryUtilizationPercentage",
        "timespan": f"{iso(step['startTimeUtc'])}/{iso(step['endTimeUtc'])}",  # the run's own window
        "interval": "PT1M",
        "aggregation": "average,maximum",
        "$filter": f"RunId eq '{step['runId']}' and InstanceId eq '*'",
        "top": "10",
    }
    assert request.authorization == "Bearer token-for-management"  # the ARM audience, through the gate

    [use] = uses(app)
    assert use["resource_use_outcome"] == "measured" and "resource_use_reason" not in use
    assert (use["accelerator"], use["node_count"], use["billed_node_count"]) == ("gpu", "2", "2")
    assert (use["gpu_utilization_avg"], use["gpu_utilization_max"], use["gpu_utilization_p95"]) == (
        "12.0",
        "30.0",
        "13.0",
    )
    assert use["cpu_utilization_avg"] == "50.0"
    assert (use["most_busy_node"], use["most_busy_node_avg"]) == ("node-b", "13.0")
    assert (use["least_busy_node"], use["least_busy_node_avg"]) == ("node-a", "11.0")
    estimate = Decimal(record["estimated_cost"])
    assert estimate > 0
    expected = (estimate * Decimal("0.88")).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
    assert use["idle_gpu_cost"] == format(expected, "f")
    assert (
        use["idle_cost_basis"] == f"estimated_cost {estimate} × (1 − average gpu_utilization 12.00 % / 100)"
    )
    assert "idle_cpu_cost" not in use
    assert (use["window_start_utc"], use["window_end_utc"]) == (
        iso(step["startTimeUtc"]),
        iso(step["endTimeUtc"]),
    )
    # Linked to the run record and its trace.
    assert (use["run_id"], use["estimated_cost"], use["compute_name"]) == (
        step["runId"],
        record["estimated_cost"],
        "gpu-cluster",
    )
    [envelope] = [
        e for e in app.ingestion.envelopes if e["data"]["baseData"].get("name") == "AmlRunResourceUse"
    ]
    operation = operation_of(record)
    assert operation is not None
    assert envelope["tags"]["ai.operation.id"] == operation.operation_id
    assert envelope["tags"]["ai.operation.parentId"] == operation.parent_id

    run_timer()  # judged once
    assert len(uses(app)) == 1 and len(metrics_requests(app)) == 1


def test_a_cpu_run_gets_its_idle_cpu_cost(app: App) -> None:
    ws = app.aml.workspace()
    _pipeline, [step] = ws.add_pipeline_run("etl", steps=1, step_seconds=180, target="cpu-cluster")
    serve(app, step, {"n1": {"CpuUtilizationPercentage": [20.0, 30.0, 40.0]}})
    invoke(event_of(ws, step))
    record = record_for(app, step["runId"])
    run_timer()
    [use] = uses(app)
    assert use["accelerator"] == "cpu" and use["cpu_utilization_avg"] == "30.0"
    expected = (Decimal(record["estimated_cost"]) * Decimal("0.7")).quantize(
        Decimal("0.000001"), ROUND_HALF_UP
    )
    assert use["idle_cpu_cost"] == format(expected, "f") and "idle_gpu_cost" not in use


def test_a_run_without_samples_gets_a_reason_not_zeros(app: App) -> None:
    step = gpu_step(app)
    invoke(event_of(app.aml.workspace(), step))
    run_timer()
    [use] = uses(app)
    assert use["resource_use_outcome"] == "no_data"
    assert use["resource_use_reason"] == "no samples for the run in the workspace's metrics"
    assert not any(k.endswith(("_avg", "_max", "_p95")) or k.startswith("idle_gpu") for k in use)
    assert use["idle_cost_basis"] == "no idle cost: no gpu utilization samples"


def test_a_node_without_samples_is_named_not_averaged_in(app: App) -> None:
    step = gpu_step(app)
    serve(
        app,
        step,
        {"n1": {"GpuUtilizationPercentage": [50.0, 50.0]}, "n2": {"GpuUtilizationPercentage": [None, None]}},
    )
    invoke(event_of(app.aml.workspace(), step))
    run_timer()
    [use] = uses(app)
    assert (use["gpu_utilization_avg"], use["node_count"], use["nodes_without_samples"]) == (
        "50.0",
        "2",
        "n2",
    )


def test_a_403_gives_a_reason_and_a_health_record_naming_the_missing_permission(app: App) -> None:
    step = gpu_step(app)
    invoke(event_of(app.aml.workspace(), step))
    body = {"error": {"code": "AuthorizationFailed", "message": "does not have authorization"}}
    app.aml.fail("GET", METRICS_PATH, Fault(403, body=body), query_contains="RunId")
    run_timer()
    [use] = uses(app)
    assert use["resource_use_outcome"] == "access_refused"
    assert use["resource_use_reason"] == (
        "HTTP 403 (AuthorizationFailed): the identity may not read the workspace's metrics "
        "(needs Microsoft.Insights/metrics/read)"
    )
    [health] = [e["properties"] for e in app.ingestion.events("AmlResourceUseHealth")]
    assert (health["code"], health["missing_permission"], health["amlWorkSpace"]) == (
        "access_refused",
        "Microsoft.Insights/metrics/read",
        "sample-ws",
    )
    # The run's own records are untouched: one status record, as before the pass.
    assert len([r for r in app.records() if r["run_id"] == step["runId"]]) == 1


def test_a_429_is_waited_out_within_the_pass_and_the_run_measured(app: App) -> None:
    step = gpu_step(app)
    serve(app, step, {"n1": {"GpuUtilizationPercentage": [40.0, 60.0]}})
    invoke(event_of(app.aml.workspace(), step))
    app.aml.fail("GET", METRICS_PATH, Fault(429, headers={"Retry-After": "1"}), query_contains="RunId")
    run_timer()
    assert len(metrics_requests(app)) == 2
    [use] = uses(app)
    assert use["gpu_utilization_avg"] == "50.0"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(503), "HTTP 503 (after 2 tries)"),
        (
            Fault(429, headers={"Retry-After": "86400"}),
            "HTTP 429: throttled; it asked to wait 86400 s, more than the pass has left (after 2 tries)",
        ),
        (
            Fault(status=200, delay=3.0, passthrough=True),
            "failed after 1 attempt(s): ServiceResponseTimeoutError (after 2 tries)",
        ),
    ],
    ids=["5xx", "429 beyond the pass", "timeout"],
)
def test_a_transient_failure_leaves_the_run_due_then_says_why(app: App, fault: Fault, reason: str) -> None:
    step = gpu_step(app)
    serve(app, step, {"n1": {"GpuUtilizationPercentage": [40.0, 60.0]}})
    invoke(event_of(app.aml.workspace(), step))
    runtime.get_resource_use_pass().runs.options = PassOptions(
        max_tries=2, retry_delay_ms=0, http_timeout_seconds=1.0
    )
    app.aml.fail("GET", METRICS_PATH, fault, fault, query_contains="RunId")

    run_timer()
    assert uses(app) == []  # still due: tried again next pass
    run_timer()
    [use] = uses(app)
    assert use["resource_use_outcome"] in ("unavailable", "throttled")
    assert use["resource_use_reason"].endswith(reason)
    assert len([r for r in app.records() if r["run_id"] == step["runId"]]) == 1


def test_a_transient_failure_then_an_answer_measures_the_run(app: App) -> None:
    step = gpu_step(app)
    serve(app, step, {"n1": {"GpuUtilizationPercentage": [40.0, 60.0]}})
    invoke(event_of(app.aml.workspace(), step))
    runtime.get_resource_use_pass().runs.options = PassOptions(retry_delay_ms=0)
    app.aml.fail("GET", METRICS_PATH, Fault(500), query_contains="RunId")
    run_timer()
    run_timer()
    [use] = uses(app)
    assert use["resource_use_outcome"] == "measured"


def test_runs_without_a_compute_cluster_or_too_short_get_a_reason_and_no_request(app: App) -> None:
    ws = app.aml.workspace()
    ws.add_compute("ci-dev", compute_type="ComputeInstance")
    _p1, [on_instance] = ws.add_pipeline_run("a", steps=1, step_seconds=300)
    on_compute(ws, on_instance, "ci-dev")
    _p2, [short] = ws.add_pipeline_run("b", steps=1, step_seconds=30, target="gpu-cluster")
    for step in (on_instance, short):
        invoke(event_of(ws, step))
    run_timer()
    assert metrics_requests(app) == []
    by_run = {u["run_id"]: u for u in uses(app)}
    assert by_run[on_instance["runId"]]["resource_use_outcome"] == "not_applicable"
    assert by_run[on_instance["runId"]]["resource_use_reason"] == (
        "ComputeInstance compute: resource metrics are read for AML compute clusters only"
    )
    assert by_run[short["runId"]]["resource_use_outcome"] == "too_short"
    assert by_run[short["runId"]]["resource_use_reason"] == "the run lasted 30 s, less than one sample (PT1M)"


def test_a_pipeline_run_and_an_unfinished_status_are_not_noted(app: App) -> None:
    ws = app.aml.workspace()
    pipeline, _steps = ws.add_pipeline_run("train", steps=2)
    invoke(event_of(ws, pipeline))
    invoke(event_of(ws, _steps[0], status="Running"))
    run_timer()
    assert uses(app) == [] and metrics_requests(app) == []


# --------------------------------------------------------------------------------------------------
# Idle clusters, per cluster per day


def test_idle_cluster_node_hours_are_priced_once_per_cluster_and_day(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = app.aml.workspace()
    monkeypatch.setenv("AML_OBS_WORKSPACE_IDS", ws.resource_id)
    # cpu-cluster keeps one node all day (min nodes 1); gpu-cluster idles 2 nodes for 3 hours after a job
    # (the scale-down delay), plus half a leaving node for an hour.
    app.aml.metrics["sample-ws"] = MetricsData(
        clusters={
            "cpu-cluster": {"Idle Nodes": [1.0] * 24},
            "gpu-cluster": {
                "Idle Nodes": [0.0] * 10 + [2.0] * 3 + [0.0] * 11,
                "Leaving Nodes": [0.0] * 9 + [0.5],
            },
        }
    )
    run_timer()

    [first, *_] = requests = idle_requests(app)
    assert len(requests) == 2  # yesterday and the day before, one request per workspace-day
    assert first.query == {
        "api-version": "2023-10-01",
        "metricnamespace": "Microsoft.MachineLearningServices/workspaces",
        "metricnames": "Idle Nodes,Leaving Nodes",
        "timespan": first.query["timespan"],
        "interval": "PT1H",
        "aggregation": "average",
        "$filter": "ClusterName eq '*'",
        "top": "100",
    }
    start, end = first.query["timespan"].split("/")
    assert start.endswith("T00:00:00Z") and end.endswith("T00:00:00Z")
    assert datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(
        start.replace("Z", "+00:00")
    ) == timedelta(days=1)

    events = [e["properties"] for e in app.ingestion.events("AmlClusterIdleCost")]
    assert len(events) == 4  # two clusters × two days
    by_cluster = {(e["cluster_name"], e["day"]): e for e in events}
    day = start[:10]
    cpu, gpu = by_cluster[("cpu-cluster", day)], by_cluster[("gpu-cluster", day)]
    ds2, nc6_spot = price_of("eastus", "Standard_DS2_v2"), price_of("eastus", "Standard_NC6s_v3", kind="Spot")
    assert (cpu["idle_node_hours"], cpu["hours_with_data"]) == ("24.0", "24")
    assert cpu["idle_cost"] == format((ds2 * 24).quantize(Decimal("0.000001")), "f")
    assert (gpu["idle_node_hours"], gpu["leaving_node_hours"]) == ("6.0", "0.5")
    assert gpu["idle_cost"] == format((nc6_spot * 6).quantize(Decimal("0.000001")), "f")
    assert "priority=low_priority" in gpu["cost_basis"] and gpu["cost_currency"] == "USD"
    assert cpu["status_time"] == f"{(datetime.fromisoformat(day) + timedelta(days=1)):%Y-%m-%d}T00:00:00.000Z"

    run_timer()  # judged once: no second event, and no second request for a day already judged
    assert len(app.ingestion.events("AmlClusterIdleCost")) == 4
    assert len(idle_requests(app)) == 2


def test_an_idle_cluster_day_refused_with_403_leaves_a_health_record_and_is_asked_again(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = app.aml.workspace()
    monkeypatch.setenv("AML_OBS_WORKSPACE_IDS", ws.resource_id)
    app.aml.metrics["sample-ws"] = MetricsData(clusters={"cpu-cluster": {"Idle Nodes": [1.0] * 24}})
    app.aml.fail("GET", METRICS_PATH, Fault(403), Fault(403), query_contains="ClusterName")
    run_timer()
    health = [e["properties"] for e in app.ingestion.events("AmlResourceUseHealth")]
    assert {h["missing_permission"] for h in health} == {"Microsoft.Insights/metrics/read"}
    assert app.ingestion.events("AmlClusterIdleCost") == []
    run_timer()  # the days were not judged: asked again, and priced now that access works
    assert len(app.ingestion.events("AmlClusterIdleCost")) == 2
