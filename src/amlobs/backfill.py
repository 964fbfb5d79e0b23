"""``backfill``: record past runs of a workspace through the same processor as live events.

A past run becomes a synthetic Event Grid event with the run's current status; the processor's
dedupe on (workspace, run, status) makes it idempotent with the live path in both directions. The
listing is paged; after each fully processed page the run history continuation token is written to
a checkpoint file, so an interrupted backfill resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from .errors import TransientError
from .events import RUN_STATUS_CHANGED, WorkspaceRef, normalise_status
from .processor import EventProcessor, Outcome

MAX_CONCURRENCY = 32
_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class BackfillError(ValueError):
    """Bad arguments or an unusable checkpoint; the message is meant for the user."""


class RunLister(Protocol):
    def iter_runs(
        self, ws: WorkspaceRef, *, since: datetime, continuation_token: str | None = None
    ) -> Iterator[Any]: ...


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``7d``/``12h``/``30m``/``2w`` before now, or an ISO date/datetime (UTC unless it has an offset)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(value)
    if match:
        amount = int(match[1])
        if amount <= 0:
            raise BackfillError(f"--since {value!r}: the duration must be positive")
        return now - timedelta(**{_UNITS[match[2].lower()]: amount})
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BackfillError(
            f"--since {value!r} is neither a duration (30m, 12h, 7d, 2w) nor an ISO date (2026-11-01)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed > now:
        raise BackfillError(f"--since {value!r} is in the future")
    return parsed


def backfill_event_id(ws: WorkspaceRef, run_id: str, status: str) -> str:
    digest = hashlib.sha256(f"{ws.cache_key}|{run_id}|{status.lower()}".encode()).hexdigest()
    return f"backfill-{digest[:32]}"


def run_to_event(ws: WorkspaceRef, run: Mapping[str, Any]) -> dict[str, Any]:
    """A run history run (``/runs:query`` item) as the Event Grid event AML would have sent."""
    run_id = run.get("runId")
    # No status: the event carries none (the record takes the run details' status, or has none).
    status = normalise_status(run.get("status"))
    run_type = run.get("runType")
    properties = run.get("properties") if isinstance(run.get("properties"), Mapping) else {}
    if not isinstance(run_type, str) or not run_type:
        run_type = properties.get("azureml.runsource") if isinstance(properties, Mapping) else None
    experiment_id = run.get("experimentId")
    return {
        "id": backfill_event_id(ws, str(run_id), status or ""),
        "eventType": RUN_STATUS_CHANGED,
        "eventTime": run.get("endTimeUtc") or run.get("startTimeUtc") or run.get("createdUtc"),
        "topic": ws.resource_id,
        "subject": f"experiments/{experiment_id}/runs/{run_id}",
        "dataVersion": "backfill",
        "data": {
            "experimentId": experiment_id,
            "experimentName": run.get("experimentName"),
            "runId": run_id,
            "runType": run_type,
            "runStatus": status,
            "runTags": run.get("tags") or {},
            "runProperties": properties or {},
        },
    }


@dataclass
class Checkpoint:
    workspace_id: str
    since: str
    continuation_token: str | None = None
    complete: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    updated_at: str = ""

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise BackfillError(
                f"checkpoint {path} is unreadable ({exc}); delete it or pass --restart"
            ) from None

    def save(self, path: Path) -> None:
        self.updated_at = datetime.now(UTC).isoformat()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: an interrupted save never leaves a half-written checkpoint.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(self), handle, indent=2)
        Path(tmp).replace(path)


def default_checkpoint_path(ws: WorkspaceRef) -> Path:
    digest = hashlib.sha256(ws.cache_key.encode()).hexdigest()[:12]
    return Path(".amlobs") / f"backfill-{ws.workspace_name}-{digest}.json"


@dataclass
class BackfillReport:
    pages: int = 0
    runs: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"recorded": 0, "partial": 0, "duplicate": 0, "rejected": 0, "failed": 0}
    )
    failures: list[str] = field(default_factory=list)
    complete: bool = False
    resumed: bool = False


Progress = Callable[[BackfillReport], None]


def _process_one(processor: EventProcessor, event: dict[str, Any]) -> Outcome | str:
    try:
        return processor.process(event, source="backfill")
    except TransientError as exc:
        return f"run {event['data']['runId']}: {exc}"


def _starting_point(
    checkpoint_path: Path | None, ws: WorkspaceRef, since: datetime, report: BackfillReport
) -> tuple[Checkpoint, datetime]:
    """A fresh checkpoint, or the unfinished one on disk (whose ``since`` wins: ``7d`` moves with time)."""
    fresh = Checkpoint(workspace_id=ws.resource_id, since=since.isoformat())
    previous = Checkpoint.load(checkpoint_path) if checkpoint_path is not None else None
    if previous is None or previous.complete:
        return fresh, since
    if previous.workspace_id.lower() != ws.resource_id.lower():
        raise BackfillError(
            f"checkpoint {checkpoint_path} belongs to {previous.workspace_id}; pass --restart "
            "or another --checkpoint"
        )
    report.resumed = previous.continuation_token is not None
    report.counts.update({k: v for k, v in previous.counts.items() if k in report.counts})
    return previous, datetime.fromisoformat(previous.since)


def run_backfill(
    processor: EventProcessor,
    lister: RunLister,
    ws: WorkspaceRef,
    since: datetime,
    *,
    checkpoint_path: Path | None,
    concurrency: int = 4,
    on_progress: Progress | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> BackfillReport:
    """Process every run created since ``since``. Stops after the first page with a failure, leaving the
    checkpoint before that page, so re-running retries exactly what is not yet recorded."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise BackfillError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
    report = BackfillReport()
    checkpoint, since = _starting_point(checkpoint_path, ws, since, report)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
        for page in lister.iter_runs(ws, since=since, continuation_token=checkpoint.continuation_token):
            events = [run_to_event(ws, run) for run in page.runs if run.get("runId")]
            page_failed = False
            for result in pool.map(lambda e: _process_one(processor, e), events):
                report.runs += 1
                if isinstance(result, str):
                    page_failed = True
                    report.counts["failed"] += 1
                    report.failures.append(result)
                    continue
                report.counts[result.kind] += 1
                if on_outcome is not None:
                    on_outcome(result)
            report.pages += 1
            if on_progress is not None:
                on_progress(report)
            if page_failed:
                break
            checkpoint.continuation_token = page.continuation_token
            checkpoint.counts = dict(report.counts)
            if checkpoint_path is not None:
                checkpoint.save(checkpoint_path)
        else:
            report.complete = True
    if report.complete and checkpoint_path is not None:
        checkpoint.complete = True
        checkpoint.continuation_token = None
        checkpoint.counts = dict(report.counts)
        checkpoint.save(checkpoint_path)
    return report
