"""One resource-use pass over the finished runs due (:mod:`.due`): at most one metrics GET per run.

Input: the due list (runs noted by the processor when it recorded their terminal status, due a quarter
of an hour after they ended). For each run, oldest due first, within the pass's budget (runs and
seconds):

* judged once: the run's key ``resource_use|<workspace>|<run>`` is claimed in the same claims table as
  the run statuses (:mod:`amlobs.storage.claims`); a run judged already is dropped from the list;
* no HTTP call when the answer is known without one: compute other than an AML compute cluster (serverless,
  compute instance, Kubernetes, …), no start or end time, a run shorter than one sample (``PT1M``);
* 200 → the figures (:mod:`.usage`), or "no data" when the answer has no sample for the run;
* 401/403 → a reason on the event, and one ``AmlResourceUseHealth`` per workspace and pass naming the
  permission to add (``Microsoft.Insights/metrics/read``);
* 429 → waits the Retry-After when it fits in what is left of the pass, else stops asking until the next
  pass (the run stays due); 408, 5xx, timeouts, refused connections → the run stays due and is tried again
  next pass; after :attr:`PassOptions.max_tries` passes the event goes out with the reason;
* any other answer → a reason on the event.

A run's other records are never touched: this pass only adds its own event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from ..aml_discovery import workspace_path
from ..compute_facts import CLUSTER, SERVERLESS
from ..cost_estimator import NOT_PER_JOB
from ..errors import TransientError
from ..telemetry_unit import TelemetryUnit
from .due import DueRun, DueRuns
from .events import METRICS_PERMISSION, health_unit, measured_unit, missing_unit, vm_size
from .metrics_query import TIME_GRAIN_MS, BadMetricsAnswer, is_plain_run_id, parse_answer, run_query
from .usage import is_gpu_sku, reduce

if TYPE_CHECKING:
    from ..aml_transport import HttpAnswer
    from ..storage.claims import Claim

logger = logging.getLogger("amlobs.resource_use")


class MetricsSource(Protocol):
    """amlobs.runhistory.RunHistoryClient: GETs on Resource Manager, through its token gate."""

    def get_arm_answer(
        self, call: str, path_and_query: str, *, attempts: int, timeout: float
    ) -> HttpAnswer: ...


class Telemetry(Protocol):
    def send(self, unit: TelemetryUnit) -> None: ...


class Claims(Protocol):
    def claim(self, key: str, context: dict[str, str]) -> Claim | None: ...
    def start_sending(self, claim: Claim) -> Claim: ...
    def complete(self, claim: Claim) -> None: ...
    def release(self, claim: Claim, *, accepted: frozenset[str], maybe_delivered: bool) -> None: ...


@dataclass(frozen=True)
class PassOptions:
    max_runs: int = 1000
    max_seconds: float = 240.0
    http_timeout_seconds: float = 10.0
    max_tries: int = 3
    retry_delay_ms: int = 10 * 60_000


@dataclass
class PassReport:
    judged: dict[str, int] = field(default_factory=dict)  # outcome -> runs
    retried: int = 0
    left_due: int = 0
    http_calls: int = 0
    workspaces: set[str] = field(default_factory=set)  # resource ids of the runs looked at

    def count(self, outcome: str) -> None:
        self.judged[outcome] = self.judged.get(outcome, 0) + 1


@dataclass(frozen=True)
class _Later:
    reason: str
    outcome: str


class ResourceUsePass:
    def __init__(
        self,
        *,
        metrics: MetricsSource,
        telemetry: Telemetry,
        claims: Claims,
        due: DueRuns,
        options: PassOptions | None = None,
        now_ms: Callable[[], int] = lambda: int(datetime.now(UTC).timestamp() * 1000),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._metrics = metrics
        self._telemetry = telemetry
        self._claims = claims
        self._due = due
        self.options = options or PassOptions()
        self._now_ms = now_ms
        self._clock = clock
        self._sleep = sleep

    def run(self) -> PassReport:
        report = PassReport()
        deadline = self._clock() + self.options.max_seconds
        runs = self._due.due(self._now_ms(), self.options.max_runs)
        refused: set[str] = set()  # workspaces told about this pass already
        throttled = False
        for index, run in enumerate(runs):
            if self._clock() >= deadline or throttled:
                report.left_due += len(runs) - index
                break
            report.workspaces.add(run.workspace_id)
            try:
                throttled = self._judge(run, deadline, report, refused)
            except TransientError as error:  # storage or ingestion down: the rest waits for the next pass
                logger.warning("resource use of run %s: %s; the pass stops here", run.run_id, error)
                report.left_due += len(runs) - index
                break
        return report

    # -- one run -------------------------------------------------------------------------------

    def _judge(self, run: DueRun, deadline: float, report: PassReport, refused: set[str]) -> bool:
        """Judge one run; True when the service asked to be left alone for longer than the pass has."""
        claim = self._claims.claim(
            f"resource_use|{run.key}", {"run_id": run.run_id, "status": "resource_use"}
        )
        if claim is None:
            self._due.remove(run)  # judged by an earlier pass that died before removing it
            return False
        try:
            verdict = self._verdict(run, deadline, report, refused)
            if isinstance(verdict, _Later) and run.tries + 1 < self.options.max_tries:
                self._due.move(run, run.later(self._now_ms() + self.options.retry_delay_ms))
            else:
                if isinstance(verdict, _Later):  # the last try: the event goes out with the reason
                    reason = f"{verdict.reason} (after {run.tries + 1} tries)"
                    verdict = missing_unit(run, verdict.outcome, reason, _window(run))
                claim = self._claims.start_sending(claim)
                self._telemetry.send(verdict)
        except BaseException:
            self._claims.release(claim, accepted=frozenset(), maybe_delivered=claim.state == "sending")
            raise
        if isinstance(verdict, _Later):
            self._claims.release(claim, accepted=frozenset(), maybe_delivered=False)
            report.retried += 1
            return verdict.outcome == "throttled"
        self._claims.complete(claim)
        self._due.remove(run)
        [event] = verdict.events("AmlRunResourceUse")
        report.count(event.get("resource_use_outcome", "?"))
        return False

    def _verdict(
        self, run: DueRun, deadline: float, report: PassReport, refused: set[str]
    ) -> TelemetryUnit | _Later:
        kind = compute_kind(run.record)
        window = _window(run)
        if kind == SERVERLESS:
            return missing_unit(
                run,
                "not_applicable",
                "serverless job: the workspace's resource metrics are read for compute clusters, which name "
                "the run's nodes; not queried",
                window,
            )
        if kind != CLUSTER:
            what = f"{kind} compute" if kind else "compute of unknown type"
            return missing_unit(
                run, "not_applicable", f"{what}: resource metrics are read for AML compute clusters only"
            )
        if window is None:
            return missing_unit(run, "no_window", "run history gave no start and end time: no window to read")
        if window[1] - window[0] < TIME_GRAIN_MS:
            return missing_unit(
                run,
                "too_short",
                f"the run lasted {(window[1] - window[0]) / 1000:g} s, less than one sample (PT1M)",
                window,
            )
        if not is_plain_run_id(run.run_id):
            return missing_unit(run, "bad_run_id", "the run id cannot be put in a metrics filter", window)
        nodes = _nodes(run)
        path = run_query(workspace_path(run.ws), run.run_id, window[0], window[1], nodes)
        return self._ask(run, path, window, deadline, report, refused)

    def _ask(
        self,
        run: DueRun,
        path: str,
        window: tuple[int, int],
        deadline: float,
        report: PassReport,
        refused: set[str],
    ) -> TelemetryUnit | _Later:
        call = f"metrics of run {run.run_id} (Azure Monitor)"
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                return _Later("the pass ran out of time before the metrics answered", "unavailable")
            try:
                report.http_calls += 1
                answer = self._metrics.get_arm_answer(
                    call, path, attempts=1, timeout=min(self.options.http_timeout_seconds, remaining)
                )
            except TransientError as error:  # timeouts, refused connections, no token
                return _Later(str(error), "unavailable")
            if answer.status == 200:
                try:
                    metrics = parse_answer(answer.json())
                except (ValueError, BadMetricsAnswer) as bad:
                    return missing_unit(
                        run, "bad_answer", f"the metrics answer is not the documented shape: {bad}", window
                    )
                use = reduce(metrics, gpu_sku=is_gpu_sku(vm_size(run)))
                return measured_unit(run, use, window)
            wait = answer.retry_after
            if answer.status == 429 and wait is not None and wait < deadline - self._clock():
                logger.info("metrics throttled: waiting %.1f s as asked", wait)
                self._sleep(wait)
                continue
            return self._refusal(run, call, answer, window, refused)

    def _refusal(
        self, run: DueRun, call: str, answer: HttpAnswer, window: tuple[int, int], refused: set[str]
    ) -> TelemetryUnit | _Later:
        detail = f"HTTP {answer.status}{_code(answer)}"
        if answer.status in (401, 403):
            reason = (
                f"{detail}: the identity may not read the workspace's metrics (needs {METRICS_PERMISSION})"
            )
            if run.workspace_id.lower() not in refused:
                refused.add(run.workspace_id.lower())
                health = health_unit(run.record, "access_refused", f"{call}: {reason}", METRICS_PERMISSION)
                self._telemetry.send(health)
            return missing_unit(run, "access_refused", reason, window)
        if answer.status == 429:
            wait = answer.retry_after
            asked = f"; it asked to wait {wait:g} s, more than the pass has left" if wait is not None else ""
            return _Later(f"{detail}: throttled{asked}", "throttled")
        if answer.status == 408 or answer.status >= 500:
            return _Later(detail, "unavailable")
        return missing_unit(run, "refused", f"{detail}: the metrics request was refused", window)


def compute_kind(record: Mapping[str, str]) -> str | None:
    """The run's compute type, as the cost estimate found it on Resource Manager where it looked.

    Run history may say ``AmlCompute`` for a compute instance (the estimate then says "ci-dev: a compute
    instance is billed ..."): the type Resource Manager reported wins, without another request.
    """
    kind = record.get("compute_target_type")
    basis = record.get("cost_basis", "")
    if kind == CLUSTER and "compute=cluster " not in basis:
        for other, why in NOT_PER_JOB.items():
            if why in basis:
                return other
    return kind


def _code(answer: HttpAnswer) -> str:
    try:
        body = answer.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return f" ({code})" if isinstance(code, str) and len(code) <= 100 else ""


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _window(run: DueRun) -> tuple[int, int] | None:
    start, end = _int(run.record.get("start_time_utc_ms")), _int(run.record.get("end_time_utc_ms"))
    if start is None or end is None or end < start:
        return None
    return start, end


def _nodes(run: DueRun) -> int:
    from .events import billed_nodes

    return billed_nodes(run) or 1
