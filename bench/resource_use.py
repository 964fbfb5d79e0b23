"""What the resource-use pass costs: HTTP calls added per finished run, and the time of a pass of 1,000 runs.

Run it from the repository root with the dev venv (``sh scripts/test.sh`` creates it)::

    .venv/bin/python bench/resource_use.py [--runs 1000] [--rounds 3]

Two measurements, in one process against the loopback AML fake (which also serves Resource Manager's compute
GET, the Retail Prices API and Azure Monitor's metrics, tests/fakes/azure_monitor_metrics.py):

1. the live path: the product's processor (as ``amlobs.runtime`` builds it) records the same finished steps
   with and without the due note (``DueNoter`` over a memory list); the AML/ARM HTTP calls per event are
   counted both ways (the note is one Table write in Azure, no HTTP call to AML or ARM);
2. the pass: ``--runs`` finished runs due (70 % on 2-node GPU clusters, 10 % on CPU clusters, 10 % serverless,
   5 % on a compute instance, 5 % shorter than a minute), each with 30 minutes of per-minute samples on
   its nodes; one ``ResourceUsePass`` with claims and telemetry in memory. Counted: metrics GETs per run, by
   kind; timed: the whole pass (median of ``--rounds``, each on a fresh list and fresh claims).

Prints a Markdown table; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from netguard import install as install_loopback_guard  # noqa: E402

install_loopback_guard()

from amlobs.credentials import build_credential  # noqa: E402
from amlobs.processor import EventProcessor  # noqa: E402
from amlobs.resource_use.due import DueNoter, DueRun, MemoryDueRuns  # noqa: E402
from amlobs.resource_use.run_pass import PassOptions, ResourceUsePass  # noqa: E402
from amlobs.runhistory import RunHistoryClient  # noqa: E402
from amlobs.settings import Settings  # noqa: E402
from amlobs.storage import MemoryDedupeStore, MemoryRejectedEventStore  # noqa: E402
from amlobs.telemetry import RecordingTelemetry  # noqa: E402
from tests.fakes.aml_api import FakeAmlApi, start_aml_api  # noqa: E402
from tests.fakes.azure_monitor_metrics import MetricsData  # noqa: E402

EVENT_TYPE = "Microsoft.MachineLearningServices.RunStatusChanged"
METRICS = "/providers/Microsoft.Insights/metrics"
START = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def aml_calls(api: FakeAmlApi) -> int:
    return sum(1 for r in api.requests if r.path != "/msi/token")


# -- 1. the live path ----------------------------------------------------------------------------


def live_events(api: FakeAmlApi, pipelines: int) -> list[dict[str, Any]]:
    ws = api.workspace()
    events = []
    for _ in range(pipelines):
        pipeline, steps = ws.add_pipeline_run("bench", steps=4, target="gpu-cluster", step_seconds=600)
        for run in [*steps, pipeline]:
            events.append(
                {
                    "id": str(uuid.uuid4()),
                    "topic": ws.resource_id,
                    "subject": f"experiments/{run['experimentId']}/runs/{run['runId']}",
                    "eventType": EVENT_TYPE,
                    "eventTime": run["endTimeUtc"],
                    "dataVersion": "2",
                    "data": {
                        "runStatus": run["status"],
                        "experimentId": run["experimentId"],
                        "experimentName": "bench",
                        "runId": run["runId"],
                        "runType": run["runType"],
                    },
                }
            )
    return events


def live_path(api: FakeAmlApi, events: list[dict[str, Any]], *, noted: bool) -> tuple[float, int]:
    """AML/ARM calls per event (after a warm-up pipeline), and how many runs were noted due."""
    from amlobs.cost_estimator import build_cost_estimator

    settings = Settings.from_env(os.environ)
    runs = RunHistoryClient(settings, build_credential(settings))
    due = MemoryDueRuns()
    processor = EventProcessor(
        runs=runs,
        telemetry=RecordingTelemetry(),
        dedupe=MemoryDedupeStore(),
        rejected=MemoryRejectedEventStore(),
        costs=build_cost_estimator(settings, runs),
        due=DueNoter(due) if noted else None,
    )
    try:
        for event in events[:5]:
            processor.process(event)
        api.clear_records()
        for event in events[5:]:
            processor.process(event)
        return aml_calls(api) / len(events[5:]), len(due)
    finally:
        processor.close()


# -- 2. the pass ---------------------------------------------------------------------------------

KINDS = (
    ("gpu cluster", 70),
    ("cpu cluster", 10),
    ("serverless", 10),
    ("compute instance", 5),
    ("too short", 5),
)


def kind_of(index: int) -> str:
    slot, bound = index % 100, 0
    for kind, share in KINDS:
        bound += share
        if slot < bound:
            return kind
    raise AssertionError(slot)


def due_runs(api: FakeAmlApi, count: int) -> list[DueRun]:
    ws = api.workspace()
    data = MetricsData()
    api.metrics[ws.name.lower()] = data
    out = []
    for index in range(count):
        kind = kind_of(index)
        run_id = f"bench-{index:05d}-{uuid.uuid4().hex[:8]}"
        start = START + timedelta(minutes=index)
        minutes = 0.5 if kind == "too short" else 30
        end = start + timedelta(minutes=minutes)
        gpu = kind == "gpu cluster"
        record = {
            "run_id": run_id,
            "status": "Completed",
            "subscriptions": ws.subscription_id,
            "resourceGroup": ws.resource_group,
            "amlWorkSpace": ws.name,
            "experimentName": "bench",
            "compute_name": "gpu-cluster" if gpu else "cpu-cluster",
            "compute_target_type": {"serverless": "Serverless", "compute instance": "ComputeInstance"}.get(
                kind, "AmlCompute"
            ),
            "start_time_utc_ms": str(int(start.timestamp() * 1000)),
            "end_time_utc_ms": str(int(end.timestamp() * 1000)),
            "estimated_cost": "0.918000" if gpu else "0.073000",
            "cost_currency": "USD",
            "cost_basis": f"sku={'Standard_NC6s_v3' if gpu else 'Standard_DS2_v2'}; nodes={2 if gpu else 1}; "
            f"compute=cluster {'gpu' if gpu else 'cpu'}-cluster",
        }
        nodes = {
            f"node-{n}": {
                "CpuUtilizationPercentage": [float((index + n + m) % 100) for m in range(30)],
                **(
                    {"GpuUtilizationPercentage": [float((3 * index + m) % 100) for m in range(30)]}
                    if gpu
                    else {}
                ),
            }
            for n in range(2 if gpu else 1)
        }
        data.set_run(run_id, start, nodes)
        out.append(DueRun(ws.resource_id, run_id, record, int(end.timestamp() * 1000) + 15 * 60_000))
    return out


def one_pass(
    api: FakeAmlApi, runs: list[DueRun], client: RunHistoryClient
) -> tuple[float, int, Counter[str]]:
    due = MemoryDueRuns()
    for run in runs:
        due.add(run)
    telemetry = RecordingTelemetry()
    resource_pass = ResourceUsePass(
        metrics=client,
        telemetry=telemetry,
        claims=MemoryDedupeStore(),
        due=due,
        options=PassOptions(max_runs=len(runs), max_seconds=3600),
    )
    api.clear_records()
    started = time.perf_counter()
    report = resource_pass.run()
    elapsed = time.perf_counter() - started
    kinds = {run.run_id: kind_of(int(run.run_id[6:11])) for run in runs}
    gets = Counter(
        kinds[r.query["$filter"].split("'")[1]]
        for r in api.requests_to(METRICS, "GET")
        if "RunId" in r.query["$filter"]
    )
    outcomes = Counter(e.get("resource_use_outcome", "?") for e in telemetry.events("AmlRunResourceUse"))
    assert sum(outcomes.values()) == len(runs) == sum(report.judged.values()), (outcomes, report)
    return elapsed, gets, outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="finished runs due in one pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipelines", type=int, default=20, help="pipelines (4 steps) for the live path")
    args = parser.parse_args(argv)
    with start_aml_api() as api:
        os.environ.update(api.env())
        events = live_events(api, args.pipelines)
        without, _ = live_path(api, events, noted=False)
        with_note, noted = live_path(api, events, noted=True)
        settings = Settings.from_env(os.environ)
        client = RunHistoryClient(settings, build_credential(settings))
        runs = due_runs(api, args.runs)
        times: list[float] = []
        gets, outcomes = Counter[str](), Counter[str]()
        try:
            for _ in range(args.rounds):
                elapsed, gets, outcomes = one_pass(api, runs, client)
                times.append(elapsed)
        finally:
            client.close()
    count = Counter(kind_of(int(r.run_id[6:11])) for r in runs)
    on_clusters = count["gpu cluster"] + count["cpu cluster"]
    cluster_gets = gets["gpu cluster"] + gets["cpu cluster"]
    other_gets = sum(gets.values()) - cluster_gets
    median = statistics.median(times)
    rows = [
        (
            "live path: AML/ARM HTTP calls per event, without / with the due note",
            f"{without:.2f} / {with_note:.2f}",
        ),
        (f"live path: finished runs noted due (of {len(events)} events: steps and pipelines)", str(noted)),
        (
            f"pass: metrics GETs for the {on_clusters} runs on AML compute clusters (≥ 1 min)",
            f"{cluster_gets} ({cluster_gets / on_clusters:.2f} per run)",
        ),
        (
            f"pass: metrics GETs for the {len(runs) - on_clusters} others (serverless, instance, < 1 min)",
            f"{other_gets} ({other_gets / max(1, len(runs) - on_clusters):.2f} per run)",
        ),
        ("pass: outcomes", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))),
        (
            f"pass: time for {args.runs} runs, median of {args.rounds} (min–max)",
            f"{median:.2f} s ({min(times):.2f}–{max(times):.2f}); {median / args.runs * 1000:.1f} ms per run",
        ),
    ]
    print(
        f"## Resource use ({args.runs} finished runs due; {args.rounds} rounds; {len(events)} live events)\n"
    )
    print("| measure | value |")
    print("| --- | --- |")
    for label, value in rows:
        print(f"| {label} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
