"""The bearer token goes to trusted hosts only: URL rules, the policy's decision on every send, and a
loopback TLS server posing as a foreign host that must never see the token."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.pipeline import Pipeline, PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from amlobs.aml_discovery import UntrustedEndpoint, WorkspaceEndpoints
from amlobs.errors import EnrichmentUnavailable
from amlobs.events import WorkspaceRef
from amlobs.runhistory import RunHistoryClient
from amlobs.settings import Settings, SettingsError
from amlobs.trust import Origin, TokenGate, UntrustedHost, UntrustedUrl, aml_cloud_of, check_token_url
from tests.fakes.aml_api import (
    SAMPLE_RESOURCE_GROUP,
    SAMPLE_STEP_RUN_ID,
    SAMPLE_SUBSCRIPTION,
    SAMPLE_WORKSPACE,
    FakeAmlApi,
    Fault,
)
from tests.fakes.foreign_tls import ForeignServer, resolve_all_names_here, start_foreign_server

SAMPLE_WS = WorkspaceRef(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, SAMPLE_WORKSPACE)
TOKEN = "token-for-management"


# -- the URL rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://westus.api.azureml.ms", Origin("https", "westus.api.azureml.ms", 443)),
        ("https://WestUS.api.azureml.ms:443/history/v1.0?x=1", Origin("https", "westus.api.azureml.ms", 443)),
        ("http://127.0.0.1:8123/x", Origin("http", "127.0.0.1", 8123)),
        ("https://localhost:9443", Origin("https", "localhost", 9443)),
        ("http://[::1]:81/", Origin("http", "[::1]", 81)),
        ("https://management.azure.com/subscriptions/s%2F1", Origin("https", "management.azure.com", 443)),
    ],
)
def test_plain_urls_give_their_origin(url: str, origin: Origin) -> None:
    assert check_token_url(url, allow_loopback=True) == origin


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8123/x",
        "https://127.0.0.1",
        "https://localhost:9443",
        "https://[::1]",
        "http://[::1]:81/",
    ],
)
def test_loopback_urls_are_refused_unless_the_test_setting_allows_them(url: str) -> None:
    with pytest.raises(UntrustedUrl, match=r"loopback host.*AML_OBS_TEST_ALLOW_LOOPBACK"):
        check_token_url(url, allow_loopback=False)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://evil.test\\.westus.api.azureml.ms", "backslash"),
        ("https://evil.test\\@westus.api.azureml.ms/", "backslash"),
        ("https://user@westus.api.azureml.ms", "user information"),
        ("https://user:pw@westus.api.azureml.ms", "user information"),
        ("https://evil.test%2f.westus.api.azureml.ms", "percent-encoded"),
        ("https://westus%2eapi.azureml.ms", "percent-encoded"),
        ("https://westus.api.azureml.ms.", "trailing dot"),
        ("https://westus.api.azureml.ms./history", "trailing dot"),
        ("https://wëstus.api.azureml.ms", "non-ASCII"),
        ("https://westus.api.azureml.ms\u3002evil.test", "non-ASCII"),
        ("https://xn--wstus-gra.api.azureml.ms:8443", "port 8443"),
        ("https://westus.api.azureml.ms:80", "port 80"),
        ("http://westus.api.azureml.ms", "plain http"),
        ("https://westus.api.azureml.ms\t.evil", "whitespace"),
        ("https://westus.api.azureml.ms\n", "whitespace"),
        ("https://0x7f.0.0.1/", "not a plain DNS name"),
        ("https://127.1/", "not a plain DNS name"),
        ("https://a..b.azureml.ms/", "not a plain DNS name"),
        ("ftp://westus.api.azureml.ms", "not https"),
        ("https://", "not a plain DNS name"),
    ],
)
def test_urls_two_parsers_could_read_differently_are_refused(url: str, why: str) -> None:
    with pytest.raises(UntrustedUrl, match=why):
        check_token_url(url, allow_loopback=True)


TRICKY = st.sampled_from(
    [
        "a",
        "b",
        ".",
        "-",
        ":",
        "@",
        "\\",
        "/",
        "%",
        "2f",
        "#",
        "?",
        "[",
        "]",
        "443",
        "8443",
        "ë",
        "\u3002",
        " ",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(TRICKY, max_size=12).map("".join))
def test_an_accepted_url_means_the_same_origin_to_requests_as_to_us(tail: str) -> None:
    import requests

    url = f"https://westus.api.azureml.ms{tail}" if tail[:1] not in ("a", "b") else f"https://{tail}"
    try:
        origin = check_token_url(url, allow_loopback=False)
    except UntrustedUrl:
        return
    prepared = requests.Request("GET", url).prepare()
    parts = urlsplit(prepared.url or "")
    assert (parts.hostname or "").lower() == origin.host.strip("[]").lower()
    assert (parts.port or 443) == origin.port


def test_endpoints_from_settings_are_held_to_the_same_rules() -> None:
    base = Settings.from_env({})
    for name, changes in (
        ("AML_OBS_ARM_ENDPOINT", {"arm_endpoint": "https://management.azure.com."}),
        ("AML_OBS_API_ENDPOINT", {"api_endpoint": "https://user@westus.api.azureml.ms"}),
    ):
        settings_ = Settings(**{**base.__dict__, **changes})
        with pytest.raises(SettingsError, match=name):
            RunHistoryClient(settings_, _Credential())


# -- the policy: one decision per send ----------------------------------------------------------


class _Credential:
    def __init__(self) -> None:
        self.requests: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.requests.append((scopes, kwargs))
        return AccessToken(TOKEN, int(time.time()) + 3600)


class _Recorder(HTTPPolicy[Any, Any]):
    """The last policy: records what would go on the wire, answers from a script."""

    def __init__(self, answers: list[tuple[int, Mapping[str, str]]]) -> None:
        super().__init__()
        self.answers = answers
        self.sent: list[tuple[str, str | None]] = []

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        self.sent.append((request.http_request.url, request.http_request.headers.get("Authorization")))
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return PipelineResponse(request.http_request, _Answer(status, dict(headers)), request.context)


class _Answer:
    """The part of an HTTP response the policies read."""

    def __init__(self, status_code: int, headers: dict[str, str]) -> None:
        self.status_code = status_code
        self.headers = headers

    def body(self) -> bytes:
        return b"{}"

    def text(self) -> str:
        return "{}"


class _MovesToForeignHostOnRetry(HTTPPolicy[Any, Any]):
    """Stands in for any policy above the gate that re-sends to another URL (a redirect follower)."""

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        response = self.next.send(request)
        if response.http_response.status_code == 307:
            request.http_request.url = response.http_response.headers["Location"]
            response = self.next.send(request)
        return response


def _pipeline(
    answers: list[tuple[int, Mapping[str, str]]], trusted: set[Origin], *, mover: bool = False
) -> tuple[Pipeline[Any, Any], _Recorder, _Credential]:
    credential = _Credential()
    recorder = _Recorder(answers)
    policies: list[Any] = [
        TokenGate(credential, "https://management.azure.com/.default", lambda origin, _ws: origin in trusted)
    ]
    if mover:
        policies.insert(0, _MovesToForeignHostOnRetry())
    return Pipeline(transport=RequestsTransport(), policies=[*policies, recorder]), recorder, credential


TRUSTED = {Origin("https", "management.azure.com", 443)}
ARM_URL = "https://management.azure.com/subscriptions/s"
CLAIMS_CHALLENGE = {
    "WWW-Authenticate": 'Bearer error="insufficient_claims", claims="'
    + base64.urlsafe_b64encode(json.dumps({"access_token": {"acrs": {"essential": True}}}).encode()).decode()
    + '"'
}


def test_a_trusted_request_carries_the_token_and_answers_a_claims_challenge() -> None:
    pipeline, recorder, credential = _pipeline([(401, CLAIMS_CHALLENGE)], TRUSTED)
    pipeline.run(HttpRequest("GET", ARM_URL))
    assert recorder.sent == [(ARM_URL, f"Bearer {TOKEN}"), (ARM_URL, f"Bearer {TOKEN}")]
    assert "claims" in credential.requests[-1][1]  # re-authenticated with the claims asked for


def test_an_anonymous_request_is_never_re_sent_with_a_token_on_a_challenge() -> None:
    pipeline, recorder, credential = _pipeline([(401, CLAIMS_CHALLENGE)], TRUSTED)
    response = pipeline.run(HttpRequest("GET", ARM_URL), amlobs_anonymous=True)
    assert response.http_response.status_code == 401
    assert recorder.sent == [(ARM_URL, None)]
    assert credential.requests == []


def test_a_request_moved_to_a_foreign_host_between_sends_loses_its_token() -> None:
    foreign = "https://evil.test/steal"
    pipeline, recorder, _ = _pipeline([(307, {"Location": foreign})], TRUSTED, mover=True)
    with pytest.raises(UntrustedHost, match=r"evil\.test"):
        pipeline.run(HttpRequest("GET", ARM_URL))
    assert recorder.sent == [(ARM_URL, f"Bearer {TOKEN}")]  # the second send never happened


def test_an_untrusted_or_ambiguous_url_is_not_sent_at_all() -> None:
    for url in ("https://evil.test/x", "https://management.azure.com\\@evil.test/x"):
        pipeline, recorder, credential = _pipeline([], TRUSTED)
        with pytest.raises(UntrustedHost):
            pipeline.run(HttpRequest("GET", url))
        assert recorder.sent == [] and credential.requests == []


# -- end to end: a loopback TLS server posing as a foreign host ------------------------------------


@pytest.fixture
def foreign(tmp_path: Path) -> Iterator[ForeignServer]:
    with start_foreign_server(tmp_path) as server, resolve_all_names_here(server.port):
        yield server


@pytest.fixture
def make_client(aml_api: FakeAmlApi, foreign: ForeignServer) -> Iterator[Callable[[], RunHistoryClient]]:
    clients: list[RunHistoryClient] = []

    def make() -> RunHistoryClient:
        settings_ = Settings.from_env()
        client = RunHistoryClient(
            settings_,
            _Credential(),
            transport=RequestsTransport(connection_verify=str(foreign.ca_path)),
            sleep=lambda _: None,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


REGIONAL_DISCOVERY = "https://westus.api.azureml.ms/discovery"


def _discovery_answers(foreign: ForeignServer, api: str) -> None:
    """The workspace's discovery document is served by the TLS server as westus.api.azureml.ms."""

    def answer(method: str, path: str) -> tuple[int, Mapping[str, str], Any]:
        if path.startswith("/discovery"):
            return 200, {}, {"api": api}
        return 200, {}, {"runId": "x", "status": "Completed"}

    foreign.responder = answer


def test_the_harness_sees_a_token_sent_to_a_trusted_host_it_serves(
    make_client: Callable[[], RunHistoryClient], aml_api: FakeAmlApi, foreign: ForeignServer
) -> None:
    # The control: an AML API host, resolved to the loopback TLS server, gets the token. So wherever the
    # cases below see none, none was sent.
    aml_api.workspace().discovery_url = REGIONAL_DISCOVERY
    _discovery_answers(foreign, "https://westus.api.azureml.ms")
    make_client().get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert [r.authorization for r in foreign.requests] == [None, f"Bearer {TOKEN}"]  # discovery, then run
    assert {r.host for r in foreign.requests} == {"westus.api.azureml.ms"}


HOSTILE_API_ENDPOINTS = [
    "https://evil.test\\.westus.api.azureml.ms",
    "https://evil.test\\@westus.api.azureml.ms",
    "https://user@westus.api.azureml.ms",
    "https://evil.test%2f.westus.api.azureml.ms",
    "https://westus.api.azureml.ms.",
    "https://wëstus.api.azureml.ms",
    "https://westus.api.azureml.ms:8443",
    "https://evil.test",
    # Hosts under Azure ML's own domains that run customer code (docs/security.md cites each form).
    "https://my-ci.eastus.instances.azureml.ms",
    "https://my-endpoint.eastus.inference.ml.azure.com",
    "https://my-endpoint.usgovvirginia.inference.ml.azure.us",
    "https://x.0f3c5a8e-6a2b-4d1e-9c77-5e1b2d3c4f60.inference.eastus.privatelink.api.azureml.ms",
    # Another cloud than the discovery URL's.
    "https://usgovvirginia.api.ml.azure.us",
    "https://chinaeast2.api.ml.azure.cn",
    # Loopback: refused for a discovery URL on a real host even with the test setting on.
    "http://127.0.0.1",
    "https://[::1]",
]


@pytest.mark.parametrize("api", HOSTILE_API_ENDPOINTS)
def test_a_hostile_discovered_api_endpoint_gets_no_token(
    make_client: Callable[[], RunHistoryClient], aml_api: FakeAmlApi, foreign: ForeignServer, api: str
) -> None:
    aml_api.workspace().discovery_url = REGIONAL_DISCOVERY
    _discovery_answers(foreign, api)
    with pytest.raises(UntrustedEndpoint, match="refusing"):
        make_client().get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert foreign.tokens == []
    assert [r.path for r in foreign.requests] == ["/discovery"]  # refused before anything else was sent


@pytest.mark.parametrize(
    "discovery_url",
    [
        "https://evil.test/discovery",
        "https://my-ci.eastus.instances.azureml.ms/discovery",
        "https://my-endpoint.eastus.inference.ml.azure.com/discovery",
        "https://westus.api.azureml.ms.evil.test/discovery",
        "https://usgovvirginia.api.ml.azure.us/discovery",  # Resource Manager is the public cloud's here
    ],
)
def test_a_discovery_url_off_azure_ml_api_hosts_is_not_fetched(
    foreign: ForeignServer, aml_api: FakeAmlApi, monkeypatch: pytest.MonkeyPatch, discovery_url: str
) -> None:
    # Resource Manager answers as management.azure.com (the TLS server relaying to the fake), so its
    # cloud is the public one.
    monkeypatch.setenv("AML_OBS_ARM_ENDPOINT", "https://management.azure.com")
    foreign.upstream = aml_api.base_url
    aml_api.workspace().discovery_url = discovery_url
    client = RunHistoryClient(
        Settings.from_env(),
        _Credential(),
        transport=RequestsTransport(connection_verify=str(foreign.ca_path)),
        sleep=lambda _: None,
    )
    try:
        with pytest.raises(UntrustedEndpoint, match=r"discovery URL.*not fetched"):
            client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    finally:
        client.close()
    assert [(r.host, r.path.split("?")[0]) for r in foreign.requests] == [
        ("management.azure.com", aml_api.workspace().resource_id)
    ]


def test_a_claims_challenge_on_the_anonymous_discovery_call_gets_no_token(
    make_client: Callable[[], RunHistoryClient], aml_api: FakeAmlApi, foreign: ForeignServer
) -> None:
    foreign.responder = lambda method, path: (401, CLAIMS_CHALLENGE, {"error": "who are you"})
    aml_api.workspace().discovery_url = REGIONAL_DISCOVERY
    with pytest.raises(EnrichmentUnavailable, match="discovery"):
        make_client().get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    # It was reached (the 401 is retried like a role assignment still propagating), never with a token.
    assert foreign.requests and {r.path for r in foreign.requests} == {"/discovery"}
    assert foreign.tokens == []


def test_an_origin_discovered_for_one_workspace_gets_no_token_for_another(
    make_client: Callable[[], RunHistoryClient], aml_api: FakeAmlApi, foreign: ForeignServer
) -> None:
    private_link = "https://0f3c5a8e-6a2b-4d1e-9c77-5e1b2d3c4f60.workspace.eastus.api.azureml.ms"
    aml_api.workspace().discovery_url = REGIONAL_DISCOVERY
    _discovery_answers(foreign, private_link)
    other = WorkspaceRef(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, "other-ws")
    aml_api.add_workspace(other.subscription_id, other.resource_group, other.workspace_name)
    client = make_client()
    client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)  # discovers the private link host for sample-ws
    assert foreign.tokens == [f"Bearer {TOKEN}"]
    url = f"{private_link}/history/v1.0/x"
    with pytest.raises(EnrichmentUnavailable, match="not a trusted host for this request"):
        client._http.call_json("run of other-ws", "GET", url, workspace=other.cache_key)
    with pytest.raises(EnrichmentUnavailable, match="not a trusted host for this request"):
        client._http.call_json("run of no workspace", "GET", url)
    assert foreign.tokens == [f"Bearer {TOKEN}"]  # neither request was sent
    client._http.call_json("run of sample-ws", "GET", url, workspace=SAMPLE_WS.cache_key)
    assert foreign.tokens == [f"Bearer {TOKEN}"] * 2  # the control: its own workspace's request was


def test_a_redirect_from_a_trusted_host_is_not_followed(
    make_client: Callable[[], RunHistoryClient], aml_api: FakeAmlApi, foreign: ForeignServer
) -> None:
    aml_api.fail("GET", "/details", Fault(307, headers={"Location": "https://evil.test/steal"}))
    with pytest.raises(EnrichmentUnavailable, match="307"):
        make_client().get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert foreign.requests == []


def test_retries_of_a_trusted_call_stay_with_the_trusted_host(
    make_client: Callable[[], RunHistoryClient], aml_api: FakeAmlApi, foreign: ForeignServer
) -> None:
    aml_api.fail("GET", "/details", Fault(503), Fault(close=True))
    make_client().get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    details_calls = aml_api.requests_to("/details")
    assert len(details_calls) == 3
    assert {r.authorization for r in details_calls} == {f"Bearer {TOKEN}"}
    assert foreign.requests == []


# -- the Retail Prices API (the cost estimate): anonymous, so its host never gets the token ---------

PRICES = "https://prices.azure.com/api/retail/prices"


def test_the_token_gate_refuses_to_move_a_request_to_the_prices_host() -> None:
    pipeline, recorder, _ = _pipeline([(307, {"Location": f"{PRICES}?x=1"})], TRUSTED, mover=True)
    with pytest.raises(UntrustedHost, match=r"prices\.azure\.com"):
        pipeline.run(HttpRequest("GET", ARM_URL))
    assert recorder.sent == [(ARM_URL, f"Bearer {TOKEN}")]


def test_a_compute_answer_redirecting_to_the_prices_host_is_not_followed(
    make_client: Callable[[], RunHistoryClient], aml_api: FakeAmlApi, foreign: ForeignServer
) -> None:
    # The compute GET of the cost estimate goes to Resource Manager with the token; a redirect from there
    # to the prices host (or anywhere) is an answer, not a hop.
    aml_api.fail("GET", "/computes/", Fault(307, headers={"Location": PRICES}))
    with pytest.raises(EnrichmentUnavailable, match="307"):
        make_client().get_compute(SAMPLE_WS, "cpu-cluster", timeout=5.0)
    assert foreign.requests == []
    [compute_get] = aml_api.requests_to("/computes/")
    assert compute_get.authorization == f"Bearer {TOKEN}"  # the control: that call did carry it


def _price_page(next_link: str | None) -> dict[str, Any]:
    return {"BillingCurrency": "USD", "Items": [], "NextPageLink": next_link, "Count": 0}


def _prices_client(foreign: ForeignServer) -> Any:
    from amlobs.prices import RetailPrices

    return RetailPrices(PRICES, "USD", transport=RequestsTransport(connection_verify=str(foreign.ca_path)))


def test_the_prices_client_sends_no_token_and_follows_no_link_away_from_its_host(
    foreign: ForeignServer,
) -> None:
    from amlobs.lookup_cache import Budget, Unavailable

    def answer(method: str, path: str) -> tuple[int, Mapping[str, str], Any]:
        if "skip=1000" not in path:  # page 1 links to page 2 in the documented form (port named)
            return 200, {}, _price_page(f"https://prices.azure.com:443{path}&$skip=1000")
        return 200, {}, _price_page("https://evil.test/api/retail/prices?$skip=2000")

    foreign.responder = answer
    prices = _prices_client(foreign)
    try:
        found = prices.rows("eastus", "Standard_D2_v3", Budget(5.0))
    finally:
        prices.close()
    assert isinstance(found, Unavailable) and "points away" in found.reason
    assert [r.host for r in foreign.requests] == ["prices.azure.com", "prices.azure.com"]
    assert foreign.tokens == []


def test_the_prices_client_follows_no_redirect(foreign: ForeignServer) -> None:
    from amlobs.lookup_cache import Budget, Unavailable

    foreign.responder = lambda method, path: (
        (302, {"Location": "https://evil.test/steal"}, {})
        if "steal" not in path
        else (200, {}, _price_page(None))
    )
    prices = _prices_client(foreign)
    try:
        found = prices.rows("eastus", "Standard_D2_v3", Budget(5.0))
    finally:
        prices.close()
    assert isinstance(found, Unavailable) and "HTTP 302" in found.reason
    assert [r.host for r in foreign.requests] == ["prices.azure.com"]
    assert foreign.tokens == []


# -- Azure ML's own API hosts, per cloud (docs/security.md cites each form) --------------------------

WS_ID = "0f3c5a8e-6a2b-4d1e-9c77-5e1b2d3c4f60"


@pytest.mark.parametrize(
    ("host", "cloud"),
    [
        ("eastus.api.azureml.ms", "AzureCloud"),
        ("EastUS2.api.azureml.ms", "AzureCloud"),
        (f"{WS_ID}.workspace.eastus.api.azureml.ms", "AzureCloud"),
        ("chinaeast2.api.ml.azure.cn", "AzureChinaCloud"),
        (f"{WS_ID}.workspace.chinaeast2.api.ml.azure.cn", "AzureChinaCloud"),
        ("usgovarizona.api.ml.azure.us", "AzureUSGovernment"),
        ("usgovvirginia.api.ml.azure.us", "AzureUSGovernment"),
        (f"{WS_ID}.workspace.usgovvirginia.api.ml.azure.us", "AzureUSGovernment"),
    ],
)
def test_azure_ml_api_hosts_of_each_cloud(host: str, cloud: str) -> None:
    found = aml_cloud_of(host)
    assert found is not None and found.name == cloud


@pytest.mark.parametrize(
    "host",
    [
        # Customer-named hosts under the same domains (compute instances, online endpoints, their CNAMEs).
        "my-ci.eastus.instances.azureml.ms",
        "my-ci-22.eastus.instances.azureml.ms",
        "my-ci.chinaeast2.instances.azureml.cn",
        "my-ci.usgovvirginia.instances.azureml.us",
        "my-endpoint.eastus.inference.ml.azure.com",
        "my-endpoint.chinaeast2.inference.ml.azure.cn",
        "my-endpoint.usgovvirginia.inference.ml.azure.us",
        f"my-endpoint.{WS_ID}.inference.eastus.privatelink.api.azureml.ms",
        f"{WS_ID}.workspace.eastus.privatelink.api.azureml.ms",
        f"{WS_ID}.workspace.eastus.cert.api.azureml.ms",
        # Look-alikes: extra or missing labels, a first label that is not a region or a workspace id.
        "api.azureml.ms",
        "evil.eastus.api.azureml.ms",
        "my-endpoint.api.azureml.ms",
        "eastus-2.api.azureml.ms",
        "e.api.azureml.ms",
        f"{WS_ID}.eastus.api.azureml.ms",
        f"{WS_ID[:-1]}.workspace.eastus.api.azureml.ms",
        f"{WS_ID}.workspaces.eastus.api.azureml.ms",
        "eastus.api.azureml.ms.evil.test",
        "eastus.apiazureml.ms",
        "eastus.experiments.azureml.net",
        "eastus.api.ml.azure.com",
        "eastus.api.ml.azure.de",
        "127.0.0.1",
        "[::1]",
    ],
)
def test_no_other_host_is_an_azure_ml_api_host(host: str) -> None:
    assert aml_cloud_of(host) is None


def _endpoints(env: dict[str, str]) -> WorkspaceEndpoints:
    return WorkspaceEndpoints(Settings.from_env(env))


def test_resource_manager_must_be_a_clouds_own() -> None:
    for arm in ("https://management.azure.com", "https://management.usgovcloudapi.net"):
        _endpoints({"AML_OBS_ARM_ENDPOINT": arm})
    with pytest.raises(SettingsError, match=r"AML_OBS_ARM_ENDPOINT: 'arm\.evil\.test' is not the Resource"):
        _endpoints({"AML_OBS_ARM_ENDPOINT": "https://arm.evil.test"})


@pytest.mark.parametrize(
    ("env", "error"),
    [
        (
            {"AML_OBS_API_ENDPOINT": "https://my-ci.eastus.instances.azureml.ms"},
            "not an Azure Machine Learning",
        ),
        (
            {
                "AML_OBS_ARM_ENDPOINT": "https://management.chinacloudapi.cn",
                "AML_OBS_API_ENDPOINT": "https://eastus.api.azureml.ms",
            },
            "AzureChinaCloud: <region>.api.ml.azure.cn",
        ),
        ({"AML_OBS_API_ENDPOINT": "http://127.0.0.1:8123"}, "loopback host"),
        ({"AML_OBS_ARM_ENDPOINT": "http://127.0.0.1:8123"}, "loopback host"),
        ({"AML_OBS_ARM_ENDPOINT": "https://[::1]"}, "loopback host"),
    ],
)
def test_configured_endpoints_are_held_to_the_same_hosts(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(error)):
        _endpoints(env)


def test_configured_endpoints_on_loopback_with_the_test_setting() -> None:
    loopback = {"AML_OBS_ARM_ENDPOINT": "http://127.0.0.1:8123", "AML_OBS_API_ENDPOINT": "https://[::1]:9"}
    endpoints = _endpoints({**loopback, "AML_OBS_TEST_ALLOW_LOOPBACK": "true"})
    assert endpoints.is_trusted(Origin("http", "127.0.0.1", 8123), None)
    assert endpoints.is_trusted(Origin("https", "[::1]", 9), "any-workspace")
    assert not endpoints.is_trusted(Origin("http", "127.0.0.1", 8124), None)
