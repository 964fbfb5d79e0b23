"""Turn the raw benchmark result into the Markdown table and the JSON file."""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

# Targets from the issue: at most half the cold-start time, at most 60 % of the memory.
TARGET_TIME_RATIO = 0.5
TARGET_MEMORY_RATIO = 0.6
CALL_KINDS = ("token", "arm", "discovery", "run history", "artifacts", "ingestion", "storage", "other")


def classify(line: str, storage_ports: Iterable[int] = ()) -> str:
    """``host:port METHOD path [ms]`` → the kind of call (same rules for both stacks)."""
    hostport, _, path = line.split(" ")[:3]
    port = hostport.rsplit(":", 1)[-1]
    if port.isdigit() and int(port) in set(storage_ports):
        return "storage"
    lowered = path.lower()
    if "/oauth2/" in lowered or "openid-configuration" in lowered or "token" in lowered.rsplit("/", 1)[-1]:
        return "token"
    if "/track" in lowered:
        return "ingestion"
    if "/history/" in lowered:
        return "run history"
    if "/artifact/" in lowered:
        return "artifacts"
    if lowered.rstrip("/").endswith("/discovery") or "/discovery" in lowered:
        return "discovery"
    if lowered.startswith("/subscriptions"):
        return "arm"
    return "other"


def per_event_calls(lines: Sequence[str], events: int, storage_ports: Iterable[int] = ()) -> dict[str, float]:
    counts = Counter(classify(line, storage_ports) for line in lines)
    out = {kind: counts[kind] / events for kind in CALL_KINDS if counts[kind]}
    out["total"] = len(lines) / events
    return out


def per_event_http_ms(
    lines: Sequence[str], events: int, storage_ports: Iterable[int] = ()
) -> dict[str, float]:
    """Client-side milliseconds per event spent waiting on HTTP, by kind (lines with a time only)."""
    spent: Counter[str] = Counter()
    for line in lines:
        fields = line.split(" ")
        if len(fields) == 4:
            spent[classify(line, storage_ports)] += float(fields[3])
    out = {kind: spent[kind] / events for kind in CALL_KINDS if spent[kind]}
    out["total"] = sum(spent.values()) / events
    return out


def _fmt_ms(spent: dict[str, float]) -> str:
    parts = [f"{kind} {value:.1f}" for kind, value in spent.items() if kind != "total"]
    return f"{spent['total']:.1f} ms ({', '.join(parts)})"


def _fmt_calls(calls: dict[str, float]) -> str:
    parts = [f"{kind} {value:.3g}" for kind, value in calls.items() if kind != "total"]
    total = f"**{calls['total']:.3g}**"
    return f"{total} ({', '.join(parts)})" if parts else total


def _ratio(ours: float, baseline: float) -> float:
    return ours / baseline if baseline else float("nan")


def _met(ratio: float, target: float) -> str:
    return "yes" if ratio <= target else "**no**"


def _median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def render(result: dict[str, Any]) -> str:
    size = result["size"]
    cold = result["cold_start"]
    rows: list[tuple[str, str, str, str, str]] = []

    def row(metric: str, ours: str, baseline: str, ratio: str = "", target: str = "") -> None:
        rows.append((metric, ours, baseline, ratio, target))

    mib = 1024 * 1024
    s_ratio = _ratio(size["ours"]["bytes"], size["baseline"]["bytes"])
    row(
        "Installed size (site-packages, fresh venv)",
        f"{size['ours']['bytes'] / mib:.1f} MiB, {len(size['ours']['distributions'])} dists",
        f"{size['baseline']['bytes'] / mib:.1f} MiB, {len(size['baseline']['distributions'])} dists",
        f"{s_ratio:.2f}",
    )
    wall_o, wall_b = cold["ours"]["wall_s"]["median"], cold["baseline"]["wall_s"]["median"]
    w_ratio = _ratio(wall_o, wall_b)
    row(
        "Cold start: fresh interpreter + import + index, wall (median)",
        f"{wall_o * 1000:.0f} ms",
        f"{wall_b * 1000:.0f} ms",
        f"{w_ratio:.2f}",
        f"≤ {TARGET_TIME_RATIO} → {_met(w_ratio, TARGET_TIME_RATIO)}",
    )
    rss_o, rss_b = cold["ours"]["max_rss_mib"]["median"], cold["baseline"]["max_rss_mib"]["median"]
    m_ratio = _ratio(rss_o, rss_b)
    row(
        "Cold start: peak RSS of the process (median)",
        f"{rss_o:.1f} MiB",
        f"{rss_b:.1f} MiB",
        f"{m_ratio:.2f}",
        f"≤ {TARGET_MEMORY_RATIO} → {_met(m_ratio, TARGET_MEMORY_RATIO)}",
    )
    imp_o, imp_b = cold["ours"]["import_s"]["median"], cold["baseline"]["import_s"]["median"]
    row(
        "Cold start: import + index inside the process (median)",
        f"{imp_o * 1000:.0f} ms ({cold['ours']['modules']} modules)",
        f"{imp_b * 1000:.0f} ms ({cold['baseline']['modules']} modules)",
        f"{_ratio(imp_o, imp_b):.2f}",
    )
    bare = cold["bare"]
    row(
        "(reference) bare interpreter, same harness: wall / peak RSS",
        f"{bare['wall_s']['median'] * 1000:.0f} ms / {bare['max_rss_mib']['median']:.1f} MiB",
        "same",
    )
    if "events_ours" in result:
        _event_rows(result, row)
    header = "| metric | ours | baseline (2020 sample's stack) | ratio ours/baseline | target |"
    lines = [header, "| --- | --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    notes = _notes(result)
    return "\n".join([*lines, "", *notes] if notes else lines)


def _event_rows(result: dict[str, Any], row: Any) -> None:
    ours, base = result["events_ours"], result["events_baseline"]

    def first_stats(first: list[Any]) -> tuple[float, float, float]:
        return (
            _median(r.ready_s for r in first),
            _median(r.report["first_event_s"] for r in first),
            _median(r.max_rss_kib / 1024 for r in first),
        )

    fw_o, fe_o, fr_o = first_stats(ours["first"])
    fw_b, fe_b, fr_b = first_stats(base["first"])
    row(
        "First invocation: spawn → first event done (interpreter + import + index + event, median)",
        f"{fw_o * 1000:.0f} ms",
        f"{fw_b * 1000:.0f} ms",
        f"{_ratio(fw_o, fw_b):.2f}",
    )
    row(
        "First invocation: the first event alone (median)",
        f"{fe_o * 1000:.0f} ms",
        f"{fe_b * 1000:.0f} ms",
        f"{_ratio(fe_o, fe_b):.2f}",
    )
    mods_o = ours["first"][0].report.get("modules_after_first_event", "?")
    mods_b = base["first"][0].report.get("modules_after_first_event", "?")
    row("First invocation: modules loaded after the first event", f"{mods_o}", f"{mods_b}")
    row(
        "First invocation: peak RSS (median)",
        f"{fr_o:.1f} MiB",
        f"{fr_b:.1f} MiB",
        f"{_ratio(fr_o, fr_b):.2f}",
    )
    so, sb = ours["stats"], base["stats"]
    row(
        "Per event: latency median",
        f"{so['median_ms']:.1f} ms",
        f"{sb['median_ms']:.1f} ms",
        f"{_ratio(so['median_ms'], sb['median_ms']):.2f}",
    )
    row(
        "Per event: latency p99",
        f"{so['p99_ms']:.1f} ms",
        f"{sb['p99_ms']:.1f} ms",
        f"{_ratio(so['p99_ms'], sb['p99_ms']):.2f}",
    )
    row(
        "Per event: events/s on one worker (sequential)",
        f"{so['events_per_s']:.1f}",
        f"{sb['events_per_s']:.1f}",
        f"{_ratio(so['events_per_s'], sb['events_per_s']):.2f}",
    )
    row(
        "Per event: peak RSS after the steady run",
        f"{ours['steady'].max_rss_kib / 1024:.1f} MiB",
        f"{base['steady'].max_rss_kib / 1024:.1f} MiB",
        f"{_ratio(ours['steady'].max_rss_kib, base['steady'].max_rss_kib):.2f}",
    )
    co, cb = ours["calls_steady"], base["calls_steady"]
    aml_o, aml_b = _group(co, AML_KINDS), _group(cb, AML_KINDS)
    row(
        "HTTP calls per event to AML/Entra/ARM, steady state (measured)",
        _fmt_calls(aml_o),
        _fmt_calls(aml_b),
        f"{_ratio(aml_o['total'], aml_b['total']):.2f}",
    )
    row(
        "HTTP calls per event, all (AML + telemetry + storage), steady state (measured)",
        _fmt_calls(co),
        _fmt_calls(cb),
        f"{_ratio(co['total'], cb['total']):.2f}",
    )
    ho, hb = ours["http_ms_steady"], base["http_ms_steady"]
    row(
        "Per event: time in HTTP calls, client-side, all threads (request line → response headers)",
        _fmt_ms(ho),
        _fmt_ms(hb),
        f"{_ratio(ho['total'], hb['total']):.2f}",
    )
    to, tb = ours["telemetry_items_per_event"], base["telemetry_items_per_event"]
    row(
        "Telemetry envelopes received per event (steady run, incl. exports after exit)",
        f"{to:.2f}",
        f"{tb:.2f}",
        f"{_ratio(to, tb):.2f}",
    )
    fo, fb = ours["calls_first"], base["calls_first"]
    row(
        "HTTP calls, first event of a new process (measured)",
        _fmt_calls(fo),
        _fmt_calls(fb),
        f"{_ratio(fo['total'], fb['total']):.2f}",
    )


KEY_PACKAGES = {
    "azureml_core",
    "opencensus_ext_azure",
    "opencensus",
    "azure_functions",
    "azure_core",
    "azure_identity",
    "azure_monitor_opentelemetry",
    "azure_monitor_opentelemetry_exporter",
    "opentelemetry_sdk",
    "azure_data_tables",
    "azure_storage_blob",
    "msal",
}
AML_KINDS = ("token", "arm", "discovery", "run history", "artifacts")


def _group(calls: dict[str, float], kinds: Sequence[str]) -> dict[str, float]:
    picked = {kind: value for kind, value in calls.items() if kind in kinds}
    picked["total"] = sum(picked.values())
    return picked


def _notes(result: dict[str, Any]) -> list[str]:
    notes = []
    cold = result["cold_start"]
    for name in ("ours", "baseline"):
        attempts = cold[name]["network_attempts"]
        if attempts:
            notes.append(f"- {name}: imports tried to reach the network (refused): {', '.join(attempts)}")
    for name in ("ours", "baseline"):
        dists = result["size"][name]["distributions"]
        keys = [d for d in dists if d.lower().split("-")[0] in KEY_PACKAGES]
        notes.append(f"- {name} venv: {', '.join(keys)}")
    n = cold["ours"]["wall_s"]["n"]
    notes.append(
        f"- Cold start: {n} interleaved rounds after one discarded warm-up; "
        f"{result['machine']['cpus']} CPUs, Python {result['machine']['python']}."
    )
    if "events_ours" in result:
        notes.append(
            f"- Per event: {result['events_ours']['stats']['n']} events after the first, one at a time, "
            "each decoded by azure.functions' EventGridEventInConverter and passed to the user function."
        )
    return notes


def to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def latency_stats(latencies: Sequence[float], total: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "max_ms": ordered[-1] * 1000,
        "events_per_s": len(ordered) / total,
        "n": len(ordered),
    }
