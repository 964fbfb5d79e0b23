"""What a run ran on, for its cost estimate: the run's own answers, and the compute resource, cached.

From run history (pure readers; shapes of azure-ai-ml 1.35.2 ``_restclient/runhistory/models/_models.py``
``Compute`` {target, targetType, vmSize, instanceCount, gpuCount, priority, region} and ``ComputeRequest``
{nodeCount, gpuCount}, and the recorded ``runDefinition`` {nodeCount, instanceTypes, …}):

* nodes: ``compute.instanceCount``, else ``computeRequest.nodeCount``, else the definition's ``nodeCount``;
* a serverless job's VM size: ``compute.vmSize`` (real answers also carry ``compute.instanceType``), else
  the definition's ``instanceTypes[0]`` (the job's ``resources.instance_type``); its priority
  ``compute.priority``; its region ``compute.region``.

From Resource Manager, for a compute cluster: ``GET {arm}/…/workspaces/{ws}/computes/{name}`` (one per
cluster per :data:`COMPUTE_TTL_SECONDS`, not per event), whose ``properties`` are ``{computeType,
computeLocation, properties: {vmSize, vmPriority, osType, …}}`` — recorded answer in
Azure/azure-sdk-for-python ``sdk/ml/azure-ai-ml/tests/recordings/compute/e2etests/``
``test_compute.pyTestComputetest_aml_compute_create_and_delete.json``
(``tests/data/aml/compute_*.json``). The price region is ``computeLocation`` (a cluster may sit
outside its workspace's region), else the resource's ``location``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from . import run_facts as facts
from .aml_transport import AccessRefused
from .errors import EnrichmentUnavailable, RunNotFound
from .events import WorkspaceRef
from .lookup_cache import Budget, LookupCache, Unavailable

logger = logging.getLogger("amlobs.cost")

# A cluster's VM size and priority are fixed when it is created (they cannot be updated in place): what can
# change under a name is a cluster deleted and re-created. An hour bounds how long such a cluster is
# mis-priced, and costs one Resource Manager GET per cluster per hour per instance, whatever the event rate.
COMPUTE_TTL_SECONDS = 3600.0
# A workspace never moves region.
WORKSPACE_TTL_SECONDS = 24 * 3600.0
# A refusal (403: the role predates computes/read) or a missing cluster is asked again after ten minutes,
# so re-provisioning the role is picked up soon; an outage after one minute. Never once per event.
REFUSED_TTL_SECONDS = 600.0
FAILED_TTL_SECONDS = 60.0

_T = TypeVar("_T")

CLUSTER = "AmlCompute"
SERVERLESS = "Serverless"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _first_int(*values: Any) -> int | None:
    return next((found for found in map(_int, values) if found is not None), None)


@dataclass(frozen=True)
class RunCompute:
    """What run history says about the compute of one run (None: not said)."""

    target_type: str | None  # one vocabulary (run_facts): AmlCompute, Serverless, ComputeInstance, …
    name: str | None
    vm_size: str | None
    nodes: int | None
    priority: str | None
    region: str | None
    os: str | None


def _instance_type(definition: Mapping[str, Any] | None) -> str | None:
    types = facts.path(definition, "instanceTypes")
    if isinstance(types, list) and types:
        return facts.text(types[0])
    return facts.text(facts.path(definition, "instanceType"))


def _os_of(definition: Mapping[str, Any] | None, answers: list[Mapping[str, Any] | None]) -> str | None:
    declared = facts.text(facts.path(definition, "environment", "docker", "platform", "os"))
    if declared:
        return declared
    for answer in answers:  # runTypeV2.traits: [..., "OsType:Linux", ...]
        traits = facts.path(answer, "runTypeV2", "traits")
        for trait in traits if isinstance(traits, list) else []:
            if isinstance(trait, str) and trait.lower().startswith("ostype:"):
                return trait.split(":", 1)[1].strip() or None
    return None


def read_run_compute(
    answers: list[Mapping[str, Any] | None],
    definition: Mapping[str, Any] | None,
    *,
    target_type: str | None,
    name: str | None,
) -> RunCompute:
    """``answers`` are the run's ``Run``/``RunDetails`` (the first that says wins); ``target_type`` and
    ``name`` as the record has them."""
    computes = [facts.path(a, "compute") for a in answers]
    requests = [facts.path(a, "computeRequest") for a in answers]
    return RunCompute(
        target_type=target_type,
        name=name,
        vm_size=facts.first_text(
            *(facts.path(c, "vmSize") for c in computes),
            *(facts.path(c, "instanceType") for c in computes),
            _instance_type(definition),
        ),
        nodes=_first_int(
            *(facts.path(c, "instanceCount") for c in computes),
            *(facts.path(r, "nodeCount") for r in requests),
            facts.path(definition, "nodeCount"),
        ),
        priority=facts.first_text(*(facts.path(c, "priority") for c in computes)),
        region=facts.first_text(*(facts.path(c, "region") for c in computes)),
        os=_os_of(definition, answers),
    )


def child_compute(child: Mapping[str, Any]) -> RunCompute:
    """The same facts from a children-listing entry (a ``Run``; no definition in a listing)."""
    properties = [facts.path(child, "properties")]
    normalised, _raw = facts.compute_target_type(properties, [child])
    name = facts.compute_name(None, [child])
    return read_run_compute([child], None, target_type=facts.serverless_type(normalised, name), name=name)


@dataclass(frozen=True)
class ComputeResource:
    """The fields of a workspace's compute resource that price it."""

    compute_type: str | None
    vm_size: str | None
    priority: str | None
    os_type: str | None
    region: str | None


def compute_resource(body: Mapping[str, Any]) -> ComputeResource:
    properties = facts.path(body, "properties")
    inner = facts.path(properties, "properties")
    return ComputeResource(
        compute_type=facts.text(facts.path(properties, "computeType")),
        vm_size=facts.text(facts.path(inner, "vmSize")),
        priority=facts.text(facts.path(inner, "vmPriority")),
        os_type=facts.text(facts.path(inner, "osType")),
        region=facts.first_text(facts.path(properties, "computeLocation"), facts.path(body, "location")),
    )


# --------------------------------------------------------------------------------------------------
# The I/O: Resource Manager reads, cached


class ComputeSource(Protocol):
    """Resource Manager reads (amlobs.runhistory.RunHistoryClient: its pipeline, token and trusted host)."""

    def get_compute(self, ws: WorkspaceRef, name: str, *, timeout: float) -> dict[str, Any]: ...

    def get_workspace(self, ws: WorkspaceRef, *, timeout: float) -> dict[str, Any]: ...


class ComputeDirectory:
    """Compute resources and workspace regions, each read once per TTL per process (thread-safe)."""

    def __init__(self, source: ComputeSource, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._computes: LookupCache[tuple[str, str], ComputeResource | Unavailable] = LookupCache(clock)
        self._regions: LookupCache[str, str | Unavailable] = LookupCache(clock)
        self._counter_lock = threading.Lock()
        self.lookups = 0

    def compute(self, ws: WorkspaceRef, name: str, budget: Budget) -> ComputeResource | Unavailable:
        return self._computes.get(
            (ws.cache_key, name.lower()),
            budget,
            lambda: self._bounded(budget, lambda timeout: self._fetch(ws, name, timeout)),
            busy=Unavailable("a lookup of this compute by another invocation is still running"),
        )

    def workspace_region(self, ws: WorkspaceRef, budget: Budget) -> str | Unavailable:
        return self._regions.get(
            ws.cache_key,
            budget,
            lambda: self._bounded(budget, lambda timeout: self._fetch_region(ws, timeout)),
            busy=Unavailable("a lookup of this workspace by another invocation is still running"),
        )

    def _bounded(
        self, budget: Budget, fetch: Callable[[float], tuple[_T, float]]
    ) -> tuple[_T | Unavailable, float]:
        if budget.spent:  # not cached: the next record, with a bound of its own, asks
            return Unavailable(f"cost lookups exceeded their {budget.seconds:g} s bound"), 0.0
        with self._counter_lock:
            self.lookups += 1
        return fetch(budget.remaining())

    def _fetch(
        self, ws: WorkspaceRef, name: str, timeout: float
    ) -> tuple[ComputeResource | Unavailable, float]:
        try:
            body = self._source.get_compute(ws, name, timeout=timeout)
        except AccessRefused as refused:
            logger.warning("compute %s: %s", name, refused)
            return Unavailable(
                f"reading compute {name} was refused ({_status(refused)}): the function's role lacks "
                "Microsoft.MachineLearningServices/workspaces/computes/read (re-run azd provision)"
            ), REFUSED_TTL_SECONDS
        except RunNotFound as missing:
            return Unavailable(f"compute {name} was not found in the workspace ({_status(missing)})"), (
                REFUSED_TTL_SECONDS
            )
        except EnrichmentUnavailable as failed:
            logger.warning("compute %s: %s", name, failed)
            return Unavailable(f"reading compute {name} failed: {failed}"), FAILED_TTL_SECONDS
        except Exception as unexpected:  # the record must go out whatever the lookup does
            logger.exception("compute %s: unexpected failure of the lookup", name)
            return Unavailable(
                f"reading compute {name} failed: {type(unexpected).__name__}"
            ), FAILED_TTL_SECONDS
        return compute_resource(body), COMPUTE_TTL_SECONDS

    def _fetch_region(self, ws: WorkspaceRef, timeout: float) -> tuple[str | Unavailable, float]:
        try:
            body = self._source.get_workspace(ws, timeout=timeout)
        except (EnrichmentUnavailable, RunNotFound) as failed:
            logger.warning("workspace %s: %s", ws.workspace_name, failed)
            return Unavailable(f"reading the workspace's region failed: {failed}"), FAILED_TTL_SECONDS
        except Exception as unexpected:
            logger.exception("workspace %s: unexpected failure of the lookup", ws.workspace_name)
            return Unavailable(
                f"reading the workspace's region failed: {type(unexpected).__name__}"
            ), FAILED_TTL_SECONDS
        region = facts.text(body.get("location"))
        if region is None:
            return Unavailable("the workspace resource names no location"), FAILED_TTL_SECONDS
        return region, WORKSPACE_TTL_SECONDS


def _status(error: Exception) -> str:
    """``HTTP 403`` or ``HTTP 404 (ResourceNotFound)`` from a transport message, else the message."""
    text = str(error)
    start = text.find("HTTP ")
    if start < 0:
        return text
    end = text.find(":", start)
    return text[start : end if end > 0 else None].split(" after ")[0].strip()
