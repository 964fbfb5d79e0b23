"""When a trigger fires, in UTC, computed in its own time zone. Pure.

Cron: croniter (pallets-eco, maintained; the standard five-field semantics NCronTab shares, day of
month and day of week OR-ed when both are restricted). Recurrence: python-dateutil's ``rrule``
(RFC 5545, the model AML's ``frequency``/``interval``/``schedule`` follows). Both iterate over naive
*local* wall-clock times, each then placed in the zone with zoneinfo: so ``0 6 * * *`` in
Europe/Amsterdam stays at 06:00 local across both DST changes (05:00 UTC in winter, 04:00 UTC in
summer). A wall time that does not exist (skipped by spring-forward)
fires at the same instant the offset before the change gives it (one hour later on the clock); one
that occurs twice (fall-back) fires once, at its first occurrence.

The 31st of a month, or February 30th, simply never happens in months without that day: AML's
schedules skip them too (the AML schedule docs' FAQ).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Literal

from .model import Cron, Expectation, Recurrence, ScheduleError

_MAX_FIRES = 10_000  # a per-minute schedule over a week; more is a sign of a runaway window


def check_cron(expression: str) -> None:
    from croniter import croniter

    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ScheduleError(f"cron expression {expression!r} is not a valid five-field expression")


def _local_candidates(expectation: Expectation, start_local: datetime) -> Iterator[datetime]:
    trigger = expectation.trigger
    if isinstance(trigger, Cron):
        from croniter import croniter

        # croniter's get_next is strictly after its start: start a minute before to include it
        it = croniter(trigger.expression, start_local - timedelta(minutes=1))
        while True:
            yield it.get_next(datetime)
    else:
        yield from _recurrence(trigger, expectation, start_local)


def _recurrence(trigger: Recurrence, expectation: Expectation, start_local: datetime) -> Iterator[datetime]:
    from dateutil import rrule

    frequencies: dict[str, Literal[0, 1, 2, 3, 4, 5, 6]] = {"minute": rrule.MINUTELY, "hour": rrule.HOURLY}
    frequencies.update(day=rrule.DAILY, week=rrule.WEEKLY, month=rrule.MONTHLY)
    # The interval counts from the schedule's start; without one, from the window's start.
    anchor = expectation.start or start_local.replace(second=0, microsecond=0)
    rule = rrule.rrule(
        frequencies[trigger.frequency],
        interval=trigger.interval,
        dtstart=anchor,
        byhour=trigger.hours or None,
        byminute=trigger.minutes or None,
        bysecond=0,
        byweekday=trigger.week_days or None,
        bymonthday=trigger.month_days or None,
    )
    yield from rule.xafter(start_local - timedelta(microseconds=1), inc=True)


def fire_times(expectation: Expectation, after: datetime, until: datetime) -> list[datetime]:
    """The fire times in ``(after, until]`` (aware UTC), in order; none for a disabled schedule, and
    none outside its start and end times."""
    if not expectation.enabled or until <= after:
        return []
    zone = expectation.zone
    start_local = after.astimezone(zone).replace(tzinfo=None)
    if expectation.start is not None and expectation.start > start_local:
        start_local = expectation.start
    fires: list[datetime] = []
    for local in _local_candidates(expectation, start_local):
        if expectation.end is not None and local > expectation.end:
            break
        moment = local.replace(tzinfo=zone).astimezone(UTC)
        if moment > until:
            break
        if moment > after and (not fires or moment > fires[-1]):
            fires.append(moment)
        if len(fires) >= _MAX_FIRES:
            break
    return fires
