"""``azd up`` alone fills the dashboard: the reconciler's first passes start ``AML_OBS_BACKFILL_DAYS``
back and work through history over as many ticks as the budget needs, killed or not."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from amlobs.processor import EventProcessor
from amlobs.reconcile.runtime import reset_reconciler
from amlobs.reconcile.state import RECONCILER_TABLE
from tests.integration.conftest import App
from tests.integration.dashboard_checks import MONTH, floor_to
from tests.integration.reconcile_helpers import add_job, tick
from tests.integration.reconciler_queries import alert_rows, engine_of, workbook_rows

# The sample workspace's own runs date from 2020: outside BACKFILL_DAYS, never listed.
SAMPLE_RUN_IDS = ("9a9d8f51-1e44-4c23-b0a0-8246046eeb28", "096a41be-218d-4bdb-857d-be3222caa891",
                  "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35")  # fmt: skip

RUNS_PER_WORKSPACE = 1000


class Killed(BaseException):
    """The host stopping the worker mid-pass (a deployment, a scale-in): nothing below catches it."""


@pytest.fixture
def two_workspaces(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    first = app.aml.workspace()
    second = app.aml.add_workspace(first.subscription_id, first.resource_group, "second-ws")
    now = datetime.now(UTC)
    for ws in (first, second):
        for index in range(RUNS_PER_WORKSPACE):
            # spread over the last 29.5 days, a few experiments, a mix of outcomes
            created = (
                now - timedelta(days=29.5) + timedelta(minutes=index * 29.5 * 24 * 60 / RUNS_PER_WORKSPACE)
            )
            status = "Failed" if index % 17 == 0 else "Completed"
            add_job(ws, f"{ws.name}-{index:04d}", created=created, minutes=7, status=status,
                    experiment=f"exp-{index % 4}")  # fmt: skip
    # a pipeline run that failed two minutes before the install: recent, but history, so no alert
    add_job(first, "failed-before-install", created=now - timedelta(minutes=12), started=now - timedelta(minutes=12),
            minutes=10, status="Failed", experiment="exp-0")  # fmt: skip
    monkeypatch.setenv("AML_OBS_WORKSPACE_IDS", f"{first.resource_id},{second.resource_id}")
    monkeypatch.setenv("AML_OBS_BACKFILL_DAYS", "30")
    monkeypatch.setenv("AML_OBS_RECONCILE_MAX_RUNS", "400")
    reset_reconciler()
    try:
        yield app
    finally:
        reset_reconciler()


def test_a_30_day_first_pass_killed_midway_records_every_run_status_once_on_its_own_day(
    two_workspaces: App, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = two_workspaces
    original = EventProcessor.process
    calls = {"n": 0}

    def dies_on_the_250th(self: EventProcessor, payload: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 250:
            raise Killed
        return original(self, payload, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(EventProcessor, "process", dies_on_the_250th)
    with pytest.raises(Killed):
        tick()
    monkeypatch.setattr(EventProcessor, "process", original)
    ticks = 0
    while not _history_complete(app):
        tick()
        ticks += 1
        assert ticks < 20
    assert ticks >= 4  # 2,000 runs at 400 a pass: the budget bounds each pass

    records = app.records()
    per_status = Counter((r["amlWorkSpace"], r["run_id"], r["status"]) for r in records)
    assert len(per_status) == 2 * RUNS_PER_WORKSPACE + 1
    assert set(per_status.values()) == {1}
    assert {r["record_source"] for r in records} == {"backfill"}  # history: alerts ignore it
    ws = app.aml.workspace()
    for record in records:
        if record["amlWorkSpace"] != ws.name:
            continue
        run = ws.runs[record["run_id"]]
        assert record["status_time"][:10] == run["endTimeUtc"][:10]  # its own day, not the pass's

    # Executed as deployed: the workbook places each run on its own day, and no alert fires.
    engine = engine_of(app.ingestion)
    assert alert_rows(engine, "pipeline-failed", tmp_path) == []
    assert alert_rows(engine, "schedule-missed-or-late", tmp_path) == []
    # runs over time by status, one bin per day: each run on the day it ended
    expected: Counter[tuple[str, datetime]] = Counter()
    for ws in (app.aml.workspace(), app.aml.workspace(name="second-ws")):
        for run in ws.runs.values():
            if run["runId"] in SAMPLE_RUN_IDS:
                continue
            ended = datetime.fromisoformat(run["endTimeUtc"].replace("Z", "+00:00"))
            expected[(run["status"], floor_to(ended, MONTH.grain))] += 1
    rows = workbook_rows(engine, "runs-over-time", MONTH)
    assert {(r["status"], r["status_time"]): r["Runs"] for r in rows} == dict(expected)
    passes = workbook_rows(engine, "reconciler-passes", MONTH)
    assert sorted((r["Workspace"], r["History complete"]) for r in passes) == [
        ("sample-ws", "yes"),
        ("second-ws", "yes"),
    ]
    # (the killed pass sent no pass event: what it recorded is counted nowhere, and recorded once)
    assert 0 < sum(r["History recorded"] for r in passes) <= 2 * RUNS_PER_WORKSPACE + 1


def _history_complete(app: App) -> bool:
    states = [e for e in app.storage.list_entities(RECONCILER_TABLE) if e["PartitionKey"] == "workspace"]
    return len(states) == 2 and all(e.get("history_complete") for e in states)
