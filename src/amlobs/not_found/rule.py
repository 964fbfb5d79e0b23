"""When does a run history 404 mean "this run is gone"? When the event is old enough (pure).

A 404 shortly after an event is no proof of deletion: the run may not be visible yet on the route
that answered (replication between the service's stores, a workspace-level route answering before the
run is). Recording the event alone then would leave a run that exists without details for good, since
its key is claimed. So a 404 for an event younger than the grace period (by the event's own time) is
transient: the invocation fails and Event Grid retries on its schedule, 10 s, 30 s, 1 min, 5 min,
10 min, 30 min, 1 h, … (https://learn.microsoft.com/azure/event-grid/delivery-and-retry). With the
default 15 minutes, five retries fall inside it; the next one, half an hour later, meets an old event
and records it alone, saying why and at what age (``enrichment_error``). Replay and backfill go
through the same processor and follow the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_GRACE_SECONDS = 15 * 60.0


@dataclass(frozen=True)
class Verdict:
    transient: bool
    age_ms: int | None  # None: the event carried no readable time
    reason: str  # why the record goes out without details, or why the invocation fails instead


def _age(age_ms: int | None) -> str:
    if age_ms is None:
        return "of unknown age (the event has no readable eventTime)"
    seconds = max(0, age_ms) // 1000
    if seconds < 120:
        return f"{seconds} s old"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min old"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min old"


@dataclass(frozen=True)
class NotFoundRule:
    grace_seconds: float = DEFAULT_GRACE_SECONDS

    def judge(self, event_time_ms: int | None, now_ms: int, detail: str) -> Verdict:
        """The verdict on a 404 (``detail``: what run history said) for an event of that time."""
        age_ms = None if event_time_ms is None else now_ms - event_time_ms
        limit = f"{self.grace_seconds / 60:g} min"
        if age_ms is not None and age_ms < self.grace_seconds * 1000:
            return Verdict(
                True,
                age_ms,
                f"run not found in run history for an event {_age(age_ms)}, younger than {limit}: "
                f"not yet visible rather than deleted, so retried ({detail})",
            )
        return Verdict(
            False,
            age_ms,
            f"run not found in run history for an event {_age(age_ms)} (a 404 within {limit} of the "
            f"event is retried): recorded without run details ({detail})",
        )
