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

    from .runhistory import RunHistoryClient

_lock = threading.Lock()
_processor: EventProcessor | None = None


def build_processor(
    settings: Settings,
    credential: TokenCredential | None = None,
    runs: RunHistoryClient | None = None,
) -> EventProcessor:
    """The processor and everything it talks to, sharing one credential."""
    from .cost_estimator import build_cost_estimator
    from .credentials import build_credential
    from .not_found import NotFoundRule
    from .runhistory import RunHistoryClient
    from .storage import create_stores
    from .telemetry import create_telemetry

    credential = credential or build_credential(settings)
    dedupe, rejected = create_stores(settings, credential)
    runs = runs or RunHistoryClient(settings, credential)
    return EventProcessor(
        runs=runs,
        telemetry=create_telemetry(settings, credential),
        dedupe=dedupe,
        rejected=rejected,
        # The compute lookups go through the run history client's pipeline: same token, same trusted host.
        costs=build_cost_estimator(settings, runs),
        not_found=NotFoundRule(settings.run_not_found_grace_seconds),
    )


def get_processor(env: Mapping[str, str] | None = None) -> EventProcessor:
    """The process's processor, created from the environment on first call."""
    global _processor  # noqa: PLW0603 - one per worker process by design
    if _processor is None:
        with _lock:
            if _processor is None:
                _processor = build_processor(Settings.from_env(env))
    return _processor


def reset_processor() -> None:
    """Shut the process's processor down and forget it (tests that change the environment)."""
    global _processor  # noqa: PLW0603
    with _lock:
        if _processor is not None:
            _processor.close()
        _processor = None
