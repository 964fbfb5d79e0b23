"""The estimated compute cost through ``function_app``: the loopback AML fake serves Resource Manager's compute
GET (Microsoft's recorded cluster answer) and the Retail Prices API (its documented shape, paged); every
expected amount is computed here from the fake's price list (tests/fakes/retail_prices.py), not by the code."""

from __future__ import annotations

import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from amlobs import prices as prices_module
from tests.fakes.aml_api import FakeWorkspace, Fault
from tests.fakes.aml_data import load_kind
from tests.fakes.retail_prices import price_of
from tests.integration.conftest import App
from tests.integration.host import invoke

EVENT_TYPE = "Microsoft.MachineLearningServices.RunStatusChanged"


def expected_cost(hourly: Decimal, nodes: int, duration_ms: int) -> str:
    exact = hourly * nodes * Decimal(duration_ms) / Decimal(3_600_000)
    return str(exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))


def event_of(ws: FakeWorkspace, run: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": ws.resource_id,
        "subject": f"experiments/{run['experimentId']}/runs/{run['runId']}",
        "eventType": EVENT_TYPE,
        "eventTime": run.get("endTimeUtc") or run["createdUtc"],
        "dataVersion": "2",
        "data": {
            "runStatus": status or run["status"],
            "experimentId": run["experimentId"],
            "experimentName": ws.experiments[run["experimentId"]]["name"],
            "runId": run["runId"],
            "runType": run.get("runType"),
            "runTags": run.get("tags") or {},
            "runProperties": run.get("properties") or {},
        },
    }


def record_for(app: App, run_id: str, status: str = "Completed") -> dict[str, Any]:
    [record] = [r for r in app.records() if r["run_id"] == run_id and r["status"] == status]
    return record


def summaries(app: App) -> list[dict[str, Any]]:
    return [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]


def on_compute(ws: FakeWorkspace, run: dict[str, Any], target: str, *, nodes: int = 1) -> None:
    """Move a generated step to another compute (run and details, as run history would report it)."""
    for answer in (run, ws.details[run["runId"]]):
        answer["target"] = target
        if answer.get("compute"):
            answer["compute"] = {**answer["compute"], "target": target, "instanceCount": nodes}
        answer["computeRequest"] = {"nodeCount": nodes, "gpuCount": 0}


def price_queries(app: App) -> list[Any]:
    """Retail Prices queries (first pages: a followed NextPageLink carries $skip)."""
    return [r for r in app.aml.requests_to("/api/retail/prices", "GET") if "$skip" not in r.query]


def compute_gets(app: App) -> list[Any]:
    return app.aml.requests_to("/computes/", "GET")


def test_a_v2_pipeline_on_two_vm_sizes_with_a_reused_step(app: App) -> None:
    ws = app.aml.workspace()
    ws.add_compute("big-cluster", vm_size="STANDARD_DS3_V2")
    pipeline, steps = ws.add_pipeline_run("train", steps=3, step_seconds=600)
    small, big, reused = steps
    on_compute(ws, big, "big-cluster", nodes=2)
    for answer in (reused, ws.details[reused["runId"]]):
        answer["properties"] = {
            **answer["properties"],
            "azureml.isreused": "true",
            "azureml.reusedrunid": small["runId"],
        }

    for step in steps:
        invoke(event_of(ws, step))
    invoke(event_of(ws, pipeline))

    ds2, ds3 = price_of("eastus", "Standard_DS2_v2"), price_of("eastus", "Standard_DS3_v2")
    ten_minutes = 600_000  # the generated steps' computeDuration
    first = record_for(app, small["runId"])
    assert first["estimated_cost"] == expected_cost(ds2, 1, ten_minutes)
    assert first["cost_currency"] == "USD"
    assert first["cost_basis"] == (
        f"sku=Standard_DS2_v2; os=Linux; priority=dedicated; nodes=1; hourly_price={ds2} USD; "
        "duration_s=600 (compute duration); region=eastus; compute=cluster cpu-cluster; meter=D2 v2/DS2 v2; "
        "retail list price"
    )
    second = record_for(app, big["runId"])
    # DS3 v2 lists an older Linux meter too (2021): the newest one prices it.
    assert ds3 == Decimal("0.293")
    assert second["estimated_cost"] == expected_cost(ds3, 2, ten_minutes)
    assert "sku=Standard_DS3_v2; os=Linux; priority=dedicated; nodes=2;" in second["cost_basis"]
    third = record_for(app, reused["runId"])
    assert third["estimated_cost"] == "0.000000"
    assert third["cost_basis"].startswith(
        f"reused step: its output was computed earlier in run {small['runId']}"
    )
    pipeline_record = record_for(app, pipeline["runId"])
    assert "estimated_cost" not in pipeline_record
    assert pipeline_record["cost_basis"].startswith("no estimate: a pipeline run's compute is its steps'")

    [summary] = summaries(app)
    total = sum(Decimal(record_for(app, s["runId"])["estimated_cost"]) for s in steps)
    assert summary["estimated_cost"] == str(total)
    assert (summary["estimated_step_count"], summary["unestimated_step_count"]) == ("3", "0")
    assert summary["cost_basis"] == "sum of 3 step estimate(s)"

    # One compute GET per cluster and one price query per VM size, whatever the number of runs; the paged
    # answers (the fake pages by three rows) were followed.
    assert sorted(r.path.rsplit("/", 1)[-1] for r in compute_gets(app)) == ["big-cluster", "cpu-cluster"]
    assert len(price_queries(app)) == 2
    assert len(app.aml.requests_to("/api/retail/prices")) > 2


def test_intermediate_statuses_and_warm_caches_make_no_lookups(app: App) -> None:
    ws = app.aml.workspace()
    pipeline, steps = ws.add_pipeline_run("train", steps=4)
    invoke(event_of(ws, steps[0]))  # warms the cluster and the price of its VM size
    app.aml.clear_records()

    for step in steps:
        invoke(event_of(ws, step, "Running"))
    for step in steps[1:]:
        invoke(event_of(ws, step))
    invoke(event_of(ws, pipeline))

    assert compute_gets(app) == [] and app.aml.requests_to("/api/retail/prices") == []
    running = [r for r in app.records() if r["status"] == "Running"]
    assert len(running) == 4 and not any(
        key in r for r in running for key in ("cost_basis", "estimated_cost")
    )
    assert all("estimated_cost" in record_for(app, s["runId"]) for s in steps)


def test_a_low_priority_cluster_is_priced_at_the_spot_rate(app: App) -> None:
    ws = app.aml.workspace()
    _pipeline, [step] = ws.add_pipeline_run("etl", steps=1, step_seconds=1800, target="gpu-cluster")

    invoke(event_of(ws, step))

    spot = price_of("eastus", "Standard_NC6s_v3", kind="Spot")
    low_priority = price_of("eastus", "Standard_NC6s_v3", kind="Low Priority")
    assert spot != low_priority  # the test tells the two meters apart
    record = record_for(app, step["runId"])
    assert record["estimated_cost"] == expected_cost(spot, 1, 1_800_000)
    assert "sku=Standard_NC6s_v3; os=Linux; priority=low_priority;" in record["cost_basis"]
    assert f"hourly_price={spot} USD" in record["cost_basis"]
    assert record["cost_basis"].endswith("low priority billed at the Spot rate (variable)")


def test_a_windows_cluster_is_priced_with_the_windows_meter(app: App) -> None:
    ws = app.aml.workspace()
    ws.add_compute("win-cluster", vm_size="STANDARD_D2_V2", os_type="Windows")
    _pipeline, [step] = ws.add_pipeline_run("etl", steps=1, step_seconds=3600, target="win-cluster")

    invoke(event_of(ws, step))

    windows = price_of("eastus", "Standard_D2_v2", windows=True)
    record = record_for(app, step["runId"])
    assert (
        record["estimated_cost"]
        == expected_cost(windows, 1, 3_600_000)
        == str(windows.quantize(Decimal("0.000001")))
    )
    assert "os=Windows" in record["cost_basis"]


def test_a_cluster_outside_the_workspace_region_is_priced_in_its_own_region(app: App) -> None:
    ws = app.aml.workspace()
    ws.add_compute("eu-cluster", vm_size="STANDARD_DS3_V2", location="westeurope")
    _pipeline, [step] = ws.add_pipeline_run("etl", steps=1, step_seconds=3600, target="eu-cluster")

    invoke(event_of(ws, step))

    record = record_for(app, step["runId"])
    assert record["estimated_cost"] == expected_cost(price_of("westeurope", "Standard_DS3_v2"), 1, 3_600_000)
    assert "region=westeurope" in record["cost_basis"]


def serverless_run(ws: FakeWorkspace, *, instance_type: str | None, nodes: int = 2) -> dict[str, Any]:
    """The recorded serverless command job, finished: 45 minutes of compute on ``nodes`` instances of the
    job's ``resources.instance_type`` (the definition's ``instanceTypes``)."""
    entry = load_kind("serverless_job")["runs"][0]
    run, definition = entry["run"], entry["definition"]
    run_id = f"serverless-{uuid.uuid4().hex[:8]}"
    run.update(
        runId=run_id,
        rootRunId=run_id,
        experimentId="3d6b6f9e-2f1c-4c5e-9a43-0d3f5c1e7b21",  # the recording's job names no experiment id
        status="Completed",
        startTimeUtc="2023-02-21T20:34:00.0000000+00:00",
        endTimeUtc="2023-02-21T21:19:10.0000000+00:00",
        computeDuration="00:45:00.0000000",
        computeRequest={"nodeCount": nodes, "gpuCount": 0},
    )
    definition.update(instanceTypes=[instance_type] if instance_type else [], nodeCount=nodes)
    ws.add_experiment("mfe-test1-dataset", run["experimentId"])
    ws.add_run(run, None, definition)
    return run


def test_a_serverless_job_is_priced_by_its_instance_type_in_the_workspace_region(app: App) -> None:
    ws = app.aml.workspace()
    run = serverless_run(ws, instance_type="Standard_E4s_v3")

    invoke(event_of(ws, run))

    record = record_for(app, run["runId"])
    assert record["compute_target_type"] == "Serverless"
    price = price_of("eastus", "Standard_E4s_v3")
    assert record["estimated_cost"] == expected_cost(price, 2, 45 * 60_000)
    assert record["cost_basis"].startswith(
        f"sku=Standard_E4s_v3; os=Linux; priority=dedicated; nodes=2; hourly_price={price} USD; "
        "duration_s=2700 (compute duration); region=eastus; compute=serverless;"
    )
    # No compute to read; the region is the workspace's (read once from Resource Manager).
    assert compute_gets(app) == []
    assert len([r for r in app.aml.requests if r.path == ws.resource_id]) == 2  # discovery, then the region


def test_a_serverless_job_without_a_reported_vm_size_says_so(app: App) -> None:
    ws = app.aml.workspace()
    run = serverless_run(ws, instance_type=None)

    invoke(event_of(ws, run))

    record = record_for(app, run["runId"])
    assert "estimated_cost" not in record
    assert (
        record["cost_basis"]
        == "no estimate: serverless job: run history does not report the VM size it ran on"
    )


@pytest.mark.parametrize(
    ("compute_type", "reason"),
    [
        ("ComputeInstance", "a compute instance is billed for the hours it runs, not per job"),
        (
            "Kubernetes",
            "attached Kubernetes compute is billed as the cluster's own nodes, not by Azure ML per job",
        ),
    ],
)
def test_a_compute_instance_or_kubernetes_gets_no_estimate_and_says_why(
    app: App, compute_type: str, reason: str
) -> None:
    ws = app.aml.workspace()
    ws.add_compute("my-compute", compute_type=compute_type, vm_size="STANDARD_DS3_V2")
    _pipeline, [said_by_the_run, said_by_arm] = ws.add_pipeline_run("etl", steps=2, target="my-compute")
    for answer in (said_by_the_run, ws.details[said_by_the_run["runId"]]):
        answer["properties"] = {**answer["properties"], "ComputeTargetType": compute_type}

    invoke(event_of(ws, said_by_the_run))
    assert compute_gets(app) == []  # the run said it: nothing to look up
    invoke(event_of(ws, said_by_arm))  # the run says AmlCompute; Resource Manager knows better

    first, second = record_for(app, said_by_the_run["runId"]), record_for(app, said_by_arm["runId"])
    assert "estimated_cost" not in first and "estimated_cost" not in second
    assert first["cost_basis"] == f"no estimate: {reason}"
    assert second["cost_basis"] == f"no estimate: my-compute: {reason}"
    assert app.aml.requests_to("/api/retail/prices") == []


def test_a_pipeline_with_a_step_on_a_compute_instance_says_how_many_steps_had_no_estimate(app: App) -> None:
    ws = app.aml.workspace()
    ws.add_compute("ci-dev", compute_type="ComputeInstance")
    pipeline, steps = ws.add_pipeline_run("train", steps=3, step_seconds=60)
    on_compute(ws, steps[2], "ci-dev")

    invoke(event_of(ws, pipeline))

    [summary] = summaries(app)
    ds2 = price_of("eastus", "Standard_DS2_v2")
    # Two of three steps priced: not the pipeline's cost, so no estimated_cost; the partial sum is named so.
    assert "estimated_cost" not in summary
    assert summary["estimated_cost_lower_bound"] == str(Decimal(expected_cost(ds2, 1, 60_000)) * 2)
    assert (summary["estimated_step_count"], summary["unestimated_step_count"]) == ("2", "1")
    assert summary["cost_basis"] == (
        f"no total: sum of 2 step estimate(s) is a lower bound; 1 step(s) without estimate: {steps[2]['runId']}: "
        "ci-dev: a compute instance is billed for the hours it runs, not per job"
    )


def test_a_listing_without_node_counts_beside_a_reused_step_gives_no_total_not_zero(app: App) -> None:
    """The audit's case: the children listing lacked node counts and one step was reused. The summary
    used to say estimated_cost 0.000000 with three unestimated steps; a partial sum is not the cost."""
    ws = app.aml.workspace()
    pipeline, steps = ws.add_pipeline_run("train", steps=4, step_seconds=60, reused=(3,))
    for step in steps[:3]:
        for answer in (step, ws.details[step["runId"]]):
            answer["computeRequest"] = None
            answer["compute"] = {**answer["compute"], "instanceCount": None}

    invoke(event_of(ws, pipeline))

    [summary] = summaries(app)
    assert "estimated_cost" not in summary
    assert summary["estimated_cost_lower_bound"] == "0.000000"
    assert (summary["estimated_step_count"], summary["unestimated_step_count"]) == ("1", "3")
    assert summary["cost_basis"].startswith("no total: sum of 1 step estimate(s) is a lower bound; 3 step(s)")
    assert "how many nodes" in summary["cost_basis"]


def test_a_sku_the_prices_api_does_not_list_gets_no_estimate(app: App) -> None:
    ws = app.aml.workspace()
    ws.add_compute("a100-cluster", vm_size="STANDARD_ND96AMSR_A100_V4")
    _pipeline, [step] = ws.add_pipeline_run("train", steps=1, target="a100-cluster")

    invoke(event_of(ws, step))

    assert record_for(app, step["runId"])["cost_basis"] == (
        "no estimate: the prices API lists no hourly consumption price for STANDARD_ND96AMSR_A100_V4 in eastus in USD"
    )


def test_prices_in_another_currency(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AML_OBS_COST_CURRENCY", "eur")
    ws = app.aml.workspace()
    _pipeline, [step] = ws.add_pipeline_run("train", steps=1, step_seconds=3600)

    invoke(event_of(ws, step))

    record = record_for(app, step["runId"])
    euro = price_of("eastus", "Standard_DS2_v2", currency="EUR")
    assert record["cost_currency"] == "EUR"
    assert record["estimated_cost"] == expected_cost(euro, 1, 3_600_000)
    [query] = price_queries(app)
    assert query.query["currencyCode"] == "'EUR'"


def test_prices_api_down_the_record_goes_out_at_once_without_estimate_and_no_retry_storm(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AML_OBS_COST_TIMEOUT_SECONDS", "1")
    cooldown = 2.0  # 60 s in production (FAILURE_COOLDOWN_SECONDS); short here so the test can outwait it
    monkeypatch.setattr(prices_module, "FAILURE_COOLDOWN_SECONDS", cooldown)
    ws = app.aml.workspace()
    _pipeline, steps = ws.add_pipeline_run("train", steps=6, step_seconds=60)
    # The API hangs: the first record waits for it at most the bound, then goes out without estimate.
    app.aml.fail("GET", "/api/retail/prices", Fault(delay=4.0, passthrough=True))

    started = time.monotonic()
    invoke(event_of(ws, steps[0]))
    first_took = time.monotonic() - started

    assert first_took < 2.5, f"the record waited {first_took:.1f}s for a price (bound: 1 s)"
    first = record_for(app, steps[0]["runId"])
    assert "estimated_cost" not in first
    assert first["cost_basis"].startswith("no estimate: prices API unavailable (")
    assert "the next run tries again after " in first["cost_basis"]

    # Within the cooldown: no request at all, every record still sent at once, saying why.
    started = time.monotonic()
    for step in steps[1:4]:
        invoke(event_of(ws, step))
    assert time.monotonic() - started < 1.5
    assert len(app.aml.requests_to("/api/retail/prices")) == 1
    for step in steps[1:4]:
        assert record_for(app, step["runId"])["cost_basis"] == first["cost_basis"]

    # The cooldown over, the next run tries again: the connection is dropped this time (one attempt, no
    # retry inside the invocation); after the next cooldown the API is back and the run gets its estimate.
    time.sleep(cooldown)
    app.aml.fail("GET", "/api/retail/prices", Fault(close=True))
    invoke(event_of(ws, steps[4]))
    assert record_for(app, steps[4]["runId"])["cost_basis"].startswith("no estimate: prices API unavailable")
    assert len(app.aml.requests_to("/api/retail/prices")) == 2
    time.sleep(cooldown)
    invoke(event_of(ws, steps[5]))
    assert record_for(app, steps[5]["runId"])["estimated_cost"] == expected_cost(
        price_of("eastus", "Standard_DS2_v2"), 1, 60_000
    )
    assert len(price_queries(app)) == 3  # one per attempt: the hang, the dropped connection, the success


def test_prices_api_answering_500_or_429_waits_at_least_the_cooldown(app: App) -> None:
    ws = app.aml.workspace()
    _pipeline, steps = ws.add_pipeline_run("train", steps=3)
    app.aml.fail("GET", "/api/retail/prices", Fault(status=429, headers={"Retry-After": "120"}))

    for step in steps:
        invoke(event_of(ws, step))

    assert len(app.aml.requests_to("/api/retail/prices")) == 1
    reasons = {record_for(app, s["runId"])["cost_basis"] for s in steps}
    assert len(reasons) == 1 and "prices API unavailable (HTTP 429)" in reasons.pop()


def test_compute_get_refused_the_record_is_still_sent_and_says_which_permission_is_missing(app: App) -> None:
    ws = app.aml.workspace()
    _pipeline, steps = ws.add_pipeline_run("train", steps=3)
    refusal = {"error": {"code": "AuthorizationFailed", "message": "The client does not have authorization"}}
    app.aml.fail("GET", "/computes/cpu-cluster", *[Fault(status=403, body=refusal)] * 5)

    for step in steps:
        invoke(event_of(ws, step))  # never raises: the run history calls succeeded

    for step in steps:
        record = record_for(app, step["runId"])
        assert "estimated_cost" not in record
        assert record["cost_basis"] == (
            "no estimate: reading compute cpu-cluster was refused (HTTP 403 (AuthorizationFailed)): the "
            "function's role lacks Microsoft.MachineLearningServices/workspaces/computes/read (re-run azd provision)"
        )
    # One attempt, remembered: not one (or four) per event.
    assert len(compute_gets(app)) == 1
    assert app.aml.requests_to("/api/retail/prices") == []


def test_a_deleted_cluster_gets_no_estimate(app: App) -> None:
    ws = app.aml.workspace()
    _pipeline, [step] = ws.add_pipeline_run("train", steps=1, target="gone-cluster")

    invoke(event_of(ws, step))

    assert record_for(app, step["runId"])["cost_basis"] == (
        "no estimate: compute gone-cluster was not found in the workspace (HTTP 404 (ResourceNotFound))"
    )
