"""The reconciler's settings, read from the environment (app settings in Azure; azd env values)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..settings import SettingsError

# The timer's NCRONTAB schedule (six fields, seconds first) is read by the Functions host itself from
# the app setting named in function_app ("%AML_OBS_RECONCILE_SCHEDULE%"): default every 5 minutes.
DEFAULT_TIMER_SCHEDULE = "0 */5 * * * *"


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float, maximum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise SettingsError(f"{name} must be between {minimum:g} and {maximum:g}, got {raw!r}")
    return value


@dataclass(frozen=True)
class ReconcileOptions:
    """``overlap_seconds``: how far before the watermark each listing starts again (runs written late).
    ``max_runs_per_pass`` / ``max_seconds_per_pass``: the budget one tick spends over all workspaces and
    steps; the next tick resumes where it stopped. ``backfill_days``: how far back a workspace's first
    pass starts (0: from now). ``lease_seconds``: how long a pass holds the lease (longer than a pass).
    """

    overlap_seconds: float = 600.0
    max_runs_per_pass: int = 2000
    max_seconds_per_pass: float = 240.0
    backfill_days: float = 0.0
    concurrency: int = 8
    lease_seconds: float = 300.0
    # Non-terminal runs re-read one by one each pass, per workspace; past it, the listing holds back.
    max_open_runs: int = 200

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReconcileOptions:
        env = os.environ if env is None else env
        max_seconds = _number(env, "AML_OBS_RECONCILE_MAX_SECONDS", 240.0, minimum=1, maximum=3600)
        return cls(
            overlap_seconds=60
            * _number(env, "AML_OBS_RECONCILE_OVERLAP_MINUTES", 10, minimum=0, maximum=1440),
            max_runs_per_pass=int(
                _number(env, "AML_OBS_RECONCILE_MAX_RUNS", 2000, minimum=1, maximum=1_000_000)
            ),
            max_seconds_per_pass=max_seconds,
            backfill_days=_number(env, "AML_OBS_BACKFILL_DAYS", 0, minimum=0, maximum=3650),
            concurrency=int(_number(env, "AML_OBS_RECONCILE_CONCURRENCY", 8, minimum=1, maximum=32)),
            lease_seconds=max_seconds + 60,
        )
