"""What the Functions host loads when it indexes ``function_app`` (the cold start users wait for)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Loaded on the first event, never at indexing: the SDKs, the HTTP stack, and the cost estimate's
# arithmetic (decimal) with its clients.
LOADED_ON_FIRST_EVENT = (
    "azure.core",
    "azure.data",
    "azure.identity",
    "azure.monitor",
    "azure.storage",
    "opentelemetry",
    "requests",
    "urllib3",
    "decimal",
    "amlobs.cost",
    "amlobs.cost_estimator",
    "amlobs.prices",
    "amlobs.runhistory",
    "amlobs.storage",
    "amlobs.telemetry",
    "amlobs.tracing",
)


def test_indexing_function_app_loads_no_sdk_and_no_cost_arithmetic() -> None:
    code = (
        "import sys\n"
        "import function_app\n"
        f"prefixes = {LOADED_ON_FIRST_EVENT!r}\n"
        "print(sorted(m for m in sys.modules if m.startswith(prefixes)))\n"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(src)},
        cwd=src,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
