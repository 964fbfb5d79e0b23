"""The Resource Manager token reaches Azure ML's own API hosts only, through ``function_app.app`` as the
host drives it, configured as in Azure: no test-only loopback setting, Resource Manager at
``https://management.azure.com``. Every name resolves to a loopback TLS server with a certificate from a
throwaway CA (tests/fakes/foreign_tls.py) that relays each request to the AML fake, so the app really
connects, completes TLS and would send whatever it decides to send; the fake records the token.

The workspace's discovery URL is the regional ``https://eastus.api.azureml.ms/discovery``; each case
changes only the ``api`` its discovery document answers (docs/security.md cites each host form).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fakes.aml_api import MANAGEMENT_TOKEN, SAMPLE_STEP_RUN_ID
from tests.fakes.foreign_tls import ForeignServer, resolve_all_names_here, start_foreign_server
from tests.integration.conftest import App, sample_event
from tests.integration.host import invoke

WORKSPACE_ID = "0f3c5a8e-6a2b-4d1e-9c77-5e1b2d3c4f60"
PRIVATE_LINK_API = f"https://{WORKSPACE_ID}.workspace.eastus.api.azureml.ms"


@dataclass
class AzureNames:
    app: App
    foreign: ForeignServer

    def hosts_sent_a_token(self) -> set[str | None]:
        return {r.host for r in self.foreign.requests if r.authorization}


@pytest.fixture
def azure_names(app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureNames]:
    with start_foreign_server(tmp_path) as foreign, resolve_all_names_here(foreign.port):
        foreign.upstream = app.aml.base_url
        monkeypatch.delenv("AML_OBS_TEST_ALLOW_LOOPBACK", raising=False)
        monkeypatch.setenv("AML_OBS_ARM_ENDPOINT", "https://management.azure.com")
        # requests (under azure-core's transport) trusts the throwaway CA from here on.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(foreign.ca_path))
        app.aml.workspace().discovery_url = "https://eastus.api.azureml.ms/discovery"
        yield AzureNames(app, foreign)


def test_a_private_link_api_host_gets_the_token_and_the_record_is_enriched(azure_names: AzureNames) -> None:
    app = azure_names.app
    app.aml.discovery_overrides["api"] = PRIVATE_LINK_API
    event = sample_event("step_run_completed", id="private-link")

    invoke(event)

    [record] = app.records()
    assert "enrichment_error" not in record
    assert record["script"]  # from the run details the private link host answered
    assert azure_names.hosts_sent_a_token() == {
        "management.azure.com",
        f"{WORKSPACE_ID}.workspace.eastus.api.azureml.ms",
    }
    details = app.aml.requests_to(f"/runs/{SAMPLE_STEP_RUN_ID}/details")
    assert [r.authorization for r in details] == [f"Bearer {MANAGEMENT_TOKEN}"]
    [discovery] = [r for r in azure_names.foreign.requests if r.path == "/discovery"]
    assert (discovery.host, discovery.authorization) == ("eastus.api.azureml.ms", None)
    assert event["id"] in app.processed_ids()


def _aml_port(app: App) -> int:
    return int(app.aml.base_url.rsplit(":", 1)[1])


REFUSED = {
    "compute instance": "https://my-ci.eastus.instances.azureml.ms",
    "online endpoint": "https://my-endpoint.eastus.inference.ml.azure.com",
    "loopback http": "http://127.0.0.1",
    "loopback ipv6": "https://[::1]",
    "another cloud": "https://usgovvirginia.api.ml.azure.us",
}


@pytest.mark.parametrize("case", [*REFUSED, "loopback where the fake listens"])
def test_an_api_host_off_azure_mls_own_gets_no_token_and_the_record_says_why(
    azure_names: AzureNames, case: str
) -> None:
    app = azure_names.app
    # The last case names the port the AML fake listens on: a token sent there would be seen.
    api = REFUSED.get(case) or f"http://127.0.0.1:{_aml_port(app)}"
    app.aml.discovery_overrides["api"] = api
    event = sample_event("step_run_completed", id=f"refused-{case}")

    invoke(event)  # the invocation succeeds: the record goes out with the refusal, nothing is retried

    [record] = app.records()
    error = record["enrichment_error"]
    host = urlsplit(api).hostname
    assert error.startswith("workspace sample-ws: ") and f"{host}'" in error, error
    assert "refusing" in error and "no token was sent to it" in error, error
    assert "script" not in record and "start_time_utc_ms" not in record
    assert record["run_id"] == SAMPLE_STEP_RUN_ID  # what the event carries is recorded
    assert event["id"] in app.processed_ids()
    assert azure_names.hosts_sent_a_token() == {"management.azure.com"}
    assert app.aml.requests_to("/history/") == []  # the run history API was never called
