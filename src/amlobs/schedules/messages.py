"""The team's message of a missed or late schedule (``amlobs.notify``): one per schedule, fire time and
finding, posted through the processor's notifier, so the failure messages' webhook, claims and health
records apply unchanged."""

from __future__ import annotations

import logging

from ..events import WorkspaceRef
from ..failure.links import studio_run_url
from ..notify import Notice, Notifier, schedule_notice, schedule_notify_key
from ..status_time import iso_from_ms
from .judge import Judgement
from .model import Expectation

logger = logging.getLogger("amlobs.schedules")


def schedule_message(ws: WorkspaceRef, expectation: Expectation, verdict: Judgement) -> tuple[str, Notice]:
    """The key and the message of a "missed" or "late" judgement (pure)."""
    due = iso_from_ms(int(verdict.fire_time.timestamp() * 1000))
    status = "Missed" if verdict.verdict == "missed" else "Late"
    detail: str | None = None
    links: tuple[tuple[str, str], ...] = ()
    if verdict.verdict == "missed":
        detail = "No job started for this fire time within its grace period."
    elif verdict.job is not None:
        minutes = round((verdict.lateness_ms or 0) / 60_000)
        detail = f"Job {verdict.job.run_id} started {minutes} min after it was due."
        links = (("Open the job in studio", studio_run_url(ws, verdict.job.run_id)),)
    notice = schedule_notice(
        status=status,
        schedule=expectation.name,
        workspace=ws.workspace_name,
        due_utc=due,
        detail=detail,
        links=links,
    )
    return schedule_notify_key(ws.cache_key, expectation.name, due, status), notice


def notify_judgement(
    notifier: Notifier | None, ws: WorkspaceRef, expectation: Expectation, verdict: Judgement
) -> None:
    """Post the message of a missed or late fire time; never fails the pass (the notifier's own claim
    keeps it to one, its health record says when it could not be sent)."""
    if notifier is None or verdict.verdict not in ("missed", "late"):
        return
    key, notice = schedule_message(ws, expectation, verdict)
    try:
        notifier.send(key, notice, {"schedule_name": expectation.name[:200], "kind": "notification"})
    except Exception:
        logger.exception("notification of schedule %s failed unexpectedly", expectation.name)
