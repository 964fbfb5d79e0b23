#!/usr/bin/env python3
"""Try it without Azure: one pipeline run through the real function, against the local stand-ins.

What runs is the product's own code path: ``function_app.app``, indexed and invoked as the Functions
host does (tests/integration/host.py), with the settings Bicep gives the Function App pointed at the
project's loopback stand-ins:

* the AML fake (tests/fakes/aml_api.py): managed identity, Resource Manager, discovery, run history
  and the Retail Prices API, serving an SDK v2 pipeline built from Microsoft's recorded v2 node
  (tests/trace_scenario.py ``v2_pipeline``): a reused node, a nested sub-pipeline whose last node
  fails with a recorded error;
* Azurite (tests/fakes/azurite.py) for the claims that record each run status once;
* the ingestion sink (tests/fakes/ingestion.py) in place of Application Insights.

The events are delivered as Event Grid may deliver them: shuffled, and one of them twice. The table
is read back from what ingestion *received*; so are the pictures (the trace from the stored spans, the
dashboard from the workbook's own queries executed on the stored records by tests/kql_engine.py).

Nothing is sent anywhere but 127.0.0.1: a socket guard (bench/netguard.py) refuses any other
connection and name look-up, and the exporter's side channels are off (tests/quiet_exporter.py).

Usage: sh scripts/try.sh [--no-pictures] [--out DIR]     (after `sh scripts/test.sh` created .venv)
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO), str(REPO / "scripts")]

from bench import netguard  # noqa: E402 (the guard goes in before anything that could open a socket)

netguard.install()

from tests.quiet_exporter import QUIET_EXPORTER_ENV  # noqa: E402

os.environ.update(QUIET_EXPORTER_ENV)  # before any azure.monitor / opentelemetry import
for _inherited in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID"):
    os.environ.pop(_inherited, None)

from tests.fakes.azurite import AZURITE_BIN  # noqa: E402

if TYPE_CHECKING:
    from try_run import Outcome

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
INSTALL_CHROMIUM = "apt-get install chromium (Debian/Ubuntu; macOS: brew install --cask chromium)"
INSTALL_NODE = "apt-get install nodejs npm (Debian/Ubuntu; macOS: brew install node)"


# --------------------------------------------------------------------------------------------------
# The pictures


def chromium() -> str | None:
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def write_pictures(outcome: Outcome, out: Path, *, screenshots: bool) -> list[Path]:
    """The trace (SVG) and the dashboard (HTML page) drawn from what ingestion received, and with
    ``screenshots`` their PNGs (Chromium); the files written."""
    import render_dashboard
    import render_trace
    from try_dashboard import dashboard_page

    from tests.trace_scenario import spans_from, trace_of, tree

    out.mkdir(parents=True, exist_ok=True)
    trace = trace_of(spans_from(outcome.envelopes), outcome.root_run_id)
    drawing = render_trace.svg(tree(trace), trace[0].trace_id)
    page_html = dashboard_page(outcome)
    written = [out / "trace.svg", out / "dashboard.html"]
    written[0].write_text(drawing, encoding="utf-8")
    written[1].write_text(page_html, encoding="utf-8")
    if screenshots:
        render_trace.screenshot(drawing, out / "trace.png")
        with tempfile.TemporaryDirectory() as tmp:  # the screenshot leaves a measuring page beside it
            page = Path(tmp) / "dashboard.html"
            page.write_text(page_html, encoding="utf-8")
            render_dashboard.screenshot(page, (out / "dashboard.png").resolve())
        written = [out / "trace.png", out / "dashboard.png", *written]
    return written


def prerequisite_problem() -> str | None:
    """What is missing to run at all (Chromium only for the PNGs), with the command that installs it."""
    if shutil.which("node") is None:
        return (
            f"Azurite (the storage emulator) needs Node.js, which is not on PATH: install it ({INSTALL_NODE})"
        )
    if not AZURITE_BIN.exists():
        missing = AZURITE_BIN.relative_to(REPO)
        return f"Azurite is not installed ({missing} is missing): run sh scripts/test.sh once"
    return None


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to where they are, when it is below it."""
    path = path.resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


class _HostWarnings(logging.Filter):
    """azure-functions warns, while indexing, that auth levels apply to HTTP functions only: noise here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Auth level is not applied")


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-pictures", action="store_true", help="print the table only")
    parser.add_argument("--out", type=Path, default=REPO / ".amlobs" / "try-it", help="where the pictures go")
    parser.add_argument(
        "--seed", type=int, default=20, help="the delivery order (any order records the same)"
    )
    args = parser.parse_args(argv)
    began = time.perf_counter()
    problem = prerequisite_problem()
    if problem:
        print(f"try: {problem}", file=sys.stderr)
        return 2
    logging.getLogger().addFilter(_HostWarnings())
    from try_run import run_scenario
    from try_table import report

    outcome = run_scenario(args.seed)
    print(report(outcome))
    status = 0
    if args.no_pictures:
        print("Pictures: not drawn (--no-pictures).")
    else:
        browser = chromium()
        try:
            written = write_pictures(outcome, args.out, screenshots=browser is not None)
        except (OSError, subprocess.SubprocessError) as failed:
            print(f"Pictures: not drawn: {type(failed).__name__}: {failed}")
            status = 1
        else:
            names = ", ".join(_shown(p) for p in written)
            if browser is None:
                print(
                    f"Pictures: {names} (open them in a browser); the PNGs need Chromium: {INSTALL_CHROMIUM}."
                )
            else:
                print(f"Pictures: {names}.")
    refused = len(netguard.ATTEMPTS)
    print(
        f"Sent only to 127.0.0.1 ({refused} other connection(s) refused"
        + (f": {', '.join(netguard.ATTEMPTS)}" if refused else "")
        + f"). {time.perf_counter() - began:.1f} s."
    )
    return 1 if refused else status


if __name__ == "__main__":
    sys.exit(main())
