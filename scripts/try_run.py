"""The run of ``scripts/try.sh``: the stand-ins started, the pipeline's events delivered through
``function_app`` as Event Grid may deliver them, and what ingestion received.

Imported by scripts/try_it.py after its socket guard is in place and the exporter's side channels are
off (nothing here may run before that).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.aml_api import start_aml_api
from tests.fakes.azurite import start_azurite
from tests.fakes.ingestion import EVENT_ENVELOPE, IngestionServer
from tests.integration.host import indexed_functions, invoke
from tests.kql_engine import Invocation
from tests.trace_scenario import Pipeline, v2_pipeline

FUNCTION = "aml_run_events"
FINISHED_AGO = timedelta(minutes=5)  # ingestion keeps item times of the last 48 hours only


@dataclass(frozen=True)
class Outcome:
    pipeline: Pipeline  # the runs the AML fake served
    sent: list[dict[str, Any]]  # the deliveries, in order (the duplicate included)
    duplicate: dict[str, Any]  # the event delivered twice
    failures: list[str]  # what each failed invocation raised (each was delivered again)
    invocations: list[Invocation]  # every invocation, as the Functions host would record it
    envelopes: list[dict[str, Any]]  # what ingestion accepted
    now: datetime  # after the last envelope was accepted

    @property
    def root_run_id(self) -> str:
        return str(self.pipeline.root["runId"])

    def events(self, name: str) -> list[dict[str, str]]:
        """The properties (customDimensions) of the custom events ``name`` ingestion received."""
        return [
            dict(e["data"]["baseData"]["properties"])
            for e in self.envelopes
            if e.get("name") == EVENT_ENVELOPE and e["data"]["baseData"]["name"] == name
        ]


def deliveries(events: list[dict[str, Any]], *, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every event once in a shuffled order, then one of them again (Event Grid delivers at least once,
    in no guaranteed order): the failed node's terminal event, the one a user would look for."""
    order = list(events)
    random.Random(seed).shuffle(order)  # noqa: S311 (an order, not a secret)
    failed = next(e for e in order if e["data"].get("runStatus") == "Failed" and _is_step(e))
    return [*order, failed], failed


def _is_step(event: Mapping[str, Any]) -> bool:
    return str(event["data"].get("runType") or "").endswith("StepRun")


def run_scenario(seed: int) -> Outcome:
    """Start the stand-ins, deliver the pipeline's events through ``function_app``, read back what
    ingestion received."""
    from amlobs import runtime

    with start_aml_api() as aml, start_azurite() as azurite:
        ingestion = IngestionServer().start()
        try:
            # The app settings infra/ gives the Function App, pointed at the stand-ins: Entra ingestion
            # with the managed identity, storage for the claims, discovery from Resource Manager.
            os.environ.update(aml.env())
            os.environ.update(
                {
                    "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
                    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId="
                    + aml.client_id,
                    "AzureWebJobsStorage": azurite.connection_string,
                }
            )
            os.environ.pop("AML_OBS_API_ENDPOINT", None)
            runtime.reset_processor()
            indexed_functions()  # the host indexes the app once, before the first event
            pipeline = v2_pipeline(aml.workspace(), end=datetime.now(UTC) - FINISHED_AGO, failed_node=True)
            sent, duplicate = deliveries(pipeline.events, seed=seed)
            failures: list[str] = []
            invocations: list[Invocation] = []
            queue = list(sent)
            while queue:
                event = queue.pop(0)
                started, begun = datetime.now(UTC), time.perf_counter()
                try:
                    invoke(event, FUNCTION)
                    succeeded = True
                except Exception as failed:  # the host fails the invocation; Event Grid delivers it again
                    succeeded = False
                    failures.append(f"{type(failed).__name__}: {failed}")
                    if len(failures) <= len(sent):
                        queue.append(event)
                elapsed = timedelta(seconds=time.perf_counter() - begun)
                invocations.append(Invocation(FUNCTION, started, elapsed, succeeded, uuid.uuid4().hex))
            runtime.reset_processor()  # flushes the exporter: everything sent is at ingestion now
            return Outcome(
                pipeline, sent, duplicate, failures, invocations, list(ingestion.envelopes), datetime.now(UTC)
            )
        finally:
            ingestion.close()
            runtime.reset_processor()
