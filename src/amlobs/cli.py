"""Command line: ``python -m amlobs replay ...`` runs events through the Function's own code path."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from .errors import TransientError
from .processor import EventProcessor, Outcome
from .replay import iter_paths
from .settings import Settings, SettingsError

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2


def _dry_run_processor(settings: Settings) -> tuple[EventProcessor, object]:
    from .credentials import build_credential
    from .runhistory import RunHistoryClient
    from .storage import MemoryDedupeStore, MemoryRejectedEventStore
    from .telemetry import RecordingTelemetry

    telemetry = RecordingTelemetry()
    processor = EventProcessor(
        runs=RunHistoryClient(settings, build_credential(settings)),
        telemetry=telemetry,
        dedupe=MemoryDedupeStore(),
        rejected=MemoryRejectedEventStore(),
    )
    return processor, telemetry


def _print_outcome(outcome: Outcome, out: TextIO) -> None:
    if outcome.record is not None:
        out.write(json.dumps({"event": "AmlRunStatusChanged", **outcome.record}, sort_keys=True) + "\n")
    if outcome.summary is not None:
        out.write(json.dumps({"event": "AmlPipelineRunSummary", **outcome.summary}, sort_keys=True) + "\n")


def replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    settings = Settings.from_env()
    if args.dry_run:
        processor, _ = _dry_run_processor(settings)
    else:
        from .runtime import get_processor

        processor = get_processor()
    counts = {"recorded": 0, "partial": 0, "duplicate": 0, "rejected": 0, "failed": 0}
    for item in iter_paths([Path(p) for p in args.paths]):
        if item.error is not None or item.payload is None:
            counts["failed"] += 1
            err.write(f"{item.location}: {item.error}\n")
            continue
        try:
            outcome = processor.process(item.payload)
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
            "Already-recorded event ids are skipped. Exit status 1 when any event failed or was rejected."
        ),
    )
    replay_parser.add_argument("paths", nargs="+", metavar="FILE|DIR")
    replay_parser.add_argument(
        "--dry-run", action="store_true", help="print the records as JSON lines instead of sending them"
    )
    replay_parser.set_defaults(handler=replay)
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
