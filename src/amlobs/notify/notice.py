"""What one message says, independent of where it goes (Teams card or Slack blocks): pure.

A :class:`Notice` is a title, a few labelled facts, an optional error text and links. The pipeline
failure notice is built from the run's summary (its root cause: :mod:`amlobs.failure`); the reconciler's
missed or late schedules build theirs the same way and hand them to
:meth:`amlobs.notify.notifier.Notifier.send`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import run_facts as facts
from ..failure import trace_query_url

MAX_DETAIL_CHARS = 1024


@dataclass(frozen=True)
class Notice:
    title: str
    status: str  # "Failed", "Canceled", "Missed", "Late": a colour for the card, a word for the text
    facts: tuple[tuple[str, str], ...] = ()
    detail: str | None = None  # an error message, shown as preformatted text
    links: tuple[tuple[str, str], ...] = ()  # (label, https URL)

    @property
    def fallback_text(self) -> str:
        """One line for notifications and clients that show no card."""
        return self.title


def duration_text(milliseconds: int | None) -> str | None:
    if milliseconds is None or milliseconds < 0:
        return None
    seconds = round(milliseconds / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"


def _capped(text: str | None, limit: int = MAX_DETAIL_CHARS) -> str | None:
    if text and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def pipeline_failure_notice(
    summary: Mapping[str, Any], app_insights_resource_id: str | None = None
) -> Notice:
    """The message of a failed or canceled pipeline run, from its summary (values may be str or int)."""

    def text(key: str) -> str | None:
        value = summary.get(key)
        return facts.text(value) if isinstance(value, str) else (str(value) if value is not None else None)

    status = text("status") or "Failed"
    pipeline = text("experimentName") or text("run_id") or "pipeline"
    step = text("root_cause_step_path") or text("root_cause_step_name")
    chain = text("root_cause_error_code_chain") or text("root_cause_error_code")
    category = text("root_cause_error_category")
    if category and chain and not chain.startswith(category):
        chain = f"{category} > {chain}"
    cost = text("estimated_cost")
    rows: list[tuple[str, str | None]] = [
        ("Pipeline", pipeline),
        ("Run", text("run_id")),
        ("Workspace", f"{text('amlWorkSpace')} ({text('resourceGroup')})" if text("amlWorkSpace") else None),
        ("Status", status),
        ("Duration", duration_text(_int(summary.get("wall_time_ms")))),
        ("Failing step", step or text("root_cause_note")),
        ("Error", chain or category),
        ("Steps", _steps_text(summary)),
        ("Estimated cost so far", f"{cost} {text('cost_currency') or ''}".strip() if cost else None),
    ]
    links: list[tuple[str, str | None]] = [
        ("Failing step in studio", text("root_cause_step_studio_url")),
        ("Step logs (user_logs/std_log.txt)", text("root_cause_step_logs_url")),
        ("Pipeline run in studio", text("studio_url")),
    ]
    operation_id = text("trace_operation_id")
    if app_insights_resource_id and operation_id:
        links.append(
            (
                "Trace in Application Insights",
                trace_query_url(app_insights_resource_id, operation_id, _int(summary.get("end_time_utc_ms"))),
            )
        )
    step_label = f": step {step}" if step else ""
    return Notice(
        title=f"Pipeline {pipeline} {status.lower()}{step_label}",
        status=status,
        facts=tuple((label, value) for label, value in rows if value),
        detail=_capped(text("root_cause_error_message")),
        links=tuple((label, url) for label, url in links if url),
    )


def _steps_text(summary: Mapping[str, Any]) -> str | None:
    total = _int(summary.get("step_count"))
    if total is None:
        return None
    parts = [f"{total} steps"]
    for key, word in (
        ("failed_step_count", "failed"),
        ("canceled_step_count", "canceled"),
        ("reused_step_count", "reused"),
    ):
        count = _int(summary.get(key))
        if count:
            parts.append(f"{count} {word}")
    return ", ".join(parts)


def schedule_notice(
    *,
    status: str,
    schedule: str,
    workspace: str,
    due_utc: str,
    detail: str | None = None,
    links: tuple[tuple[str, str], ...] = (),
) -> Notice:
    """The message of a scheduled pipeline that did not run (``status`` "Missed") or ran late ("Late").

    For the reconciler: build it, then ``Notifier.send(schedule_notify_key(...), notice)``.
    """
    return Notice(
        title=f"Schedule {schedule} {status.lower()}: due {due_utc}",
        status=status,
        facts=tuple(
            (k, v) for k, v in (("Schedule", schedule), ("Workspace", workspace), ("Due", due_utc)) if v
        ),
        detail=_capped(detail),
        links=links,
    )


def schedule_notify_key(workspace_key: str, schedule: str, due_utc: str, status: str) -> str:
    """One message per schedule, due time and finding, however often the reconciler finds it."""
    return f"notify-schedule|{workspace_key}|{schedule}|{due_utc}|{status.lower()}"
