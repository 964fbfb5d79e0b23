"""Runs in the AML fake for the reconciler's tests, and the timer invoked as the host does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.aml_data import FakeWorkspace, run_shape
from tests.integration.host import invoke

TIMER_FUNCTION = "aml_reconciler"
# The payload the host hands a timer trigger (azure.functions TimerRequestConverter reads IsPastDue).
TIMER_PAYLOAD = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False}


def tick() -> None:
    """One timer invocation through function_app.app."""
    invoke(json.dumps(TIMER_PAYLOAD), function_name=TIMER_FUNCTION)


def add_job(
    ws: FakeWorkspace,
    run_id: str,
    *,
    status: str = "Completed",
    created: datetime,
    minutes: float = 10,
    experiment: str = "nightly",
    display: str | None = None,
    run_type: str = "azureml.PipelineRun",
    started: datetime | None = None,
) -> dict[str, Any]:
    """A top-level job (no parent) created at ``created``; finished ``minutes`` after it started when
    its status is terminal."""
    exp = ws.add_experiment(experiment)
    start = started or created + timedelta(seconds=30)
    end = start + timedelta(minutes=minutes) if status in ("Completed", "Failed", "Canceled") else None
    run = run_shape(
        run_id,
        exp["experimentId"],
        run_type=run_type,
        status=status,
        created=created,
        start=start if status not in ("NotStarted", "Queued") else None,
        end=end,
        parent=None,
        root=run_id,
        properties={"azureml.runsource": run_type},
        tags={},
        target=None,
        display=display or run_id,
        compute_type=None,
    )
    run["experimentName"] = experiment
    return ws.add_run(run)


def set_status(ws: FakeWorkspace, run_id: str, status: str, at: datetime) -> None:
    from tests.fakes.aml_data import details_from_run, iso

    run = ws.runs[run_id]
    run["status"] = status
    if status in ("Completed", "Failed", "Canceled"):
        run["endTimeUtc"] = iso(at)
    run["lastModifiedUtc"] = iso(at)
    ws.details[run_id] = details_from_run(run)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
