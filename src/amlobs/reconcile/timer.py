"""One reconciler pass: take the lease, then for each observed workspace run the pass steps in order
under one shared budget, each workspace and each step isolated from the others' failures.

The steps are "after-the-fact passes": each looks at a workspace's history and records what the live
path did not. :class:`PassStep` is the seam: the runs step (:mod:`.runs_step`) comes first, the partial
step (:mod:`.partial_step`, completing records that went out partial) next, the
schedules step after it; another step (per-run resource metrics, say) is one more object in the list
given to :class:`ReconcilerTimer`, spending the same budget and keeping its own position in
``WorkspaceState.positions``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from ..events import WorkspaceRef
from ..telemetry_unit import TelemetryUnit
from .health import Problem, classify, health_unit, pass_unit
from .options import ReconcileOptions
from .state import ReconcilerStore, WorkspaceState

logger = logging.getLogger("amlobs.reconcile")


class Telemetry(Protocol):
    def send(self, unit: TelemetryUnit) -> None: ...


def current_time() -> datetime:
    """The pass time (a module function so that a test can set the clock of a timer it cannot reach)."""
    return datetime.now(UTC)


@dataclass
class Budget:
    """What one pass may spend, over all workspaces and steps: runs recorded or looked at, and time."""

    max_runs: int
    deadline: float  # time.monotonic() value
    runs: int = 0
    clock: Callable[[], float] = time.monotonic

    def spend(self, runs: int) -> None:
        self.runs += runs

    @property
    def remaining_runs(self) -> int:
        return max(0, self.max_runs - self.runs)

    @property
    def out_of_time(self) -> bool:
        return self.clock() >= self.deadline

    @property
    def exhausted(self) -> bool:
        return self.runs >= self.max_runs or self.out_of_time


@dataclass
class WorkspacePass:
    """What a step gets: the workspace, its state (to read and advance), the shared budget, the pass
    time, and ``save`` to persist the state at a point where everything before it is recorded."""

    ws: WorkspaceRef
    state: WorkspaceState
    budget: Budget
    now: datetime
    pass_id: str
    save: Callable[[], None]


@dataclass
class StepReport:
    counts: dict[str, int | str] = field(default_factory=dict)


class PassStep(Protocol):
    #: a short name, on health events and as the prefix of its counts on the pass event
    name: str
    #: the role action the step needs, named by the health event when the service answers 401/403
    permission: str

    def run(self, work: WorkspacePass) -> StepReport: ...


@dataclass
class PassReport:
    pass_id: str
    ran: bool  # False: another instance held the lease
    workspaces: dict[str, dict[str, int | str]] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (workspace, step, code)


class ReconcilerTimer:
    def __init__(
        self,
        *,
        steps: Sequence[PassStep],
        store: ReconcilerStore,
        telemetry: Telemetry,
        options: ReconcileOptions,
        workspaces: Callable[[], list[WorkspaceRef]],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.steps = list(steps)
        self._store = store
        self._telemetry = telemetry
        self._options = options
        self._workspaces = workspaces
        self._clock = clock or (lambda: current_time())

    def run_pass(self) -> PassReport:
        pass_id = uuid.uuid4().hex
        if not self._store.acquire_lease(pass_id, self._options.lease_seconds):
            logger.info("reconciler: another instance holds the lease; this tick does nothing")
            return PassReport(pass_id, ran=False)
        report = PassReport(pass_id, ran=True)
        budget = Budget(
            max_runs=self._options.max_runs_per_pass,
            deadline=time.monotonic() + self._options.max_seconds_per_pass,
        )
        try:
            for ws in rotated(self._workspaces(), self._clock()):
                report.workspaces[ws.resource_id] = self._reconcile(ws, budget, pass_id, report)
        finally:
            self._store.release_lease(pass_id)
        return report

    def _initial_state(self, ws: WorkspaceRef, now: datetime) -> WorkspaceState:
        back = timedelta(days=self._options.backfill_days) or timedelta(seconds=self._options.overlap_seconds)
        return WorkspaceState(
            workspace_id=ws.resource_id, installed_at=now, listing_since=now - back, listing_started_at=now
        )

    def _reconcile(
        self, ws: WorkspaceRef, budget: Budget, pass_id: str, report: PassReport
    ) -> dict[str, int | str]:
        now = self._clock()
        started = time.monotonic()
        counts: dict[str, int | str] = {}
        try:
            state = self._store.load(ws.resource_id) or self._initial_state(ws, now)
        except Exception as error:  # storage down: nothing to do for this workspace this tick
            self._problem(ws, "state", classify(error, permission=""), pass_id, report)
            return counts
        work = WorkspacePass(ws, state, budget, now, pass_id, save=lambda: self._store.save(state))
        for step in self.steps:
            # Only time stops a step from starting: a step that looks at few runs (the schedules) still
            # runs while a long history fills the run budget, so a missed fire time is not held back.
            if budget.out_of_time:
                counts[f"{step.name}_skipped"] = "budget"
                continue
            try:
                result = step.run(work)
                counts.update({f"{step.name}_{k}": v for k, v in result.counts.items()})
            except Exception as error:
                logger.warning("reconciler step %s failed for %s: %s", step.name, ws.resource_id, error)
                self._problem(ws, step.name, classify(error, permission=step.permission), pass_id, report)
                counts[f"{step.name}_problem"] = classify(error, permission=step.permission).code
        try:
            work.save()
        except Exception as error:
            self._problem(ws, "state", classify(error, permission=""), pass_id, report)
        if state.watermark is not None:
            counts["lag_ms"] = int((now - state.watermark).total_seconds() * 1000)
        counts["history_complete"] = "true" if state.history_complete else "false"
        counts["duration_ms"] = int((time.monotonic() - started) * 1000)
        self._send(pass_unit(ws, pass_id, counts))
        return counts

    def _problem(
        self, ws: WorkspaceRef, step: str, problem: Problem, pass_id: str, report: PassReport
    ) -> None:
        report.problems.append((ws.resource_id, step, problem.code))
        self._send(health_unit(ws, step, problem, pass_id))

    def _send(self, unit: TelemetryUnit) -> None:
        try:
            self._telemetry.send(unit)
        except Exception as error:  # the next pass reports again; a lost pass event loses no run
            logger.warning("reconciler: could not send %s: %s", [i.name for i in unit.items], error)


def rotated(workspaces: list[WorkspaceRef], now: datetime) -> list[WorkspaceRef]:
    """The list started at another workspace each minute: when one workspace's history fills the run
    budget pass after pass, the others still get the first share on most passes."""
    if not workspaces:
        return workspaces
    offset = int(now.timestamp() // 60) % len(workspaces)
    return workspaces[offset:] + workspaces[:offset]


def counts_of(reports: Mapping[str, Mapping[str, int | str]], key: str) -> int:
    """The sum of one count over the workspaces of a pass (tests, benchmark)."""
    return sum(int(v) for r in reports.values() for k, v in r.items() if k == key and not isinstance(v, str))
