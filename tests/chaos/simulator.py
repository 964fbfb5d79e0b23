"""One chaos run end to end: fakes, worker processes, Event Grid deliveries, outages, replay, figures.

Used by ``tests/test_chaos.py`` (small runs, in the test command) and ``bench/chaos.py`` (the larger
runs whose table is in the README). Everything listens on 127.0.0.1: the AML/identity fake and the
ingestion fake in this process, Azurite (persisted to disk, so that a restart keeps the dedupe
table) and the worker processes as children.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.analysis import Figures, analyse
from tests.chaos.eventgrid import ROOT, Attempt, DeliveryPolicy, EventGridSimulator, WorkerPool
from tests.chaos.faults import FaultInjector, FaultPlan
from tests.chaos.scenario import Scenario, build_scenario
from tests.fakes.aml_api import FakeAmlApi, start_aml_api
from tests.fakes.azurite import Azurite, start_azurite
from tests.fakes.ingestion import IngestionServer
from tests.quiet_exporter import QUIET_EXPORTER_ENV

_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


@dataclass
class ChaosConfig:
    keys: int = 120
    seed: int = 1
    workers: int = 2
    threads: int = 8
    delivery: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    faults: FaultPlan = field(default_factory=FaultPlan)
    client_timeout_seconds: float = 1.0
    claim_lease_seconds: float = 3.0


@dataclass
class ChaosResult:
    config: ChaosConfig
    figures: Figures
    replay_exit_code: int | None
    attempts: list[Attempt] = field(default_factory=list)

    def failures_by_error(self) -> Counter[str]:
        """Failed deliveries by what the worker reported (for a test's failure message)."""
        return Counter(f"{a.outcome}: {a.error}" for a in self.attempts if a.outcome != "ok")


def app_settings(
    aml: FakeAmlApi, ingestion: IngestionServer, azurite: Azurite, config: ChaosConfig
) -> dict[str, str]:
    """The worker's environment: the app settings Bicep sets, pointed at the fakes."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.update(QUIET_EXPORTER_ENV)
    env.update(aml.env())
    env.update(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"Authorization=AAD;ClientId={aml.client_id}",
            "AzureWebJobsStorage": azurite.connection_string,
            "AML_OBS_HTTP_MAX_ATTEMPTS": "3",
            "AML_OBS_HTTP_TIMEOUT_SECONDS": f"{config.client_timeout_seconds:g}",
            "AML_OBS_MAX_RETRY_AFTER_SECONDS": "1",
            "AML_OBS_CLAIM_LEASE_SECONDS": f"{config.claim_lease_seconds:g}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


@contextmanager
def _fakes() -> Iterator[tuple[FakeAmlApi, IngestionServer, Azurite]]:
    with start_aml_api() as aml, start_azurite(persistent=True) as azurite:
        ingestion = IngestionServer().start()
        try:
            yield aml, ingestion, azurite
        finally:
            ingestion.close()


class _Outages:
    """Kills, storage pauses/restarts and 403 windows at random moments while deliveries go on."""

    def __init__(
        self,
        plan: FaultPlan,
        injector: FaultInjector,
        pool: WorkerPool,
        azurite: Azurite,
        simulator: EventGridSimulator,
        rng: random.Random,
        window_seconds: float,
    ) -> None:
        self._plan = plan
        self._injector = injector
        self._pool = pool
        self._azurite = azurite
        self._simulator = simulator
        self._rng = rng
        # While many invocations are in flight: kills (instant) in the first half of the window, the
        # storage and AML outages (seconds each, one after the other) in its first
        # ``outage_window_fraction`` (a short run lowers it, so that all happen before deliveries end).
        kills = [(rng.uniform(0.3, window_seconds / 2), "worker_kill") for _ in range(plan.worker_kills)]
        outages = (
            ["azurite_pause"] * plan.azurite_pauses
            + ["azurite_restart"] * plan.azurite_restarts
            + ["aml_403_window"] * plan.aml_403_windows
        )
        latest = max(0.5, window_seconds * plan.outage_window_fraction)
        timed = [(rng.uniform(0.5, latest), action) for action in outages]
        self._schedule = sorted(kills + timed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-outages", daemon=True)

    def __enter__(self) -> _Outages:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        # The clock starts at the first delivery that succeeded: on a loaded machine the workers' first
        # invocations (imports, first tokens) take seconds, and outages timed from the publish would fall
        # on the burst of deliveries queued behind that warm-up, dead-lettering nearly all of them,
        # instead of interrupting a flow that is running.
        while self._simulator.delivered_ok == 0 and self._simulator.busy:
            if self._stop.wait(0.05):
                return
        started = time.monotonic()
        for at, action in self._schedule:
            if self._stop.wait(max(0.0, started + at - time.monotonic())) or not self._simulator.busy:
                return
            if action == "worker_kill":
                if self._pool.kill_one_busy(self._rng) is not None:
                    self._injector.count(action)
            elif action == "azurite_pause":
                self._injector.count(action)
                self._azurite.pause()
                try:
                    self._stop.wait(self._plan.outage_seconds)
                finally:
                    self._azurite.resume()
            elif action == "azurite_restart":
                self._injector.count(action)
                self._azurite.restart()
            elif action == "aml_403_window":
                self._injector.forbid_aml_for(self._plan.outage_seconds)


def _replay(deadletter_dir: Path, env: Mapping[str, str]) -> int | None:
    if not any(deadletter_dir.iterdir()):
        return None
    completed = subprocess.run(  # the operator's path: python -m amlobs replay <dead-letter blobs>
        [sys.executable, "-m", "amlobs", "replay", str(deadletter_dir)],
        cwd=ROOT / "src",
        env={**env, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return completed.returncode


def run_chaos(config: ChaosConfig) -> ChaosResult:
    rng = random.Random(config.seed)
    plan = config.faults
    plan.client_timeout_seconds = config.client_timeout_seconds
    with _fakes() as (aml, ingestion, azurite), tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        scenario: Scenario = build_scenario(aml, keys=config.keys, rng=rng)
        injector = FaultInjector(plan, random.Random(config.seed + 1))
        env = app_settings(aml, ingestion, azurite, config)
        deadletter_dir = Path(tmp) / "deadletter"
        deadletter_dir.mkdir()
        pool = WorkerPool(config.workers, env, config.threads)
        try:
            aml.fault_hook = injector.aml
            ingestion.fault_hook = injector.ingestion
            simulator = EventGridSimulator(pool, config.delivery, rng, deadletter_dir)
            simulator.publish(scenario.events)
            started = time.time()
            window = config.delivery.spread_seconds
            with _Outages(plan, injector, pool, azurite, simulator, rng, window):
                simulator.run()
            delivered = time.time()
        finally:
            injector.enabled = False
            aml.fault_hook = None
            ingestion.fault_hook = None
            pool.close()
        replay_code = _replay(deadletter_dir, env)
        finished = time.time()
        figures = analyse(
            scenario, ingestion.track_requests(), simulator.attempts, replay_window=(delivered, finished)
        )
    figures.deliveries = simulator.deliveries
    figures.duplicate_deliveries = simulator.duplicate_deliveries
    figures.failed_deliveries = sum(1 for a in simulator.attempts if a.outcome != "ok")
    figures.deadlettered = len(simulator.deadlettered)
    figures.faults = injector.counts
    figures.delivery_seconds = delivered - started
    figures.replay_seconds = finished - delivered
    figures.workers_started = pool.started
    return ChaosResult(config, figures, replay_code, simulator.attempts)
