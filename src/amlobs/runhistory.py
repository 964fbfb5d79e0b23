"""Azure Machine Learning run history client: run, run details, child runs and run listing.

One :class:`RunHistoryClient` per process: one azure-core pipeline (one connection pool, one token
cache) serves every event. The regional AML API endpoint of a workspace is discovered once and
cached for the life of the process:

    GET {arm}/subscriptions/…/workspaces/{ws}?api-version=2024-10-01 → properties.discoveryUrl
    GET {discoveryUrl} → {"api": "https://<region>.api.azureml.ms", …}

REST shapes follow the public run history contract (azure-rest-api-specs
``specification/machinelearningservices/data-plane/Microsoft.MachineLearningServices.RunHistory/
stable/v1.0/run-history.json``) and the clients that used it (azureml-core 1.x ``_restclient``,
azure-ai-ml ``_restclient/runhistory``):

* run: ``GET …/experimentids/{id}/runs/{runId}`` (or ``/experiments/{name}/…``, or workspace-level
  ``/runs/{runId}`` when the event names no experiment); details: the same plus ``/details``.
* children: ``GET …/runs/{runId}/children`` → ``PaginatedRunList`` ``{"value": [...],
  "continuationToken": str|null, "nextLink": str|null}``; the next page is requested with the token
  in the ``$continuationToken`` query parameter (what azureml-core sent; the service matches query
  names case-insensitively, the TypeSpec spec spells it ``$continuationtoken``).
* listing: the run history API has no workspace-wide ``runs:query``; azureml-core's
  ``Experiment.list`` + ``Run.list`` walk ``POST …/experiments:query`` and then
  ``POST …/experimentids/{id}/runs:query`` per experiment, with ``QueryParams`` bodies
  ``{"filter", "continuationToken", "orderBy", "top"}``. :meth:`RunHistoryClient.iter_runs` does the
  same and folds both positions into one opaque continuation token for checkpointing.

Error rules (DESIGN.md "Enrichment"): 401/403/408/429/5xx, timeouts and connection errors are
retried inside the call (``settings.http_max_attempts`` attempts in total, exponential backoff with
jitter, ``x-ms-retry-after-ms``/``Retry-After`` honoured, a Retry-After beyond
``settings.max_retry_after_seconds`` fails at once) and then raise
:class:`~amlobs.errors.EnrichmentUnavailable`, so Event Grid redelivers. 404 raises
:class:`~amlobs.errors.RunNotFound` (record what the event carries). Any other 4xx raises
:class:`RunHistoryRejected`, a ``RunNotFound``: a 400 will not improve on redelivery, and the
event must still be recorded. Unparseable bodies raise ``EnrichmentUnavailable``. During discovery,
a 404 from Resource Manager means the workspace is gone or invisible (``RunNotFound``, the event
is recorded alone), while any failure of the discovery document itself, or a discovered URL that
fails validation, is ``EnrichmentUnavailable``: that is a service or configuration fault, not a
property of the run, and the event should wait for it to be fixed. Failed discoveries are not cached.

Who gets the bearer token (:mod:`amlobs.trust`): only Resource Manager (``settings.arm_endpoint``),
the configured ``settings.api_endpoint``, and discovered API hosts under Azure ML's own domains (or
loopback), each an unambiguous https origin, decided again on every send. The discovery document is
fetched without a token, as azureml-core did: it is public service metadata, and sending an ARM token
to whatever URL a response names would be a token leak waiting to happen. Exception messages carry
the call, the status and the attempt count, never a token.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlencode, urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    HeadersPolicy,
    HTTPPolicy,
    RequestIdPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)

from . import __version__
from .errors import EnrichmentUnavailable, RunNotFound
from .events import WorkspaceRef
from .settings import Settings, SettingsError, validate_endpoint
from .trust import (
    ANONYMOUS,
    Origin,
    TokenGate,
    TrustedOrigins,
    UntrustedHost,
    UntrustedUrl,
    check_token_url,
    is_trusted_api_host,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport

logger = logging.getLogger("amlobs.runhistory")

USER_AGENT = f"amlobs/{__version__}"
# A GA Microsoft.MachineLearningServices version whose workspace GET returns properties.discoveryUrl.
ARM_API_VERSION = "2024-10-01"
ARM_SCOPE = "https://management.azure.com/.default"
# Sovereign clouds issue Resource Manager tokens for their own audience.
_ARM_SCOPES_BY_HOST = {
    "management.chinacloudapi.cn": "https://management.chinacloudapi.cn/.default",
    "management.usgovcloudapi.net": "https://management.usgovcloudapi.net/.default",
}
RETRYABLE_STATUSES = frozenset({401, 403, 408, 429})
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0
RUNS_PAGE_SIZE = 100
_HISTORY = "history/v1.0"
_TOKEN_VERSION = 1

# Keys this module keeps in an azure-core PipelineContext.
_CTX_ATTEMPTS = "amlobs_attempts"
_CTX_RETRY_AFTER_REFUSED = "amlobs_retry_after_refused"


class RunHistoryRejected(RunNotFound):
    """The API refused the request with a 4xx other than 404 (for example 400): retrying is futile.

    A ``RunNotFound`` so the event is recorded from what it carries, with ``enrichment_error`` set.
    """


@dataclass(frozen=True)
class RunPage:
    """One page of :meth:`RunHistoryClient.iter_runs`.

    ``continuation_token`` resumes the listing right after this page (store it as the checkpoint);
    it is ``None`` on the last page.
    """

    runs: list[dict[str, Any]]
    continuation_token: str | None


class _GaveUp(Exception):
    """A transport error survived every attempt (timeouts, refused or dropped connections)."""

    def __init__(self, attempts: int, error: Exception) -> None:
        super().__init__(str(error))
        self.attempts = attempts
        self.error = error


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Server-requested delay: ``x-ms-retry-after-ms``/``retry-after-ms``, else ``Retry-After``."""
    lowered = {key.lower(): value for key, value in headers.items()}
    for name in ("x-ms-retry-after-ms", "retry-after-ms"):
        raw = lowered.get(name, "").strip()
        if raw:
            try:
                milliseconds = float(raw)
            except ValueError:
                continue
            # float() also takes "nan"/"inf", which no sleep can honour.
            if math.isfinite(milliseconds):
                return max(milliseconds / 1000.0, 0.0)
    raw = lowered.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def _is_transport_failure(exc: Exception) -> bool:
    """No usable answer arrived: refused, timed out, dropped, or broken while the body was read.

    The requests transport reports a body cut short as ``IncompleteReadError`` and broken chunking as
    a bare ``HttpResponseError`` without a response; neither is a ``ServiceResponseError``.
    """
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, IncompleteReadError)):
        return True
    return type(exc) is HttpResponseError and exc.response is None


class _BoundedRetryPolicy(HTTPPolicy[Any, Any]):
    """Retries inside one invocation, then hands the last answer back to the client to classify.

    azure-core's RetryPolicy neither retries 401/403 (role assignments take minutes to propagate
    after deployment) nor takes an injectable sleep, and its Retry-After handling has no ceiling.
    """

    def __init__(
        self,
        max_attempts: int,
        max_retry_after: float,
        sleep: Callable[[float], None],
        jitter: Callable[[], float],
    ) -> None:
        super().__init__()
        self._max_attempts = max(1, max_attempts)
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._jitter = jitter

    def _backoff(self, attempt: int) -> float:
        ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (attempt - 1))
        # "Equal jitter": never zero, so a herd of instances does not retry in lockstep.
        return ceiling * (0.5 + self._jitter() / 2)

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        attempt = 0
        while True:
            attempt += 1
            request.context[_CTX_ATTEMPTS] = attempt
            try:
                response = self.next.send(request)
            except (ServiceRequestError, ServiceResponseError, HttpResponseError) as exc:
                if not _is_transport_failure(exc):
                    raise
                if attempt >= self._max_attempts:
                    raise _GaveUp(attempt, exc) from exc
                delay = self._backoff(attempt)
                logger.info("%s (attempt %d): retrying in %.2fs", type(exc).__name__, attempt, delay)
            else:
                status = response.http_response.status_code
                if not _is_retryable(status) or attempt >= self._max_attempts:
                    return response
                retry_after = _retry_after_seconds(response.http_response.headers)
                if retry_after is not None and retry_after > self._max_retry_after:
                    request.context[_CTX_RETRY_AFTER_REFUSED] = retry_after
                    return response
                delay = retry_after if retry_after is not None else self._backoff(attempt)
                logger.info("HTTP %d (attempt %d): retrying in %.2fs", status, attempt, delay)
            self._sleep(delay)


class _CountingPolicy(SansIOHTTPPolicy[Any, Any]):
    """Counts the HTTP requests that reach the transport (every attempt), for the benchmark."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def on_request(self, request: PipelineRequest[Any]) -> None:
        with self._lock:
            self.count += 1


def arm_scope_for(arm_endpoint: str) -> str:
    host = (urlsplit(arm_endpoint).hostname or "").lower()
    return _ARM_SCOPES_BY_HOST.get(host, ARM_SCOPE)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _workspace_path(ws: WorkspaceRef) -> str:
    return (
        f"subscriptions/{_segment(ws.subscription_id)}/resourceGroups/{_segment(ws.resource_group)}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{_segment(ws.workspace_name)}"
    )


@dataclass(frozen=True)
class _Position:
    """Where :meth:`RunHistoryClient.iter_runs` stands: experiments page, experiment, runs page."""

    experiments_token: str | None  # token that fetched the current experiments page (None: first)
    index: int  # experiment within that page
    experiment: str  # its experimentId (or name), to notice pages that shifted since the checkpoint
    runs_token: str | None  # next runs page of that experiment (None: its first)

    def encode(self) -> str:
        payload = {
            "v": _TOKEN_VERSION,
            "e": self.experiments_token,
            "i": self.index,
            "x": self.experiment,
            "r": self.runs_token,
        }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> _Position:
        try:
            payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (binascii.Error, ValueError) as exc:
            raise ValueError("continuation_token was not produced by RunHistoryClient.iter_runs") from exc
        if not isinstance(payload, dict) or payload.get("v") != _TOKEN_VERSION:
            raise ValueError("continuation_token was not produced by RunHistoryClient.iter_runs")
        experiments_token, index, experiment, runs_token = (payload.get(k) for k in ("e", "i", "x", "r"))
        if (
            not isinstance(index, int)
            or index < 0
            or not isinstance(experiment, str)
            or not isinstance(experiments_token, (str, type(None)))
            or not isinstance(runs_token, (str, type(None)))
        ):
            raise ValueError("continuation_token is malformed")
        return cls(experiments_token, index, experiment, runs_token)


def _experiment_key(experiment: Mapping[str, Any]) -> str:
    return str(experiment.get("experimentId") or experiment.get("name") or "")


def _resume_index(experiments: list[dict[str, Any]], position: _Position) -> int:
    """The checkpointed experiment's index, found again if the page shifted since."""
    if not position.experiment:
        return position.index
    keys = [_experiment_key(e) for e in experiments]
    if position.index < len(keys) and keys[position.index] == position.experiment:
        return position.index
    if position.experiment in keys:
        return keys.index(position.experiment)
    logger.warning(
        "experiment %s left its page since the checkpoint; resuming by position", position.experiment
    )
    return position.index


def _odata_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("since must be timezone-aware (UTC)")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _page_items(page: Mapping[str, Any], call: str) -> list[dict[str, Any]]:
    value = page.get("value")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise EnrichmentUnavailable(f"{call}: the page's 'value' is not a list of objects")
    return value


def _page_token(page: Mapping[str, Any]) -> str | None:
    token = page.get("continuationToken")
    return token if isinstance(token, str) and token else None


def _error_code(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and len(code) <= 100 else None


class _RunListing:
    """The two-level walk behind :meth:`RunHistoryClient.iter_runs` (experiments, then their runs)."""

    def __init__(self, client: RunHistoryClient, *, prefix: str, created_filter: str, page_size: int) -> None:
        self._client = client
        self._prefix = prefix
        self._filter = created_filter
        self._page_size = page_size

    def pages(self, start: _Position) -> Iterator[RunPage]:
        experiments_token = start.experiments_token
        resume: _Position | None = start
        while True:
            body: dict[str, Any] = {"viewType": "All", "top": self._page_size}
            if experiments_token:
                body["continuationToken"] = experiments_token
            page = self._client._call_json(
                "experiments query", "POST", f"{self._prefix}/experiments:query", body
            )
            experiments = _page_items(page, "experiments query")
            next_token = _page_token(page)
            if next_token == experiments_token:
                next_token = None  # a service that repeats itself would loop forever
            first = _resume_index(experiments, resume) if resume is not None else 0
            runs_token = resume.runs_token if resume is not None else None
            resume = None
            for index in range(first, len(experiments)):
                yield from self._experiment_pages(
                    experiments, index, experiments_token, next_token, runs_token
                )
                runs_token = None
            if next_token is None:
                return
            experiments_token = next_token

    def _experiment_pages(
        self,
        experiments: list[dict[str, Any]],
        index: int,
        experiments_token: str | None,
        next_experiments_token: str | None,
        runs_token: str | None,
    ) -> Iterator[RunPage]:
        experiment = experiments[index]
        exp_id, exp_name = experiment.get("experimentId"), experiment.get("name")
        if isinstance(exp_id, str) and exp_id:
            url = f"{self._prefix}/experimentids/{_segment(exp_id)}/runs:query"
        elif isinstance(exp_name, str) and exp_name:
            url = f"{self._prefix}/experiments/{_segment(exp_name)}/runs:query"
        else:
            return
        call = f"runs query of experiment {exp_name or exp_id}"
        while True:
            query: dict[str, Any] = {
                "filter": self._filter,
                "orderBy": "CreatedUtc asc",
                "top": self._page_size,
            }
            if runs_token:
                query["continuationToken"] = runs_token
            page = self._client._call_json(call, "POST", url, query)
            runs = _page_items(page, call)
            if isinstance(exp_name, str) and exp_name:
                for run in runs:
                    run.setdefault("experimentName", exp_name)
            next_runs_token = _page_token(page)
            runs_token = None if next_runs_token == runs_token else next_runs_token
            if runs:
                yield RunPage(
                    runs,
                    self._after(experiments, index, experiments_token, next_experiments_token, runs_token),
                )
            if runs_token is None:
                return

    @staticmethod
    def _after(
        experiments: list[dict[str, Any]],
        index: int,
        experiments_token: str | None,
        next_experiments_token: str | None,
        runs_token: str | None,
    ) -> str | None:
        if runs_token is not None:
            return _Position(
                experiments_token, index, _experiment_key(experiments[index]), runs_token
            ).encode()
        if index + 1 < len(experiments):
            return _Position(
                experiments_token, index + 1, _experiment_key(experiments[index + 1]), None
            ).encode()
        if next_experiments_token is not None:
            return _Position(next_experiments_token, 0, "", None).encode()
        return None


def _discovered_endpoint(name: str, raw: object, *, missing: str, refusing: str) -> str:
    """A URL read from a discovery answer, held to the same rules as the settings' endpoints, and
    unambiguous (:func:`amlobs.trust.check_token_url`) even when it will not carry the token."""
    if not isinstance(raw, str) or not raw.strip():
        raise EnrichmentUnavailable(missing)
    try:
        url = validate_endpoint(name, raw)
        check_token_url(url)
    except (SettingsError, UntrustedUrl) as exc:
        raise EnrichmentUnavailable(f"{refusing}: {exc}") from None
    return url


def _configured_origin(name: str, url: str) -> Origin:
    try:
        return check_token_url(url)
    except UntrustedUrl as exc:
        raise SettingsError(f"{name}: {exc}") from None


class RunHistoryClient:
    """Run details, runs and child runs of AML workspaces, over one shared azure-core pipeline."""

    def __init__(
        self,
        settings: Settings,
        credential: TokenCredential,
        *,
        transport: HttpTransport[Any, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        from azure.core.pipeline import Pipeline

        if transport is None:
            from azure.core.pipeline.transport import RequestsTransport

            transport = RequestsTransport()
        self._settings = settings
        self._transport = transport
        self._timeout = settings.http_timeout_seconds
        self._trusted = TrustedOrigins([_configured_origin("AML_OBS_ARM_ENDPOINT", settings.arm_endpoint)])
        if settings.api_endpoint:
            self._trusted.add(_configured_origin("AML_OBS_API_ENDPOINT", settings.api_endpoint))
        self._api_by_workspace: dict[str, str] = {}
        self._locks_lock = threading.Lock()
        self._workspace_locks: dict[str, threading.Lock] = {}
        self._counter = _CountingPolicy()
        self._discoveries = 0
        policies: list[Any] = [
            RequestIdPolicy(),
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy(base_user_agent=USER_AGENT),
            _BoundedRetryPolicy(settings.http_max_attempts, settings.max_retry_after_seconds, sleep, jitter),
            TokenGate(credential, arm_scope_for(settings.arm_endpoint), self._trusted.__contains__),
            self._counter,
        ]
        self._pipeline: Pipeline[HttpRequest, HttpResponse] = Pipeline(transport=transport, policies=policies)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> RunHistoryClient:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (every attempt, discovery included; token requests excluded)."""
        return self._counter.count

    @property
    def discovery_count(self) -> int:
        """Workspace endpoint discoveries performed so far (at most one per workspace when healthy)."""
        return self._discoveries

    # -- public calls ------------------------------------------------------------------------

    def get_run_details(
        self, ws: WorkspaceRef, run_id: str, *, experiment_id: str | None, experiment_name: str | None
    ) -> dict[str, Any]:
        """``RunDetails`` (what SDK v1's ``Run.get_details()`` returned)."""
        url = self._run_url(ws, run_id, experiment_id, experiment_name) + "/details"
        return self._call_json(f"run details of {run_id}", "GET", url)

    def get_run(
        self, ws: WorkspaceRef, run_id: str, *, experiment_id: str | None, experiment_name: str | None
    ) -> dict[str, Any]:
        """``Run`` (carries ``createdUtc``, used for queue time)."""
        url = self._run_url(ws, run_id, experiment_id, experiment_name)
        return self._call_json(f"run {run_id}", "GET", url)

    def iter_children(
        self, ws: WorkspaceRef, run_id: str, *, experiment_id: str | None, experiment_name: str | None
    ) -> Iterator[dict[str, Any]]:
        """Every direct child run, following the service's continuation tokens page by page."""
        base = self._run_url(ws, run_id, experiment_id, experiment_name) + "/children"
        call = f"child runs of {run_id}"
        url = base
        seen: set[str] = set()
        while True:
            page = self._call_json(call, "GET", url)
            yield from _page_items(page, call)
            token = _page_token(page)
            if token is None or token in seen:
                return
            seen.add(token)
            url = f"{base}?{urlencode({'$continuationToken': token})}"

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
        listing = _RunListing(
            self,
            prefix=f"{self._api_base(ws)}/{_HISTORY}/{_workspace_path(ws)}",
            created_filter=f"CreatedUtc ge {_odata_datetime(since)}",
            page_size=page_size,
        )
        start = _Position.decode(continuation_token) if continuation_token else _Position(None, 0, "", None)
        finished = False
        for page in listing.pages(start):
            finished = page.continuation_token is None
            yield page
        if not finished:
            yield RunPage(runs=[], continuation_token=None)

    # -- endpoints ---------------------------------------------------------------------------

    def _run_url(
        self, ws: WorkspaceRef, run_id: str, experiment_id: str | None, experiment_name: str | None
    ) -> str:
        scope = f"{self._api_base(ws)}/{_HISTORY}/{_workspace_path(ws)}"
        if experiment_id:
            scope += f"/experimentids/{_segment(experiment_id)}"
        elif experiment_name:
            scope += f"/experiments/{_segment(experiment_name)}"
        return f"{scope}/runs/{_segment(run_id)}"

    def _api_base(self, ws: WorkspaceRef) -> str:
        if self._settings.api_endpoint:
            return self._settings.api_endpoint
        key = ws.cache_key
        cached = self._api_by_workspace.get(key)
        if cached is not None:
            return cached
        with self._locks_lock:
            lock = self._workspace_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._api_by_workspace.get(key)
            if cached is None:
                cached = self._discover(ws)
                self._api_by_workspace[key] = cached
            return cached

    def _discover(self, ws: WorkspaceRef) -> str:
        with self._locks_lock:
            self._discoveries += 1
        arm_url = f"{self._settings.arm_endpoint}/{_workspace_path(ws)}?api-version={ARM_API_VERSION}"
        workspace = self._call_json(
            f"workspace lookup of {ws.workspace_name} (Resource Manager)",
            "GET",
            arm_url,
            not_found="workspace",
        )
        properties = workspace.get("properties")
        discovery_url = _discovered_endpoint(
            "discoveryUrl",
            properties.get("discoveryUrl") if isinstance(properties, dict) else None,
            missing=f"workspace {ws.workspace_name}: its Resource Manager resource has no "
            "properties.discoveryUrl",
            refusing=f"workspace {ws.workspace_name}: refusing discovery URL",
        )
        document = self._call_json(
            f"endpoint discovery of {ws.workspace_name}",
            "GET",
            discovery_url,
            anonymous=True,
            not_found="unavailable",
        )
        api = _discovered_endpoint(
            "api",
            document.get("api"),
            missing=f"the discovery document of {ws.workspace_name} has no 'api' endpoint",
            refusing=f"workspace {ws.workspace_name}: refusing discovered endpoint",
        )
        origin = check_token_url(api)  # already checked by _discovered_endpoint: cannot fail here
        if not is_trusted_api_host(origin.host):
            raise EnrichmentUnavailable(
                f"workspace {ws.workspace_name}: discovered API host {origin.host!r} is not an Azure Machine "
                "Learning host; refusing to send it a token (set AML_OBS_API_ENDPOINT to override)"
            )
        self._trusted.add(origin)
        logger.info("workspace %s uses AML API endpoint %s", ws.workspace_name, api)
        return api

    # -- transport ---------------------------------------------------------------------------

    def _call_json(
        self,
        call: str,
        method: str,
        url: str,
        json_body: Mapping[str, Any] | None = None,
        *,
        anonymous: bool = False,
        not_found: Literal["run", "workspace", "unavailable"] = "run",
    ) -> dict[str, Any]:
        from azure.core.rest import HttpRequest as RestRequest

        request = RestRequest(method, url, json=dict(json_body) if json_body is not None else None)
        options: dict[str, Any] = {"connection_timeout": self._timeout, "read_timeout": self._timeout}
        if anonymous:
            options[ANONYMOUS] = True
        try:
            result = self._pipeline.run(request, **options)  # type: ignore[arg-type]
        except _GaveUp as gave_up:
            raise EnrichmentUnavailable(
                f"{call} failed after {gave_up.attempts} attempt(s): {type(gave_up.error).__name__}"
            ) from None
        except UntrustedHost as untrusted:
            raise EnrichmentUnavailable(f"{call}: refusing to send a token to {untrusted}") from None
        except ClientAuthenticationError as exc:
            raise EnrichmentUnavailable(f"{call}: could not get an access token: {exc.message}") from None
        response = result.http_response
        attempts = int(result.context.get(_CTX_ATTEMPTS, 1))
        status = response.status_code
        body = response.body()
        if status == 200:
            try:
                parsed = json.loads(body)
            except ValueError:
                raise EnrichmentUnavailable(f"{call}: HTTP 200 with a body that is not JSON") from None
            if not isinstance(parsed, dict):
                raise EnrichmentUnavailable(
                    f"{call}: HTTP 200 with a JSON {type(parsed).__name__}, not an object"
                )
            return parsed
        code = _error_code(body)
        detail = f"HTTP {status}{f' ({code})' if code else ''}"
        refused = result.context.get(_CTX_RETRY_AFTER_REFUSED)
        if refused is not None:
            raise EnrichmentUnavailable(
                f"{call} failed: {detail}; the service asked to retry after {refused:.0f}s, more than "
                f"the {self._settings.max_retry_after_seconds:.0f}s this invocation may wait "
                f"(attempt {attempts})"
            )
        if status == 404 and not_found == "run":
            raise RunNotFound(f"{call}: {detail}: the run is deleted or not visible to this identity")
        if status == 404 and not_found == "workspace":
            raise RunNotFound(f"{call}: {detail}: the workspace is deleted or not visible to this identity")
        if 400 <= status < 500 and not _is_retryable(status) and not_found != "unavailable":
            raise RunHistoryRejected(f"{call}: {detail}: the request was refused and would be again")
        raise EnrichmentUnavailable(f"{call} failed: {detail} after {attempts} attempt(s)")
