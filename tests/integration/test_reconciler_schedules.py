"""Scheduled and expected pipelines judged by the reconciler's timer, through ``function_app.app``,
against the AML fake (ARM schedules from the spec example's shape) and Azurite (the claims)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from amlobs.reconcile import timer as timer_module
from amlobs.reconcile.runtime import reset_reconciler
from amlobs.runtime import reset_processor
from tests.fakes.aml_api import Fault
from tests.fakes.aml_data import schedule_resource
from tests.fakes.webhook_sink import card_errors, webhook_sink
from tests.integration.conftest import App
from tests.integration.dashboard_checks import MONTH
from tests.integration.reconcile_helpers import add_job, tick
from tests.integration.reconciler_queries import alert_rows, engine_of, workbook_rows


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, 8, hour, minute, tzinfo=UTC)


@pytest.fixture
def scheduled(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    ws = app.aml.workspace()
    cron = {"triggerType": "Cron", "timeZone": "UTC"}
    ws.schedules = [
        schedule_resource(ws.resource_id, "nightly-etl", {**cron, "expression": "0 6 * * *"}),
        schedule_resource(ws.resource_id, "late-train", {**cron, "expression": "30 6 * * *"}),
        schedule_resource(ws.resource_id, "on-time", {**cron, "expression": "0 6 * * *"}),
        schedule_resource(ws.resource_id, "broken", {**cron, "expression": "0 25 * * *"}),
        schedule_resource(ws.resource_id, "paused", {**cron, "expression": "0 6 * * *"}, enabled=False),
    ]
    expectations = [
        {"name": "adf-daily", "experiment": "adf-ingest", "cron": "0 6 * * *", "time_zone": "UTC"},
        {"name": "adf-late", "experiment": "adf-late-ingest", "cron": "30 6 * * *", "time_zone": "UTC"},
    ]
    monkeypatch.setenv("AML_OBS_WORKSPACE_IDS", ws.resource_id)
    monkeypatch.setenv("AML_OBS_EXPECTED_RUNS", json.dumps(expectations))
    reset_reconciler()
    clock = {"now": at(5)}
    monkeypatch.setattr(timer_module, "current_time", lambda: clock["now"])
    tick()  # installed at 05:00: fire times before it are history, never judged
    # 06:00: on-time's job starts on time; 06:50: late-train's and adf-late's, 20 minutes late
    add_job(ws, "on-time-1", display="on-time-20261208T060000Z", created=at(6), started=at(6, 1), minutes=5)
    add_job(ws, "late-1", display="late-train-20261208T063000Z", created=at(6, 50), started=at(6, 50),
            status="Running")  # fmt: skip
    add_job(ws, "adf-1", experiment="adf-late-ingest", created=at(6, 50), started=at(6, 50), minutes=3)
    clock["now"] = at(7)
    try:
        yield app
    finally:
        reset_reconciler()


def events(app: App, name: str) -> list[dict[str, str]]:
    return [e["properties"] for e in app.ingestion.events(name)]


def test_a_fire_time_without_a_job_is_missed_once_and_a_late_job_is_late_once(scheduled: App) -> None:
    tick()  # 07:00
    missed = {(e["schedule_kind"], e["schedule_name"]) for e in events(scheduled, "AmlScheduleMissed")}
    assert missed == {("schedule", "nightly-etl"), ("expectation", "adf-daily")}
    assert all(
        e["expected_time"] == "2026-12-08T06:00:00.000Z" for e in events(scheduled, "AmlScheduleMissed")
    )
    late = {(e["schedule_name"], e["run_id"], e["lateness_ms"]) for e in events(scheduled, "AmlScheduleLate")}
    assert late == {("late-train", "late-1", "1200000"), ("adf-late", "adf-1", "1200000")}

    timer_module.current_time = lambda: at(7, 5)  # type: ignore[assignment]
    tick()  # the next pass judges nothing twice
    assert len(events(scheduled, "AmlScheduleMissed")) == 2
    assert len(events(scheduled, "AmlScheduleLate")) == 2
    # the disabled schedule and the one that ran on time raise nothing
    names = {
        e["schedule_name"] for n in ("AmlScheduleMissed", "AmlScheduleLate") for e in events(scheduled, n)
    }
    assert not names & {"paused", "on-time"}


def test_the_workbook_and_the_alert_show_exactly_those_fire_times(scheduled: App, tmp_path: Path) -> None:
    tick()
    timer_module.current_time = lambda: at(7, 5)  # type: ignore[assignment]
    tick()
    engine = engine_of(scheduled.ingestion)

    fired = alert_rows(engine, "schedule-missed-or-late", tmp_path)
    assert sorted((r["schedule"], r["outcome"], r["expected_time"]) for r in fired) == [
        ("adf-daily", "missed", "2026-12-08T06:00:00.000Z"),
        ("adf-late", "late", "2026-12-08T06:30:00.000Z"),
        ("late-train", "late", "2026-12-08T06:30:00.000Z"),
        ("nightly-etl", "missed", "2026-12-08T06:00:00.000Z"),
    ]
    assert {r["lateness_ms"] for r in fired if r["outcome"] == "late"} == {1_200_000}

    overview = {r["Schedule"]: r for r in workbook_rows(engine, "schedules-overview", MONTH)}
    assert set(overview) == {"nightly-etl", "late-train", "on-time", "adf-daily", "adf-late"}
    assert (overview["on-time"]["On time %"], overview["on-time"]["Missed"]) == (100.0, 0)
    assert (overview["nightly-etl"]["Missed"], overview["nightly-etl"]["Last run"]) == (1, None)
    assert (overview["late-train"]["Late"], overview["late-train"]["On time %"]) == (1, 0.0)
    assert overview["nightly-etl"]["Next expected"] == datetime(2026, 12, 9, 6, 0)
    misses = workbook_rows(engine, "schedule-misses", MONTH)
    assert sorted((r["Schedule"], r["Outcome"], r["Late by (min)"]) for r in misses) == [
        ("adf-daily", "missed", None), ("adf-late", "late", 20.0),
        ("late-train", "late", 20.0), ("nightly-etl", "missed", None),
    ]  # fmt: skip
    passes = workbook_rows(engine, "reconciler-passes", MONTH)
    assert [(r["Workspace"], r["Passes"], r["History complete"]) for r in passes] == [("sample-ws", 3, "yes")]
    assert passes[0]["Runs recovered (never delivered)"] == 3  # the three jobs' first statuses


def test_an_unparseable_schedule_is_one_record_naming_it_and_the_others_go_on(scheduled: App) -> None:
    tick()
    tick()
    invalid = events(scheduled, "AmlScheduleInvalid")
    assert [(e["schedule_name"], "not a valid five-field" in e["problem"]) for e in invalid] == [
        ("broken", True)
    ]
    assert len(events(scheduled, "AmlScheduleMissed")) == 2


def test_a_refused_schedule_list_names_the_permission_and_runs_are_still_reconciled(
    scheduled: App, tmp_path: Path
) -> None:
    scheduled.aml.fail(
        "GET", "/schedules", *[Fault(status=403, body={"error": {"code": "AuthorizationFailed"}})] * 4
    )
    tick()
    problems = events(scheduled, "AmlReconcilerHealth")
    assert [(p["step"], p["problem"], p["missing_permission"]) for p in problems] == [
        ("schedules", "access_refused", "Microsoft.MachineLearningServices/workspaces/schedules/read")
    ]
    assert events(scheduled, "AmlScheduleMissed") == []
    assert {r["run_id"] for r in scheduled.records()} >= {"on-time-1", "late-1", "adf-1"}
    shown = workbook_rows(engine_of(scheduled.ingestion), "reconciler-problems", MONTH)
    assert [(r["Step"], r["Problem"], r["Missing permission"], r["Passes"]) for r in shown] == [
        ("schedules", "access_refused", "Microsoft.MachineLearningServices/workspaces/schedules/read", 1)
    ]


def test_a_job_running_far_past_its_usual_duration_is_overdue_once(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = app.aml.workspace()
    ws.schedules = [
        schedule_resource(
            ws.resource_id,
            "daily-train",
            {"triggerType": "Cron", "timeZone": "UTC", "expression": "0 6 * * *"},
        )
    ]
    monkeypatch.setenv("AML_OBS_WORKSPACE_IDS", ws.resource_id)
    reset_reconciler()
    clock = {"now": datetime(2026, 12, 4, 5, 0, tzinfo=UTC)}
    monkeypatch.setattr(timer_module, "current_time", lambda: clock["now"])
    tick()
    for day in (5, 6, 7):  # three usual runs of 10 minutes
        fire = datetime(2026, 12, day, 6, 0, tzinfo=UTC)
        add_job(ws, f"usual-{day}", display=f"daily-train-202612{day:02d}T060000Z", created=fire, started=fire,
                minutes=10)  # fmt: skip
        clock["now"] = datetime(2026, 12, day, 7, 0, tzinfo=UTC)
        tick()
    today = datetime(2026, 12, 8, 6, 0, tzinfo=UTC)
    add_job(
        ws, "stuck", display="daily-train-20261208T060000Z", created=today, started=today, status="Running"
    )
    clock["now"] = datetime(2026, 12, 8, 6, 15, tzinfo=UTC)  # 15 min: within 2 x the usual 10
    tick()
    assert events(app, "AmlScheduleOverdue") == []
    clock["now"] = datetime(2026, 12, 8, 6, 30, tzinfo=UTC)
    tick()
    clock["now"] = datetime(2026, 12, 8, 6, 35, tzinfo=UTC)
    tick()
    (overdue,) = events(app, "AmlScheduleOverdue")
    assert (overdue["schedule_name"], overdue["run_id"]) == ("daily-train", "stuck")
    assert (overdue["usual_duration_p95_ms"], overdue["overdue_after_ms"]) == ("600000", "1200000")
    judged = [e["outcome"] for e in events(app, "AmlScheduleJudged")]
    # 4 December (no job: the first fire after the install), then the three usual runs; today's is judged once it ends
    assert judged == ["missed", "on_time", "on_time", "on_time"]
    reset_reconciler()


def test_a_missed_and_a_late_fire_time_each_send_the_team_one_message(
    scheduled: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    with webhook_sink("teams") as sink:
        monkeypatch.setenv("AML_OBS_NOTIFY_WEBHOOK_URL", sink.url)
        monkeypatch.setenv("AML_OBS_NOTIFY_FORMAT", "teams")
        reset_processor()
        reset_reconciler()
        tick()  # 07:00
        timer_module.current_time = lambda: at(7, 5)  # type: ignore[assignment]
        tick()  # judges nothing twice, sends nothing twice
        cards = [m["attachments"][0]["content"] for m in sink.messages]
    assert [card_errors(card) for card in cards] == [[]] * len(cards)
    titles = sorted(card["body"][0]["items"][0]["text"] for card in cards)
    assert titles == [
        "Schedule adf-daily missed: due 2026-12-08T06:00:00.000Z",
        "Schedule adf-late late: due 2026-12-08T06:30:00.000Z",
        "Schedule late-train late: due 2026-12-08T06:30:00.000Z",
        "Schedule nightly-etl missed: due 2026-12-08T06:00:00.000Z",
    ]
    late_train = next(json.dumps(c) for c in cards if "late-train" in c["body"][0]["items"][0]["text"])
    assert "Job late-1 started 20 min after it was due." in late_train
    assert "https://ml.azure.com/runs/late-1" in late_train
    # on time and disabled: no message
    assert not [c for c in cards if "on-time" in json.dumps(c) or "paused" in json.dumps(c)]
