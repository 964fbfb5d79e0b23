"""The run history client against the loopback AML/ARM/managed-identity fake (real HTTP, real azure-core,
real azure-identity ManagedIdentityCredential)."""

from __future__ import annotations

import dataclasses
import email.utils
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ChainedTokenCredential, ManagedIdentityCredential

from amlobs.aml_discovery import UntrustedEndpoint
from amlobs.credentials import build_credential
from amlobs.errors import EnrichmentUnavailable, RunNotFound
from amlobs.events import WorkspaceRef, parse_event
from amlobs.records import build_record
from amlobs.run_listing import created_since_filter
from amlobs.runhistory import RunHistoryClient, RunHistoryRejected, RunPage
from amlobs.settings import Settings
from tests.fakes.aml_api import (
    MANAGEMENT_TOKEN,
    SAMPLE_EXPERIMENT_ID,
    SAMPLE_PIPELINE_RUN_ID,
    SAMPLE_RESOURCE_GROUP,
    SAMPLE_STEP_PARENT_RUN_ID,
    SAMPLE_STEP_RUN_ID,
    SAMPLE_SUBSCRIPTION,
    SAMPLE_WORKSPACE,
    FakeAmlApi,
    Fault,
)

EVENTS = Path(__file__).parent / "data" / "events"
SAMPLE_WS = WorkspaceRef(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, SAMPLE_WORKSPACE)
DETAILS_PATH = f"/runs/{SAMPLE_STEP_RUN_ID}/details"


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(aml_api: FakeAmlApi, sleeps: Sleeps) -> Iterator[Callable[..., RunHistoryClient]]:
    clients: list[RunHistoryClient] = []

    def make(**overrides: object) -> RunHistoryClient:
        settings = dataclasses.replace(Settings.from_env(), **overrides)  # type: ignore[arg-type]
        client = RunHistoryClient(settings, build_credential(settings), sleep=sleeps)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., RunHistoryClient]) -> RunHistoryClient:
    return make_client(http_timeout_seconds=2.0)


def _history(api: FakeAmlApi) -> list:
    return [r for r in api.requests if r.path.startswith("/history/")]


def _arm(api: FakeAmlApi) -> list:
    return [r for r in api.requests if r.path.startswith("/subscriptions/")]


# -- enrichment of the 2020 sample ------------------------------------------------------------


def test_sample_step_event_is_enriched_to_the_seed_record(client: RunHistoryClient) -> None:
    event = parse_event((EVENTS / "step_run_completed.json").read_text())

    details = client.get_run_details(event.workspace, event.run_id)
    run = client.get_run(event.workspace, event.run_id)
    record = build_record(event, details, run)

    # The values of the sample README's record, now produced through the real HTTP path.
    assert record["start_time_utc_ms"] == 1591557375869
    assert record["end_time_utc_ms"] == 1591557375980
    assert record["execution_time_ms"] == 111
    assert record["target"] == "sample-compute"
    assert record["script"] == "sampleStep.py"
    assert record["docker_image"] == "mcr.microsoft.com/azureml/base:intelmpi2018.3-ubuntu16.04"
    assert record["snapshot_id"] == "119c3ec1-9e46-46d2-8236-5f533e84a799"
    assert record["pipelinerunid"] == SAMPLE_STEP_PARENT_RUN_ID
    assert record["parent_run_id"] == SAMPLE_STEP_PARENT_RUN_ID
    assert record["step_type"] == "PythonScriptStep"
    assert run["createdUtc"] < run["startTimeUtc"]
    assert record["queue_time_ms"] > 0


def test_sample_pipeline_event_run_exists_with_its_own_identity(client: RunHistoryClient) -> None:
    event = parse_event((EVENTS / "pipeline_run_completed.json").read_text())
    run = client.get_run(event.workspace, event.run_id)
    assert run["runId"] == SAMPLE_PIPELINE_RUN_ID
    assert run["runType"] == "azureml.PipelineRun"
    assert run["tags"]["azureml.Designer"] == "true"
    # The step of the sample belongs to the other pipeline run, 096a41be, as its tag says.
    children = list(client.iter_children(SAMPLE_WS, SAMPLE_STEP_PARENT_RUN_ID))
    assert [c["runId"] for c in children] == [SAMPLE_STEP_RUN_ID]


def test_runs_are_read_at_workspace_level_as_the_v2_client_reads_them(
    client: RunHistoryClient, aml_api: FakeAmlApi
) -> None:
    # azure-ai-ml's RunOperations.get_run/get_run_details/get_run_children name no experiment:
    # the run id identifies the run in its workspace (and is quoted as a path segment).
    ws = aml_api.workspace()
    pipeline, _ = ws.add_pipeline_run("nightly train+eval", steps=1, run_id="nightly run+1")
    run = client.get_run(SAMPLE_WS, pipeline["runId"])
    details = client.get_run_details(SAMPLE_WS, pipeline["runId"])
    children = list(client.iter_children(SAMPLE_WS, pipeline["runId"]))
    assert run["runId"] == details["runId"] == pipeline["runId"]
    assert len(children) == 1
    prefix = f"/history/v1.0/subscriptions/{SAMPLE_SUBSCRIPTION}/resourceGroups/{SAMPLE_RESOURCE_GROUP}"
    prefix += f"/providers/Microsoft.MachineLearningServices/workspaces/{SAMPLE_WORKSPACE}"
    assert [(r.raw_path, r.query) for r in _history(aml_api)] == [
        (f"{prefix}/runs/nightly%20run%2B1", {"api-version": "v1.0"}),
        (f"{prefix}/runs/nightly%20run%2B1/details", {"api-version": "v1.0"}),
        (f"{prefix}/runs/nightly%20run%2B1/children", {"api-version": "v1.0"}),
    ]


def test_the_fake_refuses_run_reads_the_v2_client_would_not_send(aml_api: FakeAmlApi) -> None:
    """A request that drifts from the official client's form fails, so the tests above would notice."""
    import requests

    headers = {"Authorization": f"Bearer {MANAGEMENT_TOKEN}"}
    base = f"{aml_api.base_url}/history/v1.0{aml_api.workspace().resource_id}"
    no_version = requests.get(f"{base}/runs/{SAMPLE_STEP_RUN_ID}", headers=headers, timeout=5)
    scoped = requests.get(
        f"{base}/experimentids/{SAMPLE_EXPERIMENT_ID}/runs/{SAMPLE_STEP_RUN_ID}?api-version=v1.0",
        headers=headers,
        timeout=5,
    )
    camel_token = requests.get(
        f"{base}/runs/{SAMPLE_STEP_PARENT_RUN_ID}/children?api-version=v1.0&$continuationToken=x",
        headers=headers,
        timeout=5,
    )
    partial_run_data = requests.post(
        f"{base}/rundata?api-version=v1.0", json={"runId": SAMPLE_STEP_RUN_ID}, headers=headers, timeout=5
    )
    assert [r.status_code for r in (no_version, scoped, camel_token, partial_run_data)] == [400] * 4


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_happens_once_per_workspace(client: RunHistoryClient, aml_api: FakeAmlApi) -> None:
    other = aml_api.add_workspace(SAMPLE_SUBSCRIPTION, "other-rg", "other-ws")
    pipeline, _ = other.add_pipeline_run(steps=1)
    other_ref = WorkspaceRef(SAMPLE_SUBSCRIPTION, "other-rg", "other-ws")

    for _ in range(10):
        client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
        client.get_run(other_ref, pipeline["runId"])

    assert len(_arm(aml_api)) == 2
    assert len(aml_api.requests_to("/discovery", "GET")) == 2
    assert len(_history(aml_api)) == 20
    assert client.discovery_count == 2
    assert client.request_count == 24


def test_concurrent_first_calls_discover_once(client: RunHistoryClient, aml_api: FakeAmlApi) -> None:
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait()
            client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(_arm(aml_api)) == 1
    assert len(aml_api.requests_to(DETAILS_PATH)) == 10


def test_api_endpoint_setting_skips_discovery(
    make_client: Callable[..., RunHistoryClient], aml_api: FakeAmlApi
) -> None:
    client = make_client(api_endpoint=aml_api.base_url)
    client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert _arm(aml_api) == []
    assert aml_api.requests_to("/discovery") == []
    assert client.discovery_count == 0


def test_http_discovery_url_to_a_non_loopback_host_is_refused(
    client: RunHistoryClient, aml_api: FakeAmlApi
) -> None:
    aml_api.workspace().discovery_url = "http://evil.example.com/discovery"
    with pytest.raises(UntrustedEndpoint, match="http:// only for a loopback host"):
        client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert aml_api.requests_to("/discovery") == []  # and the conftest guard saw no outside connection


def test_discovered_api_outside_azure_ml_gets_no_token(client: RunHistoryClient, aml_api: FakeAmlApi) -> None:
    aml_api.discovery_overrides["api"] = "https://evil.example.com"
    with pytest.raises(UntrustedEndpoint, match="refusing it, no token was sent to it"):
        client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    # A failed discovery is not cached: once the document is right, the next event works.
    aml_api.discovery_overrides.clear()
    assert client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)["runId"] == SAMPLE_STEP_RUN_ID
    assert client.discovery_count == 2


def test_workspace_unknown_to_resource_manager_is_not_found(client: RunHistoryClient) -> None:
    missing = WorkspaceRef(SAMPLE_SUBSCRIPTION, SAMPLE_RESOURCE_GROUP, "missing-ws")
    with pytest.raises(RunNotFound, match=r"HTTP 404 \(ResourceNotFound\).*workspace"):
        client.get_run(missing, SAMPLE_STEP_RUN_ID)


def test_discovery_document_failure_is_transient(client: RunHistoryClient, aml_api: FakeAmlApi) -> None:
    aml_api.fail("GET", "/discovery", Fault(status=404, body={"error": {"code": "NotFound"}}))
    with pytest.raises(EnrichmentUnavailable, match="endpoint discovery"):
        client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)


# -- identity and tokens -----------------------------------------------------------------------


def test_managed_identity_token_scope_and_bearer(client: RunHistoryClient, aml_api: FakeAmlApi) -> None:
    client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    list(client.iter_children(SAMPLE_WS, SAMPLE_STEP_PARENT_RUN_ID))

    # One token for the whole process life (cached), for Resource Manager, from the user-assigned
    # identity, presenting the host's identity header.
    assert len(aml_api.token_requests) == 1
    token_request = aml_api.token_requests[0]
    assert token_request.resource == "https://management.azure.com"
    assert token_request.client_id == aml_api.client_id
    assert token_request.identity_header == aml_api.identity_secret
    assert token_request.api_version == "2019-08-01"

    authorised = _arm(aml_api) + _history(aml_api)
    assert len(authorised) == 4
    assert {r.authorization for r in authorised} == {f"Bearer {MANAGEMENT_TOKEN}"}
    assert all(r.headers["user-agent"].startswith("amlobs/1.0.0") for r in authorised)
    assert all(r.headers.get("x-ms-client-request-id") for r in authorised)
    # The discovery document is public metadata: it never receives the token.
    (discovery,) = aml_api.requests_to("/discovery")
    assert discovery.authorization is None
    assert _arm(aml_api)[0].query["api-version"] == "2024-10-01"


def test_wrong_identity_header_is_transient_and_leaks_no_secret(
    make_client: Callable[..., RunHistoryClient], monkeypatch: pytest.MonkeyPatch, aml_api: FakeAmlApi
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-secret")
    client = make_client()
    with pytest.raises(EnrichmentUnavailable, match="access token") as raised:
        client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert "not-the-secret" not in str(raised.value)
    assert _arm(aml_api) == []


def test_build_credential_uses_the_app_service_identity(aml_api: FakeAmlApi) -> None:
    credential = build_credential(Settings.from_env())
    assert isinstance(credential, ManagedIdentityCredential)
    # The exporter asks for the Azure Monitor audience; the fake names its tokens after it.
    assert credential.get_token("https://monitor.azure.com/.default").token == "token-for-monitor"
    assert aml_api.token_requests[-1].resource == "https://monitor.azure.com"
    assert aml_api.token_requests[-1].client_id == aml_api.client_id


def test_build_credential_locally_uses_the_cli_logins_without_probing_imds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", "")  # neither az nor azd can be found, whatever this machine has
    credential = build_credential(Settings.from_env({}))
    assert isinstance(credential, ChainedTokenCredential)
    started = time.monotonic()
    with pytest.raises(ClientAuthenticationError, match="Azure CLI"):
        credential.get_token("https://management.azure.com/.default")
    # No 169.254.169.254 probe (the conftest guard would fail the session) and no slow timeouts.
    assert time.monotonic() - started < 5


# -- retries and errors ------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(
    client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    aml_api.fail("GET", DETAILS_PATH, Fault(status=429, headers={"Retry-After": "7"}))
    details = client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert details["runId"] == SAMPLE_STEP_RUN_ID
    assert sleeps == [7.0]
    assert len(aml_api.requests_to(DETAILS_PATH)) == 2


def test_retry_after_ms_and_http_date_are_honoured(
    client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    in_five = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    aml_api.fail(
        "GET",
        DETAILS_PATH,
        Fault(status=503, headers={"x-ms-retry-after-ms": "1500", "Retry-After": "20"}),
        Fault(status=429, headers={"Retry-After": in_five}),
    )
    client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert sleeps[0] == 1.5
    assert 3.0 <= sleeps[1] <= 5.0


@pytest.mark.parametrize("header", ["Retry-After", "x-ms-retry-after-ms", "retry-after-ms"])
def test_a_retry_after_that_is_not_a_finite_number_falls_back_to_the_backoff(
    client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps, header: str
) -> None:
    # float() accepts "NaN"; time.sleep(nan) raises ValueError, which no caller classifies.
    aml_api.fail("GET", DETAILS_PATH, Fault(status=503, headers={header: "NaN"}))
    assert client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)["runId"] == SAMPLE_STEP_RUN_ID
    assert len(sleeps) == 1
    assert 0.25 <= sleeps[0] <= 0.5  # the first backoff step, as without the header


def test_retry_after_beyond_the_limit_fails_at_once(
    make_client: Callable[..., RunHistoryClient], aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    client = make_client(max_retry_after_seconds=30.0)
    aml_api.fail("GET", DETAILS_PATH, Fault(status=429, headers={"Retry-After": "120"}))
    with pytest.raises(EnrichmentUnavailable, match=r"HTTP 429.*retry after 120s.*30s"):
        client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert sleeps == []
    assert len(aml_api.requests_to(DETAILS_PATH)) == 1


def test_500_then_success_backs_off_with_jitter(
    client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    aml_api.fail("GET", DETAILS_PATH, Fault(status=500), Fault(status=502))
    client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5  # first backoff: 0.5s, equal jitter
    assert 0.5 <= sleeps[1] <= 1.0  # doubled


def test_timeout_then_success(
    make_client: Callable[..., RunHistoryClient], aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    client = make_client(http_timeout_seconds=0.3)
    client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)  # discovery outside the timed part
    aml_api.fail("GET", DETAILS_PATH, Fault(delay=1.0, passthrough=True))
    started = time.monotonic()
    details = client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert details["runId"] == SAMPLE_STEP_RUN_ID
    assert time.monotonic() - started < 1.0  # it gave up on the slow answer instead of waiting for it
    assert len(aml_api.requests_to(DETAILS_PATH)) == 2
    assert len(sleeps) == 1


def test_dropped_connection_then_success(
    client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    aml_api.fail("GET", DETAILS_PATH, Fault(close=True))
    assert client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)["runId"] == SAMPLE_STEP_RUN_ID
    assert len(sleeps) == 1


CUT_SHORT = Fault(
    raw=b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 900\r\n\r\n{"runId":'
)
BAD_CHUNKS = Fault(raw=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n")


@pytest.mark.parametrize("broken", [CUT_SHORT, BAD_CHUNKS], ids=["cut-short", "bad-chunking"])
def test_answer_broken_mid_body_then_success(
    client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps, broken: Fault
) -> None:
    # The connection died while the body was read: as transient as a connection dropped before it.
    aml_api.fail("GET", DETAILS_PATH, broken)
    assert client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)["runId"] == SAMPLE_STEP_RUN_ID
    assert len(aml_api.requests_to(DETAILS_PATH)) == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("broken", [CUT_SHORT, BAD_CHUNKS], ids=["cut-short", "bad-chunking"])
def test_answers_broken_mid_body_exhaust_the_attempts(
    make_client: Callable[..., RunHistoryClient], aml_api: FakeAmlApi, sleeps: Sleeps, broken: Fault
) -> None:
    client = make_client(http_max_attempts=3)
    aml_api.fail("GET", DETAILS_PATH, *[broken] * 3)
    # EnrichmentUnavailable, not the transport's own exception: replay and backfill count it as "try
    # again later", and the Function fails the invocation so that Event Grid redelivers.
    with pytest.raises(EnrichmentUnavailable, match=r"run details of .* after 3 attempt\(s\)"):
        client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert len(aml_api.requests_to(DETAILS_PATH)) == 3


def test_timeouts_exhaust_the_attempts(
    make_client: Callable[..., RunHistoryClient], aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    client = make_client(http_timeout_seconds=0.2, http_max_attempts=2)
    client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    aml_api.fail("GET", DETAILS_PATH, *[Fault(delay=0.6, passthrough=True)] * 2)
    with pytest.raises(EnrichmentUnavailable, match=r"run details of .* after 2 attempt\(s\)"):
        client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)


def test_persistent_403_fails_after_exactly_the_configured_attempts(
    make_client: Callable[..., RunHistoryClient], aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    client = make_client(http_max_attempts=3)
    denied = Fault(status=403, body={"error": {"code": "AuthorizationFailed", "message": "no role yet"}})
    aml_api.fail("GET", DETAILS_PATH, *[denied] * 5)
    with pytest.raises(EnrichmentUnavailable) as raised:
        client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    message = str(raised.value)
    assert "HTTP 403 (AuthorizationFailed)" in message
    assert "after 3 attempt(s)" in message
    assert "run details of " + SAMPLE_STEP_RUN_ID in message
    assert "token-for" not in message and "Bearer" not in message
    assert len(aml_api.requests_to(DETAILS_PATH)) == 3
    assert len(sleeps) == 2


def test_401_is_retried_like_a_role_assignment_still_propagating(
    client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    aml_api.fail("GET", DETAILS_PATH, Fault(status=401))
    assert client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)["runId"] == SAMPLE_STEP_RUN_ID
    assert len(sleeps) == 1


def test_404_is_run_not_found(client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps) -> None:
    with pytest.raises(RunNotFound, match=r"HTTP 404 \(UserError\)") as raised:
        client.get_run_details(SAMPLE_WS, "deleted-run")
    assert not isinstance(raised.value, RunHistoryRejected)
    with pytest.raises(RunNotFound):
        client.get_run_data(SAMPLE_WS, "deleted-run")
    assert sleeps == []


def test_other_4xx_is_recorded_partially_without_retry(
    client: RunHistoryClient, aml_api: FakeAmlApi, sleeps: Sleeps
) -> None:
    aml_api.fail("GET", DETAILS_PATH, Fault(status=400, body={"error": {"code": "ValidationError"}}))
    with pytest.raises(RunHistoryRejected, match=r"HTTP 400 \(ValidationError\)") as raised:
        client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    assert isinstance(raised.value, RunNotFound)  # the processor records the event with enrichment_error
    assert sleeps == []
    assert len(aml_api.requests_to(DETAILS_PATH)) == 1


@pytest.mark.parametrize("body", ["<html>gateway</html>", "[1, 2]", ""])
def test_malformed_body_is_unavailable(client: RunHistoryClient, aml_api: FakeAmlApi, body: str) -> None:
    aml_api.fail(
        "GET", DETAILS_PATH, Fault(status=200, body=body, headers={"Content-Type": "application/json"})
    )
    with pytest.raises(EnrichmentUnavailable, match="HTTP 200"):
        client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)


# -- paging ------------------------------------------------------------------------------------


def test_children_are_paged_with_continuation_tokens(client: RunHistoryClient, aml_api: FakeAmlApi) -> None:
    aml_api.page_size = 2
    pipeline, steps = aml_api.workspace().add_pipeline_run(steps=5)

    children = list(client.iter_children(SAMPLE_WS, pipeline["runId"]))

    assert [c["runId"] for c in children] == [s["runId"] for s in steps]  # all, in creation order, once
    pages = aml_api.requests_to(f"/runs/{pipeline['runId']}/children")
    assert len(pages) == 3
    # azure-ai-ml 1.35.2 _operations.py:175 spells the query parameter "$continuationtoken".
    assert pages[0].query == {"api-version": "v1.0"}
    tokens = [p.query["$continuationtoken"] for p in pages[1:]]
    assert len(set(tokens)) == 2
    assert all(set(p.query) == {"api-version", "$continuationtoken"} for p in pages[1:])


def test_children_of_a_missing_run_is_not_found(client: RunHistoryClient) -> None:
    with pytest.raises(RunNotFound):
        list(client.iter_children(SAMPLE_WS, "no-such-run"))


def _all_pages(client: RunHistoryClient, since: datetime, token: str | None = None) -> list[RunPage]:
    return list(client.iter_runs(SAMPLE_WS, since=since, continuation_token=token))


def test_runs_query_pages_across_experiments_with_resumable_tokens(
    client: RunHistoryClient, aml_api: FakeAmlApi
) -> None:
    aml_api.page_size = 2
    ws = aml_api.workspace()
    since = datetime(2024, 5, 1, tzinfo=UTC)
    expected: set[str] = set()
    for name, day in (("train", 2), ("score", 3), ("train", 4)):
        pipeline, steps = ws.add_pipeline_run(name, steps=2, created=datetime(2024, 5, day, 9, tzinfo=UTC))
        expected |= {pipeline["runId"], *(s["runId"] for s in steps)}
    ws.add_pipeline_run("empty-lately", steps=1, created=datetime(2024, 4, 1, tzinfo=UTC))  # before `since`

    pages = _all_pages(client, since)

    listed = [r["runId"] for p in pages for r in p.runs]
    assert sorted(listed) == sorted(
        expected
    )  # every recent run exactly once; the sample's 2020 runs filtered out
    assert all(len(p.runs) <= 2 for p in pages)
    assert pages[-1].continuation_token is None
    assert all(p.continuation_token for p in pages[:-1])
    assert {r["experimentName"] for p in pages for r in p.runs} == {"train", "score"}

    queries = aml_api.requests_to("/runs:query", "POST")
    # azureml-core's "(CreatedUtc ge {0})" with the datetime, its order literal, azure-ai-ml's keys.
    assert {q.json()["filter"] for q in queries} == {"(CreatedUtc ge 2024-05-01 00:00:00+00:00)"}
    assert {q.json()["orderBy"] for q in queries} == {"CreatedUtc asc"}
    assert all(set(q.json()) <= {"filter", "orderBy", "top", "continuationToken"} for q in queries)
    assert any("continuationToken" in q.json() for q in queries)
    assert {q.query["api-version"] for q in queries} == {"v1.0"}
    experiment_queries = aml_api.requests_to("/experiments:query", "POST")
    assert {q.json()["viewType"] for q in experiment_queries} == {"All"}
    assert {q.query["api-version"] for q in experiment_queries} == {"v1.0"}
    assert len(experiment_queries) >= 2  # 4 experiments in pages of 2

    # Resuming from any page's token lists exactly the runs after that page.
    for cut in range(len(pages) - 1):
        resumed = _all_pages(client, since, pages[cut].continuation_token)
        after = [r["runId"] for p in pages[cut + 1 :] for r in p.runs]
        assert [r["runId"] for p in resumed for r in p.runs] == after
        assert resumed[-1].continuation_token is None


def test_runs_query_with_nothing_new_ends_with_an_empty_final_page(client: RunHistoryClient) -> None:
    pages = _all_pages(client, datetime(2030, 1, 1, tzinfo=UTC))
    assert pages == [RunPage(runs=[], continuation_token=None)]


def test_runs_query_rejects_foreign_tokens_and_naive_times(client: RunHistoryClient) -> None:
    with pytest.raises(ValueError, match="iter_runs"):
        _all_pages(client, datetime(2020, 1, 1, tzinfo=UTC), "bm90LW91cnM")
    with pytest.raises(ValueError, match="timezone"):
        _all_pages(client, datetime(2020, 1, 1))


def test_runs_query_failure_mid_listing_is_unavailable(client: RunHistoryClient, aml_api: FakeAmlApi) -> None:
    aml_api.fail("POST", "/runs:query", *[Fault(status=503)] * 10)
    with pytest.raises(EnrichmentUnavailable, match="runs query of experiment experimentName"):
        _all_pages(client, datetime(2020, 1, 1, tzinfo=UTC))


def test_real_short_retry_after_is_actually_waited(aml_api: FakeAmlApi) -> None:
    settings = Settings.from_env()
    with RunHistoryClient(settings, build_credential(settings)) as client:  # real time.sleep
        client.get_run(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
        aml_api.fail("GET", DETAILS_PATH, Fault(status=429, headers={"Retry-After": "1"}))
        started = time.monotonic()
        client.get_run_details(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
        assert time.monotonic() - started >= 1.0


@pytest.mark.parametrize(
    ("since", "literal"),
    [
        (datetime(2024, 5, 1, 10, tzinfo=UTC), "(CreatedUtc ge 2024-05-01 10:00:00+00:00)"),
        (
            datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC),
            "(CreatedUtc ge 2024-05-01 10:00:00.123000+00:00)",
        ),
        # another offset is the same instant in UTC
        (
            datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2))),
            "(CreatedUtc ge 2024-05-01 10:00:00+00:00)",
        ),
    ],
)
def test_created_since_filter_is_azureml_cores_literal(since: datetime, literal: str) -> None:
    # azureml-core 1.61 _restclient/_odata/constants.py:16 CREATED_AFTER_FORMAT_STR.format(datetime)
    assert created_since_filter(since) == literal


def test_run_data_request_selects_everything_as_the_v2_client_does(
    client: RunHistoryClient, aml_api: FakeAmlApi
) -> None:
    data = client.get_run_data(SAMPLE_WS, SAMPLE_STEP_RUN_ID)
    [request] = aml_api.requests_to("/rundata", "POST")
    # azure-ai-ml 1.35.2 operations/_run_operations.py:82-95 (GetRunDataRequest, every select True)
    assert request.json() == {
        "runId": SAMPLE_STEP_RUN_ID,
        "selectRunMetadata": True,
        "selectRunDefinition": True,
        "selectJobSpecification": True,
    }
    assert request.query == {"api-version": "v1.0"}
    assert data["runMetadata"]["runId"] == SAMPLE_STEP_RUN_ID
    assert data["runDefinition"]["script"] == "sampleStep.py"
