"""The dashboard picture of ``scripts/try.sh``: the workbook's own queries, executed on what ingestion
received, drawn in scripts/render_dashboard.py's layout.

What is real: every number, row and series is the result of the query of its panel in
infra/workbook.json, parameters substituted as the workbook does for its defaults (last 24 hours, grain
1 hour, all workspaces, the try-it pipeline run selected in the drill-down), executed by the project's
offline KQL engine (tests/kql_engine.py: duckdb-kql over Application Insights tables built from the
accepted envelopes). The Function invocations panel reads the invocations this run made as the
Functions host would record them (in Azure the host writes those rows, not the app). What is not: the
look (this is not the Azure portal) and the chart drawing.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from render_dashboard import WORKBOOK, items, render_html
from try_run import Outcome

from tests.dashboard_sources import expand_workbook_parameters
from tests.kql_engine import Engine, custom_events, custom_metrics, requests, spans

DAY = timedelta(days=1)
GRAIN = timedelta(hours=1)
MAX_ROWS = 8
COLORS = ("#0078d4", "#e3008c", "#107c10", "#ff8c00", "#5c2d91")
BANNER = (
    "Drawn by scripts/try.sh from what the local ingestion sink received: every value is the result of "
    "the panel's own query (infra/workbook.json) executed by the offline KQL engine (tests/kql_engine.py). "
    "The layout imitates the workbook; it is not a screenshot of the Azure portal."
)


def query_results(outcome: Outcome) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Each query panel's rows (by item name), and the workbook."""
    workbook: dict[str, Any] = json.loads(Path(WORKBOOK).read_text(encoding="utf-8"))
    envelopes = outcome.envelopes
    engine = Engine(
        {
            "customEvents": custom_events(envelopes),
            "customMetrics": custom_metrics(envelopes),
            # In Azure both land in requests: the host's invocations and the pipeline runs' root spans.
            "requests": requests(outcome.invocations) + spans(envelopes, "requests"),
            "dependencies": spans(envelopes, "dependencies"),
        }
    )
    parameters = {
        ("TimeRange", None): "> ago(1d)",
        ("TimeRange", "grain"): "1h",
        ("Workspace", None): "'*'",
        ("PipelineRunId", None): outcome.root_run_id,
    }
    results = {}
    for item in items(workbook["items"]):
        if item["type"] != 3:
            continue
        content = item["content"]
        window = (
            DAY
            if "timeContextFromParameter" in content
            else timedelta(milliseconds=content["timeContext"]["durationMs"])
        )
        kql = expand_workbook_parameters(content["query"], parameters)
        results[item["name"]] = engine.run(kql, now=outcome.now, timespan=window, origin=item["name"])
    return results, workbook


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


def _table(item: dict[str, Any], rows: list[dict[str, Any]], selected: str) -> str:
    formatters = {f["columnMatch"]: f for f in item["content"].get("gridSettings", {}).get("formatters", [])}
    shown = [c for c in rows[0] if formatters.get(c, {}).get("formatter") != 5]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = []
    for row in rows[:MAX_ROWS]:
        cells = []
        for column in shown:
            value = _cell(row[column])
            kind = formatters.get(column, {}).get("formatter")
            if kind == 7:  # a link shows its label (the portal's linkLabel), whatever the cell holds
                label = formatters[column].get("formatOptions", {}).get("linkLabel") or value
                cells.append(f"<td><a>{html.escape(label)} ↗</a></td>")
            elif kind == 4 and isinstance(row[column], int | float):
                top = max(float(r[column] or 0) for r in rows) or 1.0
                pct = 100 * float(row[column]) / top
                cells.append(f'<td><div class="bar" style="width:{pct:.0f}%"></div><span>{value}</span></td>')
            else:
                cells.append(f"<td>{html.escape(value)}</td>")
        mark = ' class="selected"' if selected in row.values() else ""
        body.append(f"<tr{mark}>{''.join(cells)}</tr>")
    more = f'<div class="more">{len(rows) - MAX_ROWS} more rows</div>' if len(rows) > MAX_ROWS else ""
    return f'<div class="grid"><table><tr>{head}</tr>{"".join(body)}</table>{more}</div>'


def _tiles(rows: list[dict[str, Any]]) -> str:
    tiles = "".join(
        f'<div class="tile"><div class="tile-title">{html.escape(str(r["run_kind"]))}</div>'
        f'<div class="tile-big">{r["Runs"]}</div>'
        f'<div class="tile-sub">{html.escape(str(r["Detail"]))}</div></div>'
        for r in rows
    )
    return f'<div class="tiles">{tiles}</div>'


def _chart(rows: list[dict[str, Any]], now: datetime, *, bars: bool) -> str:
    """Points at the bins the query returned, over the time range's bins (none where no row is)."""
    start = (now - DAY).replace(minute=0, second=0, microsecond=0, tzinfo=None)
    bins = int(DAY / GRAIN) + 1
    time_column = next(c for c, v in rows[0].items() if isinstance(v, datetime))
    numbers = [c for c, v in rows[0].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    labels = [c for c, v in rows[0].items() if isinstance(v, str)]
    series: dict[str, dict[int, float]] = {}
    for row in rows:
        index = round((row[time_column] - start) / GRAIN)
        for number in numbers:
            name = " · ".join(
                [*(str(row[label]) for label in labels), *([number] if len(numbers) > 1 else [])]
            )
            series.setdefault(name or number, {})[index] = float(row[number] or 0)
    width, height = 600, 150  # the plot; 10 px above it for the scale's label
    top = max(max(points.values()) for points in series.values()) or 1.0

    def x(index: int) -> float:
        return 10 + (width - 20) * index / (bins - 1)

    def y(value: float) -> float:
        return 14 + height - value / top * (height - 4)

    parts = [f'<svg viewBox="0 0 {width} {height + 40}" width="100%" height="{height + 40}">']
    for step in range(5):
        level = 10 + step * height / 4
        parts.append(f'<line x1="0" x2="{width}" y1="{level}" y2="{level}" stroke="#edebe9"/>')
    parts.append(
        f'<text x="{width}" y="8" fill="#605e5c" text-anchor="end">top of the scale: {top:,.4g}</text>'
    )
    for index in range(0, bins, 6):
        hour = (start + index * GRAIN).strftime("%H:%M")
        parts.append(
            f'<text x="{x(index):.0f}" y="{height + 22}" fill="#605e5c" text-anchor="middle">{hour}</text>'
        )
    for number, points in enumerate(series.values()):
        color = COLORS[number % len(COLORS)]
        ordered = sorted(points.items())
        if bars:
            for index, value in ordered:
                left, bar_top = x(index) - 6 + 4 * number, y(value)
                parts.append(
                    f'<rect x="{left:.1f}" y="{bar_top:.1f}" width="4" height="{14 + height - bar_top:.1f}"'
                    f' fill="{color}"/>'
                )
            continue
        if len(ordered) > 1:
            line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in ordered)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{line}"/>')
        parts += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="4" fill="{color}"/>' for i, v in ordered]
    parts.append("</svg>")
    legend = "".join(
        f'<span class="legend"><i style="background:{COLORS[n % len(COLORS)]}"></i>{html.escape(name)}</span>'
        for n, name in enumerate(series)
    )
    return "".join(parts) + f'<div class="legends">{legend}</div>'


def dashboard_page(outcome: Outcome) -> str:
    results, workbook = query_results(outcome)
    selected = outcome.root_run_id

    def body(item: dict[str, Any]) -> str:
        rows = results[item["name"]]
        if not rows:
            return '<div class="empty">The query returned no results.</div>'
        visualization = item["content"].get("visualization", "table")
        if visualization == "tiles":
            return _tiles(rows)
        if visualization in ("timechart", "barchart"):
            return _chart(rows, outcome.now, bars=visualization == "barchart")
        return _table(item, rows, selected)

    page = render_html(workbook, {}, real=body, selected=selected, banner=BANNER)
    extra = ".empty { color: #605e5c; padding: 8px 0; } .more { color: #605e5c; padding-top: 4px; }"
    return page.replace("</style>", extra + "</style>", 1)
