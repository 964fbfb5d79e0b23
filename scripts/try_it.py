#!/usr/bin/env python3
"""Try it without Azure: one pipeline run through the real function, against the local stand-ins.

What runs is the product's own code path: ``function_app.app``, indexed and invoked as the Functions
host does (tests/integration/host.py), with the settings Bicep gives the Function App pointed at the
project's loopback stand-ins:

* the AML fake (tests/fakes/aml_api.py): managed identity, Resource Manager, discovery, run history
  and the Retail Prices API, serving an SDK v2 pipeline built from Microsoft's recorded v2 node
  (tests/trace_scenario.py ``v2_pipeline``): a reused node, a nested sub-pipeline whose last node
  fails with a recorded error;
* Azurite (tests/fakes/azurite.py) for the claims that record each run status once;
* the ingestion sink (tests/fakes/ingestion.py) in place of Application Insights.

The events are delivered as Event Grid may deliver them: shuffled, and one of them twice. The table
is read back from what ingestion *received*; so are the pictures (the trace from the stored spans, the
dashboard from the workbook's own queries executed on the stored records by tests/kql_engine.py).

Nothing is sent anywhere but 127.0.0.1: a socket guard (bench/netguard.py) refuses any other
connection and name look-up, and the exporter's side channels are off (tests/quiet_exporter.py).

Usage: sh scripts/try.sh [--no-pictures] [--out DIR]     (after `sh scripts/test.sh` created .venv)
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO), str(REPO / "scripts")]

from bench import netguard  # noqa: E402 (the guard goes in before anything that could open a socket)

netguard.install()

from tests.quiet_exporter import QUIET_EXPORTER_ENV  # noqa: E402

os.environ.update(QUIET_EXPORTER_ENV)  # before any azure.monitor / opentelemetry import
for _inherited in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID"):
    os.environ.pop(_inherited, None)

from tests.fakes.azurite import AZURITE_BIN  # noqa: E402

FUNCTION = "aml_run_events"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_CHROMIUM = "apt-get install chromium (Debian/Ubuntu; macOS: brew install --cask chromium)"
INSTALL_NODE = "apt-get install nodejs npm (Debian/Ubuntu; macOS: brew install node)"
COLUMNS = ("run", "step", "status", "duration", "queue", "compute", "cost", "error")
ERROR_WIDTH = 400  # characters of an error message shown (a record keeps up to 4,096)


# --------------------------------------------------------------------------------------------------
# The run


def deliveries(events: list[dict[str, Any]], *, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every event once in a shuffled order, then one of them again (Event Grid delivers at least once,
    in no guaranteed order): the failed node's terminal event, the one a user would look for."""
    order = list(events)
    random.Random(seed).shuffle(order)  # noqa: S311 (an order, not a secret)
    failed = next(e for e in order if e["data"].get("runStatus") == "Failed" and "step" in _kind(e))
    return [*order, failed], failed


def _kind(event: Mapping[str, Any]) -> str:
    run_type = str(event["data"].get("runType") or "")
    return "step" if run_type.endswith("StepRun") else "pipeline"


def run_scenario(seed: int) -> dict[str, Any]:
    """Start the stand-ins, deliver the pipeline's events through ``function_app``, return what
    ingestion received (envelopes) with what was delivered."""
    from amlobs import runtime
    from tests.fakes.aml_api import start_aml_api
    from tests.fakes.azurite import start_azurite
    from tests.fakes.ingestion import IngestionServer
    from tests.integration.host import indexed_functions, invoke
    from tests.kql_engine import Invocation
    from tests.trace_scenario import v2_pipeline

    with start_aml_api() as aml, start_azurite() as azurite:
        ingestion = IngestionServer().start()
        try:
            # The app settings infra/ gives the Function App, pointed at the stand-ins: Entra ingestion
            # with the managed identity, storage for the claims, discovery from Resource Manager.
            os.environ.update(aml.env())
            os.environ.update(
                {
                    "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
                    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId="
                    + aml.client_id,
                    "AzureWebJobsStorage": azurite.connection_string,
                }
            )
            os.environ.pop("AML_OBS_API_ENDPOINT", None)
            runtime.reset_processor()
            indexed_functions()  # the host indexes the app once, before the first event
            pipeline = v2_pipeline(
                aml.workspace(), end=datetime.now(UTC) - timedelta(minutes=5), failed_node=True
            )
            sent, duplicate = deliveries(pipeline.events, seed=seed)
            invocations: list[Invocation] = []
            retried = 0
            queue = list(sent)
            while queue:
                event = queue.pop(0)
                started = datetime.now(UTC)
                begun = time.perf_counter()
                try:
                    invoke(event, FUNCTION)
                    succeeded = True
                except Exception:
                    succeeded = False
                    retried += 1
                    if retried <= len(sent):
                        queue.append(event)
                elapsed = timedelta(seconds=time.perf_counter() - begun)
                invocations.append(Invocation(FUNCTION, started, elapsed, succeeded, uuid.uuid4().hex))
            runtime.reset_processor()  # flushes the exporter: everything sent is at ingestion now
            return {
                "pipeline": pipeline,
                "sent": sent,
                "duplicate": duplicate,
                "retried": retried,
                "invocations": invocations,
                "envelopes": list(ingestion.envelopes),
                "now": datetime.now(UTC),
            }
        finally:
            ingestion.close()
            runtime.reset_processor()


# --------------------------------------------------------------------------------------------------
# The table, from what ingestion received


def _seconds(ms: Any) -> str:
    if ms in (None, ""):
        return "-"
    seconds = float(ms) / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _depths(records: list[dict[str, str]]) -> dict[str, int]:
    parents = {r["run_id"]: r.get("parent_run_id") or "" for r in records}

    def depth(run_id: str) -> int:
        seen = 0
        while parents.get(run_id) and seen < 10:
            run_id, seen = parents[run_id], seen + 1
        return seen

    return {run_id: depth(run_id) for run_id in parents}


def _order(records: list[dict[str, str]]) -> list[dict[str, str]]:
    """Tree order (a pipeline, then its runs as they started, a sub-pipeline's under it), each run's
    statuses as they happened."""
    children: dict[str, list[str]] = {}
    starts: dict[str, int] = {}
    for record in records:
        children.setdefault(record.get("parent_run_id") or "", [])
        run_id = record["run_id"]
        starts[run_id] = min(starts.get(run_id, 1 << 62), int(record.get("created_time_utc_ms") or 0))
        siblings = children.setdefault(record.get("parent_run_id") or "", [])
        if run_id not in siblings:
            siblings.append(run_id)
    ordered: list[dict[str, str]] = []

    def visit(parent: str) -> None:
        for run_id in sorted(children.get(parent, []), key=lambda r: starts[r]):
            mine = [r for r in records if r["run_id"] == run_id]
            ordered.extend(sorted(mine, key=lambda r: int(r.get("status_time_utc_ms") or 0)))
            visit(run_id)

    visit("")
    return ordered


def table_rows(records: list[dict[str, str]]) -> list[tuple[str, ...]]:
    depths = _depths(records)
    rows = []
    for r in _order(records):
        name = r.get("step_name") or r.get("display_name") or r.get("experimentName") or ""
        if r.get("job_kind") == "pipeline":
            name = (
                f"{name} (sub-pipeline)"
                if r.get("parent_run_id")
                else f"{r.get('experimentName')} (pipeline)"
            )
        if r.get("is_reused") == "true":
            name += " [reused]"
        cost = (
            f"{float(r['estimated_cost']):.4f} {r.get('cost_currency', '')}"
            if r.get("estimated_cost")
            else "-"
        )
        compute = r.get("compute_name") or "-"
        if r.get("compute_target_type"):
            compute += f" ({r['compute_target_type']})"
        rows.append(
            (
                r["run_id"][:8],
                "  " * depths.get(r["run_id"], 0) + name,
                r.get("status", ""),
                _seconds(r.get("execution_time_ms")),
                _seconds(r.get("queue_time_ms")),
                compute,
                cost,
                r.get("error_code") or "-",
            )
        )
    return rows


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def summary_lines(outcome: Mapping[str, Any], records: list[dict[str, str]]) -> list[str]:
    from tests.fakes.ingestion import EVENT_ENVELOPE
    from tests.trace_scenario import spans_from, trace_of

    envelopes = outcome["envelopes"]
    duplicate = outcome["duplicate"]["data"]
    copies = sum(
        1 for r in records if r["run_id"] == duplicate["runId"] and r.get("status") == duplicate["runStatus"]
    )
    lines = [
        f"Delivered {len(outcome['sent'])} events in shuffled order, one of them twice "
        f"({duplicate['runId'][:8]} {duplicate['runStatus']}): {len(records)} run statuses recorded, "
        f"the duplicate {'once' if copies == 1 else f'{copies} times'} "
        "(its claim in Table storage, Azurite).",
    ]
    if outcome["retried"]:
        lines.append(
            f"{outcome['retried']} invocation(s) failed and were delivered again, as Event Grid retries."
        )
    summaries = [
        e["data"]["baseData"]["properties"]
        for e in envelopes
        if e.get("name") == EVENT_ENVELOPE and e["data"]["baseData"]["name"] == "AmlPipelineRunSummary"
    ]
    for s in summaries:
        cost = (
            f"{float(s['estimated_cost']):.4f} {s.get('cost_currency', '')}"
            if s.get("estimated_cost")
            else "none"
        )
        lines.append(
            f"Pipeline summary {s['run_id'][:8]} ({s.get('status')}): {s.get('step_count')} steps, "
            f"{s.get('failed_step_count')} failed, {s.get('reused_step_count')} reused, "
            f"{s.get('sub_pipeline_count')} sub-pipeline; wall time {_seconds(s.get('wall_time_ms'))}; "
            f"slowest step {s.get('slowest_step_name')}; estimated cost {cost}."
        )
    spans = spans_from(envelopes)
    trace = trace_of(spans, outcome["pipeline"].root["runId"])
    lines.append(
        f"Trace {trace[0].trace_id}: {sum(1 for s in trace if s.kind == 'request')} request, "
        f"{sum(1 for s in trace if s.kind == 'dependency')} dependencies (runs and their queue times)."
    )
    return lines


def error_lines(records: list[dict[str, str]]) -> list[str]:
    """The errors of the runs that failed, whole but for their whitespace (the table shows the code)."""
    lines = []
    for r in records:
        if r.get("status") == "Failed" and r.get("error_message"):
            message = " ".join(r["error_message"].split())
            message = message if len(message) <= ERROR_WIDTH else message[: ERROR_WIDTH - 1] + "…"
            name = r.get("step_name") or r.get("display_name") or ""
            lines.append(
                f"  {r['run_id'][:8]} {name}: {r.get('error_code_chain') or r['error_code']}: {message}"
            )
    return ["Errors:", *lines] if lines else []


def status_records(envelopes: list[dict[str, Any]]) -> list[dict[str, str]]:
    from tests.fakes.ingestion import EVENT_ENVELOPE

    return [
        dict(e["data"]["baseData"]["properties"])
        for e in envelopes
        if e.get("name") == EVENT_ENVELOPE and e["data"]["baseData"]["name"] == "AmlRunStatusChanged"
    ]


# --------------------------------------------------------------------------------------------------
# The pictures


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def write_pictures(outcome: Mapping[str, Any], out: Path, *, screenshots: bool) -> list[Path]:
    """The trace (SVG) and the dashboard (HTML page) drawn from what ingestion received, and with
    ``screenshots`` their PNGs (Chromium); the files written."""
    import render_dashboard
    import render_trace
    from try_dashboard import dashboard_page

    from tests.trace_scenario import spans_from, trace_of, tree

    out.mkdir(parents=True, exist_ok=True)
    trace = trace_of(spans_from(outcome["envelopes"]), outcome["pipeline"].root["runId"])
    drawing = render_trace.svg(tree(trace), trace[0].trace_id)
    page_html = dashboard_page(outcome)
    written = [out / "trace.svg", out / "dashboard.html"]
    written[0].write_text(drawing, encoding="utf-8")
    written[1].write_text(page_html, encoding="utf-8")
    if screenshots:
        render_trace.screenshot(drawing, out / "trace.png")
        with tempfile.TemporaryDirectory() as tmp:  # the screenshot leaves a measuring page beside it
            page = Path(tmp) / "dashboard.html"
            page.write_text(page_html, encoding="utf-8")
            render_dashboard.screenshot(page, (out / "dashboard.png").resolve())
        written = [out / "trace.png", out / "dashboard.png", *written]
    return written


def prerequisite_problem() -> str | None:
    """What is missing to run at all (Chromium only for the PNGs), with the command that installs it."""
    if shutil.which("node") is None:
        return (
            f"Azurite (the storage emulator) needs Node.js, which is not on PATH: install it ({INSTALL_NODE})"
        )
    if not AZURITE_BIN.exists():
        missing = AZURITE_BIN.relative_to(REPO)
        return f"Azurite is not installed ({missing} is missing): run sh scripts/test.sh once"
    return None


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to where they are, when it is below it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


class _HostWarnings(logging.Filter):
    """azure-functions warns, while indexing, that auth levels apply to HTTP functions only: noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Auth level is not applied")


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-pictures", action="store_true", help="print the table only")
    parser.add_argument("--out", type=Path, default=REPO / ".amlobs" / "try-it", help="where the pictures go")
    parser.add_argument(
        "--seed", type=int, default=20, help="the delivery order (any order records the same)"
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    problem = prerequisite_problem()
    if problem:
        print(f"try: {problem}", file=sys.stderr)
        return 2
    logging.getLogger().addFilter(_HostWarnings())
    outcome = run_scenario(args.seed)
    records = status_records(outcome["envelopes"])
    print("One SDK v2 pipeline run through function_app, read back from what ingestion received:\n")
    print(format_table(table_rows(records)))
    print()
    print(
        "(Each record is enriched from run history when its event is processed: these runs had already\n"
        " finished, so their Running records carry the final times, cost aside, and error.)"
    )
    for line in [*error_lines(records), *summary_lines(outcome, records)]:
        print(line)
    status = 0
    if args.no_pictures:
        print("Pictures: not drawn (--no-pictures).")
    else:
        browser = chromium()
        try:
            written = write_pictures(outcome, args.out, screenshots=browser is not None)
        except (OSError, subprocess.SubprocessError) as failed:
            print(f"Pictures: not drawn: {type(failed).__name__}: {failed}")
            status = 1
        else:
            names = ", ".join(_shown(p) for p in written)
            if browser is None:
                print(
                    f"Pictures: {names} (open them in a browser); the PNGs need Chromium: {INSTALL_CHROMIUM}."
                )
            else:
                print(f"Pictures: {names}.")
    refused = len(netguard.ATTEMPTS)
    print(
        f"Sent only to 127.0.0.1 ({refused} other connection(s) refused"
        + (f": {', '.join(netguard.ATTEMPTS)}" if refused else "")
        + f"). {time.perf_counter() - began:.1f} s."
    )
    return 1 if refused else status


if __name__ == "__main__":
    sys.exit(main())
