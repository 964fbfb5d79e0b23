"""Where a workspace's AML API lives, and which hosts may receive the Resource Manager token.

The regional AML API endpoint of a workspace is discovered once and cached for the life of the
process:

    GET {arm}/subscriptions/…/workspaces/{ws}?api-version=2024-10-01 → properties.discoveryUrl
    GET {discoveryUrl} → {"api": "https://<region>.api.azureml.ms", …}

During discovery, a 404 from Resource Manager means the workspace is gone or invisible
(``RunNotFound``, the event is recorded alone), while any failure of the discovery document itself is
``EnrichmentUnavailable``: a service fault, and the event should wait for it to be fixed. A discovery URL
or a discovered ``api`` that is not one of Azure ML's own API hosts is :class:`UntrustedEndpoint`, a
``RunNotFound``: the record goes out with the refusal as its ``enrichment_error`` (a redelivery would
meet the same answer). Failed discoveries are not cached.

Who gets the bearer token (:mod:`amlobs.trust`, docs/security.md): Resource Manager
(``settings.arm_endpoint``, one of the clouds' Resource Manager hosts) and the configured
``settings.api_endpoint`` for every request, and a discovered API origin only for the requests of the
workspace that discovered it. Before the discovery document is fetched, its URL must be on one of the
run history API host forms of Resource Manager's cloud (:func:`~amlobs.trust.aml_cloud_of`); the ``api``
it answers must be on the same cloud's forms. Loopback hosts (the fakes) only with the test-only
``AML_OBS_TEST_ALLOW_LOOPBACK``, and then discovery on loopback must answer loopback. Each URL must be an
unambiguous https origin (:func:`~amlobs.trust.check_token_url`); the pipeline's
:class:`~amlobs.trust.TokenGate` decides again on every send. The discovery document is fetched without
a token, as azureml-core did: it is public service metadata.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import quote, urlsplit

from .aml_transport import AmlHttp
from .errors import EnrichmentUnavailable, RunNotFound
from .events import WorkspaceRef
from .settings import Settings, SettingsError, is_loopback_host, validate_endpoint
from .trust import (
    AML_CLOUDS,
    AmlCloud,
    Origin,
    UntrustedUrl,
    aml_cloud_of,
    check_token_url,
    resource_manager_cloud,
)

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


class UntrustedEndpoint(RunNotFound):
    """A workspace's discovery URL or discovered API endpoint is not one of Azure ML's own hosts.

    A ``RunNotFound``: the event is recorded from what it carries, with this message as its
    ``enrichment_error``, since a redelivery would meet the same answer. No token was sent anywhere.
    """

    answered_404 = False


def _discovered_endpoint(
    name: str, raw: object, *, allow_loopback: bool, missing: str, refusing: str
) -> tuple[str, Origin]:
    """A URL read from a Resource Manager or discovery answer, held to the same rules as the settings'
    endpoints, and unambiguous (:func:`amlobs.trust.check_token_url`) even when it gets no token."""
    if not isinstance(raw, str) or not raw.strip():
        raise EnrichmentUnavailable(missing)
    try:
        url = validate_endpoint(name, raw)
        return url, check_token_url(url, allow_loopback=allow_loopback)
    except (SettingsError, UntrustedUrl) as exc:
        raise UntrustedEndpoint(f"{refusing}: {exc}; no token was sent to it") from None


def _configured_origin(name: str, url: str, *, allow_loopback: bool) -> Origin:
    try:
        return check_token_url(url, allow_loopback=allow_loopback)
    except UntrustedUrl as exc:
        raise SettingsError(f"{name}: {exc}") from None


_LOOPBACK = "loopback (the test fakes)"


def _api_cloud(origin: Origin) -> AmlCloud | str | None:
    """Where an origin belongs: an Azure ML cloud, the loopback fakes, or nowhere (``None``)."""
    return _LOOPBACK if is_loopback_host(origin.host) else aml_cloud_of(origin.host)


class WorkspaceEndpoints:
    """The API endpoint of each workspace (discovered once) and the origins trusted with the token.

    Resource Manager and ``AML_OBS_API_ENDPOINT`` are trusted for every request; a discovered API
    origin only for the requests of the workspace that discovered it (:meth:`is_trusted`).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        allow = settings.allow_loopback
        arm = _configured_origin("AML_OBS_ARM_ENDPOINT", settings.arm_endpoint, allow_loopback=allow)
        # The cloud of the discovered hosts is Resource Manager's (any cloud behind the loopback fake).
        self._cloud = resource_manager_cloud(arm.host)
        if self._cloud is None and not is_loopback_host(arm.host):
            raise SettingsError(
                f"AML_OBS_ARM_ENDPOINT: {arm.host!r} is not the Resource Manager of a cloud Azure Machine "
                f"Learning runs in ({', '.join(c.resource_manager_host for c in AML_CLOUDS)})"
            )
        self._everywhere = {arm}
        if settings.api_endpoint:
            api = _configured_origin("AML_OBS_API_ENDPOINT", settings.api_endpoint, allow_loopback=allow)
            if not self._expected(_api_cloud(api)):
                raise SettingsError(
                    f"AML_OBS_API_ENDPOINT: {api.host!r} is not an Azure Machine Learning API host "
                    f"({self._forms()})"
                )
            self._everywhere.add(api)
        self._api_by_workspace: dict[str, str] = {}
        self._origin_by_workspace: dict[str, Origin] = {}
        self._locks_lock = threading.Lock()
        self._workspace_locks: dict[str, threading.Lock] = {}
        self.discoveries = 0

    def is_trusted(self, origin: Origin, workspace: str | None) -> bool:
        """May ``origin`` receive the token for a request made for ``workspace`` (its cache key)?"""
        if origin in self._everywhere:
            return True
        with self._locks_lock:
            return workspace is not None and self._origin_by_workspace.get(workspace) == origin

    def _expected(self, cloud: AmlCloud | str | None) -> bool:
        if cloud == _LOOPBACK:
            return self._settings.allow_loopback
        return cloud is not None and (self._cloud is None or cloud == self._cloud)

    def _forms(self) -> str:
        clouds = [self._cloud] if self._cloud is not None else list(AML_CLOUDS)
        return "; ".join(f"{c.name}: {c.host_forms()}" for c in clouds)

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
        name, allow = ws.workspace_name, self._settings.allow_loopback
        arm_url = f"{self._settings.arm_endpoint}/{workspace_path(ws)}?api-version={ARM_API_VERSION}"
        workspace = http.call_json(
            f"workspace lookup of {name} (Resource Manager)",
            "GET",
            arm_url,
            not_found="workspace",
            workspace=ws.cache_key,
        )
        properties = workspace.get("properties")
        discovery_url, discovery = _discovered_endpoint(
            "discoveryUrl",
            properties.get("discoveryUrl") if isinstance(properties, dict) else None,
            allow_loopback=allow,
            missing=f"workspace {name}: its Resource Manager resource has no properties.discoveryUrl",
            refusing=f"workspace {name}: refusing discovery URL",
        )
        # Checked before the fetch: the discovery answer decides where the token goes next.
        cloud = _api_cloud(discovery)
        if not self._expected(cloud):
            raise UntrustedEndpoint(
                f"workspace {name}: discovery URL host {discovery.host!r} is not an Azure Machine Learning "
                f"API host ({self._forms()}); not fetched, no token was sent to it"
            )
        document = http.call_json(
            f"endpoint discovery of {name}",
            "GET",
            discovery_url,
            anonymous=True,
            not_found="unavailable",
        )
        api, origin = _discovered_endpoint(
            "api",
            document.get("api"),
            allow_loopback=allow,
            missing=f"the discovery document of {name} has no 'api' endpoint",
            refusing=f"workspace {name}: refusing discovered endpoint",
        )
        if _api_cloud(origin) != cloud:
            where = cloud.host_forms() if isinstance(cloud, AmlCloud) else "a loopback host"
            raise UntrustedEndpoint(
                f"workspace {name}: discovered API host {origin.host!r} is not an Azure Machine Learning "
                f"run history host of the discovery URL's cloud ({where}); refusing it, no token was sent "
                "to it (set AML_OBS_API_ENDPOINT to override)"
            )
        with self._locks_lock:
            self._origin_by_workspace[ws.cache_key] = origin
        logger.info("workspace %s uses AML API endpoint %s", name, api)
        return api
