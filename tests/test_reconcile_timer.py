"""The pass itself, with stand-in steps: budget sharing, isolation, rotation, the lease."""

from __future__ import annotations

from datetime import UTC, datetime

from amlobs.events import WorkspaceRef
from amlobs.reconcile.options import ReconcileOptions
from amlobs.reconcile.state import MemoryReconcilerStore
from amlobs.reconcile.timer import ReconcilerTimer, StepReport, WorkspacePass, rotated
from amlobs.telemetry import RecordingTelemetry

WORKSPACES = [WorkspaceRef("s", "rg", f"ws{i}") for i in range(3)]
NOW = datetime(2026, 12, 8, 6, 0, tzinfo=UTC)


class Greedy:
    """A history step that spends the whole run budget on the first workspace it sees."""

    name = "runs"
    permission = "runs/read"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def run(self, work: WorkspacePass) -> StepReport:
        if work.budget.exhausted:
            return StepReport({"skipped": 1})
        self.seen.append(work.ws.workspace_name)
        work.budget.spend(work.budget.remaining_runs)
        return StepReport({"recorded": 1})


class Schedules:
    name = "schedules"
    permission = "schedules/read"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def run(self, work: WorkspacePass) -> StepReport:
        self.seen.append(work.ws.workspace_name)
        if work.ws.workspace_name == "ws1":
            raise RuntimeError("a bug in one workspace's schedules")
        return StepReport({"judged": 1})


def timer(steps: list[object], telemetry: RecordingTelemetry) -> ReconcilerTimer:
    return ReconcilerTimer(
        steps=steps,  # type: ignore[arg-type]
        store=MemoryReconcilerStore(),
        telemetry=telemetry,
        options=ReconcileOptions(max_runs_per_pass=10),
        workspaces=lambda: list(WORKSPACES),
        clock=lambda: NOW,
    )


def test_a_full_run_budget_does_not_hold_back_the_schedules_and_one_failure_stays_in_its_workspace() -> None:
    greedy, schedules, telemetry = Greedy(), Schedules(), RecordingTelemetry()
    report = timer([greedy, schedules], telemetry).run_pass()
    assert len(greedy.seen) == 1  # the run budget went to one workspace
    assert sorted(schedules.seen) == ["ws0", "ws1", "ws2"]  # the schedules of all three were judged
    assert report.problems == [(WORKSPACES[1].resource_id, "schedules", "failed")]
    passes = [u.events("AmlReconcilerPass")[0] for u in telemetry.units if u.events("AmlReconcilerPass")]
    assert len(passes) == 3


def test_each_minute_starts_the_pass_at_another_workspace() -> None:
    starts = {rotated(WORKSPACES, NOW.replace(minute=m))[0].workspace_name for m in range(3)}
    assert starts == {"ws0", "ws1", "ws2"}
    assert rotated([], NOW) == []


def test_a_second_instance_does_nothing_while_the_lease_is_held() -> None:
    store = MemoryReconcilerStore()
    assert store.acquire_lease("other-instance", 300)
    first = timer([Greedy()], RecordingTelemetry())
    first._store = store
    assert first.run_pass().ran is False
