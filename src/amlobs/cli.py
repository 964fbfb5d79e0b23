"""Command line: ``python -m amlobs replay ...`` runs events through the Function's own code path."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .backfill import BackfillReport
from .errors import RunNotFound, TransientError
from .processor import EventProcessor, Outcome
from .replay import iter_paths
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from .runhistory import RunHistoryClient

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


def _processor(settings: Settings, dry_run: bool) -> tuple[EventProcessor, RunHistoryClient]:
    """The Function's processor; for a dry run the same run history client, but records stay in memory."""
    from .cost_estimator import build_cost_estimator
    from .credentials import build_credential
    from .runhistory import RunHistoryClient
    from .runtime import build_processor
    from .storage import MemoryDedupeStore, MemoryRejectedEventStore
    from .telemetry import RecordingTelemetry

    credential = build_credential(settings)
    runs = RunHistoryClient(settings, credential)
    if not dry_run:
        return build_processor(settings, credential, runs), runs
    processor = EventProcessor(
        runs=runs,
        telemetry=RecordingTelemetry(),
        dedupe=MemoryDedupeStore(),
        rejected=MemoryRejectedEventStore(),
        costs=build_cost_estimator(settings, runs),
    )
    return processor, runs


def _print_outcome(outcome: Outcome, out: TextIO) -> None:
    if outcome.record is not None:
        out.write(json.dumps({"event": "AmlRunStatusChanged", **outcome.record}, sort_keys=True) + "\n")
    if outcome.summary is not None:
        out.write(json.dumps({"event": "AmlPipelineRunSummary", **outcome.summary}, sort_keys=True) + "\n")


def replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    processor, _ = _processor(Settings.from_env(), args.dry_run)
    counts = {"recorded": 0, "partial": 0, "duplicate": 0, "rejected": 0, "failed": 0}
    for item in iter_paths([Path(p) for p in args.paths]):
        if item.error is not None or item.payload is None:
            counts["failed"] += 1
            err.write(f"{item.location}: {item.error}\n")
            continue
        try:
            outcome = processor.process(item.payload, source="replay")
        except TransientError as exc:
            counts["failed"] += 1
            err.write(f"{item.location}: not recorded, try again later: {exc}\n")
            continue
        counts[outcome.kind] += 1
        if outcome.kind == "rejected":
            stored = f" (stored as {outcome.blob_name})" if outcome.blob_name else ""
            err.write(f"{item.location}: rejected ({outcome.reason}): {outcome.detail}{stored}\n")
        elif args.dry_run:
            _print_outcome(outcome, out)
    summary = ", ".join(f"{count} {kind}" for kind, count in counts.items())
    err.write(f"replay: {summary}{' (dry run: nothing sent)' if args.dry_run else ''}\n")
    return EXIT_FAILURES if counts["failed"] or counts["rejected"] else EXIT_OK


def _progress_printer(err: TextIO) -> Callable[[BackfillReport], None]:
    interactive = err.isatty()

    def show(report: BackfillReport) -> None:
        counts = " · ".join(f"{n} {k}" for k, n in report.counts.items())
        line = f"backfill: page {report.pages} · {report.runs} runs · {counts}"
        err.write(f"\r\x1b[2K{line}" if interactive else f"{line}\n")
        err.flush()

    return show


def backfill(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .backfill import BackfillError, default_checkpoint_path, parse_since, run_backfill
    from .errors import EventRejected
    from .events import WorkspaceRef

    try:
        ws = WorkspaceRef.from_resource_id(args.workspace)
    except EventRejected as exc:
        err.write(f"amlobs backfill: --workspace: {exc.detail}\n")
        return EXIT_USAGE
    try:
        since = parse_since(args.since)
        settings = Settings.from_env()
        processor, runs = _processor(settings, args.dry_run)
        checkpoint: Path | None = None
        if not args.dry_run:
            checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint_path(ws)
            if args.restart and checkpoint.exists():
                checkpoint.unlink()
        report = run_backfill(
            processor,
            runs,
            ws,
            since,
            checkpoint_path=checkpoint,
            concurrency=args.concurrency,
            on_progress=_progress_printer(err),
            on_outcome=(lambda outcome: _print_outcome(outcome, out)) if args.dry_run else None,
        )
    except BackfillError as exc:
        err.write(f"amlobs backfill: {exc}\n")
        return EXIT_USAGE
    except TransientError as exc:
        err.write(f"\namlobs backfill: listing runs failed, re-run to resume: {exc}\n")
        return EXIT_FAILURES
    except RunNotFound as exc:  # the workspace is gone, or its discovery named a host that gets no token
        err.write(f"\namlobs backfill: cannot list the workspace's runs: {exc}\n")
        return EXIT_FAILURES
    if err.isatty():
        err.write("\n")
    for failure in report.failures:
        err.write(f"failed: {failure}\n")
    state = "complete" if report.complete else f"stopped, re-run to resume from {checkpoint}"
    resumed = " (resumed)" if report.resumed else ""
    err.write(f"backfill {state}: {report.runs} runs in {report.pages} pages{resumed}\n")
    return EXIT_OK if report.complete and not report.failures else EXIT_FAILURES


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amlobs",
        description="AML run observability: re-drive events through the same code as the Function App.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    replay_parser = commands.add_parser(
        "replay",
        help="process event files: single events, arrays, JSON lines, Event Grid dead-letter blobs",
        description=(
            "Process Event Grid events from files or folders exactly as the Function does. "
            "Run statuses already recorded are skipped. Exit status 1 when any event failed or was rejected."
        ),
    )
    replay_parser.add_argument("paths", nargs="+", metavar="FILE|DIR")
    replay_parser.add_argument(
        "--dry-run", action="store_true", help="print the records as JSON lines instead of sending them"
    )
    replay_parser.set_defaults(handler=replay)

    backfill_parser = commands.add_parser(
        "backfill",
        help="record past runs of a workspace (idempotent with live events, resumable)",
        description=(
            "List the runs created since --since through the run history API and record each one's "
            "current status, exactly as a live event would. Runs whose status is already recorded are "
            "skipped. A checkpoint file makes an interrupted backfill resume where it stopped."
        ),
    )
    backfill_parser.add_argument(
        "--workspace", required=True, metavar="ID", help="the AML workspace resource id"
    )
    backfill_parser.add_argument(
        "--since", required=True, metavar="DURATION|DATE", help="e.g. 7d, 12h, 2w or 2026-11-01"
    )
    backfill_parser.add_argument("--concurrency", type=_whole_number, default=4, help="runs at once (1-32)")
    backfill_parser.add_argument(
        "--checkpoint", metavar="FILE", help="default: .amlobs/backfill-<ws>-<hash>.json"
    )
    backfill_parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    backfill_parser.add_argument(
        "--dry-run", action="store_true", help="print the records as JSON lines instead of sending them"
    )
    backfill_parser.set_defaults(handler=backfill)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=err, format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.handler(args, out, err)
    except SettingsError as exc:
        err.write(f"amlobs: configuration error: {exc}\n")
        return EXIT_USAGE
    return code
