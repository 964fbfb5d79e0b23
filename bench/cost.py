"""What the estimated cost adds per event: HTTP calls (cold and warm) and time, with and without the feature.

Run it from the repository root with the dev venv (``sh scripts/test.sh`` creates it)::

    .venv/bin/python bench/cost.py [--events 200] [--rounds 3]

One process, the product's own processor (``EventProcessor`` with the run history client and cost estimator
``amlobs.runtime`` builds, records kept in memory: the telemetry and dedupe paths are measured by
``bench/run.sh``) against the loopback AML fake, which also
serves Resource Manager's compute GET and the Retail Prices API. The events are the finished steps of
pipelines on two clusters of different VM sizes (plus their Running statuses), in the order a pipeline
emits them. Counted per event: compute GETs, price queries (every page), run history calls. Timed: the
same events with the feature on and off (``costs=None``), interleaved, median of ``--rounds``. It also
measures an outage: the prices API hanging, how long the first record waits and how many calls the next
ones make. Prints a Markdown table; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from netguard import install as install_loopback_guard  # noqa: E402

install_loopback_guard()

from amlobs.processor import EventProcessor  # noqa: E402
from amlobs.settings import Settings  # noqa: E402
from amlobs.storage import MemoryDedupeStore, MemoryRejectedEventStore  # noqa: E402
from amlobs.telemetry import RecordingTelemetry  # noqa: E402
from tests.fakes.aml_api import FakeAmlApi, Fault, start_aml_api  # noqa: E402

EVENT_TYPE = "Microsoft.MachineLearningServices.RunStatusChanged"


def events_for(api: FakeAmlApi, pipelines: int) -> list[dict[str, Any]]:
    ws = api.workspace()
    ws.add_compute("big-cluster", vm_size="STANDARD_DS3_V2", priority="LowPriority")
    out: list[dict[str, Any]] = []
    for index in range(pipelines):
        target = "cpu-cluster" if index % 2 == 0 else "big-cluster"
        pipeline, steps = ws.add_pipeline_run("bench", steps=4, target=target)
        for run in [*steps, pipeline]:
            for status in ("Running", run["status"]):
                out.append(
                    {
                        "id": str(uuid.uuid4()),
                        "topic": ws.resource_id,
                        "subject": f"experiments/{run['experimentId']}/runs/{run['runId']}",
                        "eventType": EVENT_TYPE,
                        "eventTime": run["endTimeUtc"],
                        "dataVersion": "2",
                        "data": {
                            "runStatus": status,
                            "experimentId": run["experimentId"],
                            "experimentName": "bench",
                            "runId": run["runId"],
                            "runType": run["runType"],
                        },
                    }
                )
    return out


def processor(settings: Settings, *, costs: bool) -> EventProcessor:
    from amlobs.cost_estimator import build_cost_estimator
    from amlobs.credentials import build_credential
    from amlobs.runhistory import RunHistoryClient

    runs = RunHistoryClient(settings, build_credential(settings))
    return EventProcessor(
        runs=runs,
        telemetry=RecordingTelemetry(),
        dedupe=MemoryDedupeStore(),
        rejected=MemoryRejectedEventStore(),
        costs=build_cost_estimator(settings, runs) if costs else None,
    )


def calls(api: FakeAmlApi) -> dict[str, int]:
    counts = {"compute GET": 0, "price pages": 0, "run history": 0, "other": 0}
    for request in api.requests:
        if "/computes/" in request.path:
            counts["compute GET"] += 1
        elif request.path == "/api/retail/prices":
            counts["price pages"] += 1
        elif "/history/" in request.path:
            counts["run history"] += 1
        else:
            counts["other"] += 1
    return counts


WARMUP = 20  # the events of the first two pipelines: one per cluster (and VM size)


def run_events(
    api: FakeAmlApi, events: list[dict[str, Any]], *, costs: bool
) -> tuple[list[float], dict[str, int], dict[str, int]]:
    """Per-event latencies; calls of the warm-up (both clusters seen once); calls of the rest."""
    settings = Settings.from_env(os.environ)
    proc = processor(settings, costs=costs)
    latencies: list[float] = []
    first: dict[str, int] = {}
    try:
        api.clear_records()
        for index, event in enumerate(events):
            started = time.perf_counter()
            proc.process(event)
            latencies.append((time.perf_counter() - started) * 1000)
            if index == WARMUP - 1:
                first = calls(api)
                api.clear_records()
        return latencies, first, calls(api)
    finally:
        proc.close()


def outage(api: FakeAmlApi, events: list[dict[str, Any]]) -> tuple[float, float, int]:
    """Prices API hanging: the first finished step's latency, the median of the next ones, price requests."""
    os.environ["AML_OBS_COST_TIMEOUT_SECONDS"] = "2"
    settings = Settings.from_env(os.environ)
    proc = processor(settings, costs=True)
    finished = [e for e in events if e["data"]["runStatus"] == "Completed"]
    try:
        api.fail("GET", "/api/retail/prices", *[Fault(delay=10.0, passthrough=True)] * 50)
        latencies = []
        for event in finished[:39]:
            started = time.perf_counter()
            proc.process(event)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies[0], statistics.median(latencies[1:]), len(api.requests_to("/api/retail/prices"))
    finally:
        proc.close()
        del os.environ["AML_OBS_COST_TIMEOUT_SECONDS"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="events per round (about)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    pipelines = max(2, args.events // 10)
    on_medians, off_medians = [], []
    first_on: dict[str, int] = {}
    warm_on: dict[str, int] = {}
    warm_off: dict[str, int] = {}
    count = 0
    for round_index in range(args.rounds):
        for costs in (True, False) if round_index % 2 == 0 else (False, True):
            with start_aml_api() as api:
                os.environ.update(api.env())
                events = events_for(api, pipelines)
                count = len(events)
                latencies, first, rest = run_events(api, events, costs=costs)
            (on_medians if costs else off_medians).append(statistics.median(latencies[WARMUP:]))
            if costs:
                first_on, warm_on = first, rest
            else:
                warm_off = rest
    with start_aml_api() as api:
        os.environ.update(api.env())
        first_wait, next_wait, outage_requests = outage(api, events_for(api, 8))
    warm_events = count - WARMUP
    finished = count // 2  # half the events are a Running status
    cold = f"{first_on['compute GET']} / {first_on['price pages']}"
    extra = warm_on["compute GET"] + warm_on["price pages"]
    rows = [
        (f"cold: first {WARMUP} events (2 clusters, 2 VM sizes): compute GET / price pages", cold, "0 / 0"),
        (
            f"steady: next {warm_events} events: compute GET + price pages",
            f"{extra} ({extra / warm_events:.3f}/event)",
            "0",
        ),
        (
            "steady: run history calls per event",
            f"{warm_on['run history'] / warm_events:.2f}",
            f"{warm_off['run history'] / warm_events:.2f}",
        ),
        (
            "steady: median latency per event (ms, median of rounds)",
            f"{statistics.median(on_medians):.2f}",
            f"{statistics.median(off_medians):.2f}",
        ),
        (
            "prices API hanging (bound 2 s): the first finished run's record waits (ms)",
            f"{first_wait:.0f}",
            "-",
        ),
        (
            "prices API hanging: next 38 finished runs, median ms / price requests in all",
            f"{next_wait:.2f} / {outage_requests}",
            "-",
        ),
    ]
    print(
        f"## Cost estimate, per event ({count} events a round, {finished} finished; {args.rounds} rounds)\n"
    )
    print("| | feature on | feature off |")
    print("| --- | --- | --- |")
    for label, on, off in rows:
        print(f"| {label} | {on} | {off} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
