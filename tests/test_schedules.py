"""When schedules fire, checked against answers worked out by hand from the calendar and the zones'
offsets (not by the libraries under test)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from amlobs.schedules.fire_times import fire_times
from amlobs.schedules.judge import Job, duration_p95, judge
from amlobs.schedules.model import ScheduleError, parse_expectation, parse_schedule
from tests.fakes.aml_data import schedule_resource

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def schedule(trigger: dict[str, object], *, enabled: bool = True) -> object:
    return parse_schedule(schedule_resource(WS, "nightly", trigger, enabled=enabled))


@pytest.mark.parametrize("zone", ["Europe/Amsterdam", "W. Europe Standard Time"])
def test_six_in_the_morning_in_amsterdam_across_both_dst_changes(zone: str) -> None:
    s = schedule({"triggerType": "Cron", "expression": "0 6 * * *", "timeZone": zone})
    spring = fire_times(s, z("2026-03-27T12:00Z"), z("2026-03-30T12:00Z"))  # type: ignore[arg-type]
    # CET is UTC+1 until Sunday 29 March 2026 02:00, CEST (UTC+2) from then on
    assert spring == [z("2026-03-28T05:00Z"), z("2026-03-29T04:00Z"), z("2026-03-30T04:00Z")]
    autumn = fire_times(s, z("2026-10-23T12:00Z"), z("2026-10-26T12:00Z"))  # type: ignore[arg-type]
    # back to CET on Sunday 25 October 2026 03:00
    assert autumn == [z("2026-10-24T04:00Z"), z("2026-10-25T05:00Z"), z("2026-10-26T05:00Z")]


def test_weekly_monday_and_thursday_at_22_30_in_a_utc_minus_5_zone() -> None:
    s = schedule(
        {
            "triggerType": "Recurrence",
            "frequency": "Week",
            "interval": 1,
            "schedule": {"hours": [22], "minutes": [30], "weekDays": ["Monday", "Thursday"]},
            "timeZone": "SA Pacific Standard Time",  # Bogotá: UTC-5 all year
        }
    )
    fires = fire_times(s, z("2026-12-01T00:00Z"), z("2026-12-15T12:00Z"))  # type: ignore[arg-type]
    # Mon 30 Nov, Thu 3, Mon 7, Thu 10, Mon 14 December 2026 at 22:30 local = 03:30 UTC the next day
    # (Monday 30 November's falls on 1 December in UTC: inside the window)
    assert fires == [z("2026-12-01T03:30Z"), z("2026-12-04T03:30Z"), z("2026-12-08T03:30Z"), z("2026-12-11T03:30Z"),
                     z("2026-12-15T03:30Z")]  # fmt: skip


def test_a_disabled_schedule_never_fires() -> None:
    s = schedule({"triggerType": "Cron", "expression": "0 6 * * *", "timeZone": "UTC"}, enabled=False)
    assert fire_times(s, z("2026-01-01T00:00Z"), z("2026-02-01T00:00Z")) == []  # type: ignore[arg-type]


def test_nothing_fires_after_the_end_time_nor_before_the_start_time() -> None:
    s = schedule(
        {"triggerType": "Cron", "expression": "0 6 * * *", "timeZone": "UTC",
         "startTime": "2026-01-03T00:00:00", "endTime": "2026-01-05T07:00:00"}
    )  # fmt: skip
    fires = fire_times(s, z("2026-01-01T00:00Z"), z("2026-01-10T00:00Z"))  # type: ignore[arg-type]
    assert fires == [z("2026-01-03T06:00Z"), z("2026-01-04T06:00Z"), z("2026-01-05T06:00Z")]


@pytest.mark.parametrize(
    "trigger",
    [
        {"triggerType": "Cron", "expression": "0 6 31 * *", "timeZone": "UTC"},
        {"triggerType": "Recurrence", "frequency": "Month", "interval": 1, "timeZone": "UTC",
         "schedule": {"hours": [6], "minutes": [0], "monthDays": [31]}},
    ],
)  # fmt: skip
def test_the_31st_of_the_month_is_skipped_in_shorter_months(trigger: dict[str, object]) -> None:
    fires = fire_times(schedule(trigger), z("2026-01-01T00:00Z"), z("2026-07-01T00:00Z"))  # type: ignore[arg-type]
    assert fires == [z("2026-01-31T06:00Z"), z("2026-03-31T06:00Z"), z("2026-05-31T06:00Z")]


@pytest.mark.parametrize(
    ("trigger", "problem"),
    [
        ({"triggerType": "Cron", "expression": "61 * * * *"}, "not a valid five-field"),
        ({"triggerType": "Cron", "expression": "0 6 * * *", "timeZone": "Mars/Olympus"}, "time zone"),
        ({"triggerType": "Recurrence", "frequency": "Fortnight", "interval": 1}, "frequency"),
        ({"triggerType": "Rrule"}, "neither Cron nor Recurrence"),
    ],
)
def test_a_schedule_that_cannot_be_evaluated_says_why(trigger: dict[str, object], problem: str) -> None:
    with pytest.raises(ScheduleError, match=problem):
        schedule(trigger)


def test_an_expectation_needs_its_experiment() -> None:
    with pytest.raises(ScheduleError, match="experiment"):
        parse_expectation({"name": "adf", "cron": "0 6 * * *"})


def job(created: str, started: str | None, status: str = "Running", ended: str | None = None) -> Job:
    return Job("r", z(created), z(started) if started else None, z(ended) if ended else None, status)


def test_the_judgement_of_a_fire_time() -> None:
    fire, nxt, grace = z("2026-12-08T06:00Z"), z("2026-12-09T06:00Z"), timedelta(minutes=15)
    now = z("2026-12-08T07:00Z")
    assert judge(fire, nxt, [], z("2026-12-08T06:10Z"), grace).verdict == "pending"
    assert judge(fire, nxt, [], now, grace).verdict == "missed"
    late = judge(fire, nxt, [job("2026-12-08T06:20Z", "2026-12-08T06:20Z")], now, grace)
    assert (late.verdict, late.lateness_ms) == ("late", 1_200_000)
    assert (
        judge(fire, nxt, [job("2026-12-08T06:00:05Z", "2026-12-08T06:01Z")], now, grace).verdict == "running"
    )
    # yesterday's job does not count for today
    assert judge(fire, nxt, [job("2026-12-07T06:00Z", "2026-12-07T06:00Z")], now, grace).verdict == "missed"


def test_the_usual_duration_is_the_nearest_rank_p95_of_finished_runs() -> None:
    minutes = [11, 12, 13, 14, 15]
    assert duration_p95([m * 60_000 for m in minutes]) == timedelta(minutes=15)
    # 20 runs: the 19th smallest (ceil(0.95 * 20) = 19)
    assert duration_p95([m * 60_000 for m in range(1, 21)]) == timedelta(minutes=19)
    assert duration_p95([60_000, 120_000]) is None
