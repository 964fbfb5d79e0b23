"""A loopback stand-in for every Azure endpoint the 2020 sample's SDK stack calls.

The baseline probe (running azureml-core v1 in its own venv) rewrites each outgoing ``requests``
URL to this server and passes the original URL in a header; the server answers with the minimal
documented shapes azureml-core needs and records every call, so the baseline's HTTP calls per event
are counted, not guessed. Stdlib only.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ORIGINAL_URL_HEADER = "X-Bench-Original-Url"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
API_HOST = "https://eastus.api.azureml.ms"


def _fake_jwt(tenant: str) -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    now = int(time.time())
    claims = {
        "aud": "https://management.azure.com/",
        "iss": f"https://sts.windows.net/{tenant}/",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": tenant,
        "oid": "00000000-0000-0000-0000-0000000000aa",
        "appid": "11111111-0000-0000-0000-000000000000",
    }
    return f"{b64({'typ': 'JWT', 'alg': 'none'})}.{b64(claims)}.sig"


@dataclass
class Call:
    method: str
    url: str
    answered: int
    items: int = 0  # telemetry envelopes in a /track call

    @property
    def line(self) -> str:
        """``host:port METHOD path`` of the original URL, as the probes report requests."""
        parts = urlsplit(self.url)
        return f"{parts.netloc} {self.method} {parts.path}"


@dataclass
class BaselineFake:
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    workspace_topic: str = ""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_run(self, run: dict[str, Any], details: dict[str, Any]) -> None:
        self.runs[run["runId"]] = {"run": run, "details": details}

    def add_sample_run(self, event: dict[str, Any], fixtures: Path) -> None:
        """The run the sample's step event names, from the same fixtures the project's AML fake serves."""
        run_id = event["data"]["runId"]
        short = run_id.split("-")[0]
        self.add_run(
            json.loads((fixtures / f"run_step_{short}.json").read_text()),
            json.loads((fixtures / f"run_details_step_{short}.json").read_text()),
        )
        self.workspace_topic = event["topic"]

    def sample_env(self) -> dict[str, str]:
        """The sample's app settings, pointing at nothing real: the probe reroutes them here."""
        topic = _WORKSPACE.match(self.workspace_topic)
        assert topic is not None, self.workspace_topic
        return {
            "BENCH_BASELINE_FAKE": self.endpoint,
            "TENANT_ID": TENANT,
            "APP_ID": "11111111-0000-0000-0000-000000000000",
            "SERVICE_PRINCIPAL_PASSWORD": "not-a-secret",
            "SUBSCRIPTION_ID": topic["sub"],
            "AML_RESOURCE_GROUP": topic["rg"],
            "AML_WORKSPACE_NAME": topic["ws"],
            "APPINSIGHTS_CONNECTION_STRING": (
                "InstrumentationKey=00000000-0000-0000-0000-0000000000ee;"
                "IngestionEndpoint=https://eastus-8.in.applicationinsights.azure.com/"
            ),
        }


_WORKSPACE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)/?$",
    re.IGNORECASE,
)


def _workspace_json(match: re.Match[str]) -> dict[str, Any]:
    rg_id = f"/subscriptions/{match['sub']}/resourceGroups/{match['rg']}"
    return {
        "id": f"{rg_id}/providers/Microsoft.MachineLearningServices/workspaces/{match['ws']}",
        "name": match["ws"],
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": "eastus",
        "sku": {"name": "Basic", "tier": "Basic"},
        "identity": {
            "type": "SystemAssigned",
            "principalId": "00000000-0000-0000-0000-0000000000bb",
            "tenantId": TENANT,
        },
        "properties": {
            "friendlyName": match["ws"],
            "workspaceId": "00000000-0000-0000-0000-0000000000cc",
            "discoveryUrl": f"{API_HOST}/discovery",
            "provisioningState": "Succeeded",
            "storageAccount": f"{rg_id}/providers/Microsoft.Storage/storageAccounts/benchsa",
            "keyVault": f"{rg_id}/providers/Microsoft.KeyVault/vaults/benchkv",
            "applicationInsights": f"{rg_id}/providers/Microsoft.Insights/components/benchai",
            "hbiWorkspace": False,
            "publicNetworkAccess": "Enabled",
        },
    }


_HISTORY = re.compile(
    r"^/history/v1\.0/subscriptions/[^/]+/resourceGroups/[^/]+"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/[^/]+(?P<rest>/.*)$",
    re.IGNORECASE,
)
_EXPERIMENT = re.compile(r"^/experiments/(?P<name>[^/]+)$")
_RUN = re.compile(r"^/(?:experiments|experimentids)/(?P<exp>[^/]+)/runs/(?P<run>[^/]+)(?P<tail>/details)?$")
EXPERIMENT_ID = "00000000-0000-0000-0000-0000000000dd"


def _history(fake: BaselineFake, method: str, rest: str) -> tuple[int, Any]:
    experiment = _EXPERIMENT.match(rest)
    if experiment:
        return 200, {
            "experimentId": EXPERIMENT_ID,
            "name": experiment["name"],
            "description": None,
            "createdUtc": "2020-06-07T19:00:00.000Z",
            "tags": {},
            "archivedTime": None,
        }
    run = _RUN.match(rest)
    if run and method == "GET":
        stored = fake.runs.get(run["run"])
        if stored is None:
            return 404, {"error": {"code": "UserError", "message": "Run not found"}}
        body = dict(stored["details" if run["tail"] else "run"])
        if not run["tail"]:
            # RunDto fields azureml-core v1 reads unconditionally when it builds a Run object.
            body.setdefault("rootRunId", body.get("parentRunId") or body.get("runId"))
            body.setdefault("runNumber", 1)
            body.setdefault("experimentId", EXPERIMENT_ID)
            body.setdefault("hidden", False)
            body.setdefault("dataContainerId", f"dcid.{body.get('runId')}")
        else:
            body.setdefault("logFiles", {})
        return 200, body
    return 404, {"error": {"code": "NotFound", "message": f"bench fake has no history answer for {rest}"}}


def _count_items(body: bytes) -> int:
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    try:
        decoded = json.loads(body)
    except ValueError:
        return 0
    return len(decoded) if isinstance(decoded, list) else 1


def _answer(fake: BaselineFake, method: str, url: str, body: bytes) -> tuple[int, Any]:
    parts = urlsplit(url)
    path = parts.path
    if path.endswith("/.well-known/openid-configuration"):
        tenant = path.strip("/").split("/")[0]
        base = f"https://{parts.netloc}/{tenant}"
        return 200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        }
    if path.endswith("/oauth2/v2.0/token") or path.endswith("/oauth2/token"):
        return 200, {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": _fake_jwt(TENANT),
        }
    if path.endswith("/track"):
        # Breeze's success shape; the sample's handler posts a JSON array (possibly gzip).
        items = _count_items(body)
        return 200, {"itemsReceived": items, "itemsAccepted": items, "errors": []}
    if path.rstrip("/") == "/subscriptions":
        topic = _WORKSPACE.match(fake.workspace_topic)
        subscription = topic["sub"] if topic else SUBSCRIPTION
        return 200, {
            "value": [
                {
                    "id": f"/subscriptions/{subscription}",
                    "subscriptionId": subscription,
                    "tenantId": TENANT,
                    "displayName": "bench",
                    "state": "Enabled",
                }
            ]
        }
    workspace = _WORKSPACE.match(path)
    if workspace and parts.netloc == "management.azure.com":
        return 200, _workspace_json(workspace)
    if path.rstrip("/") == "/discovery":
        return 200, {
            name: API_HOST
            for name in (
                "api",
                "catalog",
                "experimentation",
                "gallery",
                "history",
                "hyperdrive",
                "labeling",
                "modelmanagement",
                "pipelines",
                "studio",
                "studiocoreservices",
            )
        }
    if "/artifacts/prefix/contentinfo/" in path and path.startswith("/artifact/v2.0/"):
        # The log-file listing get_details() backfills (user_logs, system_logs): an empty page.
        return 200, {"value": [], "continuationToken": None, "nextLink": None}
    history = _HISTORY.match(path)
    if history:
        return _history(fake, method, history["rest"])
    return 404, {"error": {"code": "NotFound", "message": f"bench fake has no answer for {method} {path}"}}


def _handler(fake: BaselineFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = self.headers.get(ORIGINAL_URL_HEADER) or f"http://unknown{self.path}"
            status, payload = _answer(fake, self.command, url, body)
            items = _count_items(body) if url.endswith("/track") else 0
            fake.calls.append(Call(self.command, url, status, items))
            out = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@contextmanager
def start_baseline_fake() -> Iterator[BaselineFake]:
    fake = BaselineFake()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="baseline-fake", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
