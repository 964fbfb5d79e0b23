"""The estimated compute cost of a finished run and of a pipeline run: the I/O edge of :mod:`amlobs.cost`.

Which runs get an estimate, and from what:

* only a run in a terminal status (Completed, Failed, Canceled): an intermediate status costs nothing,
  not even a lookup;
* a compute cluster (``AmlCompute``): the cluster's VM size, priority, OS and region from Resource Manager
  (:class:`amlobs.compute_facts.ComputeDirectory`); serverless: the VM size, priority and region run history
  reports for the job (the workspace's region when it reports none);
* a compute instance, attached Kubernetes, Synapse, Databricks, HDInsight, an attached VM or a local run:
  no estimate, and ``cost_basis`` says why (they are not billed per job);
* a pipeline run, a sweep or an AutoML parent: their compute is their children's; a pipeline's summary sums
  its steps (:meth:`CostEstimator.for_summary`).

Nothing here fails or holds up a record: every lookup of one record shares one time bound
(``AML_OBS_COST_TIMEOUT_SECONDS``), and whatever goes wrong becomes "no estimate: <why>" in ``cost_basis``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import cost
from . import run_facts as facts
from .compute_facts import (
    CLUSTER,
    SERVERLESS,
    ComputeDirectory,
    ComputeResource,
    RunCompute,
    child_compute,
    read_run_compute,
)
from .enrichment import PipelineListing, RunAnswers
from .events import TERMINAL_STATUSES, WorkspaceRef, normalise_status
from .lookup_cache import Budget, Unavailable
from .records import elapsed_ms, parse_utc_ms

if TYPE_CHECKING:
    from .compute_facts import ComputeSource
    from .prices import RetailPrices
    from .settings import Settings

logger = logging.getLogger("amlobs.cost")

# Compute types that are not billed per job, with what to tell the reader instead.
NOT_PER_JOB: dict[str, str] = {
    "ComputeInstance": "a compute instance is billed for the hours it runs, not per job",
    "Kubernetes": "attached Kubernetes compute is billed as the cluster's own nodes, not by Azure ML per job",
    "SynapseSpark": "Synapse Spark pools are billed by Synapse, not per Azure ML job",
    "Databricks": "Databricks compute is billed by Databricks, not per Azure ML job",
    "HDInsight": "HDInsight clusters are billed by HDInsight, not per Azure ML job",
    "VirtualMachine": "an attached virtual machine is billed for the hours it runs, not per job",
    "Local": "the run used local compute",
}
ORCHESTRATORS: dict[str, str] = {
    "pipeline": "a pipeline run's compute is its steps' (the AmlPipelineRunSummary sums them)",
    "sweep": "a sweep's compute is its trials' (each trial has its own estimate)",
    "automl": "an AutoML job's compute is its trials' (each trial has its own estimate)",
}


def _priority(raw: str | None) -> cost.Priority | None:
    value = (raw or "").replace(" ", "").replace("_", "").lower()
    if value in ("dedicated", "standard", "regular"):
        return "dedicated"
    if value == "lowpriority":
        return "low_priority"
    if value == "spot":
        return "spot"
    return None


def _os(raw: str | None) -> cost.OsType | None:
    value = (raw or "").strip().lower()
    return "Windows" if value == "windows" else "Linux" if value == "linux" else None


class CostEstimator:
    """One per process: the compute directory and the price cache behind every record's estimate."""

    def __init__(
        self,
        compute: ComputeDirectory,
        prices: RetailPrices,
        *,
        currency: str,
        bound_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._prices = prices
        self._currency = currency
        self._bound = bound_seconds
        self._clock = clock

    def close(self) -> None:
        self._prices.close()

    # -- records -------------------------------------------------------------------------------

    def for_record(
        self, ws: WorkspaceRef, record: Mapping[str, Any], answers: RunAnswers | None
    ) -> dict[str, str]:
        """The cost keys of a record: none before the run finished."""
        if record.get("status") not in TERMINAL_STATUSES:
            return {}
        if answers is None:
            return cost.NoEstimate("the run was not found in run history").fields()
        kind = record.get("job_kind")
        if isinstance(kind, str) and kind in ORCHESTRATORS:
            return cost.NoEstimate(ORCHESTRATORS[kind]).fields()
        if record.get("is_reused") == "true":
            reused_from = record.get("reused_run_id")
            return cost.reused(self._currency, reused_from if isinstance(reused_from, str) else None).fields()
        target_type, name = record.get("compute_target_type"), record.get("compute_name")
        compute = read_run_compute(
            [answers.run, answers.details],
            answers.definition,
            target_type=target_type if isinstance(target_type, str) else None,
            name=name if isinstance(name, str) else None,
        )
        duration = cost.billed_duration(
            facts.integer(record.get("compute_duration_ms")), facts.integer(record.get("execution_time_ms"))
        )
        return self._guarded(ws, compute, duration, Budget(self._bound, self._clock)).fields()

    # -- pipeline summaries --------------------------------------------------------------------

    def for_summary(self, ws: WorkspaceRef, listing: PipelineListing | None) -> dict[str, str | int]:
        """The summary's cost keys from the pipeline's children listing (nested levels included)."""
        if listing is None or listing.children is None:
            return {}
        budget = Budget(self._bound, self._clock)
        steps: list[tuple[str, cost.Estimate | cost.NoEstimate]] = []
        for child in listing.steps():
            run_id = facts.text(child.get("runId")) or "(no run id)"
            steps.append((run_id, self._step(ws, child, budget)))
        return cost.summary_fields(steps, self._currency)

    def _step(
        self, ws: WorkspaceRef, child: Mapping[str, Any], budget: Budget
    ) -> cost.Estimate | cost.NoEstimate:
        if normalise_status(child.get("status")) not in TERMINAL_STATUSES:
            return cost.NoEstimate("the step has not finished")
        if facts.is_reused(child):
            reused_from = facts.text(facts.path(child, "properties", "azureml.reusedrunid"))
            return cost.reused(self._currency, reused_from)
        execution = elapsed_ms(parse_utc_ms(child.get("startTimeUtc")), parse_utc_ms(child.get("endTimeUtc")))
        duration = cost.billed_duration(facts.timespan_ms(child.get("computeDuration")), execution)
        return self._guarded(ws, child_compute(child), duration, budget)

    # -- a cluster's node-hour (amlobs.resource_use.cluster_idle) ------------------------------

    def cluster_hourly(self, ws: WorkspaceRef, name: str) -> tuple[cost.HourlyPrice, str] | cost.NoEstimate:
        """The hourly list price of one node of cluster ``name``, and what it is (sku, priority, region)."""
        budget = Budget(self._bound, self._clock)
        spec = self._cluster(ws, RunCompute(CLUSTER, name, None, None, None, None, None), budget)
        if isinstance(spec, cost.NoEstimate):
            return spec
        sku, os, priority, region, _where = spec
        rows = self._prices.rows(region, sku, budget)
        if isinstance(rows, Unavailable):
            return cost.NoEstimate(rows.reason)
        price = cost.select_hourly_price(
            rows, sku=sku, region=region, currency=self._currency, os=os, priority=priority
        )
        if isinstance(price, cost.NoPrice):
            return cost.NoEstimate(price.reason)
        canonical = rows[0].arm_sku if rows else cost.canonical_sku(sku)
        return price, f"sku={canonical}; os={os}; priority={priority}; region={region}; meter={price.meter}"

    # -- the estimate --------------------------------------------------------------------------

    def _guarded(
        self, ws: WorkspaceRef, compute: RunCompute, duration: tuple[int, str] | None, budget: Budget
    ) -> cost.Estimate | cost.NoEstimate:
        try:
            return self._estimate(ws, compute, duration, budget)
        except Exception as unexpected:  # an estimate is never worth losing the record
            logger.exception("cost estimate of a run on %s failed", compute.name or compute.target_type)
            return cost.NoEstimate(f"the estimate failed unexpectedly ({type(unexpected).__name__})")

    def _estimate(
        self, ws: WorkspaceRef, compute: RunCompute, duration: tuple[int, str] | None, budget: Budget
    ) -> cost.Estimate | cost.NoEstimate:
        refused = _not_estimable(compute, duration)
        if refused is not None or duration is None or compute.nodes is None:
            return refused or cost.NoEstimate("run history does not say enough about the run's compute")
        spec = (
            self._cluster(ws, compute, budget)
            if compute.target_type == CLUSTER
            else self._serverless(ws, compute, budget)
        )
        if isinstance(spec, cost.NoEstimate):
            return spec
        sku, os, priority, region, where = spec
        rows = self._prices.rows(region, sku, budget)
        if isinstance(rows, Unavailable):
            return cost.NoEstimate(rows.reason)
        price = cost.select_hourly_price(
            rows, sku=sku, region=region, currency=self._currency, os=os, priority=priority
        )
        if isinstance(price, cost.NoPrice):
            return cost.NoEstimate(price.reason)
        duration_ms, source = duration
        canonical = rows[0].arm_sku if rows else cost.canonical_sku(sku)
        return cost.estimate(
            cost.CostBasis(canonical, os, priority, compute.nodes, price, region, duration_ms, source, where)
        )

    def _cluster(
        self, ws: WorkspaceRef, compute: RunCompute, budget: Budget
    ) -> tuple[str, cost.OsType, cost.Priority, str, str] | cost.NoEstimate:
        if compute.name is None:
            return cost.NoEstimate("the run names no compute cluster")
        resource = self._compute.compute(ws, compute.name, budget)
        if isinstance(resource, Unavailable):
            return cost.NoEstimate(resource.reason)
        if resource.compute_type in NOT_PER_JOB:
            return cost.NoEstimate(f"{compute.name}: {NOT_PER_JOB[resource.compute_type]}")
        if resource.compute_type not in (CLUSTER, None):
            return cost.NoEstimate(f"{compute.name} is a {resource.compute_type} compute, not priced per job")
        return self._from_resource(compute, resource)

    def _from_resource(
        self, compute: RunCompute, resource: ComputeResource
    ) -> tuple[str, cost.OsType, cost.Priority, str, str] | cost.NoEstimate:
        name = compute.name or "?"
        sku = resource.vm_size or compute.vm_size
        if sku is None:
            return cost.NoEstimate(f"compute {name} reports no VM size")
        priority = _priority(resource.priority) or _priority(compute.priority)
        if priority is None:
            return cost.NoEstimate(f"compute {name} reports no VM priority")
        region = resource.region or compute.region
        if region is None:
            return cost.NoEstimate(f"compute {name} reports no region")
        os = _os(resource.os_type) or _os(compute.os) or "Linux"
        return sku, os, priority, region, f"cluster {name}"

    def _serverless(
        self, ws: WorkspaceRef, compute: RunCompute, budget: Budget
    ) -> tuple[str, cost.OsType, cost.Priority, str, str] | cost.NoEstimate:
        if compute.vm_size is None:
            return cost.NoEstimate("serverless job: run history does not report the VM size it ran on")
        # Serverless defaults to dedicated VMs (job tier Standard; Spot only when asked for).
        priority = _priority(compute.priority) or "dedicated"
        region = compute.region
        if region is None:
            found = self._compute.workspace_region(ws, budget)  # serverless runs in the workspace's region
            if isinstance(found, Unavailable):
                return cost.NoEstimate(found.reason)
            region = found
        # Serverless compute runs Linux images unless the job's environment says otherwise.
        return compute.vm_size, _os(compute.os) or "Linux", priority, region, "serverless"


def _not_estimable(compute: RunCompute, duration: tuple[int, str] | None) -> cost.NoEstimate | None:
    """Why a run cannot be priced from what run history says, before any lookup (None: it can be)."""
    kind = compute.target_type
    if kind is None:
        return cost.NoEstimate("run history does not say what compute the run used")
    if kind in NOT_PER_JOB:
        return cost.NoEstimate(NOT_PER_JOB[kind])
    if kind not in (CLUSTER, SERVERLESS):
        return cost.NoEstimate(f"compute type {kind} has no per-job price")
    if duration is None:
        return cost.NoEstimate("run history gives neither a compute duration nor start and end times")
    if compute.nodes is None:
        return cost.NoEstimate("run history does not say how many nodes the run used")
    return None


def build_cost_estimator(settings: Settings, source: ComputeSource) -> CostEstimator:
    """The process's estimator over ``source`` (the run history client's Resource Manager reads)."""
    from .prices import RetailPrices

    return CostEstimator(
        ComputeDirectory(source),
        RetailPrices(settings.prices_endpoint, settings.cost_currency),
        currency=settings.cost_currency,
        bound_seconds=settings.cost_timeout_seconds,
    )
