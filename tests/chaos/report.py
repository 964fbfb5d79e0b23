"""The figures table of chaos runs (Markdown), as the README's reliability section shows it."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from tests.chaos.faults import AML_FAULTS, INGESTION_FAULTS, OUTAGES

if TYPE_CHECKING:
    from tests.chaos.simulator import ChaosResult

ROWS: tuple[tuple[str, str], ...] = (
    ("(run, status) keys", "keys"),
    ("events published (RunStatusChanged + RunCompleted)", "published"),
    ("deliveries (attempts), of which failed", "deliveries"),
    ("duplicate deliveries by Event Grid", "duplicate_deliveries"),
    ("faults injected", "faults"),
    ("dead-lettered deliveries", "deadlettered"),
    ("missing before replay / recovered by replay", "lost_before_replay"),
    ("**lost**", "lost"),
    ("**duplicated** keys (extra records)", "duplicated_keys"),
    ("extra records counted as maybe delivered / not counted", "counted_extra_records"),
    ("keys whose copies **disagree** (records; summaries)", "disagreeing_keys"),
    ("records of existing runs left **unenriched** (first copy unenriched)", "unenriched_keys"),
    ("duplicated pipeline summaries (counted)", "duplicated_summaries"),
    ("duration metric points stored / due", "duration_points_stored"),
    ("finished steps / without estimated cost; summaries without", "unestimated_steps"),
    ("run spans due / **lost**", "spans_lost"),
    ("**duplicated** spans (counted as maybe delivered)", "duplicated_spans"),
    ("pipeline runs split over more than one trace", "traces_split"),
    ("time: deliveries + replay", "delivery_seconds"),
)


def _faults(counts: Counter[str]) -> str:
    order = [*AML_FAULTS, *INGESTION_FAULTS, *OUTAGES]
    parts = [f"{name} {counts[name]}" for name in order if counts.get(name)]
    total = sum(counts.values())
    return f"{total}: " + ", ".join(parts) if parts else "0"


def cell(result: ChaosResult, field: str) -> str:
    f = result.figures
    if field == "deliveries":
        return f"{f.deliveries} / {f.failed_deliveries}"
    if field == "faults":
        return _faults(f.faults)
    if field == "lost_before_replay":
        return f"{f.lost_before_replay} / {f.recovered_by_replay}"
    if field == "duplicated_keys":
        return f"{f.duplicated_keys} ({f.extra_records})"
    if field == "counted_extra_records":
        return f"{f.counted_extra_records} / {f.uncounted_extra_records}"
    if field == "disagreeing_keys":
        return f"{f.disagreeing_keys}; {f.disagreeing_summaries}"
    if field == "unenriched_keys":
        return f"{f.unenriched_keys} ({f.unenriched_records})"
    if field == "duplicated_summaries":
        return f"{f.duplicated_summaries} ({f.counted_duplicated_summaries})"
    if field == "duration_points_stored":
        return f"{f.duration_points_stored} / {f.duration_points_expected}"
    if field == "unestimated_steps":
        return f"{f.finished_steps} / {f.unestimated_steps}; {f.unestimated_summaries}"
    if field == "spans_lost":
        return f"{f.spans_expected} / {f.spans_lost}"
    if field == "duplicated_spans":
        return f"{f.duplicated_spans} ({f.counted_duplicated_spans})"
    if field == "delivery_seconds":
        return f"{f.delivery_seconds:.0f} s + {f.replay_seconds:.0f} s"
    return str(getattr(f, field))


def markdown_table(results: list[tuple[str, ChaosResult]]) -> str:
    header = "| | " + " | ".join(f"faults: {name}" for name, _ in results) + " |"
    lines = [header, "| --- |" + " --- |" * len(results)]
    for label, field in ROWS:
        lines.append(f"| {label} | " + " | ".join(cell(result, field) for _, result in results) + " |")
    causes: Counter[str] = Counter()
    for _, result in results:
        causes.update(result.figures.causes)
    if causes:
        lines.append("")
        lines.append("| extra records by cause | " + " | ".join(name for name, _ in results) + " |")
        lines.append("| --- |" + " --- |" * len(results))
        for cause, _count in causes.most_common():
            row = []
            for _, result in results:
                n = result.figures.causes.get(cause, 0)
                counted = result.figures.counted_causes.get(cause, 0)
                row.append(f"{n}" + (f" ({counted} counted)" if counted else ""))
            lines.append(f"| {cause} | " + " | ".join(row) + " |")
    return "\n".join(lines)
