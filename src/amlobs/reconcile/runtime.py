"""The process's reconciler, built once on first tick from the same objects as the live path: the
processor (its claims, its telemetry, its run history client) and the storage account's table."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from ..runtime import get_processor
from ..settings import Settings
from .options import ReconcileOptions
from .timer import PassStep, ReconcilerTimer
from .workspaces import observed_workspaces

logger = logging.getLogger("amlobs.reconcile")

_lock = threading.Lock()
_timer: ReconcilerTimer | None = None


def build_reconciler(env: Mapping[str, str] | None = None) -> ReconcilerTimer:
    from ..credentials import build_credential
    from ..storage._azure import StorageTimeouts
    from .partial_step import PartialStep
    from .runs_step import RunsStep
    from .state import MemoryReconcilerStore, ReconcilerStore, TableReconcilerStore

    settings = Settings.from_env(env)
    options = ReconcileOptions.from_env(env)
    processor = get_processor(env)
    store: ReconcilerStore
    if settings.storage is None:
        logger.warning("AzureWebJobsStorage is not set: the reconciler's watermarks live in memory only")
        store = MemoryReconcilerStore()
    else:
        credential = None if settings.storage.connection_string else build_credential(settings)
        store = TableReconcilerStore(
            settings.storage, credential, timeouts=StorageTimeouts.from_settings(settings)
        )
    from ..runhistory import RunHistoryClient

    runs = processor.runs
    if not isinstance(runs, RunHistoryClient):
        raise TypeError("the reconciler lists runs with the processor's RunHistoryClient")
    from ..schedules.step import ScheduleOptions, SchedulesStep

    # The after-the-fact passes, in order, sharing one budget: runs first (the schedules step then sees
    # their records' claims), partial records completed next, schedules last. A later step appends
    # itself here.
    steps: list[PassStep] = [
        RunsStep(processor, runs, options),
        PartialStep(processor, runs),
        SchedulesStep(processor, runs, ScheduleOptions.from_env(env)),
    ]
    workspaces = dict(env) if env is not None else None
    return ReconcilerTimer(
        steps=steps,
        store=store,
        telemetry=processor.telemetry,
        options=options,
        workspaces=lambda: observed_workspaces(workspaces),
    )


def get_reconciler() -> ReconcilerTimer:
    global _timer  # noqa: PLW0603 - one per worker process by design
    if _timer is None:
        with _lock:
            if _timer is None:
                _timer = build_reconciler()
    return _timer


def reset_reconciler() -> None:
    global _timer  # noqa: PLW0603
    with _lock:
        _timer = None
