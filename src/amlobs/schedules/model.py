"""Schedules as the reconciler reads them.

An AML schedule is the ARM resource ``Microsoft.MachineLearningServices/workspaces/schedules``
(``ScheduleProperties``: ``displayName``, ``isEnabled``, ``trigger``, ``action``), listed at the API
version azure-ai-ml uses for its schedule operations: azure-ai-ml 1.35.2
``azure/ai/ml/_ml_client.py`` line 101 (``ServiceClient062023Preview = partial(
MachineLearningServicesMgmtClient, api_version="2023-06-01-preview")``) handed to
``ScheduleOperations`` at lines 692-695, whose ``list`` (``operations/_schedule_operations.py``
lines 164-170) sends ``GET …/workspaces/{ws}/schedules?api-version=…&listViewType=…``
(``_restclient/arm_ml_service/operations/_operations.py`` lines 4204-4218). Trigger fields:
``_restclient/arm_ml_service/models/_models.py`` ``TriggerBase`` (``startTime``/``endTime`` "ISO 8601
without a UTC offset", ``timeZone`` a *Windows* time zone name), ``CronTrigger.expression`` (NCronTab,
five fields), ``RecurrenceTrigger`` (``frequency``, ``interval``, ``schedule``: ``hours``, ``minutes``,
``weekDays``, ``monthDays``).

Windows time zone names map to IANA ones through the CLDR table tzlocal ships
(``tzlocal.windows_tz.win_tz``): maintained with each CLDR release, the same table .NET and ICU use;
zoneinfo then does the DST arithmetic from the IANA database (the ``tzdata`` package where the OS
has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SCHEDULES_PERMISSION = "Microsoft.MachineLearningServices/workspaces/schedules/read"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FREQUENCIES = ("minute", "hour", "day", "week", "month")


class ScheduleError(ValueError):
    """A schedule the reconciler cannot evaluate; the message names what is wrong."""


@dataclass(frozen=True)
class Cron:
    expression: str


@dataclass(frozen=True)
class Recurrence:
    frequency: str  # one of FREQUENCIES
    interval: int
    hours: tuple[int, ...] = ()
    minutes: tuple[int, ...] = ()
    week_days: tuple[int, ...] = ()  # 0 = Monday
    month_days: tuple[int, ...] = ()


@dataclass(frozen=True)
class Expectation:
    """What is expected to run when: an AML schedule, or a declared expectation (``kind``)."""

    name: str
    kind: Literal["schedule", "expectation"]
    trigger: Cron | Recurrence
    zone: ZoneInfo
    time_zone: str  # as written (Windows or IANA name)
    enabled: bool = True
    start: datetime | None = None  # naive, local to zone
    end: datetime | None = None  # naive, local to zone
    # how its jobs are recognised: the display name prefix (AML schedules) or the experiment name
    job_display_prefix: str | None = None
    experiment: str | None = None
    grace_seconds: float | None = None  # None: the reconciler's default

    @property
    def expression(self) -> str:
        if isinstance(self.trigger, Cron):
            return self.trigger.expression
        t = self.trigger
        return f"every {t.interval} {t.frequency}(s) hours={list(t.hours)} minutes={list(t.minutes)}"


def zone_of(name: str | None) -> ZoneInfo:
    from tzlocal.windows_tz import win_tz

    text = (name or "UTC").strip() or "UTC"
    iana = win_tz.get(text, text)
    if text.upper() in ("UTC", "COORDINATED UNIVERSAL TIME"):
        iana = "UTC"
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"time zone {text!r} is neither a Windows nor an IANA time zone name") from None


def _local_time(value: object, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ScheduleError(f"{field} is not a date-time string")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ScheduleError(f"{field} {value!r} is not an ISO 8601 date-time") from None
    return parsed.replace(tzinfo=None)  # "without a UTC offset": local to the trigger's zone


def _ints(value: object, field: str, low: int, high: int) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, int) and low <= v <= high for v in value):
        raise ScheduleError(f"{field} must be a list of integers {low}..{high}, got {value!r}")
    return tuple(value)


def parse_trigger(trigger: Mapping[str, Any]) -> Cron | Recurrence:
    kind = str(trigger.get("triggerType") or "")
    if kind.lower() == "cron":
        expression = trigger.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise ScheduleError("cron trigger without an expression")
        from .fire_times import check_cron

        check_cron(expression)
        return Cron(expression.strip())
    if kind.lower() == "recurrence":
        frequency = str(trigger.get("frequency") or "").lower()
        if frequency not in FREQUENCIES:
            raise ScheduleError(
                f"recurrence frequency {trigger.get('frequency')!r} is not one of {FREQUENCIES}"
            )
        interval = trigger.get("interval")
        if not isinstance(interval, int) or interval < 1:
            raise ScheduleError(f"recurrence interval must be a positive integer, got {interval!r}")
        schedule = trigger.get("schedule") or {}
        if not isinstance(schedule, Mapping):
            raise ScheduleError("recurrence schedule is not an object")
        days = schedule.get("weekDays") or []
        if not isinstance(days, list) or not all(isinstance(d, str) and d.lower() in WEEKDAYS for d in days):
            raise ScheduleError(f"weekDays must name days of the week, got {days!r}")
        return Recurrence(
            frequency,
            interval,
            hours=_ints(schedule.get("hours"), "hours", 0, 23),
            minutes=_ints(schedule.get("minutes"), "minutes", 0, 59),
            week_days=tuple(WEEKDAYS.index(d.lower()) for d in days),
            month_days=_ints(schedule.get("monthDays"), "monthDays", 1, 31),
        )
    raise ScheduleError(f"trigger type {kind!r} is neither Cron nor Recurrence")


def parse_schedule(resource: Mapping[str, Any]) -> Expectation:
    """An ARM schedule resource; raises :class:`ScheduleError` naming the problem."""
    name = str(resource.get("name") or "")
    properties = resource.get("properties")
    if not isinstance(properties, Mapping):
        raise ScheduleError("schedule without properties")
    trigger = properties.get("trigger")
    if not isinstance(trigger, Mapping):
        raise ScheduleError("schedule without a trigger")
    return Expectation(
        name=name,
        kind="schedule",
        trigger=parse_trigger(trigger),
        zone=zone_of(trigger.get("timeZone")),
        time_zone=str(trigger.get("timeZone") or "UTC"),
        enabled=properties.get("isEnabled") is not False,
        start=_local_time(trigger.get("startTime"), "startTime"),
        end=_local_time(trigger.get("endTime"), "endTime"),
        job_display_prefix=f"{name}-",
    )


def parse_expectation(item: Mapping[str, Any]) -> Expectation:
    """One declared expectation (``AML_OBS_EXPECTED_RUNS``): ``name``, ``experiment``, ``cron``,
    ``time_zone`` (default UTC), ``grace_minutes`` (default: the reconciler's)."""
    name, experiment, cron = item.get("name"), item.get("experiment"), item.get("cron")
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError("an expectation needs a name")
    if not isinstance(experiment, str) or not experiment.strip():
        raise ScheduleError(f"expectation {name!r} needs the experiment (pipeline) whose runs it expects")
    if not isinstance(cron, str):
        raise ScheduleError(f"expectation {name!r} needs a cron expression")
    grace = item.get("grace_minutes")
    if grace is not None and (not isinstance(grace, (int, float)) or isinstance(grace, bool) or grace < 0):
        raise ScheduleError(f"expectation {name!r}: grace_minutes must be a non-negative number")
    time_zone = str(item.get("time_zone") or "UTC")
    return Expectation(
        name=name.strip(),
        kind="expectation",
        trigger=parse_trigger({"triggerType": "Cron", "expression": cron}),
        zone=zone_of(time_zone),
        time_zone=time_zone,
        experiment=experiment.strip(),
        grace_seconds=None if grace is None else float(grace) * 60,
    )
