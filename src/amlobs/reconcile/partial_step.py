"""The partial step: complete the run statuses of a workspace that were recorded without run
history's details (an old event whose run answered 404, or a refused read).

For each such claim (``ClaimStoreBase.partial_claims``), within the pass budget, the step asks run
history for the run again; when it answers, the processor enriches the status afresh and sends one
complete copy (``record_source`` = ``reconcile``, ``completes_partial`` = ``"true"``, no
``enrichment_error``), taking the claim's partial mark off first, ETag-conditional, so that two racing
passes send it once. A run that still 404s or is refused keeps its mark and is counted
(``still_partial``; ``failed`` for a transient answer, a 403 after the transport's retries included);
the dashboards keep, per key, the copy without ``enrichment_error``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import RunNotFound, TransientError
from ..processor import EventProcessor
from .runs_step import RUNS_PERMISSION, RunReader, reconcile_event
from .timer import StepReport, WorkspacePass

logger = logging.getLogger("amlobs.reconcile")


class PartialStep:
    name = "partial"
    permission = RUNS_PERMISSION

    def __init__(self, processor: EventProcessor, runs: RunReader) -> None:
        self._processor = processor
        self._runs = runs

    def run(self, work: WorkspacePass) -> StepReport:
        counts: dict[str, int | str] = {"completed": 0, "still_partial": 0, "duplicate": 0, "failed": 0}
        prefix = f"run|{work.ws.cache_key}|"
        for partial in self._processor.partial_claims():
            if not partial.key.startswith(prefix):
                continue  # another workspace's
            if work.budget.exhausted:
                counts["skipped"] = 1
                break
            work.budget.spend(1)
            kind = self._complete(work, partial.run_id, partial.status)
            counts[kind] = int(counts[kind]) + 1
        return StepReport(counts)

    def _complete(self, work: WorkspacePass, run_id: str, status: str) -> str:
        try:
            run: dict[str, Any] = dict(self._runs.get_run(work.ws, run_id))
        except RunNotFound:
            return "still_partial"  # still 404, or refused: the mark stays for a later pass
        run["status"] = status  # the status recorded partial, not whatever the run has reached since
        try:
            outcome = self._processor.complete_partial(reconcile_event(work.ws, run))
        except TransientError as exc:
            logger.warning("completing run %s %s in %s: %s", run_id, status, work.ws.workspace_name, exc)
            return "failed"
        if outcome.kind == "recorded":
            return "completed"
        return "duplicate" if outcome.kind == "duplicate" else "still_partial"
