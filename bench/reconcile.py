"""The reconciler's figures (docs/reconciler.md), side by side with the live path. Not a test.

* idle pass over N workspaces (default 50) with nothing new: HTTP calls per workspace and wall time;
* a first pass over M runs (default 10,000) of history: runs/s (timed without tracemalloc) and peak
  memory (the pass's traced allocations in a second, untimed run; and the process's max RSS, fake AML
  API and its runs included), compared with the same runs recorded as live events one at a time.

Against the loopback AML fake; claims and watermarks in memory (the same protocol as the Table
stores), telemetry recorded in memory: what is measured is the reconciler's own work and the AML calls
it makes, not Azurite's or ingestion's latency.

    .venv/bin/python bench/reconcile.py [--workspaces 50] [--runs 10000]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from netguard import install as install_loopback_guard  # noqa: E402

install_loopback_guard()

from amlobs.processor import EventProcessor  # noqa: E402
from amlobs.reconcile.options import ReconcileOptions  # noqa: E402
from amlobs.reconcile.runs_step import RunsStep, reconcile_event  # noqa: E402
from amlobs.reconcile.state import MemoryReconcilerStore  # noqa: E402
from amlobs.reconcile.timer import ReconcilerTimer  # noqa: E402
from amlobs.runhistory import RunHistoryClient  # noqa: E402
from amlobs.settings import Settings  # noqa: E402
from amlobs.storage import MemoryDedupeStore, MemoryRejectedEventStore  # noqa: E402
from amlobs.telemetry_unit import TelemetryUnit  # noqa: E402
from tests.fakes.aml_api import SAMPLE_RESOURCE_GROUP, SAMPLE_SUBSCRIPTION, start_aml_api  # noqa: E402
from tests.integration.reconcile_helpers import add_job  # noqa: E402


class CountingTelemetry:
    """Counts the units sent and keeps none (keeping 10,000 would be the benchmark's memory, not ours)."""

    def __init__(self) -> None:
        self.sent = 0

    def send(self, unit: TelemetryUnit) -> None:
        self.sent += 1

    def shutdown(self) -> None:
        pass


def build(settings: Settings) -> tuple[EventProcessor, RunHistoryClient]:
    from amlobs.credentials import build_credential

    runs = RunHistoryClient(settings, build_credential(settings))
    processor = EventProcessor(
        runs=runs,
        telemetry=CountingTelemetry(),
        dedupe=MemoryDedupeStore(),
        rejected=MemoryRejectedEventStore(),
    )
    return processor, runs


def timer(processor: EventProcessor, runs: RunHistoryClient, workspaces: list, options: ReconcileOptions):  # type: ignore[no-untyped-def,type-arg]
    return ReconcilerTimer(
        steps=[RunsStep(processor, runs, options)],
        store=MemoryReconcilerStore(),
        telemetry=processor.telemetry,
        options=options,
        workspaces=lambda: workspaces,
    )


def idle(count: int) -> dict[str, float]:
    from amlobs.events import WorkspaceRef

    with start_aml_api(sample_data=False) as api:
        os.environ.update(api.env())
        refs = []
        for index in range(count):
            ws = api.add_workspace(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, f"ws-{index:03d}")
            ws.add_experiment("nightly")
            refs.append(WorkspaceRef(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, ws.name))
        processor, runs = build(Settings.from_env(os.environ))
        reconciler = timer(processor, runs, refs, ReconcileOptions())
        reconciler.run_pass()  # first pass: discovery, the watermark starts
        api.clear_records()
        started = time.perf_counter()
        reconciler.run_pass()
        wall = time.perf_counter() - started
        calls = len(api.requests)
        processor.close()
    return {"workspaces": count, "http_calls_per_workspace": calls / count, "wall_s": round(wall, 3)}


def first_pass(count: int) -> dict[str, float]:
    from amlobs.events import WorkspaceRef

    with start_aml_api(sample_data=False, page_size=100) as api:
        os.environ.update(api.env())
        ws = api.add_workspace(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, "history-ws")
        now = datetime.now(UTC)
        for index in range(count):
            created = now - timedelta(days=29) + timedelta(seconds=index * 29 * 86400 / count)
            add_job(ws, f"run-{index:05d}", created=created, minutes=5, experiment=f"exp-{index % 10}")
        ref = WorkspaceRef(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, ws.name)
        settings = Settings.from_env(os.environ)

        options = ReconcileOptions(backfill_days=30, max_runs_per_pass=count * 2, max_seconds_per_pass=3600)

        # Timed without tracemalloc (it slows Python several times over), then again on fresh claims
        # with it for the reconciler's own peak allocation.
        processor, runs = build(settings)
        api.clear_records()
        started = time.perf_counter()
        timer(processor, runs, [ref], options).run_pass()
        wall = time.perf_counter() - started
        reconcile_calls = len(api.requests)
        recorded = processor.telemetry.sent  # type: ignore[attr-defined]
        processor.close()
        rss_after_timed = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        processor, runs = build(settings)
        tracemalloc.start()
        timer(processor, runs, [ref], options).run_pass()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        processor.close()

        # The live path on the same runs: one event at a time, as one worker would take them.
        live, _ = build(settings)
        events = [reconcile_event(ref, run) for run in list(ws.runs.values())[: min(count, 1000)]]
        api.clear_records()
        started = time.perf_counter()
        for event in events:
            live.process(event, source="live")
        live_wall = time.perf_counter() - started
        live_calls = len(api.requests)
        live.close()
    return {
        "runs": count,
        "recorded": recorded,
        "wall_s": round(wall, 2),
        "runs_per_s": round(count / wall, 1),
        "http_calls_per_run": round(reconcile_calls / count, 2),
        "peak_traced_mib": round(peak / 2**20, 1),
        # the whole process: the fake AML API and its runs included (an upper bound)
        "max_rss_mib_with_fake": round(rss_after_timed, 1),
        "live_runs_per_s_one_worker": round(len(events) / live_wall, 1),
        "live_http_calls_per_run": round(live_calls / len(events), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspaces", type=int, default=50)
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    print("idle pass:", idle(args.workspaces), flush=True)
    print("first pass:", first_pass(args.runs), flush=True)


if __name__ == "__main__":
    main()
