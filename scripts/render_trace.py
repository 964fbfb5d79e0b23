#!/usr/bin/env python3
"""Draws a pipeline run's trace as the tests reconstruct it: docs/images/trace.png.

The transaction view of Application Insights cannot be rendered on a build machine. What this draws is
real data: an SDK v2 pipeline (two nodes, the first reused; a nested sub-pipeline of two nodes, the
last of which fails with the error of a recorded failed run) is served by the project's AML fake, every
event AML sends for it goes through ``function_app`` against the loopback fakes (ingestion, Azurite),
and the timeline is read back from the envelopes ingestion stored (``tests/trace_scenario.py``, as
``tests/integration/test_traces.py`` reads them): their operation, parent and span ids, start times
and durations. Only the layout is this script's.

Usage: .venv/bin/python scripts/render_trace.py [--png docs/images/trace.png] [--svg FILE]
Needs the test dependencies (scripts/test.sh installs them, Azurite included) and Chromium (Debian:
apt-get install chromium). Not a runtime dependency: the app never draws anything.
"""

from __future__ import annotations

import argparse
import html
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIDTH = 1360
LABELS = 430  # px for the names column
ROW = 30
COLORS = {
    "request": "#1f4e79",
    "dependency": "#2e75b6",
    "queue": "#c9c9c9",
    "failed": "#c0392b",
    "reused": "#6aa84f",
}


def recorded_trace() -> tuple[list[tuple[int, object]], str]:
    """Run the scenario through the function; the trace's (depth, span) rows and its operation id."""
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    from amlobs import runtime
    from tests.fakes.aml_api import start_aml_api
    from tests.fakes.azurite import start_azurite
    from tests.fakes.ingestion import IngestionServer
    from tests.integration.host import invoke
    from tests.trace_scenario import spans_from, trace_of, tree, v2_pipeline

    with start_aml_api() as aml, start_azurite() as azurite:
        ingestion = IngestionServer().start()
        try:
            os.environ.update(aml.env())
            os.environ.update(
                {
                    "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
                    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId="
                    + aml.client_id,
                    "AzureWebJobsStorage": azurite.connection_string,
                    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
                }
            )
            os.environ.pop("AML_OBS_API_ENDPOINT", None)
            runtime.reset_processor()
            pipeline = v2_pipeline(
                aml.workspace(), end=datetime.now(UTC) - timedelta(hours=1), failed_node=True
            )
            events = list(pipeline.events)
            random.Random(7).shuffle(events)  # noqa: S311 (any order: the ids are derived)
            for event in events:
                invoke(event)
            runtime.reset_processor()
            trace = trace_of(spans_from(ingestion.envelopes), pipeline.root["runId"])
        finally:
            ingestion.close()
    return tree(trace), trace[0].trace_id


def _seconds(delta: timedelta) -> float:
    return delta.total_seconds()


def _duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def svg(rows: list[tuple[int, object]], operation_id: str) -> str:
    spans = [span for _, span in rows]
    start = min(s.start for s in spans)  # type: ignore[attr-defined]
    end = max(s.end for s in spans)  # type: ignore[attr-defined]
    total = max(_seconds(end - start), 1.0)
    plot = WIDTH - LABELS - 250
    top = 86
    height = top + ROW * len(rows) + 70

    def x(moment: datetime) -> float:
        return LABELS + plot * _seconds(moment - start) / total

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        'font-family="Segoe UI, Helvetica, Arial, sans-serif" font-size="13">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        '<text x="16" y="28" font-size="18" font-weight="600">One pipeline run, one trace: '
        "its runs as spans, nested as the pipeline ran</text>",
        f'<text x="16" y="50" fill="#555">operation_Id {operation_id} · {len(rows)} spans '
        f"({sum(1 for s in spans if s.kind == 'request')} request, "  # type: ignore[attr-defined]
        f"{sum(1 for s in spans if s.kind == 'dependency')} dependencies) read back from the envelopes "  # type: ignore[attr-defined]
        "ingestion stored (tests/trace_scenario.py)</text>",
    ]
    step = 60 if total > 300 else 30 if total > 120 else 10
    tick = 0
    while tick <= total:
        tx = LABELS + plot * tick / total
        parts.append(
            f'<line x1="{tx:.1f}" y1="{top - 14}" x2="{tx:.1f}" y2="{top + ROW * len(rows)}" stroke="#eee"/>'
        )
        label = f"{tick // 60:.0f} min" if step >= 60 else f"{tick:.0f} s"
        parts.append(f'<text x="{tx:.1f}" y="{top - 18}" fill="#888" text-anchor="middle">{label}</text>')
        tick += step
    for index, (depth, span) in enumerate(rows):
        y = top + ROW * index
        phase = span.phase  # type: ignore[attr-defined]
        reused = span.properties.get("is_reused") == "true"  # type: ignore[attr-defined]
        if phase == "queue":
            color = COLORS["queue"]
        elif not span.success:  # type: ignore[attr-defined]
            color = COLORS["failed"]
        elif reused:
            color = COLORS["reused"]
        else:
            color = COLORS[span.kind]  # type: ignore[attr-defined]
        name = html.escape(span.name)  # type: ignore[attr-defined]
        kind = "request" if span.kind == "request" else ("queue" if phase == "queue" else "dependency")  # type: ignore[attr-defined]
        if index % 2 == 0:
            parts.append(f'<rect x="0" y="{y}" width="{WIDTH}" height="{ROW}" fill="#f7f9fc"/>')
        weight = ' font-weight="600"' if span.kind == "request" else ""  # type: ignore[attr-defined]
        style = ' fill="#777" font-style="italic"' if phase == "queue" else ""
        parts.append(f'<text x="{16 + 20 * depth}" y="{y + 19}"{weight}{style}>{name}</text>')
        parts.append(
            f'<text x="{LABELS - 12}" y="{y + 19}" fill="#999" text-anchor="end" font-size="11">{kind}</text>'
        )
        x0, x1 = x(span.start), x(span.end)  # type: ignore[attr-defined]
        parts.append(
            f'<rect x="{x0:.1f}" y="{y + 7}" width="{max(x1 - x0, 2):.1f}" height="{ROW - 14}" rx="3" '
            f'fill="{color}"/>'
        )
        note = _duration(span.duration_ms)  # type: ignore[attr-defined]
        if not span.success and phase != "queue":  # type: ignore[attr-defined]
            note += f" · {html.escape(span.properties.get('error_code', span.properties.get('status', '')))}"  # type: ignore[attr-defined]
        parts.append(f'<text x="{max(x1, x0 + 2) + 8:.1f}" y="{y + 19}" fill="#333">{note}</text>')
    legend_y = top + ROW * len(rows) + 34
    lx = 16
    for label, key in (
        ("pipeline run (request)", "request"),
        ("step / sub-pipeline (dependency)", "dependency"),
        ("queue time (created → started)", "queue"),
        ("reused step", "reused"),
        ("failed (error code)", "failed"),
    ):
        parts.append(
            f'<rect x="{lx}" y="{legend_y - 11}" width="14" height="14" rx="2" fill="{COLORS[key]}"/>'
        )
        parts.append(f'<text x="{lx + 20}" y="{legend_y}">{label}</text>')
        lx += 20 + 8 * len(label) + 28
    parts.append("</svg>")
    return "\n".join(parts)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("Chromium is needed (Debian: apt-get install chromium)")


def screenshot(drawing: str, png: Path) -> None:
    height = int(re.search(r'height="(\d+)"', drawing).group(1))  # type: ignore[union-attr]
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "trace.html"
        page.write_text(
            f"<!doctype html><html><body style='margin:0'>{drawing}</body></html>", encoding="utf-8"
        )
        png.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 (fixed argv)
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp}/profile", f"--window-size={WIDTH},{height}", f"--screenshot={png}",
             page.as_uri()],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "images" / "trace.png")
    parser.add_argument("--svg", type=Path, help="also keep the SVG here")
    args = parser.parse_args()
    rows, operation_id = recorded_trace()
    drawing = svg(rows, operation_id)
    if args.svg:
        args.svg.write_text(drawing, encoding="utf-8")
    screenshot(drawing, args.png.resolve())
    print(f"wrote {args.png}: {len(rows)} spans")


if __name__ == "__main__":
    main()
