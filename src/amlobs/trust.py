"""Who gets a bearer token: one decision, on the URL the HTTP stack will use, on every send.

Three rules, all here:

* :func:`check_token_url` refuses any URL that two parsers could read differently. The run history
  client validates hosts with :func:`urllib.parse.urlsplit`, while ``requests`` connects where
  urllib3's ``parse_url`` says: ``https://evil.test\\.westus.api.azureml.ms`` is a host under
  ``.azureml.ms`` for the first and ``evil.test`` for the second. So a URL that may receive a token must
  be plain: ASCII only, no backslash, whitespace or control character, no userinfo, no percent-encoded
  or trailing-dot host, no port but 443 outside loopback, and both parsers must agree on scheme, host
  and port. What remains is an :class:`Origin` that means the same thing everywhere.
* :class:`TokenGate` is the bearer-token policy of the run history pipeline. It sits last before the
  transport, so every send passes through it: the first try, each retry, a redirect (none is followed
  today: azure-core's requests transport is told not to and no redirect policy is in the pipeline) and
  the re-send after an authentication challenge. Each time it removes any ``Authorization`` header,
  re-checks the request's *current* URL and adds the token only when that origin is trusted. Requests
  marked anonymous (the discovery document) never get one, and a ``401`` challenge asking for claims
  is answered only for a request that already carried the token to a trusted origin: azure-core's own
  policy would re-authenticate any request, the anonymous discovery call included.
* :func:`aml_cloud_of` says whether a host is one of Azure ML's own run history API hosts, and of which
  cloud: matched label by label against the forms Azure ML documents (:data:`AML_CLOUDS`), never by
  suffix, since hosts under the same domains (compute instances, online endpoints) run customer code.

Loopback hosts (the test fakes) are refused unless the caller passes ``allow_loopback``, which comes
from the test-only setting ``AML_OBS_TEST_ALLOW_LOOPBACK`` (:mod:`amlobs.settings`, refused on an Azure host).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import BearerTokenCredentialPolicy

from .settings import is_loopback_host

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

HTTPS_PORT = 443
# Request option (consumed on the first send) and context key marking a request that carries no token.
ANONYMOUS = "amlobs_anonymous"
# Request option and context key: the workspace (its cache key) a request is made for. An origin learned
# from one workspace's discovery is trusted for that workspace's requests only.
TRUST_SCOPE = "amlobs_trust_scope"


_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_FORBIDDEN_CHARS = re.compile(r"[\\\s\x00-\x1f\x7f]")
# An Azure region's programmatic name: lower-case letters and digits ("eastus2", "usgovvirginia").
_REGION = re.compile(r"^[a-z][a-z0-9]{1,39}$")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class AmlCloud:
    """One cloud's Azure ML run history API domain and the Resource Manager host of the same cloud."""

    name: str
    api_domain: str
    resource_manager_host: str

    def host_forms(self) -> str:
        return f"<region>.{self.api_domain} or <workspace id>.workspace.<region>.{self.api_domain}"


# The API domain of each cloud: azureml-core 1.61.0 (PyPI) azureml/_project/_commands.py lines 55-60,
# _KNOWN_AML_DISCOVERY_API_HOST (its "azuregermancloud" entry is left out: that cloud was closed).
# The regional host <region>.<domain>: the default discoveryUrl of a workspace
# ("https://eastus.api.azureml.ms/discovery", Resource Manager's workspace GET, tests/data/aml/
# workspace_get.json) and its discovery answer's "api" (tests/data/aml/discovery.json); azure-ai-ml's
# per-cloud registry discovery endpoints https://eastus.api.azureml.ms/, https://chinaeast2.api.ml.azure.cn/
# and https://usgovarizona.api.ml.azure.us/ (Azure/azure-sdk-for-python sdk/ml/azure-ai-ml/azure/ai/ml/
# _azure_environments.py, _environments); usgovarizona/usgovvirginia.api.ml.azure.us are the hosts Azure
# Government firewalls must allow (MicrosoftDocs/azure-ai-docs articles/machine-learning/
# reference-machine-learning-cloud-parity.md).
# The private link host <workspace id>.workspace.<region>.<domain>: the first "workspace FQDN" of each cloud
# in MicrosoftDocs/azure-docs articles/machine-learning/how-to-custom-dns.md ("Workspace DNS resolution
# path"), the form azureml-core itself builds for a private workspace's discovery URL
# ("https://{}.workspace.{}.{}/discovery/workspaces/{}", _commands.py line 498).
# Not trusted, though under the same domains: <name>.<region>.instances.azureml.{ms,cn,us} (compute
# instances), <name>.<region>.inference.ml.azure.{com,cn,us} (online endpoints), the privatelink.* CNAMEs
# and <id>.workspace.<region>.cert.api.* (how-to-custom-dns.md): none of them is the run history API.
AML_CLOUDS: tuple[AmlCloud, ...] = (
    AmlCloud("AzureCloud", "api.azureml.ms", "management.azure.com"),
    AmlCloud("AzureChinaCloud", "api.ml.azure.cn", "management.chinacloudapi.cn"),
    AmlCloud("AzureUSGovernment", "api.ml.azure.us", "management.usgovcloudapi.net"),
)


class UntrustedUrl(ValueError):
    """The URL may not carry a token: it is ambiguous, or its origin is not trusted."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port != default else "")


# Whether an origin may receive the token for a request made for a workspace (None: for no workspace).
TrustDecision = Callable[[Origin, str | None], bool]


def _valid_host(host: str) -> bool:
    """A DNS name of plain labels, or an IP address in its one canonical spelling."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    try:
        ipaddress.IPv4Address(host)  # strict dotted quad: "127.1" and "0x7f.0.0.1" are refused
    except ValueError:
        labels = host.split(".")
        # A name whose last label starts with a digit is one that inet_aton may read as an address.
        return all(_LABEL.match(label) for label in labels) and not labels[-1][:1].isdigit()
    return True


def aml_cloud_of(host: str) -> AmlCloud | None:
    """The cloud whose run history API ``host`` is (:data:`AML_CLOUDS`'s two forms), else ``None``."""
    labels = host.lower().split(".")
    for cloud in AML_CLOUDS:
        domain = cloud.api_domain.split(".")
        if labels[-len(domain) :] != domain:
            continue
        own = labels[: -len(domain)]
        if len(own) == 1 and _REGION.match(own[0]):
            return cloud
        if len(own) == 3 and _GUID.match(own[0]) and own[1] == "workspace" and _REGION.match(own[2]):
            return cloud
    return None


def resource_manager_cloud(host: str) -> AmlCloud | None:
    """The cloud whose Resource Manager ``host`` is, else ``None``."""
    return next((c for c in AML_CLOUDS if c.resource_manager_host == host.lower()), None)


def check_token_url(url: str, *, allow_loopback: bool) -> Origin:
    """The origin a request to ``url`` reaches, if the URL is unambiguous; else :class:`UntrustedUrl`.

    A loopback host (any port, plain http too) only with ``allow_loopback`` (the test fakes)."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    if not isinstance(url, str) or not url.isascii():
        raise UntrustedUrl("the URL has non-ASCII characters")
    if _FORBIDDEN_CHARS.search(url):
        raise UntrustedUrl("the URL has a backslash, whitespace or a control character")
    try:
        ours = urlsplit(url)
        port = ours.port
        theirs = parse_url(url)
    except (ValueError, LocationParseError) as exc:
        raise UntrustedUrl(f"the URL cannot be parsed: {exc}") from None
    scheme = ours.scheme.lower()
    if scheme not in ("https", "http"):
        raise UntrustedUrl(f"scheme {ours.scheme!r} is not https")
    if "@" in ours.netloc or theirs.auth:
        raise UntrustedUrl("the URL has user information (user@host)")
    raw_host = ours.netloc.rsplit(":", 1)[0] if not ours.netloc.endswith("]") else ours.netloc
    if "%" in raw_host:
        raise UntrustedUrl("the host is percent-encoded")
    host = (ours.hostname or "").lower()
    if not host or host.endswith(".") or not _valid_host(host if ":" not in host else f"[{host}]"):
        raise UntrustedUrl(f"host {host!r} is not a plain DNS name or IP address (trailing dot?)")
    their_host = (theirs.host or "").lower().strip("[]")
    if (theirs.scheme or "").lower() != scheme or their_host != host or theirs.port != port:
        raise UntrustedUrl("the URL parsers disagree on where it goes")
    loopback = is_loopback_host(host)
    if loopback and not allow_loopback:
        raise UntrustedUrl(
            f"loopback host {host!r}: only the test fakes live there (AML_OBS_TEST_ALLOW_LOOPBACK)"
        )
    if scheme == "http" and not loopback:
        raise UntrustedUrl("plain http is allowed only for loopback hosts")
    effective_port = port if port is not None else (HTTPS_PORT if scheme == "https" else 80)
    if not loopback and effective_port != HTTPS_PORT:
        raise UntrustedUrl(f"port {effective_port} is not 443")
    return Origin(scheme, f"[{host}]" if ":" in host else host, effective_port)


class UntrustedHost(Exception):
    """The pipeline was asked to send the bearer token where it may not go (the request is not sent)."""


class TokenGate(BearerTokenCredentialPolicy[Any, Any]):
    """Bearer token for trusted origins only, decided on every send (see the module docstring)."""

    def __init__(self, credential: TokenCredential, scope: str, trusted: TrustDecision) -> None:
        super().__init__(credential, scope)
        self._trusted = trusted

    def _decide(self, request: PipelineRequest[Any]) -> bool:
        """The one decision: ``True`` to send this request with the token, ``False`` without it."""
        request.http_request.headers.pop("Authorization", None)
        # Options are consumed on the first send; the context keeps the choice for retries.
        if request.context.options.pop(ANONYMOUS, False):
            request.context[ANONYMOUS] = True
        if TRUST_SCOPE in request.context.options:
            request.context[TRUST_SCOPE] = request.context.options.pop(TRUST_SCOPE)
        if request.context.get(ANONYMOUS, False):
            return False
        url = request.http_request.url
        try:
            # Loopback passes this check only when allowed; the trusted set then still has to name it.
            origin = check_token_url(url, allow_loopback=True)
        except UntrustedUrl as exc:
            raise UntrustedHost(f"{urlsplit(url).hostname or url[:80]!r}: {exc}") from None
        if not self._trusted(origin, request.context.get(TRUST_SCOPE)):
            raise UntrustedHost(f"{origin} is not a trusted host for this request")
        if origin.scheme == "http":
            # check_token_url admitted http for loopback only (the test fakes): tell azure-core that
            # this one plain-text hop is intended.
            request.context["enforce_https"] = False
        return True

    def on_request(self, request: PipelineRequest[Any]) -> None:
        if self._decide(request):
            super().on_request(request)

    def authorize_request(self, request: PipelineRequest[Any], *scopes: str, **kwargs: Any) -> None:
        # Reached from on_challenge (a claims challenge): the same decision, on the same request.
        if self._decide(request):
            super().authorize_request(request, *scopes, **kwargs)

    def on_challenge(self, request: PipelineRequest[Any], response: PipelineResponse[Any, Any]) -> bool:
        if request.context.get(ANONYMOUS, False) or "Authorization" not in request.http_request.headers:
            return False  # never answer a challenge with a token the request was not meant to carry
        return bool(super().on_challenge(request, response))
