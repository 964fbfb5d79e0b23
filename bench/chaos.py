"""The chaos benchmark: Event Grid's delivery behaviour and injected faults against the real function.

``bench/chaos.sh`` (or ``.venv/bin/python bench/chaos.py``) runs the simulator of ``tests/chaos`` at a
larger scale than the test command does and prints the figures table (Markdown) that the README's
reliability section quotes; ``bench/results/chaos-latest.json`` keeps every figure. Nothing here
asserts: the test command's ``tests/test_chaos.py`` does, on small runs.

Default runs (each with 900 (run, status) keys, 10 % duplicate deliveries, reordering, 8 deliveries in
flight on 2 worker processes of 8 threads, retries with backoff, dead-letter after 5 attempts):
  * ``none``: no fault at all;
  * ``10%``: 10 % of the app's requests to AML and to ingestion answered with a fault;
  * ``20%``: 20 %, plus 3 workers killed with SIGKILL mid-invocation, Azurite paused once and restarted
    once, and one window of 403 from run history;
  * ``20%-b``: the same with another seed;
  * ``20%-dl``: the same faults, but Event Grid gives up after 3 attempts, so that deliveries caught
    in an outage are dead-lettered and ``python -m amlobs replay`` of the dead-letter blobs must
    recover them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from bench.netguard import install as install_netguard  # noqa: E402

install_netguard()

from tests.chaos.eventgrid import DeliveryPolicy  # noqa: E402
from tests.chaos.faults import FaultPlan  # noqa: E402
from tests.chaos.report import markdown_table  # noqa: E402
from tests.chaos.simulator import ChaosConfig, ChaosResult, run_chaos  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def default_runs(keys: int, seed: int) -> list[tuple[str, ChaosConfig]]:
    def config(rate: float, seed_offset: int, outages: bool, attempts: int = 5) -> ChaosConfig:
        return ChaosConfig(
            keys=keys,
            seed=seed + seed_offset,
            delivery=DeliveryPolicy(spread_seconds=max(4.0, keys / 40), max_attempts=attempts),
            faults=FaultPlan(
                rate=rate,
                worker_kills=3 if outages else 0,
                azurite_pauses=1 if outages else 0,
                azurite_restarts=1 if outages else 0,
                aml_403_windows=1 if outages else 0,
            ),
        )

    return [
        ("none", config(0.0, 0, False)),
        ("10%", config(0.10, 1, False)),
        ("20%", config(0.20, 2, True)),
        ("20%-b", config(0.20, 3, True)),
        ("20%-dl", config(0.20, 4, True, attempts=3)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=900, help="(run, status) keys per run (default 900)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--only", action="append", help="run only these (none, 10%%, 20%%, 20%%-b, 20%%-dl)")
    args = parser.parse_args(argv)
    results: list[tuple[str, ChaosResult]] = []
    for name, config in default_runs(args.keys, args.seed):
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        print(f"[chaos] run {name}: {config.keys} keys, fault rate {config.faults.rate:.0%}", file=sys.stderr)
        result = run_chaos(config)
        print(f"[chaos] run {name} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
        results.append((name, result))
    print(markdown_table(results))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chaos-latest.json").write_text(
        json.dumps(
            {
                "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "runs": {
                    name: {
                        **result.figures.as_dict(),
                        "failed_deliveries_by_error": dict(result.failures_by_error()),
                    }
                    for name, result in results
                },
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
