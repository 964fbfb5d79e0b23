"""One expected fire time against the jobs that ran for it. Pure.

How a job is tied to its schedule: AML names the jobs a schedule creates after the schedule, and
the official way to find them is by that name (Azure/azureml-examples ``cli/schedules/schedule.sh``,
"query triggered jobs from schedule": ``az ml job list --query "[?contains(display_name,
'<schedule name>')]"``); the docs spell the display name ``<schedule_name>-YYYYMMDDThhmmssZ``. A job
matches a schedule when its display name starts with ``<schedule name>-``; a declared expectation
matches the runs of its experiment. The job for a fire time is the first matching top-level job
created at or after it and before the next fire time (a minute's slack before, for clocks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from ..records import parse_utc_ms
from .model import Expectation

Verdict = Literal["pending", "on_time", "late", "missed", "running"]
_SLACK = timedelta(minutes=1)
_TERMINAL = frozenset({"Completed", "Failed", "Canceled"})


@dataclass(frozen=True)
class Job:
    run_id: str
    created: datetime
    started: datetime | None
    ended: datetime | None
    status: str


@dataclass(frozen=True)
class Judgement:
    fire_time: datetime
    verdict: Verdict
    job: Job | None = None
    lateness_ms: int | None = None


def _moment(value: object) -> datetime | None:
    from datetime import UTC

    ms = parse_utc_ms(value)
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


def job_of(run: Mapping[str, Any]) -> Job | None:
    created = _moment(run.get("createdUtc"))
    if created is None or not run.get("runId"):
        return None
    return Job(
        str(run["runId"]),
        created,
        _moment(run.get("startTimeUtc")),
        _moment(run.get("endTimeUtc")),
        str(run.get("status") or ""),
    )


def matches(expectation: Expectation, run: Mapping[str, Any]) -> bool:
    if run.get("parentRunId"):
        return False  # a step of a pipeline, not the job the schedule created
    if expectation.job_display_prefix is not None:
        name = run.get("displayName") or run.get("name") or ""
        return isinstance(name, str) and name.startswith(expectation.job_display_prefix)
    return expectation.experiment is not None and run.get("experimentName") == expectation.experiment


def judge(
    fire_time: datetime, next_fire: datetime | None, jobs: Sequence[Job], now: datetime, grace: timedelta
) -> Judgement:
    window_end = next_fire - _SLACK if next_fire is not None else None
    candidates = [
        j for j in jobs if j.created >= fire_time - _SLACK and (window_end is None or j.created < window_end)
    ]
    job = min(candidates, key=lambda j: j.created) if candidates else None
    if job is None:
        return Judgement(fire_time, "missed" if now > fire_time + grace else "pending")
    began = job.started or (job.created if job.status in _TERMINAL else None)
    if began is None:
        # created, not started: late once the grace is over, judged when it starts (or ends)
        return Judgement(fire_time, "pending", job)
    lateness = began - fire_time
    if lateness > grace:
        return Judgement(fire_time, "late", job, int(lateness.total_seconds() * 1000))
    if job.status not in _TERMINAL:
        return Judgement(fire_time, "running", job)
    return Judgement(fire_time, "on_time", job, max(0, int(lateness.total_seconds() * 1000)))


def duration_p95(durations_ms: Sequence[int], minimum_runs: int = 3) -> timedelta | None:
    """The nearest-rank p95 of finished jobs' durations; None with fewer than ``minimum_runs``."""
    ordered = sorted(durations_ms)
    if len(ordered) < minimum_runs:
        return None
    rank = max(1, -(-95 * len(ordered) // 100))
    return timedelta(milliseconds=ordered[rank - 1])
