"""The whole app against loopback fakes: identity + AML API, ingestion, and Azurite."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amlobs import runtime
from tests.fakes.aml_api import FakeAmlApi
from tests.fakes.azurite import Azurite
from tests.fakes.ingestion import IngestionServer

EVENTS_DIR = Path(__file__).resolve().parent.parent / "data" / "events"


def sample_event(name: str, **changes: Any) -> dict[str, Any]:
    event = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    data_changes = changes.pop("data", {})
    event.update(changes)
    event["data"].update(data_changes)
    return copy.deepcopy(event)


@dataclass
class App:
    aml: FakeAmlApi
    ingestion: IngestionServer
    storage: Azurite

    def records(self) -> list[dict[str, Any]]:
        return [e["properties"] for e in self.ingestion.events("AmlRunStatusChanged")]

    def processed_ids(self) -> set[str]:
        """Ids of the events whose (run, status) is recorded: their claims reached "done"."""
        return {
            e.get("source_event_id", "")
            for e in self.storage.list_entities("processedevents")
            if e.get("state") == "done"
        }

    def claim_states(self) -> dict[str, str]:
        """(run, status) key → claim state, for every key claimed so far."""
        return {e["event_id"]: e["state"] for e in self.storage.list_entities("processedevents")}

    def rejected_blobs(self) -> list[Any]:
        return self.storage.list_blobs("rejected-events")


@pytest.fixture
def app(
    aml_api: FakeAmlApi,
    ingestion_server: IngestionServer,
    storage_env: Azurite,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[App]:
    """App settings as Bicep sets them, pointed at the fakes: Entra ingestion with the managed identity."""
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", ingestion_server.connection_string)
    monkeypatch.setenv(
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", f"Authorization=AAD;ClientId={aml_api.client_id}"
    )
    # Small bounds keep the fault tests quick; the behaviour is the same as with the defaults.
    monkeypatch.setenv("AML_OBS_HTTP_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("AML_OBS_HTTP_TIMEOUT_SECONDS", "1.5")
    monkeypatch.setenv("AML_OBS_MAX_RETRY_AFTER_SECONDS", "2")
    runtime.reset_processor()
    try:
        yield App(aml_api, ingestion_server, storage_env)
    finally:
        runtime.reset_processor()
