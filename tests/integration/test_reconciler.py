"""The reconciler's timer function through ``function_app.app``, against the AML fake and Azurite."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from amlobs.reconcile.options import ReconcileOptions
from amlobs.reconcile.runs_step import RunsStep
from amlobs.reconcile.runtime import reset_reconciler
from amlobs.reconcile.state import MemoryReconcilerStore
from amlobs.reconcile.timer import ReconcilerTimer
from amlobs.reconcile.workspaces import observed_workspaces
from amlobs.runtime import get_processor
from tests.fakes.aml_api import Fault
from tests.integration.conftest import App, sample_event
from tests.integration.host import trigger_binding
from tests.integration.reconcile_helpers import add_job, set_status, tick


@pytest.fixture
def rapp(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("AML_OBS_WORKSPACE_IDS", app.aml.workspace().resource_id)
    reset_reconciler()
    try:
        yield app
    finally:
        reset_reconciler()


def records_of(app: App, run_id: str) -> list[dict[str, str]]:
    return [r for r in app.records() if r.get("run_id") == run_id]


def pass_events(app: App) -> list[dict[str, str]]:
    return [e["properties"] for e in app.ingestion.events("AmlReconcilerPass")]


def health_events(app: App) -> list[dict[str, str]]:
    return [e["properties"] for e in app.ingestion.events("AmlReconcilerHealth")]


def test_the_host_sees_a_timer_function_whose_period_is_an_app_setting() -> None:
    binding = trigger_binding("aml_reconciler")
    assert binding.type == "timerTrigger"
    assert binding.schedule == "%AML_OBS_RECONCILE_SCHEDULE%"


def test_three_finished_runs_whose_events_never_came_are_recorded_once_as_reconcile(rapp: App) -> None:
    ws = rapp.aml.workspace()
    tick()  # the first pass: the workspace's watermark starts now
    assert records_of(rapp, "late-1") == []
    now = datetime.now(UTC)
    for index in range(3):
        add_job(ws, f"late-{index}", created=now, started=now, minutes=0.01)

    tick()

    for index in range(3):
        records = records_of(rapp, f"late-{index}")
        assert [(r["status"], r["record_source"]) for r in records] == [("Completed", "reconcile")]
    # The live event that arrives afterwards adds nothing.
    from tests.integration.host import invoke

    late = sample_event(
        "step_run_completed",
        topic=ws.resource_id,
        subject=f"experiments/{ws.runs['late-0']['experimentId']}/runs/late-0",
        data={"runId": "late-0", "runStatus": "Completed", "experimentId": ws.runs["late-0"]["experimentId"]},
    )
    invoke(late)
    tick()
    assert len(records_of(rapp, "late-0")) == 1
    summary = pass_events(rapp)[-1]
    assert summary["runs_recorded"] == "0" and summary["history_complete"] == "true"


def test_a_run_seen_running_is_recorded_again_when_it_finishes(rapp: App) -> None:
    ws = rapp.aml.workspace()
    tick()
    now = datetime.now(UTC)
    add_job(ws, "long-1", status="Running", created=now)
    tick()
    assert [r["status"] for r in records_of(rapp, "long-1")] == ["Running"]
    set_status(ws, "long-1", "Failed", datetime.now(UTC))
    tick()
    assert sorted(r["status"] for r in records_of(rapp, "long-1")) == ["Failed", "Running"]
    assert all(r["record_source"] == "reconcile" for r in records_of(rapp, "long-1"))


def test_two_passes_racing_record_each_run_status_once(rapp: App) -> None:
    ws = rapp.aml.workspace()
    tick()
    now = datetime.now(UTC)
    for index in range(20):
        add_job(ws, f"race-{index}", created=now, started=now, minutes=0.01)
    processor = get_processor()
    options = ReconcileOptions(concurrency=4)

    def timer() -> ReconcilerTimer:
        # Each with its own lease store: the claims alone must keep them apart.
        store = MemoryReconcilerStore()
        return ReconcilerTimer(
            steps=[RunsStep(processor, processor.runs, options)],  # type: ignore[arg-type]
            store=store,
            telemetry=processor.telemetry,
            options=options,
            workspaces=observed_workspaces,
        )

    racers = [timer(), timer()]
    errors: list[BaseException] = []

    def run(racer: ReconcilerTimer) -> None:
        try:
            for _ in range(3):  # a pass stopped by a claim in flight is redone by the next one
                racer.run_pass()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for index in range(20):
        assert len(records_of(rapp, f"race-{index}")) == 1, index


def test_only_one_pass_runs_at_a_time_across_instances(rapp: App) -> None:
    from amlobs.reconcile.runtime import build_reconciler

    first, second = build_reconciler(), build_reconciler()
    store = first._store  # the same table in the storage account
    assert store.acquire_lease("someone-else", 60)
    assert first.run_pass().ran is False and second.run_pass().ran is False
    store.release_lease("someone-else")
    assert first.run_pass().ran is True
    # A pass killed without releasing: its lease expires and the next tick takes it over.
    assert store.acquire_lease("killed-pass", 0.05)
    assert second.run_pass().ran is False
    time.sleep(0.1)
    assert second.run_pass().ran is True


def test_a_refused_listing_is_a_health_event_naming_the_permission_and_live_events_go_on(rapp: App) -> None:
    rapp.aml.fail(
        "POST", "experiments:query", *[Fault(status=403, body={"error": {"code": "AuthorizationFailed"}})] * 3
    )
    tick()
    problems = health_events(rapp)
    assert [(p["step"], p["problem"]) for p in problems] == [("runs", "access_refused")]
    assert problems[0]["missing_permission"] == (
        "Microsoft.MachineLearningServices/workspaces/experiments/runs/read"
    )
    from tests.integration.host import invoke

    invoke(sample_event("step_run_completed"))
    assert len(rapp.records()) == 1


def test_a_deleted_workspace_is_a_health_event_and_the_others_go_on(
    rapp: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = rapp.aml.workspace()
    gone = ws.resource_id.replace(ws.name, "deleted-ws")
    monkeypatch.setenv("AML_OBS_WORKSPACE_IDS", f"{gone},{ws.resource_id}")
    reset_reconciler()
    tick()
    now = datetime.now(UTC)
    add_job(ws, "after-gone", created=now, started=now, minutes=0.01)
    tick()
    tick()
    problems = health_events(rapp)
    assert {(p["amlWorkSpace"], p["problem"]) for p in problems} == {("deleted-ws", "workspace_not_found")}
    assert len(records_of(rapp, "after-gone")) == 1
