"""The process-wide objects, built once on first use and shared by every invocation.

The 2020 sample rebuilt the workspace connection and added a log handler on every event; here one
credential, one HTTP pipeline, one telemetry pipeline and one set of storage clients live for the
life of the worker process. Nothing heavy is imported until the first event arrives, which keeps
the host's indexing of ``function_app`` (the cold start users wait for) fast.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .processor import EventProcessor
from .settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from .notify import NotifySettings
    from .resource_use.due import DueRuns
    from .resource_use.timer import ResourceUseTimer
    from .runhistory import RunHistoryClient

_lock = threading.Lock()
# The worker process's objects, one per process by design: [(processor, resource-use pass)] once built.
_process: list[tuple[EventProcessor, ResourceUseTimer | None]] = []


def build_processor(
    settings: Settings,
    credential: TokenCredential | None = None,
    runs: RunHistoryClient | None = None,
    *,
    due: DueRuns | None = None,
    notify: NotifySettings | None = None,
) -> EventProcessor:
    """The processor and everything it talks to, sharing one credential. ``due``: where finished runs
    are noted for the resource-use pass (None: not noted, as in the command line's replay and backfill).
    ``notify``: the team's messages (:mod:`amlobs.notify`), off when None or without a webhook."""
    return _build(settings, credential, runs, due, notify)[0]


def _build(
    settings: Settings,
    credential: TokenCredential | None,
    runs: RunHistoryClient | None,
    due: DueRuns | None,
    notify: NotifySettings | None = None,
) -> tuple[EventProcessor, ResourceUseTimer | None]:
    from .cost_estimator import build_cost_estimator
    from .credentials import build_credential
    from .not_found import NotFoundRule
    from .resource_use.cluster_idle import ClusterIdlePass
    from .resource_use.due import DueNoter
    from .resource_use.run_pass import ResourceUsePass
    from .resource_use.timer import ResourceUseTimer
    from .runhistory import RunHistoryClient
    from .storage import create_stores
    from .telemetry import create_telemetry

    credential = credential or build_credential(settings)
    dedupe, rejected = create_stores(settings, credential)
    runs = runs or RunHistoryClient(settings, credential)
    telemetry = create_telemetry(settings, credential)
    costs = build_cost_estimator(settings, runs)
    notifier = None
    if notify is not None and notify.enabled:
        from .notify import Notifier

        notifier = Notifier(notify, dedupe, telemetry)
    processor = EventProcessor(
        runs=runs,
        telemetry=telemetry,
        dedupe=dedupe,
        rejected=rejected,
        # The compute lookups go through the run history client's pipeline: same token, same trusted host.
        costs=costs,
        due=DueNoter(due) if due is not None else None,
        notifier=notifier,
        not_found=NotFoundRule(60 * settings.run_not_found_grace_minutes),
    )
    if due is None:
        return processor, None
    # The passes share the processor's run history client (its token gate), telemetry, claims and prices.
    timer = ResourceUseTimer(
        ResourceUsePass(metrics=runs, telemetry=telemetry, claims=dedupe, due=due),
        ClusterIdlePass(metrics=runs, prices=costs, telemetry=telemetry, claims=dedupe),
    )
    return processor, timer


def _build_process(
    settings: Settings, notify: NotifySettings
) -> tuple[EventProcessor, ResourceUseTimer | None]:
    from .credentials import build_credential
    from .resource_use.due import create_due_runs

    credential = build_credential(settings)
    return _build(settings, credential, None, create_due_runs(settings, credential), notify)


def _started(env: Mapping[str, str] | None) -> tuple[EventProcessor, ResourceUseTimer | None]:
    if not _process:
        with _lock:
            if not _process:
                from .notify import NotifySettings

                # Both read first: a bad webhook setting refuses to start like any other setting.
                settings, notify = Settings.from_env(env), NotifySettings.from_env(env)
                _process.append(_build_process(settings, notify))
    return _process[0]


def get_processor(env: Mapping[str, str] | None = None) -> EventProcessor:
    """The process's processor, created from the environment on first call."""
    return _started(env)[0]


def get_resource_use_pass(env: Mapping[str, str] | None = None) -> ResourceUseTimer:
    """The process's resource-use passes (:mod:`amlobs.resource_use`), sharing the processor's clients."""
    resource_use = _started(env)[1]
    assert resource_use is not None
    return resource_use


def reset_processor() -> None:
    """Shut the process's processor down and forget it (tests that change the environment)."""
    with _lock:
        built = list(_process)
        _process.clear()
    for processor, _resource_use in built:
        processor.close()
