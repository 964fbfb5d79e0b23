"""The text ``scripts/try.sh`` prints: the records ingestion received as a table, the errors, the pipeline
summary, the duplicate and the trace, all read from what ingestion received (an ``Outcome``)."""

from __future__ import annotations

from typing import Any

from try_run import Outcome

from tests.trace_scenario import spans_from, trace_of

COLUMNS = ("run", "step", "status", "duration", "queue", "compute", "cost", "error")
ERROR_WIDTH = 400  # characters of an error message shown (a record keeps up to 4,096)


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
    """One row per record: the columns of ``COLUMNS``, read from the record's keys (docs/try-it.md)."""
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
                _cost(r),
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


def _cost(record: dict[str, str]) -> str:
    if not record.get("estimated_cost"):
        return "-"
    return f"{float(record['estimated_cost']):.4f} {record.get('cost_currency', '')}"


def error_lines(records: list[dict[str, str]]) -> list[str]:
    """The errors of the runs that failed, whole but for their whitespace (the table shows the code)."""
    lines = []
    for r in records:
        if r.get("status") == "Failed" and r.get("error_message"):
            message = " ".join(r["error_message"].split())
            message = message if len(message) <= ERROR_WIDTH else message[: ERROR_WIDTH - 1] + "…"
            name = r.get("step_name") or r.get("display_name") or ""
            chain = r.get("error_code_chain") or r.get("error_code")
            lines.append(f"  {r['run_id'][:8]} {name}: {chain}: {message}")
    return ["Errors:", *lines] if lines else []


def summary_lines(outcome: Outcome, records: list[dict[str, str]]) -> list[str]:
    """The delivery and the duplicate, the pipeline summaries, the trace."""
    duplicate = outcome.duplicate["data"]
    copies = sum(
        1 for r in records if r["run_id"] == duplicate["runId"] and r.get("status") == duplicate["runStatus"]
    )
    lines = [
        f"Delivered {len(outcome.sent)} events in shuffled order, one of them twice "
        f"({duplicate['runId'][:8]} {duplicate['runStatus']}): {len(records)} run statuses recorded, "
        f"the duplicate {'once' if copies == 1 else f'{copies} times'} "
        "(its claim in Table storage, Azurite).",
    ]
    if outcome.failures:
        lines.append(
            f"{len(outcome.failures)} invocation(s) failed and were delivered again, as Event Grid retries "
            f"(the first: {outcome.failures[0]})."
        )
    for s in outcome.events("AmlPipelineRunSummary"):
        cost = _cost(s) if s.get("estimated_cost") else "none"
        lines.append(
            f"Pipeline summary {s['run_id'][:8]} ({s.get('status')}): {s.get('step_count')} steps, "
            f"{s.get('failed_step_count')} failed, {s.get('reused_step_count')} reused, "
            f"{s.get('sub_pipeline_count')} sub-pipeline; wall time {_seconds(s.get('wall_time_ms'))}; "
            f"slowest step {s.get('slowest_step_name')}; estimated cost {cost}."
        )
    trace = trace_of(spans_from(outcome.envelopes), outcome.root_run_id)
    lines.append(
        f"Trace {trace[0].trace_id}: {sum(1 for s in trace if s.kind == 'request')} request, "
        f"{sum(1 for s in trace if s.kind == 'dependency')} dependencies (runs and their queue times)."
    )
    return lines


def report(outcome: Outcome) -> str:
    """Everything printed about the run (the pictures and the network aside)."""
    records = outcome.events("AmlRunStatusChanged")
    return "\n".join(
        [
            "One SDK v2 pipeline run through function_app, read back from what ingestion received:",
            "",
            format_table(table_rows(records)),
            "",
            "(Each record is enriched from run history when its event is processed: these runs had already",
            " finished, so their Running records carry the final times, cost aside, and error.)",
            *error_lines(records),
            *summary_lines(outcome, records),
        ]
    )
