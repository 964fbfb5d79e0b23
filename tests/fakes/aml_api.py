"""A loopback stand-in for everything the run history client talks to, in one threaded HTTP server.

* the App Service managed identity endpoint (``GET /msi/token?api-version=2019-08-01&resource=…
  &client_id=…`` with the ``X-IDENTITY-HEADER`` secret; documented answer
  ``{access_token, expires_on, resource, token_type, client_id}``). Tokens name their audience:
  ``token-for-management`` for ``https://management.azure.com``, ``token-for-monitor`` for
  ``https://monitor.azure.com`` and so on, so a test can tell which scope a caller asked for;
* Resource Manager's workspace GET (shape of ``tests/data/aml/workspace_get.json``) whose
  ``properties.discoveryUrl`` points back here;
* the discovery document (``tests/data/aml/discovery.json`` with every AML endpoint pointing here);
* Azure Monitor's metrics of a workspace (``tests/fakes/azure_monitor_metrics.py``);
* the run history v1.0 API, accepting only requests in the form azure-ai-ml's run history client
  sends them (``src/amlobs/runhistory.py`` and ``run_listing.py`` cite the SDK lines), so a request
  that drifts from it fails a test with HTTP 400: ``api-version=v1.0`` on every call; run, details
  and children at workspace level (``/runs/{id}``, ``/details``, ``/children`` paged with
  ``$continuationtoken``); ``POST /rundata`` with the full ``GetRunDataRequest``;
  ``experiments:query`` and ``runs:query`` with the SDKs' body keys, the created-since filter
  literal and the order azureml-core renders;
* fault injection per method + path fragment: status, headers (``Retry-After``…), body, a delay
  before answering (to force client timeouts) or a dropped connection.

It records every request (method, path, query, headers, body) and every token request. Resource
Manager and run history calls require ``Authorization: Bearer token-for-management`` and answer 401
otherwise. The default data is the 2020 sample's workspace with three runs taken from
``tests/data/aml``; recorded kinds of SDK v2 jobs are added with ``workspace().load_kind(name)``
(:mod:`tests.fakes.aml_data`).

Use the ``aml_api`` pytest fixture, or ``with start_aml_api() as api:`` outside pytest (benchmark).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from amlobs.settings import TEST_LOOPBACK_SETTING
from tests.fakes.aml_data import FakeWorkspace, load_fixture
from tests.fakes.azure_monitor_metrics import MetricsData
from tests.fakes.retail_prices import PRICES_PATH, RetailPricesData

try:  # the benchmark imports this module in environments without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

SAMPLE_SUBSCRIPTION = "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b"
SAMPLE_RESOURCE_GROUP = "sample"
SAMPLE_WORKSPACE = "sample-ws"
SAMPLE_EXPERIMENT_ID = "eea3758a-4a75-42a7-b215-32739323a0a7"
SAMPLE_EXPERIMENT_NAME = "experimentName"
SAMPLE_STEP_RUN_ID = "9a9d8f51-1e44-4c23-b0a0-8246046eeb28"
SAMPLE_STEP_PARENT_RUN_ID = "096a41be-218d-4bdb-857d-be3222caa891"
SAMPLE_PIPELINE_RUN_ID = "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35"

DEFAULT_IDENTITY_SECRET = "fake-identity-header-secret"
DEFAULT_CLIENT_ID = "5b1f5e3a-6c0d-4c2e-9f7a-3d2b1a0c9e8f"
MANAGEMENT_TOKEN = "token-for-management"

_WS = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
_ARM_WORKSPACE = re.compile(rf"^{_WS}$", re.IGNORECASE)
_ARM_SCHEDULES = re.compile(rf"^{_WS}/schedules$", re.IGNORECASE)
# azure-ai-ml 1.35.2's schedule operations (src/amlobs/runhistory.py cites the lines).
SCHEDULES_API_VERSION = "2023-06-01-preview"
SCHEDULE_LIST_VIEWS = frozenset({"EnabledOnly", "DisabledOnly", "All"})
_ARM_COMPUTE = re.compile(rf"^{_WS}/computes/(?P<compute>[^/]+)$", re.IGNORECASE)
_ARM_METRICS = re.compile(rf"^{_WS}/providers/Microsoft\.Insights/metrics$", re.IGNORECASE)
_HISTORY = re.compile(rf"^/history/v1\.0{_WS}(?P<rest>/.*)$", re.IGNORECASE)
_EXPERIMENT = r"(?:/experimentids/(?P<eid>[^/]+)|/experiments/(?P<ename>[^/:]+))"
_RUN = re.compile(
    rf"^(?P<scope>{_EXPERIMENT})?/runs/(?P<run>[^/:]+)(?P<what>/details|/children)?$", re.IGNORECASE
)
_RUNS_QUERY = re.compile(rf"^{_EXPERIMENT}/runs:query$", re.IGNORECASE)
# azureml-core's CREATED_AFTER_FORMAT_STR "(CreatedUtc ge {0})" with str() of an aware UTC datetime.
_CREATED_GE = re.compile(
    r"^\(CreatedUtc ge (?P<when>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{6})?\+00:00)\)$"
)
HISTORY_API_VERSION = "v1.0"
RUNS_QUERY_KEYS = frozenset({"filter", "continuationToken", "orderBy", "top"})
EXPERIMENTS_QUERY_KEYS = frozenset({"viewType", "filter", "continuationToken", "orderBy", "top"})
RUN_DATA_REQUEST_KEYS = ("runId", "selectRunMetadata", "selectRunDefinition", "selectJobSpecification")
CREATED_ORDER = "CreatedUtc asc"


def _parse_time(value: str) -> datetime:
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = re.match(r"\d*", rest)
        frac = digits.group(0) if digits else ""
        text = f"{head}.{frac[:6].ljust(6, '0')}{rest[len(frac) :]}"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Fault:
    """One scripted answer. ``close`` drops the connection; ``passthrough`` answers normally after ``delay``;
    ``raw`` is written to the socket as it is (a broken answer: cut short, bad chunking), then the connection
    is closed."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    close: bool = False
    passthrough: bool = False
    raw: bytes | None = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # percent-decoded
    raw_path: str  # as sent
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class TokenRequest:
    resource: str | None
    client_id: str | None
    identity_header: str | None
    api_version: str | None


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "offset":
            raise ValueError(kind)
        return int(value)
    except ValueError:
        raise _BadRequest(f"unknown continuation token {token!r}") from None


class _BadRequest(Exception):
    pass


class FakeAmlApi:
    def __init__(
        self,
        *,
        identity_secret: str = DEFAULT_IDENTITY_SECRET,
        client_id: str = DEFAULT_CLIENT_ID,
        page_size: int = 50,
        sample_data: bool = True,
    ) -> None:
        self.identity_secret = identity_secret
        self.client_id = client_id
        self.page_size = page_size
        self.requests: list[RecordedRequest] = []
        # Merged into the discovery document (e.g. {"api": "https://elsewhere.example"}).
        self.discovery_overrides: dict[str, Any] = {}
        self.token_requests: list[TokenRequest] = []
        # The Retail Prices API (anonymous), served here too so that every test pointed at this fake by
        # env() also has a loopback price endpoint.
        self.prices = RetailPricesData()
        # Azure Monitor's metrics of each workspace (workspace name, lower case -> its data).
        self.metrics: dict[str, MetricsData] = {}
        # Consulted after the scripted faults: (method, percent-decoded path) -> a Fault or None.
        # The chaos simulator draws random faults with it; it runs on the server's threads.
        self.fault_hook: Callable[[str, str], Fault | None] | None = None
        self._lock = threading.Lock()
        self._faults: list[tuple[str, str, Fault, str]] = []
        self._workspaces: dict[tuple[str, str, str], FakeWorkspace] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if sample_data:
            self.load_sample_data()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeAmlApi:
        api = self

        class Handler(_Handler):
            app = api

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-aml-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/msi/token"

    def env(self) -> dict[str, str]:
        """App settings that point the app at this server (discovery is exercised: no API endpoint)."""
        return {
            "IDENTITY_ENDPOINT": self.token_endpoint,
            "IDENTITY_HEADER": self.identity_secret,
            "AZURE_CLIENT_ID": self.client_id,
            "AML_OBS_ARM_ENDPOINT": self.base_url,
            "AML_OBS_PRICES_ENDPOINT": self.prices_endpoint,
            # This fake listens on loopback: the app may send it the token only with the test-only setting.
            TEST_LOOPBACK_SETTING: "true",
        }

    @property
    def prices_endpoint(self) -> str:
        return f"{self.base_url}{PRICES_PATH}"

    # -- data --------------------------------------------------------------------------------

    def add_workspace(
        self, subscription_id: str, resource_group: str, name: str, *, discovery_url: str | None = None
    ) -> FakeWorkspace:
        body = load_fixture("workspace_get.json")
        workspace = FakeWorkspace(subscription_id, resource_group, name, body, discovery_url=discovery_url)
        body["id"] = workspace.resource_id
        body["name"] = name
        body["properties"]["friendlyName"] = name
        self._workspaces[(subscription_id.lower(), resource_group.lower(), name.lower())] = workspace
        return workspace

    def workspace(
        self,
        subscription_id: str = SAMPLE_SUBSCRIPTION,
        resource_group: str = SAMPLE_RESOURCE_GROUP,
        name: str = SAMPLE_WORKSPACE,
    ) -> FakeWorkspace:
        return self._workspaces[(subscription_id.lower(), resource_group.lower(), name.lower())]

    def load_sample_data(self) -> FakeWorkspace:
        """The 2020 sample's workspace: both sample events' runs, each consistent with its own event.

        The step event's run 9a9d8f51 belongs to pipeline run 096a41be (its ``azureml.pipelinerunid``
        tag), which is not the run of the sample's pipeline event (129a171f, a Designer run): both
        pipeline runs exist, and 9a9d8f51 is the only child of 096a41be.
        """
        workspace = self.add_workspace(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, SAMPLE_WORKSPACE)
        experiment = load_fixture("experiment.json")
        workspace.experiments[experiment["experimentId"]] = experiment
        for run_id, kind in (("9a9d8f51", "step"), ("096a41be", "pipeline"), ("129a171f", "pipeline")):
            workspace.add_run(
                load_fixture(f"run_{kind}_{run_id}.json"), load_fixture(f"run_details_{kind}_{run_id}.json")
            )
        # The clusters the sample's and the recordings' runs name (the 2020 sample's run reports
        # compute.vmSize STANDARD_D2_V2, dedicated, in eastus).
        workspace.add_compute("sample-compute", vm_size="STANDARD_D2_V2")
        workspace.add_compute("cpu-cluster", vm_size="STANDARD_DS2_V2")
        workspace.add_compute("gpu-cluster", vm_size="STANDARD_NC6S_V3", priority="LowPriority")
        return workspace

    # -- faults and records ------------------------------------------------------------------

    def fail(self, method: str, path_contains: str, *faults: Fault, query_contains: str = "") -> None:
        """Answer the next matching requests with ``faults``, in order; then behave normally again.
        ``query_contains``: only requests whose (percent-decoded) query string contains it."""
        with self._lock:
            self._faults.extend((method.upper(), path_contains, fault, query_contains) for fault in faults)

    def requests_to(self, path_contains: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if path_contains.lower() in r.path.lower() and (method is None or r.method == method.upper())
            ]

    def clear_records(self) -> None:
        with self._lock:
            self.requests.clear()
            self.token_requests.clear()

    def _take_fault(self, method: str, path: str, query: str = "") -> Fault | None:
        with self._lock:
            for index, (fault_method, fragment, fault, in_query) in enumerate(self._faults):
                if fault_method == method and fragment.lower() in path.lower() and in_query in query:
                    del self._faults[index]
                    return fault
        hook = self.fault_hook
        return hook(method, path) if hook is not None else None

    # -- request handling --------------------------------------------------------------------

    def handle(self, handler: _Handler, method: str) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(RecordedRequest(method, path, parts.path, query, headers, body))
        fault = self._take_fault(method, path, unquote(parts.query))
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.raw is not None:
                handler.wfile.write(fault.raw)
                handler.close_connection = True
                return
            if fault.close:
                handler.close_connection = True
                return
            if not fault.passthrough:
                handler.reply(fault.status, fault.body, fault.headers)
                return
        try:
            status, payload, extra = self._route(method, path, query, headers, body)
        except _BadRequest as bad:
            status, payload, extra = 400, {"error": {"code": "BadRequest", "message": str(bad)}}, {}
        handler.reply(status, payload, extra)

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if path == "/msi/token" and method == "GET":
            return self._token(query, headers)
        if path == "/discovery" and method == "GET":
            return self._discovery()
        if path == PRICES_PATH and method == "GET":
            status, answer = self.prices.answer(query, self.base_url)
            return status, answer, {}
        schedules = _ARM_SCHEDULES.match(path)
        if schedules and method == "GET":
            return self._schedules(schedules, query, headers)
        metrics = _ARM_METRICS.match(path)
        if metrics and method == "GET":
            if not self._authorized(headers):
                return _unauthorized()
            if self._find(metrics["sub"], metrics["rg"], metrics["ws"]) is None:
                return 404, load_fixture("error_arm_not_found.json"), {}
            data = self.metrics.setdefault(metrics["ws"].lower(), MetricsData())
            status, answer = data.answer(query, path.removesuffix("/providers/Microsoft.Insights/metrics"))
            return status, answer, {}
        compute = _ARM_COMPUTE.match(path)
        if compute and method == "GET":
            return self._compute(compute, query, headers)
        arm = _ARM_WORKSPACE.match(path)
        if arm and method == "GET":
            if not self._authorized(headers):
                return _unauthorized()
            if not query.get("api-version"):
                return (
                    400,
                    {
                        "error": {
                            "code": "MissingApiVersionParameter",
                            "message": "The api-version query parameter (?api-version=) is required",
                        }
                    },
                    {},
                )
            workspace = self._find(arm["sub"], arm["rg"], arm["ws"])
            if workspace is None:
                return 404, load_fixture("error_arm_not_found.json"), {}
            answer = copy.deepcopy(workspace.arm_body)
            answer["properties"]["discoveryUrl"] = workspace.discovery_url or f"{self.base_url}/discovery"
            return 200, answer, {}
        history = _HISTORY.match(path)
        if history:
            if not self._authorized(headers):
                return _unauthorized()
            workspace = self._find(history["sub"], history["rg"], history["ws"])
            if workspace is None:
                return 404, _not_found(f"Workspace {history['ws']} was not found"), {}
            return self._history(workspace, method, history["rest"], query, body)
        return (
            404,
            {"error": {"code": "NoRoute", "message": f"{method} {path} is not served by the fake"}},
            {},
        )

    def _compute(
        self, match: re.Match[str], query: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """ARM ``GET …/workspaces/{ws}/computes/{name}?api-version=…`` (Compute_Get)."""
        if not self._authorized(headers):
            return _unauthorized()
        if not query.get("api-version"):
            raise _BadRequest("the api-version query parameter (?api-version=) is required")
        workspace = self._find(match["sub"], match["rg"], match["ws"])
        body = workspace.computes.get(match["compute"].lower()) if workspace else None
        if body is None:
            return 404, load_fixture("error_arm_not_found.json"), {}
        return 200, copy.deepcopy(body), {}

    def _schedules(
        self, match: re.Match[str], query: dict[str, str], headers: Mapping[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        """ARM ``GET …/workspaces/{ws}/schedules?api-version=2023-06-01-preview&listViewType=…``
        (Schedules_List; the answer's shape is the spec's example, Azure/azure-rest-api-specs
        specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/preview/
        2023-06-01-preview/examples/Schedule/list.json: ``{"value": [ScheduleResource], "nextLink"}``)."""
        if not self._authorized(headers):
            return _unauthorized()
        if query.get("api-version") != SCHEDULES_API_VERSION:
            raise _BadRequest(f"schedules are listed at api-version={SCHEDULES_API_VERSION}, got {query!r}")
        view = query.get("listViewType", "EnabledOnly")
        if view not in SCHEDULE_LIST_VIEWS or set(query) - {"api-version", "listViewType", "$skip"}:
            raise _BadRequest(f"unexpected schedule list query {query!r}")
        workspace = self._find(match["sub"], match["rg"], match["ws"])
        if workspace is None:
            return 404, load_fixture("error_arm_not_found.json"), {}
        items = [
            copy.deepcopy(s)
            for s in workspace.schedules
            if view == "All" or (s["properties"].get("isEnabled") is not False) == (view == "EnabledOnly")
        ]
        return 200, {"value": items, "nextLink": None}, {}

    def _find(self, sub: str, rg: str, ws: str) -> FakeWorkspace | None:
        return self._workspaces.get((sub.lower(), rg.lower(), ws.lower()))

    @staticmethod
    def _authorized(headers: Mapping[str, str]) -> bool:
        return headers.get("authorization", "").startswith(f"Bearer {MANAGEMENT_TOKEN}")

    def _token(self, query: dict[str, str], headers: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
        resource = query.get("resource")
        client_id = query.get("client_id")
        secret = headers.get("x-identity-header")
        with self._lock:
            self.token_requests.append(TokenRequest(resource, client_id, secret, query.get("api-version")))
        if secret != self.identity_secret:
            return (
                401,
                {"statusCode": 401, "message": "Unauthorized: X-IDENTITY-HEADER is missing or wrong"},
                {},
            )
        if query.get("api-version") != "2019-08-01" or not resource:
            return 400, {"statusCode": 400, "message": "api-version=2019-08-01 and resource are required"}, {}
        if client_id is not None and client_id != self.client_id:
            return 400, {"statusCode": 400, "message": "Unable to load the proper Managed Identity."}, {}
        audience = (urlsplit(resource).hostname or resource).split(".")[0]
        return (
            200,
            {
                "access_token": f"token-for-{audience}",
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.client_id,
            },
            {},
        )

    def _discovery(self) -> tuple[int, Any, dict[str, str]]:
        document = load_fixture("discovery.json")
        for key in ("api", "experimentation", "history", "hyperdrive", "labeling", "modelmanagement"):
            document[key] = self.base_url
        document.update(self.discovery_overrides)
        return 200, document, {}

    def _history(
        self, workspace: FakeWorkspace, method: str, rest: str, query: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if query.get("api-version") != HISTORY_API_VERSION:
            raise _BadRequest(f"api-version={HISTORY_API_VERSION} is required, got query {query!r}")
        if rest.lower() == "/experiments:query" and method == "POST":
            params = _json_object(body, EXPERIMENTS_QUERY_KEYS, "ExperimentQueryParams")
            experiments = sorted(workspace.experiments.values(), key=lambda e: str(e["createdUtc"]))
            return 200, self._page(experiments, params.get("continuationToken"), params.get("top")), {}
        if rest.lower() == "/rundata" and method == "POST":
            params = _json_object(body, frozenset(RUN_DATA_REQUEST_KEYS), "GetRunDataRequest")
            if tuple(params) != RUN_DATA_REQUEST_KEYS or not all(
                params[k] is True for k in RUN_DATA_REQUEST_KEYS[1:]
            ):
                raise _BadRequest(
                    f"GetRunDataRequest must select everything, as RunOperations.get_run_data does: {params!r}"
                )
            if params["runId"] not in workspace.runs:
                return 404, _not_found(f"Run {params['runId']} was not found"), {}
            return 200, workspace.run_data(params["runId"]), {}
        run_query = _RUNS_QUERY.match(rest)
        if run_query and method == "POST":
            experiment = self._experiment(workspace, run_query["eid"], run_query["ename"])
            if experiment is None:
                return 404, _not_found("Experiment was not found"), {}
            params = _json_object(body, RUNS_QUERY_KEYS, "QueryParams")
            runs = [r for r in workspace.runs.values() if r.get("experimentId") == experiment["experimentId"]]
            runs = self._filter(runs, params.get("filter"))
            if params.get("orderBy") != CREATED_ORDER:
                raise _BadRequest(f"orderBy must be {CREATED_ORDER!r}, got {params.get('orderBy')!r}")
            runs.sort(key=lambda r: _parse_time(r["createdUtc"]))
            return 200, self._page(runs, params.get("continuationToken"), params.get("top")), {}
        run_match = _RUN.match(rest)
        if run_match and method == "GET":
            if run_match["scope"]:
                raise _BadRequest(
                    "runs are read at workspace level (/runs/{runId}), as azure-ai-ml reads them"
                )
            run = workspace.runs.get(run_match["run"])
            if run is None:
                return 404, _not_found(f"Run {run_match['run']} was not found"), {}
            what = (run_match["what"] or "").lower()
            if what == "/details":
                return 200, copy.deepcopy(workspace.details[run["runId"]]), {}
            if what == "/children":
                return 200, self._children(workspace, run, rest, query), {}
            return 200, copy.deepcopy(run), {}
        return 404, _not_found(f"{method} {rest} is not served by the fake"), {}

    def _children(
        self, workspace: FakeWorkspace, run: Mapping[str, Any], rest: str, query: dict[str, str]
    ) -> dict[str, Any]:
        unexpected = set(query) - {"api-version", "$continuationtoken"}
        if unexpected:
            raise _BadRequest(f"child runs are paged with $continuationtoken only, got {sorted(unexpected)}")
        children = [r for r in workspace.runs.values() if r.get("parentRunId") == run["runId"]]
        children.sort(key=lambda r: _parse_time(r["createdUtc"]))
        page = self._page(children, query.get("$continuationtoken"), None)
        if page["continuationToken"]:
            page["nextLink"] = f"{self.base_url}/history/v1.0{workspace.resource_id}{rest}?" + urlencode(
                {"$continuationtoken": page["continuationToken"]}
            )
        return page

    @staticmethod
    def _experiment(workspace: FakeWorkspace, eid: str | None, ename: str | None) -> dict[str, Any] | None:
        if eid:
            return workspace.experiments.get(eid)
        return next((e for e in workspace.experiments.values() if e["name"] == ename), None)

    @staticmethod
    def _filter(runs: list[dict[str, Any]], expression: str | None) -> list[dict[str, Any]]:
        match = _CREATED_GE.match(expression or "")
        if match is None:
            raise _BadRequest(
                f"filter must be azureml-core's '(CreatedUtc ge <datetime>)', got {expression!r}"
            )
        since = _parse_time(match["when"].replace(" ", "T"))
        return [r for r in runs if _parse_time(r["createdUtc"]) >= since]

    def _page(self, items: list[dict[str, Any]], token: str | None, top: Any) -> dict[str, Any]:
        offset = _page_offset(token)
        size = self.page_size if not isinstance(top, int) or top <= 0 else min(top, self.page_size)
        chunk = [copy.deepcopy(item) for item in items[offset : offset + size]]
        more = offset + size < len(items)
        return {
            "value": chunk,
            "continuationToken": _page_token(offset + size) if more else None,
            "nextLink": None,
        }


def _json_object(body: bytes, allowed: frozenset[str], model: str) -> dict[str, Any]:
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        raise _BadRequest(f"the body is not JSON ({model})") from None
    if not isinstance(params, dict) or not set(params) <= allowed:
        raise _BadRequest(f"{model} has only {sorted(allowed)}, got {params!r}")
    return params


def _not_found(message: str) -> dict[str, Any]:
    body = load_fixture("error_run_not_found.json")
    body["error"]["message"] = message
    body["error"]["messageFormat"] = message
    body["error"]["messageParameters"] = {}
    return dict(body)


def _unauthorized() -> tuple[int, Any, dict[str, str]]:
    return (
        401,
        {
            "error": {
                "code": "AuthenticationFailed",
                "message": f"Authorization must be 'Bearer {MANAGEMENT_TOKEN}…'",
            }
        },
        {},
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms each.
    disable_nagle_algorithm = True
    app: FakeAmlApi

    def do_GET(self) -> None:
        self.app.handle(self, "GET")

    def do_POST(self) -> None:
        self.app.handle(self, "POST")

    def reply(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
        if payload is None:
            data = b""
        elif isinstance(payload, bytes):
            data = payload
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            if data and not any(k.lower() == "content-type" for k in headers):
                self.send_header("Content-Type", "application/json; charset=utf-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test): nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def start_aml_api(**kwargs: Any) -> Iterator[FakeAmlApi]:
    """The fake without pytest (benchmarks): ``with start_aml_api() as api: os.environ.update(api.env())``."""
    api = FakeAmlApi(**kwargs).start()
    try:
        yield api
    finally:
        api.stop()


if pytest is not None:

    @pytest.fixture
    def aml_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAmlApi]:
        """A started fake with the app's environment pointed at it (managed identity + ARM; discovery on)."""
        with start_aml_api() as api:
            for name, value in api.env().items():
                monkeypatch.setenv(name, value)
            monkeypatch.delenv("AML_OBS_API_ENDPOINT", raising=False)
            yield api
