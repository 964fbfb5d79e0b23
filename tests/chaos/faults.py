"""Random faults for the chaos simulator: drawn per HTTP request at the fakes, counted by type.

``rate`` is the probability that one request of the app to the AML fake (run history, Resource
Manager, discovery) or to the ingestion fake is answered with a fault instead of normally; the fault
type is then drawn uniformly from that service's list. Outages that are not per request (a 403
window on AML, workers killed with SIGKILL, Azurite paused or restarted) are scheduled by
:class:`tests.chaos.simulator.ChaosRun` and counted here too.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.fakes.aml_api import Fault
from tests.fakes.ingestion import IngestionFault, RecordedRequest

AML_FAULTS = ("aml_404", "aml_429", "aml_5xx", "aml_timeout", "aml_drop")
INGESTION_FAULTS = ("ingestion_5xx", "ingestion_timeout", "ingestion_206")
OUTAGES = ("aml_403_window", "worker_kill", "azurite_pause", "azurite_restart")


@dataclass
class FaultPlan:
    rate: float = 0.0  # per request, at AML and at ingestion
    client_timeout_seconds: float = 1.0  # the app's AML_OBS_HTTP_TIMEOUT_SECONDS
    worker_kills: int = 0
    azurite_pauses: int = 0
    azurite_restarts: int = 0
    aml_403_windows: int = 0
    outage_seconds: float = 1.5
    outage_window_fraction: float = 1.0  # outages start within this share of the delivery window

    @property
    def any(self) -> bool:
        return bool(
            self.rate
            or self.worker_kills
            or self.azurite_pauses
            or self.azurite_restarts
            or self.aml_403_windows
        )


@dataclass
class FaultInjector:
    plan: FaultPlan
    rng: random.Random
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._forbidden_until = 0.0
        self.enabled = True

    def count(self, name: str) -> None:
        with self._lock:
            self.counts[name] += 1

    def forbid_aml_for(self, seconds: float) -> None:
        """A 403 window: the role assignment is "still propagating" for everyone."""
        with self._lock:
            self._forbidden_until = time.monotonic() + seconds
            self.counts["aml_403_window"] += 1

    def _draw(self, choices: tuple[str, ...]) -> str | None:
        with self._lock:
            if not self.enabled or self.rng.random() >= self.plan.rate:
                return None
            choice = self.rng.choice(choices)
            self.counts[choice] += 1
            return choice

    # -- hooks (run on the fakes' server threads) -----------------------------------------------------
    def aml(self, method: str, path: str) -> Fault | None:
        if path.startswith("/msi/"):
            return None  # token endpoint faults are the identity's business, not this simulator's
        with self._lock:
            forbidden = self.enabled and time.monotonic() < self._forbidden_until
        history = "/history/" in path
        if forbidden and history:
            return Fault(403, body={"error": {"code": "AuthorizationFailed", "message": "chaos: 403"}})
        # A 404 from run history means "run deleted" (a partial record); elsewhere it would mean
        # "workspace gone", a different story: Resource Manager and discovery get the other faults.
        choice = self._draw(AML_FAULTS if history else AML_FAULTS[1:])
        timeout = self.plan.client_timeout_seconds
        if choice == "aml_404":
            return Fault(404, body={"error": {"code": "RunNotFound", "message": "chaos: 404"}})
        if choice == "aml_429":
            return Fault(429, headers={"Retry-After": "0.2"}, body={"error": {"code": "TooManyRequests"}})
        if choice == "aml_5xx":
            return Fault(self.rng.choice((500, 502, 503)), body={"error": {"code": "ServiceError"}})
        if choice == "aml_timeout":
            return Fault(delay=timeout * 1.5, passthrough=True)
        if choice == "aml_drop":
            return Fault(close=True)
        return None

    def ingestion(self, request: RecordedRequest) -> IngestionFault | None:
        choice = self._draw(INGESTION_FAULTS)
        if choice == "ingestion_5xx":
            return IngestionFault(self.rng.choice((500, 503)))
        if choice == "ingestion_timeout":
            # Held longer than the client waits, then stored: ingestion may keep what the client gave up on.
            return IngestionFault(
                "slow", delay=self.plan.client_timeout_seconds * 1.6, released_by_reset=False
            )
        if choice == "ingestion_206":
            count = len(request.envelopes)
            refused = frozenset(i for i in range(count) if self.rng.random() < 0.5) or frozenset({0})
            return IngestionFault("partial", refused=refused, partial_status=self.rng.choice((500, 503)))
        return None
