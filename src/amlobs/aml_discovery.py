"""Where a workspace's AML API lives, and which hosts may receive the Resource Manager token.

The regional AML API endpoint of a workspace is discovered once and cached for the life of the
process:

    GET {arm}/subscriptions/…/workspaces/{ws}?api-version=2024-10-01 → properties.discoveryUrl
    GET {discoveryUrl} → {"api": "https://<region>.api.azureml.ms", …}

During discovery, a 404 from Resource Manager means the workspace is gone or invisible
(``RunNotFound``, the event is recorded alone), while any failure of the discovery document itself,
or a discovered URL that fails validation, is ``EnrichmentUnavailable``: that is a service or
configuration fault, not a property of the run, and the event should wait for it to be fixed.
Failed discoveries are not cached.

Who gets the bearer token (:mod:`amlobs.trust`): only Resource Manager (``settings.arm_endpoint``),
the configured ``settings.api_endpoint``, and discovered API hosts under Azure ML's own domains (or
loopback), each an unambiguous https origin (:func:`~amlobs.trust.check_token_url`); the pipeline's
:class:`~amlobs.trust.TokenGate` decides again on every send. The discovery document is fetched
without a token, as azureml-core did: it is public service metadata, and sending an ARM token to
whatever URL a response names would be a token leak waiting to happen.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import quote, urlsplit

from .aml_transport import AmlHttp
from .errors import EnrichmentUnavailable
from .events import WorkspaceRef
from .settings import Settings, SettingsError, validate_endpoint
from .trust import Origin, TrustedOrigins, UntrustedUrl, check_token_url, is_trusted_api_host

logger = logging.getLogger("amlobs.runhistory")

# A GA Microsoft.MachineLearningServices version whose workspace GET returns properties.discoveryUrl.
ARM_API_VERSION = "2024-10-01"
ARM_SCOPE = "https://management.azure.com/.default"
# Sovereign clouds issue Resource Manager tokens for their own audience.
_ARM_SCOPES_BY_HOST = {
    "management.chinacloudapi.cn": "https://management.chinacloudapi.cn/.default",
    "management.usgovcloudapi.net": "https://management.usgovcloudapi.net/.default",
}


def arm_scope_for(arm_endpoint: str) -> str:
    host = (urlsplit(arm_endpoint).hostname or "").lower()
    return _ARM_SCOPES_BY_HOST.get(host, ARM_SCOPE)


def segment(value: str) -> str:
    return quote(value, safe="")


def workspace_path(ws: WorkspaceRef) -> str:
    return (
        f"subscriptions/{segment(ws.subscription_id)}/resourceGroups/{segment(ws.resource_group)}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{segment(ws.workspace_name)}"
    )


def _discovered_endpoint(name: str, raw: object, *, missing: str, refusing: str) -> tuple[str, Origin]:
    """A URL read from a discovery answer, held to the same rules as the settings' endpoints, and
    unambiguous (:func:`amlobs.trust.check_token_url`) even when it will not carry the token."""
    if not isinstance(raw, str) or not raw.strip():
        raise EnrichmentUnavailable(missing)
    try:
        url = validate_endpoint(name, raw)
        return url, check_token_url(url)
    except (SettingsError, UntrustedUrl) as exc:
        raise EnrichmentUnavailable(f"{refusing}: {exc}") from None


def _configured_origin(name: str, url: str) -> Origin:
    try:
        return check_token_url(url)
    except UntrustedUrl as exc:
        raise SettingsError(f"{name}: {exc}") from None


class WorkspaceEndpoints:
    """The API endpoint of each workspace (discovered once) and the origins trusted with the token."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.trusted = TrustedOrigins([_configured_origin("AML_OBS_ARM_ENDPOINT", settings.arm_endpoint)])
        if settings.api_endpoint:
            self.trusted.add(_configured_origin("AML_OBS_API_ENDPOINT", settings.api_endpoint))
        self._api_by_workspace: dict[str, str] = {}
        self._locks_lock = threading.Lock()
        self._workspace_locks: dict[str, threading.Lock] = {}
        self.discoveries = 0

    def api_base(self, ws: WorkspaceRef, http: AmlHttp) -> str:
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
                cached = self._discover(ws, http)
                self._api_by_workspace[key] = cached
            return cached

    def _discover(self, ws: WorkspaceRef, http: AmlHttp) -> str:
        with self._locks_lock:
            self.discoveries += 1
        arm_url = f"{self._settings.arm_endpoint}/{workspace_path(ws)}?api-version={ARM_API_VERSION}"
        workspace = http.call_json(
            f"workspace lookup of {ws.workspace_name} (Resource Manager)",
            "GET",
            arm_url,
            not_found="workspace",
        )
        properties = workspace.get("properties")
        discovery_url, _ = _discovered_endpoint(
            "discoveryUrl",
            properties.get("discoveryUrl") if isinstance(properties, dict) else None,
            missing=f"workspace {ws.workspace_name}: its Resource Manager resource has no "
            "properties.discoveryUrl",
            refusing=f"workspace {ws.workspace_name}: refusing discovery URL",
        )
        document = http.call_json(
            f"endpoint discovery of {ws.workspace_name}",
            "GET",
            discovery_url,
            anonymous=True,
            not_found="unavailable",
        )
        api, origin = _discovered_endpoint(
            "api",
            document.get("api"),
            missing=f"the discovery document of {ws.workspace_name} has no 'api' endpoint",
            refusing=f"workspace {ws.workspace_name}: refusing discovered endpoint",
        )
        if not is_trusted_api_host(origin.host):
            raise EnrichmentUnavailable(
                f"workspace {ws.workspace_name}: discovered API host {origin.host!r} is not an Azure "
                "Machine Learning host; refusing to send it a token (set AML_OBS_API_ENDPOINT to override)"
            )
        self.trusted.add(origin)
        logger.info("workspace %s uses AML API endpoint %s", ws.workspace_name, api)
        return api
