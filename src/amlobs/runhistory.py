"""Azure Machine Learning run history client: run, run details, run data, child runs and listing.

One :class:`RunHistoryClient` per process: one azure-core pipeline (one connection pool, one token
cache, :mod:`amlobs.aml_transport`) serves every event; each workspace's API endpoint is discovered
once (:mod:`amlobs.aml_discovery`); ``backfill``'s listing is :mod:`amlobs.run_listing`. Which
origins may receive the bearer token is :mod:`amlobs.trust`'s decision, made on every send.

Requests are the ones azure-ai-ml's run history client sends (``RunOperations`` in
``azure/ai/ml/operations/_run_operations.py`` lines 31-95 of azure-ai-ml 1.35.2, over the
generated ``azure/ai/ml/_restclient/runhistory/operations/_operations.py``):

* run: ``GET {api}/history/v1.0/{workspace}/runs/{runId}?api-version=v1.0`` (builder lines 46-72);
* details: the same plus ``/details`` (lines 191-217);
* run data: ``POST {api}/history/v1.0/{workspace}/rundata?api-version=v1.0`` with
  ``{"runId", "selectRunMetadata": true, "selectRunDefinition": true, "selectJobSpecification":
  true}`` (lines 344-372; the body is ``RunOperations.get_run_data``, lines 82-95). The answer is
  ``{"runMetadata": Run, "runDefinition": …, "jobSpecification": …}``: this is where Microsoft's
  recordings of v2 jobs show the run definition (``script`` null, ``command`` set, the environment
  by name, version and asset id);
* children: ``GET …/runs/{runId}/children?api-version=v1.0``, the next page with the token in
  ``$continuationtoken`` (lines 139-188, parameter spelled at line 175). azure-ai-ml 1.35.2 reads
  only the first page (``RunsOperations.get_child``, line 3109, never returns a next link); this
  client follows ``continuationToken`` (``PaginatedRunList``) until the service stops giving one.

The run id alone identifies a run in a workspace, so the event's experiment is not part of the URL,
as in the v2 client.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .aml_discovery import ARM_API_VERSION, WorkspaceEndpoints, arm_scope_for, segment, workspace_path
from .aml_transport import AmlHttp, HttpAnswer, RunHistoryRejected
from .events import WorkspaceRef
from .run_listing import HISTORY_API_VERSION, RUNS_PAGE_SIZE, RunPage, iter_runs, page_items, page_token
from .settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpTransport

__all__ = ["RunHistoryClient", "RunHistoryRejected", "RunPage"]

_HISTORY = "history/v1.0"


SCHEDULES_API_VERSION = "2023-06-01-preview"


def run_data_request(run_id: str) -> dict[str, Any]:
    """``GetRunDataRequest`` as ``RunOperations.get_run_data`` fills it (every part selected)."""
    return {
        "runId": run_id,
        "selectRunMetadata": True,
        "selectRunDefinition": True,
        "selectJobSpecification": True,
    }


class RunHistoryClient:
    """Runs, run details, run data and child runs of AML workspaces, over one azure-core pipeline."""

    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential,
        *,
        transport: HttpTransport[Any, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._endpoints = WorkspaceEndpoints(settings)
        self._arm = settings.arm_endpoint
        self._http = AmlHttp(
            settings,
            credential,
            scope=arm_scope_for(settings.arm_endpoint),
            trusted=self._endpoints.is_trusted,
            transport=transport,
            sleep=sleep,
            jitter=jitter,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RunHistoryClient:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (every attempt, discovery included; token requests excluded)."""
        return self._http.request_count

    @property
    def discovery_count(self) -> int:
        """Workspace endpoint discoveries performed so far (at most one per workspace when healthy)."""
        return self._endpoints.discoveries

    # -- public calls ------------------------------------------------------------------------

    def get_run_details(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]:
        """``RunDetails`` (what SDK v1's ``Run.get_details()`` returned)."""
        return self._http.call_json(
            f"run details of {run_id}",
            "GET",
            self._url(ws, f"runs/{segment(run_id)}/details"),
            workspace=ws.cache_key,
        )

    def get_run(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]:
        """``Run`` (carries ``createdUtc``, ``displayName``, ``runType``)."""
        return self._http.call_json(
            f"run {run_id}", "GET", self._url(ws, f"runs/{segment(run_id)}"), workspace=ws.cache_key
        )

    def get_run_data(self, ws: WorkspaceRef, run_id: str) -> dict[str, Any]:
        """``GetRunDataResult``: the ``Run`` (``runMetadata``) with its ``runDefinition``."""
        return self._http.call_json(
            f"run data of {run_id}",
            "POST",
            self._url(ws, "rundata"),
            run_data_request(run_id),
            workspace=ws.cache_key,
        )

    def iter_children(self, ws: WorkspaceRef, run_id: str) -> Iterator[dict[str, Any]]:
        """Every direct child run, following the service's continuation tokens page by page."""
        path = f"runs/{segment(run_id)}/children"
        call = f"child runs of {run_id}"
        url = self._url(ws, path)
        seen: set[str] = set()
        while True:
            page = self._http.call_json(call, "GET", url, workspace=ws.cache_key)
            yield from page_items(page, call)
            token = page_token(page)
            if token is None or token in seen:
                return
            seen.add(token)
            url = self._url(ws, path, **{"$continuationtoken": token})

    def iter_runs(
        self,
        ws: WorkspaceRef,
        *,
        since: datetime,
        continuation_token: str | None = None,
        page_size: int = RUNS_PAGE_SIZE,
    ) -> Iterator[RunPage]:
        """Runs created at or after ``since`` in every experiment of the workspace, page by page.

        Experiments are listed with ``viewType: All`` (runs of archived experiments still happened).
        Runs of one experiment come oldest first. Each run gets ``experimentName`` when the API
        left it out, so a caller can build records without another request. Pass a page's
        ``continuation_token`` back to resume after it; a token from another workspace or another
        ``since`` is not detected. The last page always has ``continuation_token=None`` (it may be
        empty when the remaining experiments had no new runs).
        """
        prefix = f"{self._endpoints.api_base(ws, self._http)}/{_HISTORY}/{workspace_path(ws)}"
        return iter_runs(
            self._http,
            prefix,
            workspace=ws.cache_key,
            since=since,
            continuation_token=continuation_token,
            page_size=page_size,
        )

    # -- Resource Manager reads of the cost estimate (amlobs.compute_facts) --------------------
    #
    # Same pipeline, same token, same trusted host (settings.arm_endpoint) as the workspace lookup of
    # discovery; one attempt within the cost lookup's own time bound, since a record never waits long for
    # its estimate. GET .../workspaces/{ws}/computes/{name}: Azure/azure-rest-api-specs
    # specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/stable/
    # 2024-10-01 (Compute_Get; needs Microsoft.MachineLearningServices/workspaces/computes/read).

    def get_compute(self, ws: WorkspaceRef, name: str, *, timeout: float) -> dict[str, Any]:
        """The workspace's compute resource ``name`` (``ComputeResource``)."""
        return self._http.call_json(
            f"compute {name} of {ws.workspace_name} (Resource Manager)",
            "GET",
            f"{self._arm}/{workspace_path(ws)}/computes/{segment(name)}?api-version={ARM_API_VERSION}",
            not_found="compute",
            attempts=1,
            timeout=timeout,
        )

    def get_workspace(self, ws: WorkspaceRef, *, timeout: float) -> dict[str, Any]:
        """The workspace resource (its ``location`` prices a serverless job that reports no region)."""
        return self._http.call_json(
            f"workspace lookup of {ws.workspace_name} (Resource Manager)",
            "GET",
            f"{self._arm}/{workspace_path(ws)}?api-version={ARM_API_VERSION}",
            not_found="workspace",
            attempts=1,
            timeout=timeout,
        )

    # -- schedules (amlobs.schedules): GET .../workspaces/{ws}/schedules at azure-ai-ml's version --------
    # azure-ai-ml 1.35.2 _ml_client.py:101 (api_version="2023-06-01-preview" for ScheduleOperations,
    # lines 692-695); the request: _restclient/arm_ml_service/operations/_operations.py:4204-4218
    # (listViewType; pages follow nextLink).
    # Needs Microsoft.MachineLearningServices/workspaces/schedules/read.

    def iter_schedules(self, ws: WorkspaceRef) -> Iterator[dict[str, Any]]:
        """Every schedule of the workspace, enabled or not (``ScheduleResource`` items)."""
        call = f"schedules of {ws.workspace_name} (Resource Manager)"
        url: str | None = f"{self._arm}/{workspace_path(ws)}/schedules?" + urlencode(
            {"api-version": SCHEDULES_API_VERSION, "listViewType": "All"}
        )
        seen: set[str] = set()
        while url is not None and url not in seen:
            seen.add(url)
            page = self._http.call_json(call, "GET", url, not_found="workspace")
            yield from page_items(page, call)
            next_link = page.get("nextLink")
            url = next_link if isinstance(next_link, str) and next_link else None

    # -- Azure Monitor metrics of the workspace (amlobs.resource_use) ---------------------------
    #
    # The same Resource Manager host and token: Microsoft.Insights/metrics is an extension resource under
    # the workspace's own id (Azure/azure-rest-api-specs specification/monitor/resource-manager/
    # Microsoft.Insights/stable/2023-10-01/metrics_API.json, "/{resourceUri}/providers/Microsoft.Insights/
    # metrics"; needs Microsoft.Insights/metrics/read). The answer is handed back unclassified: the
    # resource-use pass turns a 403, a 429 or a 5xx into a reason on its event, never a failed invocation.

    def get_arm_answer(self, call: str, path_and_query: str, *, attempts: int, timeout: float) -> HttpAnswer:
        """GET ``{arm endpoint}/{path_and_query}`` (a path that starts with ``subscriptions/``)."""
        url = f"{self._arm}/{path_and_query}"
        return self._http.call_answer(call, url, attempts=attempts, timeout=timeout)

    # -- endpoints ---------------------------------------------------------------------------

    def _url(self, ws: WorkspaceRef, path: str, **query: str) -> str:
        base = f"{self._endpoints.api_base(ws, self._http)}/{_HISTORY}/{workspace_path(ws)}/{path}"
        return f"{base}?{urlencode({'api-version': HISTORY_API_VERSION, **query})}"
