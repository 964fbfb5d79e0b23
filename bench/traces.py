"""Telemetry volume per pipeline run, before and after the pipeline traces (issue 9).

``bench/traces.sh`` (or ``.venv/bin/python bench/traces.py``) prints a Markdown table and writes
``bench/results/traces.json``. Not part of the test suite: nothing here asserts anything.

Method (docs/bench.md, "Telemetry per pipeline run"): ``--pipelines`` pipeline runs of ``--steps``
steps each are served by the project's AML fake (steps shaped as in ``FakeWorkspace.add_pipeline_run``,
every run finished an hour ago, so inside ingestion's 48-hour window), and every event AML sends for
them (``RunStatusChanged`` Running and Completed per run, ``RunCompleted`` per run) goes through
``function_app`` in a child process, as the Functions worker runs it, against the loopback ingestion
fake and Azurite (dedupe on). What ingestion *stored* is counted per item type, with each item's JSON
size. The same run is made twice: with the ``src/`` of ``--before`` (default: the commit before the
traces, which sends no spans) and with this tree's ``src/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

from run import QUIET_TELEMETRY_ENV  # bench/run.py: the exporter stays on loopback and quiet, as there

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
# The merge of issue 11 into main: the last commit before the pipeline traces.
DEFAULT_BEFORE = "2efaee2"
# Log Analytics pay-as-you-go ingestion (workspace-based Application Insights bills through its
# workspace), East US list price as docs/infra.md uses it; 1 GB = 10^9 bytes (cost-logs.md).
PRICE_PER_GB = 2.30
KINDS = {
    "Microsoft.ApplicationInsights.Event": "customEvents",
    "Microsoft.ApplicationInsights.Metric": "customMetrics",
    "Microsoft.ApplicationInsights.Request": "requests",
    "Microsoft.ApplicationInsights.RemoteDependency": "dependencies",
}


def log(message: str) -> None:
    print(f"[traces {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the child: function_app of a given src/ ---------------------------------------------------


def child(src: Path, events_file: Path) -> int:
    sys.path.insert(0, str(BENCH))
    import netguard

    netguard.install()
    sys.path.insert(0, str(src))
    import function_app

    (function,) = [f for f in function_app.app.get_functions() if f.get_function_name() == "aml_run_events"]
    handler = function.get_user_function()
    failures = 0
    for event in json.loads(events_file.read_text()):
        try:
            handler(event)  # the trigger binds the event's JSON text (a str parameter)
        except Exception as exc:  # reported; the parent checks every run was recorded
            failures += 1
            print(f"invocation failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    from amlobs import runtime

    runtime.reset_processor()
    return 1 if failures else 0


# --- the parent -------------------------------------------------------------------------------


def source_of(commit: str, into: Path) -> Path:
    """``src/`` as it was at ``commit`` (git archive: the working tree is not touched)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


@contextlib.contextmanager
def fakes() -> Iterator[tuple[Any, Any, dict[str, str]]]:
    sys.path.insert(0, str(ROOT))
    from tests.fakes.aml_api import start_aml_api
    from tests.fakes.azurite import start_azurite
    from tests.fakes.ingestion import IngestionServer

    with start_aml_api() as aml, start_azurite() as azurite:
        ingestion = IngestionServer().start()
        try:
            env = dict(aml.env())
            env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = ingestion.connection_string
            env["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] = f"Authorization=AAD;ClientId={aml.client_id}"
            env["AzureWebJobsStorage"] = azurite.connection_string
            yield aml, ingestion, env
        finally:
            ingestion.close()


def pipeline_events(aml: Any, pipelines: int, steps: int) -> list[str]:
    from tests.trace_scenario import lifecycle_events

    workspace = aml.workspace()
    end = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    events: list[str] = []
    for index in range(pipelines):
        created = end - dt.timedelta(seconds=4 + steps * 66 + 2, minutes=index)
        root, step_runs = workspace.add_pipeline_run("bench-pipeline", steps=steps, created=created)
        events += [json.dumps(e) for e in lifecycle_events(workspace, [root, *step_runs])]
    return events


def measure(src: Path, pipelines: int, steps: int) -> dict[str, Any]:
    with fakes() as (aml, ingestion, fake_env), tempfile.TemporaryDirectory() as tmp:
        events_file = Path(tmp) / "events.json"
        events = pipeline_events(aml, pipelines, steps)
        events_file.write_text(json.dumps(events))
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": tmp,
            "PYTHONDONTWRITEBYTECODE": "1",
            **QUIET_TELEMETRY_ENV,
            **fake_env,
        }
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "child", "--src", str(src), "--events", str(events_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"the child failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        stored = list(ingestion.envelopes)
        requests = ingestion.track_requests()
    count: Counter[str] = Counter()
    size: Counter[str] = Counter()
    resource_metrics = 0
    for envelope in stored:
        kind = KINDS.get(envelope.get("name", ""), envelope.get("name", "?"))
        count[kind] += 1
        size[kind] += len(json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode())
        resource_metrics += "_OTELRESOURCE_" in json.dumps(envelope)
    return {
        "events": len(events),
        "track_requests": len(requests),
        "refused_requests": sum(1 for r in requests if r.status != 200),
        "items": dict(count),
        "bytes": dict(size),
        "otel_resource_metrics": resource_metrics,
        "seconds": elapsed,
    }


def per_pipeline(result: dict[str, Any], pipelines: int) -> dict[str, float]:
    items = sum(result["items"].values()) / pipelines
    raw = sum(result["bytes"].values()) / pipelines
    return {"items": items, "bytes": raw, "usd_per_1000": raw * 1000 / 1e9 * PRICE_PER_GB}


def render(before: dict[str, Any], after: dict[str, Any], pipelines: int, steps: int) -> str:
    rows = [
        f"{pipelines} pipeline runs × ({steps} steps + the pipeline), each run Running → Completed "
        f"(+ RunCompleted): {after['events']} events, {after['track_requests']} ingestion requests "
        f"(after), {after['refused_requests']} refused.",
        "",
        "| per pipeline run | before | after |",
        "| --- | --- | --- |",
    ]
    for kind in ("customEvents", "customMetrics", "requests", "dependencies"):
        b = before["items"].get(kind, 0) / pipelines
        a = after["items"].get(kind, 0) / pipelines
        bb = before["bytes"].get(kind, 0) / max(before["items"].get(kind, 0), 1)
        ab = after["bytes"].get(kind, 0) / max(after["items"].get(kind, 0), 1)
        rows.append(f"| {kind}: items (mean JSON bytes each) | {b:g} ({bb:,.0f} B) | {a:g} ({ab:,.0f} B) |")
    pb, pa = per_pipeline(before, pipelines), per_pipeline(after, pipelines)
    rows += [
        "| `_OTELRESOURCE_` metric items "
        f"| {before['otel_resource_metrics']} | {after['otel_resource_metrics']} |",
        f"| **items (envelopes)** | **{pb['items']:g}** | **{pa['items']:g}** |",
        f"| **JSON bytes** | {pb['bytes']:,.0f} | {pa['bytes']:,.0f} |",
        f"| ingestion cost per 1,000 pipeline runs at ${PRICE_PER_GB:.2f}/GB (raw JSON, an upper bound) "
        f"| ${pb['usd_per_1000']:.4f} | ${pa['usd_per_1000']:.4f} |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("child", help=argparse.SUPPRESS)
    run.add_argument("--src", type=Path, required=True)
    run.add_argument("--events", type=Path, required=True)
    parser.add_argument("--pipelines", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="commit whose src/ sends no spans")
    args = parser.parse_args(argv)
    if args.command == "child":
        return child(args.src, args.events)

    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory() as tmp:
        before_src = source_of(args.before, Path(tmp))
        log(f"before: src/ of {args.before}")
        results["before"] = measure(before_src, args.pipelines, args.steps)
        log("after: this tree's src/")
        results["after"] = measure(ROOT / "src", args.pipelines, args.steps)
    results.update(
        pipelines=args.pipelines, steps=args.steps, before_commit=args.before, price_per_gb=PRICE_PER_GB
    )
    table = render(results["before"], results["after"], args.pipelines, args.steps)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "traces.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
