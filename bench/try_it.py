"""How long the try-it command takes, as a user runs it (not part of the test suite: nothing asserts a time).

Runs ``sh scripts/try.sh`` (``--no-pictures``, then with the pictures when Chromium is installed) a few
times in fresh processes, each timed from spawn to exit, and prints the median and the slowest with
the machine's cores and load average (the figures in docs/try-it.md come from here).

Usage: .venv/bin/python bench/try_it.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(*args: str) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        ["/bin/sh", str(ROOT / "scripts" / "try.sh"), *args], capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"scripts/try.sh {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    variants = [("table only (--no-pictures)", ["--no-pictures"])]
    if any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")):
        variants.append(("table and pictures (Chromium)", []))
    print(f"cores: {os.cpu_count()}; load average before: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| variant | rounds | median (s) | slowest (s) |\n| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as out:
        for label, extra in variants:
            times = [timed(*extra, "--out", out) for _ in range(args.rounds)]
            print(f"| {label} | {args.rounds} | {statistics.median(times):.1f} | {max(times):.1f} |")
    print(f"load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
