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
    from .runhistory import RunHistoryClient

_lock = threading.Lock()
_processor: EventProcessor | None = None


def build_processor(
    settings: Settings,
    credential: TokenCredential | None = None,
    runs: RunHistoryClient | None = None,
    notify: NotifySettings | None = None,
) -> EventProcessor:
    """The processor and everything it talks to, sharing one credential. ``notify``: the webhook
    messages (:mod:`amlobs.notify`), off when None or without a webhook."""
    from .cost_estimator import build_cost_estimator
    from .credentials import build_credential
    from .runhistory import RunHistoryClient
    from .storage import create_stores
    from .telemetry import create_telemetry

    credential = credential or build_credential(settings)
    dedupe, rejected = create_stores(settings, credential)
    runs = runs or RunHistoryClient(settings, credential)
    telemetry = create_telemetry(settings, credential)
    notifier = None
    if notify is not None and notify.enabled:
        from .notify import Notifier

        notifier = Notifier(notify, dedupe, telemetry)
    return EventProcessor(
        runs=runs,
        telemetry=telemetry,
        dedupe=dedupe,
        rejected=rejected,
        notifier=notifier,
        # The compute lookups go through the run history client's pipeline: same token, same trusted host.
        costs=build_cost_estimator(settings, runs),
    )


def get_processor(env: Mapping[str, str] | None = None) -> EventProcessor:
    """The process's processor, created from the environment on first call."""
    global _processor  # noqa: PLW0603 - one per worker process by design
    if _processor is None:
        with _lock:
            if _processor is None:
                from .notify import NotifySettings

                # Both read first: a bad webhook setting refuses to start like any other setting.
                settings, notify = Settings.from_env(env), NotifySettings.from_env(env)
                _processor = build_processor(settings, notify=notify)
    return _processor


def reset_processor() -> None:
    """Shut the process's processor down and forget it (tests that change the environment)."""
    global _processor  # noqa: PLW0603
    with _lock:
        if _processor is not None:
            _processor.close()
        _processor = None
