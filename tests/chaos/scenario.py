"""What the simulated workspace does: pipeline runs and their steps, and the events AML sends for them.

Every run reports ``Running`` and then a terminal status (``Completed`` or ``Failed``) through
``RunStatusChanged``; every completed run also sends ``RunCompleted``, which the app must record as the
same (run, status) as the ``RunStatusChanged``/Completed (``infra/main.bicep`` subscribes to both). A
finished pipeline run also owes exactly one ``AmlPipelineRunSummary``.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.aml_api import FakeAmlApi

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"

Key = tuple[str, str, str]  # (workspace name, run id, status), as the records carry them


@dataclass(frozen=True)
class SourceEvent:
    """One event AML publishes (Event Grid may then deliver it more than once)."""

    event_id: str
    key: Key
    event_type: str
    body: str  # the Event Grid event as JSON, exactly what the host hands the worker

    @property
    def is_run_completed(self) -> bool:
        return self.event_type == RUN_COMPLETED


@dataclass(frozen=True)
class Scenario:
    events: list[SourceEvent]
    expected_keys: frozenset[Key]
    expected_summaries: frozenset[Key]  # (workspace, pipeline run, terminal status)


def _event(
    workspace_id: str, run: dict[str, Any], event_type: str, status: str | None, when: datetime
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "experimentId": run["experimentId"],
        "experimentName": run.get("experimentName") or "chaos",
        "runId": run["runId"],
        "runType": run["runType"],
        "runTags": dict(run.get("tags") or {}),
        "runProperties": dict(run.get("properties") or {}),
    }
    if status is not None:  # RunCompleted carries no runStatus
        data["runStatus"] = status
    return {
        "id": str(uuid.uuid4()),
        "topic": workspace_id,
        "subject": f"experiments/{run['experimentId']}/runs/{run['runId']}",
        "eventType": event_type,
        "eventTime": when.isoformat().replace("+00:00", "Z"),
        "data": data,
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def build_scenario(aml: FakeAmlApi, *, keys: int, rng: random.Random) -> Scenario:
    """Pipelines of two steps (three runs, two statuses each) until ``keys`` (run, status) pairs exist."""
    import json

    workspace = aml.workspace()
    events: list[SourceEvent] = []
    expected: set[Key] = set()
    summaries: set[Key] = set()
    # Runs of the last hours: inside ingestion's window, so each finished run's span is sent too.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    published = datetime.now(UTC)
    pipelines = max(1, keys // 6)
    for index in range(pipelines):
        failed = rng.random() < 0.15
        terminal = "Failed" if failed else "Completed"
        pipeline, steps = workspace.add_pipeline_run(
            "chaos", steps=2, created=start + timedelta(minutes=index), status=terminal
        )
        for run in [pipeline, *steps]:
            run_key_running: Key = (workspace.name, run["runId"], "Running")
            run_key_done: Key = (workspace.name, run["runId"], terminal)
            # Event Grid delivers an event seconds after AML publishes it: its time is now (the runs' own
            # times are run history's). A run history 404 then means "not visible yet" (amlobs/not_found).
            when = published
            for key, event_type, status in (
                (run_key_running, RUN_STATUS_CHANGED, "Running"),
                (run_key_done, RUN_STATUS_CHANGED, terminal),
            ):
                payload = _event(workspace.resource_id, run, event_type, status, when)
                events.append(SourceEvent(payload["id"], key, event_type, json.dumps(payload)))
                expected.add(key)
            if terminal == "Completed":
                payload = _event(workspace.resource_id, run, RUN_COMPLETED, None, when)
                events.append(SourceEvent(payload["id"], run_key_done, RUN_COMPLETED, json.dumps(payload)))
        summaries.add((workspace.name, pipeline["runId"], terminal))
    return Scenario(events, frozenset(expected), frozenset(summaries))
