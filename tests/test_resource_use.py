"""The pure parts of amlobs.resource_use: the request, Microsoft's answer shapes, the figures, the due list."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from amlobs.events import WorkspaceRef
from amlobs.resource_use import metrics_query as mq
from amlobs.resource_use.cluster_idle import day_query, node_hours
from amlobs.resource_use.due import DueRun, MemoryDueRuns, due_run_of, is_due_for_resource_use
from amlobs.resource_use.run_pass import compute_kind
from amlobs.resource_use.usage import idle_cost, is_gpu_sku, percentile, reduce

EXAMPLES = Path(__file__).parent / "data" / "azure_monitor"
WS = WorkspaceRef("sub", "rg", "ws")


def example(name: str) -> object:
    return json.loads((EXAMPLES / name).read_text())["responses"]["200"]["body"]


# --------------------------------------------------------------------------------------------------
# The request


def test_the_run_query_is_the_documented_form() -> None:
    path = mq.run_query("subscriptions/sub/x", "run_1", 1_714_557_600_000, 1_714_557_720_000, nodes=16)
    parts = urlsplit("https://h/" + path)
    assert parts.path == "/subscriptions/sub/x/providers/Microsoft.Insights/metrics"
    assert dict(parse_qsl(parts.query)) == {
        "api-version": "2023-10-01",
        "metricnamespace": "Microsoft.MachineLearningServices/workspaces",
        "metricnames": "CpuUtilizationPercentage,CpuMemoryUtilizationPercentage,GpuUtilizationPercentage,"
        "GpuMemoryUtilizationPercentage",
        "timespan": "2024-05-01T10:00:00Z/2024-05-01T10:02:00Z",
        "interval": "PT1M",
        "aggregation": "average,maximum",
        "$filter": "RunId eq 'run_1' and InstanceId eq '*'",
        "top": "16",  # one series per node: the API's default would be 10
    }
    assert "%20eq%20" in path and "+" not in path  # spaces percent-encoded, as the SDKs send them


@pytest.mark.parametrize("run_id", ["x' or RunId eq 'y", "a b", "", "x" * 300])
def test_a_run_id_that_would_change_the_filter_is_refused(run_id: str) -> None:
    assert not mq.is_plain_run_id(run_id)
    with pytest.raises(ValueError, match="cannot go into a metrics filter"):
        mq.run_filter(run_id)


def test_the_idle_day_query_covers_one_utc_day_at_hourly_grain() -> None:
    from datetime import date

    query = dict(parse_qsl(urlsplit("https://h/" + day_query(WS, date(2026, 3, 1))).query))
    assert query["timespan"] == "2026-03-01T00:00:00Z/2026-03-02T00:00:00Z"
    assert (query["metricnames"], query["interval"], query["$filter"]) == (
        "Idle Nodes,Leaving Nodes",
        "PT1H",
        "ClusterName eq '*'",
    )


# --------------------------------------------------------------------------------------------------
# Microsoft's answers


def test_the_spec_example_answer_is_read_per_series_with_its_lower_cased_dimension() -> None:
    body = example("GetMetric.trimmed.json")
    # The example splits by Tier (answered "tier"), not InstanceId: the same code, told that dimension.
    [blob_count] = mq.parse_answer(body, dimension="Tier").values()
    assert blob_count.name == "BlobCount" and blob_count.unit == "Count" and blob_count.error is None
    assert blob_count.nodes == {
        "Hot": [mq.Sample(7.0, 7.0), mq.Sample(7.0, 7.0)],
        "Standard": [mq.Sample(2.0, 2.0), mq.Sample(2.0, 2.0)],
    }


def test_a_metric_the_service_could_not_serve_keeps_its_error_and_has_no_samples() -> None:
    metrics = mq.parse_answer(example("GetMetricError.json"))
    failed, served = metrics["MongoRequestsCount"], metrics["MongoRequests"]
    assert failed.error == (
        "InvalidSamplingType: Sampling type is not found. Metric:CosmosDBCustomer,AzureMonitor,MongoRequests, "
        "SamplingType:NullableAverage."
    )
    assert failed.nodes == {}
    assert served.nodes == {"(node not named)": [mq.Sample(0.0, None)]}


@pytest.mark.parametrize("body", [[], {"value": None}, "x", {"cost": 1}])
def test_an_answer_that_is_not_the_documented_shape_is_refused(body: object) -> None:
    with pytest.raises(mq.BadMetricsAnswer):
        mq.parse_answer(body)


def test_a_minute_without_an_average_is_no_sample_not_a_zero() -> None:
    body = {
        "value": [
            {
                "name": {"value": mq.GPU},
                "timeseries": [
                    {
                        "metadatavalues": [{"name": {"value": "instanceid"}, "value": "n1"}],
                        "data": [{"timeStamp": "t1"}, {"timeStamp": "t2", "average": 40.0, "maximum": 90.0}],
                    }
                ],
                "errorCode": "Success",
            }
        ]
    }
    assert mq.parse_answer(body)[mq.GPU].nodes == {"n1": [mq.Sample(40.0, 90.0)]}


# --------------------------------------------------------------------------------------------------
# The figures


def test_percentile_is_the_nearest_rank() -> None:
    assert percentile([10, 12, 13, 13], 95) == 13
    assert percentile([5.0], 95) == 5.0
    assert percentile(list(range(1, 101)), 95) == 95


def test_idle_cost_is_the_estimate_times_the_idle_share_rounded_like_the_estimate() -> None:
    assert idle_cost(Decimal("1.000000"), 12.0) == Decimal("0.880000")
    assert idle_cost(Decimal("0.333333"), 50.0) == Decimal("0.166667")  # half up
    assert idle_cost(Decimal("2"), 120.0) == Decimal("0.000000")  # a reading above 100 % is not negative
    assert idle_cost(Decimal("2"), -3.0) == Decimal("2.000000")


@pytest.mark.parametrize(
    ("size", "gpu"),
    [
        ("Standard_NC6s_v3", True),
        ("Standard_ND96asr_v4", True),
        ("Standard_DS2_v2", False),
        ("", False),
        (None, False),
    ],
)
def test_gpu_sizes_are_the_n_family(size: str | None, gpu: bool) -> None:
    assert is_gpu_sku(size) is gpu


def test_a_gpu_size_without_gpu_samples_says_so_instead_of_pricing_cpu_idle() -> None:
    series = {mq.CPU: mq.MetricSeries(mq.CPU, "Count", {"n1": [mq.Sample(50.0, 60.0)]})}
    use = reduce(series, gpu_sku=True)
    assert use.accelerator == "gpu" and use.reason == "no gpu utilization samples for the run"
    assert use.metrics[mq.CPU].average == 50.0


def test_no_sample_at_all_names_the_metrics_that_failed() -> None:
    series = {mq.GPU: mq.MetricSeries(mq.GPU, None, {}, "Throttled: too many")}
    assert reduce(series, gpu_sku=True).reason == (
        "no samples for the run in the workspace's metrics (GpuUtilizationPercentage: Throttled: too many)"
    )


def test_idle_node_hours_are_the_sum_of_hourly_averages_per_cluster() -> None:
    body = {
        "value": [
            {
                "name": {"value": "Idle Nodes"},
                "timeseries": [
                    {
                        "metadatavalues": [{"name": {"value": "clustername"}, "value": "c1"}],
                        "data": [
                            {"timeStamp": "h1", "average": 1.5},
                            {"timeStamp": "h2"},
                            {"timeStamp": "h3", "average": 2},
                        ],
                    }
                ],
            },
            {"name": {"value": "Active Nodes"}, "timeseries": []},
        ]
    }
    [(cluster, day)] = node_hours(body).items()
    assert (cluster, day.idle_node_hours, day.leaving_node_hours, len(day.hours)) == ("c1", 3.5, 0.0, 2)


# --------------------------------------------------------------------------------------------------
# The due list


def test_a_finished_step_is_due_a_quarter_of_an_hour_after_it_ended() -> None:
    record = {
        "run_id": "r",
        "status": "Completed",
        "end_time_utc_ms": 1_000,
        "estimated_cost": "1.0",
        "x": "y",
    }
    run = due_run_of(WS, record)
    assert run is not None
    assert (run.due_at_ms, run.record) == (
        1_000 + 15 * 60_000,
        {"run_id": "r", "status": "Completed", "end_time_utc_ms": "1000", "estimated_cost": "1.0"},
    )


@pytest.mark.parametrize(
    "record",
    [
        {"status": "Running"},
        {"status": "Completed", "job_kind": "pipeline"},
        {"status": "Completed", "run_type": "azureml.PipelineRun"},
        {"status": "Completed", "is_reused": "true"},
        {"status": "Failed", "enrichment_error": "not found"},
    ],
)
def test_runs_that_used_no_compute_of_their_own_or_are_unknown_are_not_noted(record: dict[str, str]) -> None:
    assert not is_due_for_resource_use(record)


def test_the_memory_list_hands_out_what_is_due_oldest_first_and_one_note_per_run() -> None:
    due = MemoryDueRuns()
    late, early = DueRun("/w", "a", {}, 300), DueRun("/w", "b", {}, 100)
    due.add(late)
    due.add(early)
    due.add(DueRun("/w", "c", {}, 10_000))
    assert [r.run_id for r in due.due(500, 10)] == ["b", "a"]
    due.move(early, early.later(1_000))
    assert [r.run_id for r in due.due(500, 10)] == ["a"] and len(due) == 3
    due.remove(late)
    assert [(r.run_id, r.tries) for r in due.due(5_000, 10)] == [("b", 1)]


def test_the_compute_type_resource_manager_found_wins_over_run_history_s() -> None:
    said = {"compute_target_type": "AmlCompute"}
    instance = {
        **said,
        "cost_basis": "no estimate: ci: a compute instance is billed for the hours it runs, not per job",
    }
    assert compute_kind(instance) == "ComputeInstance"
    assert compute_kind({**said, "cost_basis": "sku=X; compute=cluster c; ..."}) == "AmlCompute"
    assert compute_kind({**said, "cost_basis": "no estimate: prices API unavailable"}) == "AmlCompute"
    assert compute_kind({"compute_target_type": "Serverless"}) == "Serverless"
