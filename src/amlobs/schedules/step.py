"""The schedules step of a reconciler pass: every AML schedule of the workspace and every declared
expectation, each fire time since the last one judged, judged once (claims) against the jobs.

Events (custom events, workspace keys as the run records'): ``AmlScheduleMissed`` (no job past the
grace period), ``AmlScheduleLate`` (the job started after it: ``lateness_ms``), ``AmlScheduleOverdue``
(still running past the p95 of its recent runs × a factor), ``AmlScheduleInvalid`` (a schedule or an
expectation the step cannot evaluate, named; the others go on). Only fire times after the reconciler
first saw the workspace are judged: history never raises these. A missed or late fire time also sends
the team one message when a webhook is configured (:mod:`.messages`, ``amlobs.notify``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..events import WorkspaceRef
from ..processor import EventProcessor
from ..reconcile.health import workspace_dimensions
from ..reconcile.timer import StepReport, WorkspacePass
from ..settings import SettingsError
from ..status_time import iso_from_ms
from ..telemetry_unit import TelemetryUnit, stringify
from .fire_times import fire_times
from .judge import Job, Judgement, duration_p95, job_of, judge, matches
from .messages import notify_judgement
from .model import SCHEDULES_PERMISSION, Expectation, ScheduleError, parse_expectation, parse_schedule

logger = logging.getLogger("amlobs.schedules")

EVENT_MISSED = "AmlScheduleMissed"
EVENT_LATE = "AmlScheduleLate"
EVENT_OVERDUE = "AmlScheduleOverdue"
EVENT_INVALID = "AmlScheduleInvalid"
EVENT_JUDGED = "AmlScheduleJudged"
EXPECTATIONS_SETTING = "AML_OBS_EXPECTED_RUNS"


class ScheduleReader(Protocol):
    def iter_schedules(self, ws: WorkspaceRef) -> Iterator[dict[str, Any]]: ...
    def iter_runs(
        self, ws: WorkspaceRef, *, since: datetime, continuation_token: str | None = None
    ) -> Iterator[Any]: ...


@dataclass(frozen=True)
class ScheduleOptions:
    grace_seconds: float = 900.0
    overdue_factor: float = 2.0
    expectations: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ScheduleOptions:
        from ..reconcile.options import _number

        env = os.environ if env is None else env
        raw = env.get(EXPECTATIONS_SETTING, "").strip()
        items: list[Mapping[str, Any]] = []
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise SettingsError(f"{EXPECTATIONS_SETTING} is not JSON (a list of objects)") from None
            if not isinstance(parsed, list) or not all(isinstance(i, dict) for i in parsed):
                raise SettingsError(f"{EXPECTATIONS_SETTING} must be a JSON list of objects")
            items = parsed
        return cls(
            grace_seconds=60 * _number(env, "AML_OBS_SCHEDULE_GRACE_MINUTES", 15, minimum=0, maximum=1440),
            overdue_factor=_number(env, "AML_OBS_SCHEDULE_OVERDUE_FACTOR", 2, minimum=1, maximum=100),
            expectations=tuple(items),
        )


def _iso(moment: datetime) -> str:
    return iso_from_ms(int(moment.timestamp() * 1000))


class SchedulesStep:
    name = "schedules"
    permission = SCHEDULES_PERMISSION

    def __init__(self, processor: EventProcessor, reader: ScheduleReader, options: ScheduleOptions) -> None:
        self._processor = processor
        self._reader = reader
        self._options = options

    def run(self, work: WorkspacePass) -> StepReport:
        counts = {"judged": 0, "on_time": 0, "missed": 0, "late": 0, "overdue": 0, "invalid": 0}
        expectations = self._expectations(work, counts)
        jobs: list[dict[str, Any]] | None = None
        for expectation in expectations:
            key = f"schedule:{expectation.kind}:{expectation.name}"
            after = _parse(work.state.positions.get(key)) or work.state.installed_at
            upcoming = fire_times(expectation, after, work.now + timedelta(days=2))
            due = [f for f in upcoming if f <= work.now]
            if not due:
                continue
            if jobs is None:  # one listing per workspace and pass, only when something is due
                earliest = min(due[0], work.now) - timedelta(minutes=1)
                jobs = [run for page in self._reader.iter_runs(work.ws, since=earliest) for run in page.runs]
            position = self._judge_all(work, expectation, upcoming, due, jobs, counts)
            if position is not None:
                work.state.positions[key] = _iso(position)
        work.save()
        return StepReport(dict(counts))

    def _expectations(self, work: WorkspacePass, counts: dict[str, int]) -> list[Expectation]:
        found: list[Expectation] = []
        for resource in self._reader.iter_schedules(work.ws):
            try:
                found.append(parse_schedule(resource))
            except ScheduleError as bad:
                self._invalid(work, "schedule", str(resource.get("name") or "?"), resource, str(bad), counts)
        for item in self._options.expectations:
            wanted = item.get("workspace")
            if wanted and str(wanted).lower() not in (work.ws.workspace_name.lower(), work.ws.cache_key):
                continue
            try:
                found.append(parse_expectation(item))
            except ScheduleError as bad:
                self._invalid(work, "expectation", str(item.get("name") or "?"), item, str(bad), counts)
        return found

    def _judge_all(
        self,
        work: WorkspacePass,
        expectation: Expectation,
        upcoming: list[datetime],
        due: list[datetime],
        runs: list[dict[str, Any]],
        counts: dict[str, int],
    ) -> datetime | None:
        grace = timedelta(
            seconds=expectation.grace_seconds
            if expectation.grace_seconds is not None
            else self._options.grace_seconds
        )
        jobs = [j for j in (job_of(r) for r in runs if matches(expectation, r)) if j is not None]
        # The usual duration: the schedule's last finished jobs, kept with its position (the listing of
        # one pass covers only the fire times now due).
        history_key = f"durations:{expectation.kind}:{expectation.name}"
        durations = _durations(work.state.positions.get(history_key))
        usual = duration_p95(durations)
        position: datetime | None = None
        for index, fire in enumerate(due):
            following = upcoming[index + 1] if index + 1 < len(upcoming) else None
            verdict = judge(fire, following, jobs, work.now, grace)
            counts["judged"] += 1
            if verdict.verdict in ("missed", "late", "on_time"):
                following_due = next((f for f in upcoming if f > work.now), None)
                if self._send(work, expectation, verdict, EVENT_JUDGED, grace, {"next": following_due}):
                    counts[verdict.verdict] = counts.get(verdict.verdict, 0) + 1
                # Whether or not this pass sent the event: a pass that died before saving its position
                # judges the fire time again, and the message's own claim keeps it to one.
                notify_judgement(self._processor.notifier, work.ws, expectation, verdict)
            if verdict.verdict == "running" and verdict.job is not None:
                self._overdue(work, expectation, verdict, usual, grace, counts)
            if verdict.verdict in ("pending", "running"):
                break  # judged again next pass; nothing after it advances the position
            finished = verdict.job
            if finished and finished.status == "Completed" and finished.started and finished.ended:
                durations = [*durations, int((finished.ended - finished.started).total_seconds() * 1000)]
                durations = durations[-_KEPT_DURATIONS:]
                work.state.positions[history_key] = ",".join(str(d) for d in durations)
            position = fire
        return position

    def _overdue(
        self,
        work: WorkspacePass,
        expectation: Expectation,
        verdict: Judgement,
        usual: timedelta | None,
        grace: timedelta,
        counts: dict[str, int],
    ) -> None:
        job = verdict.job
        if usual is None or job is None or job.started is None:
            return
        limit = usual * self._options.overdue_factor
        if work.now - job.started > limit and self._send(
            work, expectation, verdict, EVENT_OVERDUE, grace,
            {"usual_duration_p95_ms": int(usual.total_seconds() * 1000),
             "overdue_after_ms": int(limit.total_seconds() * 1000)},
        ):  # fmt: skip
            counts["overdue"] += 1

    def _send(
        self,
        work: WorkspacePass,
        expectation: Expectation,
        verdict: Judgement,
        name: str,
        grace: timedelta,
        extra: Mapping[str, object] | None = None,
    ) -> bool:
        fire_ms = int(verdict.fire_time.timestamp() * 1000)
        unit = schedule_unit(work.ws, expectation, verdict, name, grace, extra)
        key = f"{name}|{work.ws.cache_key}|{expectation.kind}|{expectation.name}|{fire_ms}"
        return self._processor.send_once(key, {"schedule_name": expectation.name[:200]}, unit)

    def _invalid(
        self,
        work: WorkspacePass,
        kind: str,
        name: str,
        definition: Mapping[str, Any],
        problem: str,
        counts: dict[str, int],
    ) -> None:
        text = json.dumps(definition, sort_keys=True, default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        unit = invalid_unit(work.ws, kind, name, problem, digest)
        logger.warning("%s %s of %s cannot be evaluated: %s", kind, name, work.ws.workspace_name, problem)
        # once per definition: a fixed schedule (another digest) is judged again, a broken one not re-sent
        if self._processor.send_once(f"{EVENT_INVALID}|{work.ws.cache_key}|{kind}|{name}|{digest}", {}, unit):
            counts["invalid"] += 1


def schedule_unit(
    ws: WorkspaceRef,
    expectation: Expectation,
    verdict: Judgement,
    name: str,
    grace: timedelta,
    extra: Mapping[str, object] | None = None,
) -> TelemetryUnit:
    """The events of one judgement (pure): ``AmlScheduleJudged`` with Missed/Late beside it, or Overdue."""
    fire_ms = int(verdict.fire_time.timestamp() * 1000)
    job: Job | None = verdict.job
    extra = dict(extra or {})
    following = extra.pop("next", None)
    happened = verdict.fire_time + grace if verdict.verdict == "missed" else (job.started if job else None)
    dimensions = stringify(
        {
            **workspace_dimensions(ws),
            "schedule_name": expectation.name,
            "schedule_kind": expectation.kind,
            "expected_time": iso_from_ms(fire_ms),
            "expected_time_utc_ms": fire_ms,
            "grace_ms": int(grace.total_seconds() * 1000),
            "time_zone": expectation.time_zone,
            "expression": expectation.expression,
            "run_id": job.run_id if job else None,
            "lateness_ms": verdict.lateness_ms if verdict.verdict == "late" else None,
            "status_time": _iso(happened) if happened else iso_from_ms(fire_ms),
            "record_source": "reconcile",
            **extra,
        }
    )
    unit = TelemetryUnit()
    if name == EVENT_JUDGED:
        # Every judged fire time (the workbook's on-time %), and the alertable news beside it, in
        # one unit under one claim: both are sent, or neither.
        outcome = {"on_time": "on_time", "late": "late", "missed": "missed"}[verdict.verdict]
        next_time = _iso(following) if isinstance(following, datetime) else None
        unit.add_event(
            EVENT_JUDGED,
            {**dimensions, **stringify({"outcome": outcome, "next_expected_time": next_time})},
        )
        if verdict.verdict != "on_time":
            unit.add_event(EVENT_MISSED if verdict.verdict == "missed" else EVENT_LATE, dimensions)
    else:
        unit.add_event(name, dimensions)
    return unit


def invalid_unit(ws: WorkspaceRef, kind: str, name: str, problem: str, digest: str) -> TelemetryUnit:
    """``AmlScheduleInvalid``: the schedule or expectation named, and why it cannot be evaluated."""
    unit = TelemetryUnit()
    unit.add_event(
        EVENT_INVALID,
        stringify(
            {
                **workspace_dimensions(ws),
                "schedule_name": name,
                "schedule_kind": kind,
                "problem": problem,
                "definition_sha256": digest,
            }
        ),
    )
    return unit


_KEPT_DURATIONS = 20


def _durations(value: str | None) -> list[int]:
    return [int(part) for part in (value or "").split(",") if part.strip().isdigit()]


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
