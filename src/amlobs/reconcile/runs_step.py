"""The runs step: every run created since the watermark (less the overlap), and every run still open
at the last pass, recorded through the processor like a live event (``record_source`` =
``reconcile``, or ``backfill`` for a run that ended before the reconciler first saw its workspace).

A workspace's first pass starts ``BACKFILL_DAYS`` back and works through history page by page over
as many ticks as the budget needs. The listing position (its continuation token) is saved only after
a page is fully recorded; a run whose claim is held by a live delivery, or whose recording failed
for a transient reason, stops the workspace's listing before that page, and the next tick redoes it
(the claims make every (run, status) exactly once across live, reconcile, replay and backfill).

The run history API lists runs by creation time (``run_listing``), not by status change: a run
created before the watermark that changes status later is found again because the step keeps the
runs it saw unfinished (``open_runs``) and re-reads each one per pass (one GET).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..backfill import run_to_event
from ..errors import RunNotFound, TransientError
from ..events import TERMINAL_STATUSES, WorkspaceRef, normalise_status
from ..processor import EventProcessor, Outcome
from ..records import parse_utc_ms
from ..status_time import RecordSource
from .options import ReconcileOptions
from .state import WorkspaceState
from .timer import StepReport, WorkspacePass

logger = logging.getLogger("amlobs.reconcile")

RUNS_PERMISSION = "Microsoft.MachineLearningServices/workspaces/experiments/runs/read"


class RunReader(Protocol):
    def iter_runs(
        self, ws: WorkspaceRef, *, since: datetime, continuation_token: str | None = None
    ) -> Iterator[Any]: ...
    def get_run(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]: ...


def reconcile_event_id(ws: WorkspaceRef, run_id: str, status: str) -> str:
    digest = hashlib.sha256(f"{ws.cache_key}|{run_id}|{status.lower()}".encode()).hexdigest()
    return f"reconcile-{digest[:32]}"


def record_source_of(run: Mapping[str, Any], installed_at: datetime) -> RecordSource:
    """History (``backfill``) for a run that had ended before the reconciler first saw the workspace:
    its record is late news, which alerts ignore; anything else the live path should have told."""
    status = normalise_status(run.get("status"))
    ended = parse_utc_ms(run.get("endTimeUtc"))
    if status in TERMINAL_STATUSES and ended is not None and ended < installed_at.timestamp() * 1000:
        return "backfill"
    return "reconcile"


def reconcile_event(ws: WorkspaceRef, run: Mapping[str, Any]) -> dict[str, Any]:
    event = run_to_event(ws, run)
    status = event["data"]["runStatus"] or ""
    event["id"] = reconcile_event_id(ws, str(run.get("runId")), status)
    event["dataVersion"] = "reconcile"
    return event


class RunsStep:
    name = "runs"
    permission = RUNS_PERMISSION

    def __init__(self, processor: EventProcessor, runs: RunReader, options: ReconcileOptions) -> None:
        self._processor = processor
        self._runs = runs
        self._options = options
        self._pool = ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="reconcile")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- the step ------------------------------------------------------------------------------

    def run(self, work: WorkspacePass) -> StepReport:
        counts: dict[str, int] = {"listed": 0, "recorded": 0, "backfilled": 0, "duplicate": 0, "failed": 0}
        if work.budget.exhausted:
            return StepReport({**counts, "skipped": 1})  # another workspace spent this pass's runs
        state = work.state
        self._start_listing(state, work.now)
        seen = self._list(work, counts)
        if not work.budget.exhausted:
            self._reread_open_runs(work, seen, counts)
        return StepReport(dict(counts))

    def _start_listing(self, state: WorkspaceState, now: datetime) -> None:
        if state.listing_since is not None:
            return  # a listing in progress (or the first one): resume it
        watermark = state.watermark or now
        since = watermark - timedelta(seconds=self._options.overlap_seconds)
        if state.open_floor is not None and state.open_floor < since:
            since = state.open_floor  # open runs that did not fit in open_runs: list them again
        state.listing_since, state.listing_started_at, state.listing_token = since, now, None
        state.open_floor = None

    def _list(self, work: WorkspacePass, counts: dict[str, int]) -> set[str]:
        state = work.state
        assert state.listing_since is not None
        seen: set[str] = set()
        pages = self._runs.iter_runs(
            work.ws, since=state.listing_since, continuation_token=state.listing_token
        )
        for page in pages:
            runs = [run for run in page.runs if run.get("runId")]
            counts["listed"] += len(runs)
            if not self._record(work, runs, counts):
                return seen  # the position stays before this page: the next tick redoes it
            for run in runs:
                seen.add(str(run["runId"]))
                self._track(state, run)
            state.listing_token = page.continuation_token
            if page.continuation_token is None:
                self._finish_listing(state)
            work.save()
            work.budget.spend(len(runs))
            if page.continuation_token is not None and work.budget.exhausted:
                return seen
        if state.listing_since is not None:  # the listing ended without a last page (no experiment)
            self._finish_listing(state)
            work.save()
        return seen

    @staticmethod
    def _finish_listing(state: WorkspaceState) -> None:
        assert state.listing_started_at is not None
        state.watermark = state.listing_started_at
        state.listing_since = state.listing_started_at = state.listing_token = None
        state.history_complete = True

    def _track(self, state: WorkspaceState, run: Mapping[str, Any]) -> None:
        run_id = str(run["runId"])
        status = normalise_status(run.get("status"))
        if status in TERMINAL_STATUSES or not status:
            state.open_runs.pop(run_id, None)
            return
        if run_id in state.open_runs or len(state.open_runs) < self._options.max_open_runs:
            state.open_runs[run_id] = status
            return
        created = parse_utc_ms(run.get("createdUtc"))
        if created is not None:
            moment = datetime.fromtimestamp(created / 1000, tz=state.installed_at.tzinfo)
            state.open_floor = min(state.open_floor or moment, moment)

    def _reread_open_runs(self, work: WorkspacePass, seen: set[str], counts: dict[str, int]) -> None:
        state = work.state
        for run_id, recorded_status in list(state.open_runs.items()):
            if run_id in seen:
                continue
            try:
                run = self._runs.get_run(work.ws, run_id)
            except RunNotFound:
                state.open_runs.pop(run_id, None)  # deleted: nothing more will happen to it
                continue
            work.budget.spend(1)
            changed = normalise_status(run.get("status")) != recorded_status
            if changed and not self._record(work, [run], counts):
                continue
            self._track(state, run)
            if work.budget.exhausted:
                break
        work.save()

    # -- recording -----------------------------------------------------------------------------

    def _record(self, work: WorkspacePass, runs: list[dict[str, Any]], counts: dict[str, int]) -> bool:
        """Each run through the processor; False when any must be tried again on a later pass."""
        jobs = [
            (reconcile_event(work.ws, run), record_source_of(run, work.state.installed_at)) for run in runs
        ]
        ok = True
        for result in self._pool.map(lambda job: self._process(*job), jobs):
            if isinstance(result, str):
                ok = False
                counts["failed"] += 1
                logger.warning("reconcile of %s: %s", work.ws.workspace_name, result)
            elif result.kind == "duplicate":
                counts["duplicate"] += 1
            elif result.kind == "rejected":
                counts["failed"] += 1
            elif result.record is not None and result.record.get("record_source") == "backfill":
                counts["backfilled"] += 1
            else:
                counts["recorded"] += 1
        return ok

    def _process(self, event: dict[str, Any], source: RecordSource) -> Outcome | str:
        try:
            return self._processor.process(event, source=source)
        except TransientError as exc:
            return f"run {event['data']['runId']}: {exc}"
