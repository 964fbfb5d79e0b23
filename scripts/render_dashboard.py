#!/usr/bin/env python3
"""Draws the workbook's layout with made-up sample data: docs/images/dashboard.png.

This is not a portal screenshot (the portal is out of reach from a build machine). What is real:
the groups, panels, widths, titles, visualizations and grid formatters come from
infra/workbook.json, and every table's columns are the query's actual result columns as
Kusto.Language binds them (tests/tools/kql_check.js, installed by scripts/test.sh). What is made up:
every value. (scripts/try.sh draws the same layout with real values: each panel's query executed on
what its run sent, see scripts/try_dashboard.py and docs/try-it.md.)

Usage: python3 scripts/render_dashboard.py [--png docs/images/dashboard.png] [--html FILE]
Needs node (with tests/tools/node_modules) and Chromium (Debian: apt-get install chromium).
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WORKBOOK = REPO / "infra" / "workbook.json"
KQL_CHECK = REPO / "tests" / "tools" / "kql_check.js"
WIDTH = 1360
TABLE_ROWS = 5
SELECTED_RUN = "4a7e1c2d-pipeline-run"
# A query panel (workbook item) → the HTML of its body, drawn from real rows.
RealBody = Callable[[dict[str, Any]], str]

# Same shapes as tests/test_dashboard_queries.py (a script does not import the test suite).
COMMON = (
    "timestamp: datetime, name: string, itemType: string, customDimensions: dynamic, operation_Name: string,"
    " operation_Id: string, operation_ParentId: string, cloud_RoleName: string, cloud_RoleInstance: string,"
    " appId: string, iKey: string, itemId: string"
)
TABLES = {
    "customEvents": f"({COMMON}, customMeasurements: dynamic, itemCount: int)",
    "customMetrics": f"({COMMON}, value: real, valueCount: int, valueSum: real, valueMin: real,"
    " valueMax: real)",
    "requests": f"({COMMON}, id: string, success: bool, resultCode: string, duration: real, itemCount: int)",
    "dependencies": f"({COMMON}, id: string, target: string, type: string, success: bool, resultCode: string,"
    " duration: real, itemCount: int)",
}
PARAMETERS = {
    "TimeRange": "> ago(1d)",
    "TimeRange:grain": "1h",
    "Workspace": "'*'",
    "PipelineRunId": SELECTED_RUN,
}

SAMPLE_TEXT = {
    "workspace": ["mlw-prod", "mlw-prod", "mlw-dev"],
    "pipeline": ["churn-training", "daily-scoring", "feature-build", "forecast-retrain"],
    "status": ["Completed", "Completed", "Failed", "Completed", "Canceled"],
    "step type": ["PythonScriptStep", "CommandStep", "ParallelRunStep", "DataTransferStep"],
    "compute target": ["cpu-cluster", "gpu-a100", "serverless", "cpu-cluster-low"],
    "target type": ["AmlCompute", "AmlCompute", "Serverless"],
    "node": ["3f2a9c1d", "b81e0a55", "0c94d2e7", "7a13f6b0"],
    "error code": ["UserError", "ServiceError", "UserError"],
    "error message": [
        "ModuleNotFoundError: No module named 'lightgbm'",
        "Disk quota exceeded while writing outputs",
        "Execution failed. User process 'python' exited with status code 1",
    ],
    "slowest step": ["train_model", "score_batches", "build_features"],
    "run type": ["azureml.StepRun", "azureml.PipelineRun", "azureml.StepRun", "azureml.CommandJob"],
    "reason": ["unsupported_event_type", "not_json", "topic_not_workspace"],
    "detail": ["eventType 'Microsoft.Storage.BlobCreated' is not one of ...", "event is not valid JSON"],
    "event type": ["Microsoft.Storage.BlobCreated", "(unknown)"],
    "topic": ["/subscriptions/…/storageAccounts/stdata", "/subscriptions/…/workspaces/mlw-prod"],
    "blob": ["2025/06/01/evt-91c2.json", "2025/06/01/evt-77aa.json"],
    "recorded": ["live", "live", "backfill", "live", "replay"],
    "currency": ["USD"],
    "kind": ["pipeline_step", "pipeline_step", "command", "pipeline_step"],
    "step": ["train_model", "score_batches", "build_features", "evaluate"],
    "why not": [
        "no estimate: a compute instance is billed for the hours it runs, not per job",
        "",
        "no estimate: attached Kubernetes compute is billed as the cluster's own nodes, "
        "not by Azure ML per job",
    ],
    "basis": [
        "sku=Standard_NC24ads_A100_v4; os=Linux; priority=dedicated; nodes=2; hourly_price=3.673 USD; "
        "duration_s=5412.3 (compute duration); region=eastus; …",
        "sku=Standard_DS3_v2; os=Linux; priority=low_priority; nodes=4; hourly_price=0.0586 USD; "
        "duration_s=2710 (compute duration); region=eastus; …",
        "sku=Standard_E4s_v3; os=Linux; priority=dedicated; nodes=1; hourly_price=0.252 USD; "
        "duration_s=1810.9 (compute duration); region=westeurope; …",
    ],
}
# Made-up estimated costs per row (descending, as the "most expensive" panels sort them).
COSTS = [39.7514, 12.0625, 3.3412, 0.8271, 0.1024]


def items(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for entry in entries:
        found.append(entry)
        if entry.get("type") == 12:
            found.extend(items(entry["content"]["items"]))
    return found


def expand(text: str) -> str:
    return re.sub(r"\{(\w+(?::\w+)?)\}", lambda m: PARAMETERS[m.group(1)], text)


def result_columns(workbook: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    queries = {i["name"]: expand(i["content"]["query"]) for i in items(workbook["items"]) if i["type"] == 3}
    node = shutil.which("node")
    if node is None:
        sys.exit("node is needed (and tests/tools/node_modules: run scripts/test.sh once)")
    out = subprocess.run(  # noqa: S603 (fixed argv: node and this repository's script)
        [node, str(KQL_CHECK)],
        input=json.dumps({"tables": TABLES, "queries": queries}),
        capture_output=True,
        text=True,
        check=True,
    )
    return {name: result["columns"] or [] for name, result in json.loads(out.stdout).items()}


SECONDS_SCALE = {"p95": 2.4, "longest": 4.0, "wall time": 3.0, "queue": 0.15, "slowest step": 1.6}


def sample_value(column: dict[str, str], row: int, rng: random.Random) -> str:  # noqa: PLR0911
    name, kind = column["name"], column["type"]
    key = name.lower().replace("_", " ")
    if kind == "datetime":
        return f"2025-06-01 {13 - row:02d}:{(row * 17) % 60:02d}"
    if kind in ("long", "int", "real", "decimal"):
        if "(s)" in name:
            # one base duration per row, so p95 > p50 and wall time > step time within a row
            base = [1460.0, 912.5, 388.0, 206.4, 95.2][row % 5]
            scale = next((v for k, v in SECONDS_SCALE.items() if k in key), 1.0)
            return f"{base * scale * rng.uniform(0.9, 1.1):,.1f}"
        if "failed" in key:
            return str([3, 0, 1, 0, 2][row % 5])
        if key == "cost":
            return f"{COSTS[row % 5] * rng.uniform(0.95, 1.05):,.4f}"
        if "without estimate" in key:
            return str([4, 0, 2, 0, 1][row % 5])
        return str([42, 31, 18, 9, 4][row % 5] + rng.randint(0, 3))
    if key == "studio":
        return "Open in studio"
    if key in ("run", "step run", "pipeline run", "run id", "event id") or key.endswith(" run"):
        return f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}"
    for hint, values in SAMPLE_TEXT.items():
        if hint in key:
            return values[row % len(values)]
    return ""


def svg_lines(series: dict[str, list[float]], height: int = 170, width: int = 600) -> str:
    colors = ["#0078d4", "#e3008c", "#107c10", "#ff8c00", "#5c2d91"]
    top = max(max(v) for v in series.values()) or 1
    parts = [
        f'<svg viewBox="0 0 {width} {height + 20}" width="100%" height="{height + 20}"'
        ' preserveAspectRatio="none">'
    ]
    for y in range(5):
        y_pos = 10 + y * height / 4
        parts.append(f'<line x1="0" x2="{width}" y1="{y_pos}" y2="{y_pos}" stroke="#edebe9"/>')
    for values, color in zip(series.values(), colors, strict=False):
        step = width / (len(values) - 1)
        points = " ".join(
            f"{i * step:.1f},{10 + height - v / top * height:.1f}" for i, v in enumerate(values)
        )
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
    parts.append("</svg>")
    legend = "".join(
        f'<span class="legend"><i style="background:{c}"></i>{html.escape(label)}</span>'
        for label, c in zip(series, colors, strict=False)
    )
    return "".join(parts) + f'<div class="legends">{legend}</div>'


def svg_bars(series: dict[str, list[float]], height: int = 170, width: int = 600) -> str:
    colors = ["#0078d4", "#e3008c", "#ff8c00"]
    n = len(next(iter(series.values())))
    totals = [sum(v[i] for v in series.values()) for i in range(n)]
    top = max(totals) or 1
    bar = width / n
    parts = [
        f'<svg viewBox="0 0 {width} {height + 10}" width="100%" height="{height + 10}"'
        ' preserveAspectRatio="none">'
    ]
    for i in range(n):
        y = height
        for (_, values), color in zip(series.items(), colors, strict=False):
            h = values[i] / top * (height - 10)
            y -= h
            parts.append(
                f'<rect x="{i * bar + 2:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}"'
                f' fill="{color}"/>'
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="legend"><i style="background:{c}"></i>{html.escape(label)}</span>'
        for label, c in zip(series, colors, strict=False)
    )
    return "".join(parts) + f'<div class="legends">{legend}</div>'


def series_for(name: str, columns: list[dict[str, str]], rng: random.Random) -> dict[str, list[float]]:
    labels = {
        "runs-over-time": ["Completed", "Running", "Failed", "Queued"],
        "queue-over-time": ["cpu-cluster", "gpu-a100", "serverless"],
        "processor-invocations": [c["name"] for c in columns if c["type"] != "datetime"],
        "processor-rejected-by-reason": ["unsupported_event_type", "not_json"],
        "cost-by-pipeline": ["churn-training (USD)", "forecast-retrain (USD)", "daily-scoring (USD)"],
    }.get(name, ["series"])
    data = {}
    for index, label in enumerate(labels):
        level = (24.0, 8.0, 4.0, 2.0)[index % 4]
        data[label] = [max(0.0, level + rng.uniform(-level / 2, level / 2)) for _ in range(24)]
    return data


def render_item(  # noqa: PLR0912
    item: dict[str, Any],
    columns: dict[str, list[dict[str, str]]],
    rng: random.Random,
    real: RealBody | None = None,
    selected: str = SELECTED_RUN,
) -> str:
    width = float(item.get("customWidth", "100"))
    style = f"flex: 0 0 calc({width}% - 12px)"
    if item["type"] == 1:
        text = html.escape(item["content"]["json"]).replace("\n", "<br>")
        text = re.sub(r"^# (.*?)<br>", r"<h1>\1</h1>", text)
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
        text = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)
        return f'<div class="text" style="{style}">{text}</div>'
    if item["type"] == 9:
        pills = "".join(
            f'<span class="pill"><b>{html.escape(p.get("label", p["name"]))}:</b> '
            f"{'Last 24 hours' if p['type'] == 4 else 'All'}</span>"
            for p in item["content"]["parameters"]
        )
        return f'<div class="params" style="{style}">{pills}</div>'
    if item["type"] == 12:
        inner = "".join(
            render_item(child, columns, rng, real, selected) for child in item["content"]["items"]
        )
        return (
            f'<section style="{style}"><h2>{html.escape(item["content"]["title"])}</h2>'
            f'<div class="row">{inner}</div></section>'
        )
    content = item["content"]
    title = html.escape(content["title"].replace("{PipelineRunId}", selected))
    cols = columns.get(item["name"], [])
    vis = content.get("visualization", "table")
    if real is not None:
        body = real(item)
    elif vis == "tiles":
        tiles = "".join(
            f'<div class="tile"><div class="tile-title">{label}</div><div class="tile-big">{n}</div>'
            f'<div class="tile-sub">{failed} failed · {canceled} canceled · {active} in progress</div></div>'
            for label, n, failed, canceled, active in (
                ("Other jobs", 57, 4, 1, 3),
                ("Pipeline runs", 42, 3, 1, 2),
                ("Pipeline steps", 318, 6, 2, 9),
            )
        )
        body = f'<div class="tiles">{tiles}</div>'
    elif vis == "timechart":
        body = svg_lines(series_for(item["name"], cols, rng))
    elif vis == "barchart":
        body = svg_bars(series_for(item["name"], cols, rng))
    else:
        formatters = {f["columnMatch"]: f for f in content.get("gridSettings", {}).get("formatters", [])}
        shown = [c for c in cols if formatters.get(c["name"], {}).get("formatter") != 5]
        head = "".join(f"<th>{html.escape(c['name'])}</th>" for c in shown)
        rows = []
        for r in range(TABLE_ROWS):
            cells = []
            for c in shown:
                value = sample_value(c, r, rng)
                kind = formatters.get(c["name"], {}).get("formatter")
                if c["name"] == "run_id" and item["name"] == "pipeline-runs" and r == 1:
                    value = SELECTED_RUN
                if kind == 7:
                    # A link shows its label (the portal's linkLabel), whatever the cell holds.
                    label = formatters[c["name"]].get("formatOptions", {}).get("linkLabel") or value
                    cells.append(f"<td><a>{html.escape(label)} ↗</a></td>")
                elif kind == 4 and value:
                    pct = min(100.0, float(value.replace(",", "")) / 40)
                    cells.append(
                        f'<td><div class="bar" style="width:{pct:.0f}%"></div><span>{value}</span></td>'
                    )
                else:
                    cells.append(f"<td>{html.escape(value)}</td>")
            selected = ' class="selected"' if item["name"] == "pipeline-runs" and r == 1 else ""
            rows.append(f"<tr{selected}>{''.join(cells)}</tr>")
        body = f'<div class="grid"><table><tr>{head}</tr>{"".join(rows)}</table></div>'
    return f'<div class="card" style="{style}"><div class="card-title">{title}</div>{body}</div>'


CSS = """
body { margin: 0; background: #faf9f8; font: 12px 'DejaVu Sans', 'Segoe UI', sans-serif; color: #323130; }
.page { width: %(width)spx; padding: 16px 20px; box-sizing: border-box; }
.banner { background: #fff4ce; border: 1px solid #f2c811; padding: 6px 10px; margin-bottom: 10px; }
.row { display: flex; flex-wrap: wrap; gap: 12px; }
section { background: transparent; margin-top: 6px; }
h1 { font-size: 20px; margin: 0 0 4px; font-weight: 600; }
h2 { font-size: 15px; margin: 6px 0; font-weight: 600; border-bottom: 1px solid #e1dfdd;
     padding-bottom: 4px; }
.text { color: #605e5c; line-height: 1.5; }
code { background: #f3f2f1; padding: 0 3px; }
.params { display: flex; gap: 8px; }
.pill { background: #fff; border: 1px solid #c8c6c4; border-radius: 12px; padding: 4px 12px; }
.card { background: #fff; border: 1px solid #e1dfdd; border-radius: 2px; padding: 8px 10px;
        box-sizing: border-box; }
.card-title { font-weight: 600; margin-bottom: 6px; }
.tiles { display: flex; gap: 12px; }
.tile { flex: 1; border-left: 4px solid #0078d4; padding: 6px 10px; background: #f8f8f8; }
.tile-big { font-size: 26px; font-weight: 600; }
.tile-sub { color: #605e5c; }
.grid { overflow: hidden; }
table { border-collapse: collapse; width: 100%%; font-size: 11px; }
td span { position: relative; z-index: 1; }
th { text-align: left; font-weight: 600; border-bottom: 1px solid #c8c6c4; padding: 4px 6px;
     white-space: nowrap; }
td { border-bottom: 1px solid #f3f2f1; padding: 4px 6px; white-space: nowrap; max-width: 210px;
     overflow: hidden; text-overflow: ellipsis; position: relative; }
tr.selected td { background: #deecf9; }
.bar { position: absolute; left: 0; top: 4px; bottom: 4px; background: #c7e0f4; z-index: 0; }
td a { color: #0078d4; text-decoration: underline; }
.legends { display: flex; gap: 14px; flex-wrap: wrap; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
"""


MADE_UP_BANNER = (
    "A rendering of the workbook layout (infra/workbook.json) with made-up sample data — "
    "not a screenshot of the Azure portal."
)


def render_html(
    workbook: dict[str, Any],
    columns: dict[str, list[dict[str, str]]],
    *,
    real: RealBody | None = None,
    selected: str = SELECTED_RUN,
    banner: str = MADE_UP_BANNER,
) -> str:
    """The page; ``real`` draws each query panel's body from real rows (scripts/try_dashboard.py)
    instead of the made-up values."""
    rng = random.Random(20250601)  # noqa: S311 (sample data, reproducible)
    body = "".join(render_item(item, columns, rng, real, selected) for item in workbook["items"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{CSS % {'width': WIDTH}}</style></head>"
        f"<body><div class='page'><div class='banner'>{banner}</div>"
        f"<div class='row'>{body}</div></div></body></html>"
    )


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("Chromium is needed (Debian: apt-get install chromium)")


def screenshot(page: Path, png: Path) -> None:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
    ]
    with tempfile.TemporaryDirectory() as profile:
        measure = page.with_suffix(".measure.html")
        script = "<script>document.title = document.documentElement.scrollHeight;</script>"
        measure.write_text(
            page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8"
        )
        dom = subprocess.run(  # noqa: S603 (fixed argv)
            [chromium(), *flags, f"--user-data-dir={profile}", f"--window-size={WIDTH},800", "--dump-dom",
             measure.as_uri()],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip
        height = int(re.search(r"<title>(\d+)</title>", dom).group(1))  # type: ignore[union-attr]
        png.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 (fixed argv)
            [chromium(), *flags, f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
             f"--screenshot={png}", page.as_uri()],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "images" / "dashboard.png")
    parser.add_argument("--html", type=Path, help="also keep the HTML page here")
    args = parser.parse_args()
    workbook = json.loads(WORKBOOK.read_text(encoding="utf-8"))
    page_html = render_html(workbook, result_columns(workbook))
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "dashboard.html"
        page.write_text(page_html, encoding="utf-8")
        if args.html:
            args.html.write_text(page_html, encoding="utf-8")
        screenshot(page, args.png.resolve())
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
