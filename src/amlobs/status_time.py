"""When a status change happened, and how its record reached us: the two fields dashboards key on.

Application Insights stamps every item with the time it was *sent* (``timestamp``), and refuses an
item whose own time is more than about two days old, so a backfilled month, a dead-letter replay or
an Event Grid retry a day late would all land "now". Every record and pipeline summary therefore
carries the time of the status change itself and its origin; the workbook and the alert rules filter
and bin on ``status_time`` and use ``timestamp`` only as a wide prefilter (docs/dashboard.md).

Pure: the processor stamps records with :func:`status_fields`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from . import run_facts as facts
from .events import TERMINAL_STATUSES

RecordSource = Literal["live", "replay", "backfill", "reconcile"]
RECORD_SOURCES: tuple[str, ...] = get_args(RecordSource)

# The record keys this module adds (to records and to pipeline summaries alike).
STATUS_TIME_FIELDS: tuple[str, ...] = ("status_time", "status_time_utc_ms", "record_source")

# Before a run starts, its own timestamps only say when it was created; once started, when it started.
_QUEUED_STATUSES = frozenset({"NotStarted", "Queued", "Preparing", "Provisioning", "Starting"})
_STARTED_STATUSES = frozenset({"Running", "Finalizing", "CancelRequested", "NotResponding", "Paused"})


def status_time_ms(
    status: str | None,
    source: RecordSource,
    *,
    event_time_ms: int | None,
    created_ms: int | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> int | None:
    """Epoch milliseconds of the status change a record describes, or None when nothing tells it.

    - A terminal status (Completed, Failed, Canceled) happened when the run ended: its end time, also
      for a ``RunCompleted`` event or a replay that arrives days later.
    - Live and replayed events otherwise happened at the event's own time (``eventTime``).
    - A backfilled or reconciled run is recorded from the run history, not from an event (the
      reconciler's is the one Event Grid never delivered): its status happened at the latest of the
      run's own times that the status implies (ended, started, created).
    """
    if status in TERMINAL_STATUSES and end_ms is not None:
        return end_ms
    if source not in ("backfill", "reconcile"):
        return event_time_ms
    # Backfill: the run history is the only witness.
    if status in _QUEUED_STATUSES:
        return created_ms
    if status in _STARTED_STATUSES:
        return facts.first_known(start_ms, created_ms)
    # A terminal status without an end time, or a status we do not know: the latest time known.
    return facts.first_known(end_ms, start_ms, created_ms)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_from_ms(epoch_ms: int) -> str:
    """``2026-05-01T10:00:26.000Z``: the spelling ``todatetime()`` reads in every Kusto engine."""
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)  # exact: no float seconds
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def status_fields(
    values: Mapping[str, object], source: RecordSource, *, event_time_ms: int | None
) -> dict[str, str | int]:
    """The fields to add to a record or a summary, read from its own ``status`` and ``*_utc_ms`` keys.

    The origin is always known; the time is left out when nothing tells it (a live event without
    ``eventTime`` whose run was not found), never invented: queries then fall back to ``timestamp``.
    """
    if source not in RECORD_SOURCES:
        raise ValueError(f"record source {source!r} is not one of {', '.join(RECORD_SOURCES)}")
    status = values.get("status")
    moment = status_time_ms(
        status if isinstance(status, str) else None,
        source,
        event_time_ms=event_time_ms,
        created_ms=facts.integer(values.get("created_time_utc_ms")),
        start_ms=facts.integer(values.get("start_time_utc_ms")),
        end_ms=facts.integer(values.get("end_time_utc_ms")),
    )
    fields: dict[str, str | int] = {"record_source": source}
    if moment is not None:
        fields["status_time"] = iso_from_ms(moment)
        fields["status_time_utc_ms"] = moment
    return fields
