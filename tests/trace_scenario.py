"""Pipeline runs for the trace tests and for ``scripts/render_trace.py``, and the trace read back.

The runs are served by the AML fake: steps shaped like Microsoft's recordings (the v2 command node of
``tests/data/aml/kinds/v2_pipeline.json`` as the template of every v2 node, the recorded error of
``kinds/failed_run.json`` on a failed step), in pipelines built by ``FakeWorkspace.add_pipeline_run``
(nesting, reuse). Their events are the Event Grid events AML sends: ``RunStatusChanged`` for
``Running`` and for the terminal status, and ``RunCompleted`` for a completed run.

The trace is read back from what ingestion *stored* (the fake's accepted envelopes), independently of
the code under test: the exporter's envelope fields (``tags["ai.operation.id"]``, ``ai.operation.parentId``,
``baseData.id``, ``time``, ``duration`` as ``d.hh:mm:ss.fff``) are what the transaction view is built from.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakes.aml_data import TERMINAL, FakeWorkspace, iso, load_kind, timespan
from tests.fakes.ingestion import DEPENDENCY_ENVELOPE, EVENT_ENVELOPE, REQUEST_ENVELOPE

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
# The recorded v2 pipeline node (a command component on cpu-cluster) and the recorded failure.
V2_NODE = next(r for r in load_kind("v2_pipeline")["runs"] if r["run"]["runId"].startswith("7a5d9290"))
RECORDED_ERROR: dict[str, Any] = load_kind("failed_run")["runs"][0]["run"]["error"]
RECORDED_ERROR_CODE = "CommonRuntimeJobError"  # its innermost code (what error_code holds)


def parse_time(text: str) -> datetime:
    head, dot, rest = text.replace("Z", "+00:00").partition(".")
    if not dot:  # a time on a whole second is written without a fraction
        return datetime.fromisoformat(head).astimezone(UTC)
    digits = "".join(c for c in rest if c.isdigit())
    zone = rest[len(digits) :] or "+00:00"
    return datetime.fromisoformat(f"{head}.{digits[:6].ljust(6, '0')}{zone}").astimezone(UTC)


def ms(moment: datetime) -> int:
    """Epoch milliseconds, as the records (and so the spans) carry a run's times."""
    return round(moment.timestamp() * 1000)


# --------------------------------------------------------------------------------------------------
# Runs and their events


@dataclass
class Pipeline:
    root: dict[str, Any]
    runs: list[dict[str, Any]]  # every run: the root, sub-pipelines, steps
    events: list[dict[str, Any]] = field(default_factory=list)

    def run(self, run_id: str) -> dict[str, Any]:
        return next(r for r in self.runs if r["runId"] == run_id)


def run_event(
    ws: FakeWorkspace, run: Mapping[str, Any], status: str | None, event_type: str = RUN_STATUS_CHANGED
) -> dict[str, Any]:
    """The Event Grid event AML sends for ``run`` reaching ``status`` (MicrosoftDocs/azure-docs
    ``articles/event-grid/event-schema-machine-learning.md``); ``RunCompleted`` carries no status."""
    experiment = ws.experiments[run["experimentId"]]
    when = run.get("endTimeUtc") if status in TERMINAL or status is None else run.get("startTimeUtc")
    data: dict[str, Any] = {
        "experimentId": run["experimentId"],
        "experimentName": experiment["name"],
        "runId": run["runId"],
        "runType": run.get("runType"),
        "runTags": dict(run.get("tags") or {}),
        "runProperties": dict(run.get("properties") or {}),
    }
    if status is not None:
        data["runStatus"] = status
    return {
        "id": str(uuid.uuid4()),
        "topic": ws.resource_id,
        "subject": f"experiments/{run['experimentId']}/runs/{run['runId']}",
        "eventType": event_type,
        "eventTime": (when or run["createdUtc"]).replace("+00:00", "Z"),
        "data": data,
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def lifecycle_events(ws: FakeWorkspace, runs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Running and the terminal status of each run, and RunCompleted for each completed one."""
    events = []
    for run in runs:
        events.append(run_event(ws, run, "Running"))
        events.append(run_event(ws, run, run["status"]))
        if run["status"] == "Completed":
            events.append(run_event(ws, run, None, RUN_COMPLETED))
    return events


def _end_at(ws: FakeWorkspace, run: dict[str, Any], end: datetime) -> None:
    """Move a generated pipeline run's end (it then covers a sub-pipeline added after it)."""
    start = parse_time(run["startTimeUtc"])
    for answer in (run, ws.details[run["runId"]]):
        answer["endTimeUtc"] = iso(end)
        answer["duration"] = answer["computeDuration"] = timespan((end - start).total_seconds())


def v1_pipeline(ws: FakeWorkspace, *, end: datetime, steps: int = 3, failed_step: int = 1) -> Pipeline:
    """An SDK v1 pipeline (definitions in ``/details``) whose step ``failed_step`` failed with the
    recorded error, ending at ``end``."""
    step_seconds = 150.0
    created = end - timedelta(seconds=4 + steps * (6 + step_seconds) + 2)
    root, step_runs = ws.add_pipeline_run(
        "churn-training",
        steps=steps,
        created=created,
        status="Failed",
        step_seconds=step_seconds,
        failed={failed_step: RECORDED_ERROR},
    )
    pipeline = Pipeline(root, [root, *step_runs])
    pipeline.events = lifecycle_events(ws, pipeline.runs)
    return pipeline


def v2_pipeline(ws: FakeWorkspace, *, end: datetime, failed_node: bool = False) -> Pipeline:
    """An SDK v2 pipeline: two nodes (the first reused from an earlier run), then a pipeline component
    (a nested sub-pipeline) of two nodes; every node the recorded command node's shape. With
    ``failed_node`` the sub-pipeline's last node fails with the recorded error, and so do the
    sub-pipeline and the pipeline."""
    created = end - timedelta(minutes=9)
    root, outer_steps = ws.add_pipeline_run(
        "azure-ai-ml", steps=2, created=created, step_seconds=70.0, node_template=V2_NODE, reused={0}
    )
    sub_created = parse_time(outer_steps[-1]["endTimeUtc"]) + timedelta(seconds=3)
    sub, sub_steps = ws.add_pipeline_run(
        "azure-ai-ml",
        steps=2,
        created=sub_created,
        step_seconds=110.0,
        node_template=V2_NODE,
        parent=root,
        status="Failed" if failed_node else "Completed",
        failed={1: RECORDED_ERROR} if failed_node else None,
    )
    if failed_node:
        for answer in (root, ws.details[root["runId"]]):
            answer["status"] = "Failed"
    # Node names as a pipeline definition gives them (the recorded node is an inline component, so
    # its display name is what names the step).
    names = ("prep_data", "featurize", "train_and_evaluate", "train_model", "evaluate_model")
    for run, name in zip((*outer_steps, sub, *sub_steps), names, strict=True):
        run["displayName"] = name  # a Run field (RunDetails has none)
    _end_at(ws, root, parse_time(sub["endTimeUtc"]) + timedelta(seconds=2))
    pipeline = Pipeline(root, [root, *outer_steps, sub, *sub_steps])
    pipeline.events = lifecycle_events(ws, pipeline.runs)
    return pipeline


def recorded_v2_pipeline(ws: FakeWorkspace, *, end: datetime) -> Pipeline:
    """The recorded v2 pipeline run and its recorded reused node, moved so that the pipeline ends at
    ``end`` (only the times change: shift_times keeps every other value as recorded)."""
    recorded_end = parse_time(load_kind("v2_pipeline")["runs"][0]["run"]["endTimeUtc"])
    shift = timedelta(seconds=int((end - recorded_end).total_seconds()))
    kind = ws.load_kind("v2_pipeline", shift=shift)
    root = ws.runs["test_845087997000"]
    reused = ws.runs["9fd0d9f9-3a92-4168-bb40-339711114ed3"]
    pipeline = Pipeline(root, [root, reused])
    pipeline.events = [copy.deepcopy(kind["events"][name]) for name in ("pipeline", "reused_node")]
    return pipeline


# --------------------------------------------------------------------------------------------------
# The trace as ingestion stored it


@dataclass(frozen=True)
class Span:
    kind: str  # "request" (the root) or "dependency"
    name: str
    span_id: str
    trace_id: str
    parent_id: str | None
    start: datetime
    duration_ms: float
    success: bool
    properties: dict[str, str]
    target: str | None
    type: str | None
    role: str | None

    @property
    def end(self) -> datetime:
        return self.start + timedelta(milliseconds=self.duration_ms)

    @property
    def run_id(self) -> str:
        return self.properties.get("run_id", "")

    @property
    def phase(self) -> str:
        return self.properties.get("span_phase", "")


def duration_ms(text: str) -> float:
    """The exporter's ``d.hh:mm:ss.fff`` (``_utils.ns_to_duration``) → milliseconds."""
    days, _, clock = text.partition(".")
    hours, minutes, seconds = clock.split(":")
    return ((int(days) * 24 + int(hours)) * 60 + int(minutes)) * 60_000 + float(seconds) * 1000


def spans_from(envelopes: Iterable[Mapping[str, Any]]) -> list[Span]:
    spans = []
    for envelope in envelopes:
        if envelope.get("name") not in (REQUEST_ENVELOPE, DEPENDENCY_ENVELOPE):
            continue
        base = envelope["data"]["baseData"]
        tags = envelope.get("tags") or {}
        spans.append(
            Span(
                kind="request" if envelope["name"] == REQUEST_ENVELOPE else "dependency",
                name=base["name"],
                span_id=base["id"],
                trace_id=tags["ai.operation.id"],
                parent_id=tags.get("ai.operation.parentId"),
                start=parse_time(envelope["time"]),
                duration_ms=duration_ms(base["duration"]),
                success=bool(base["success"]),
                properties=dict(base.get("properties") or {}),
                target=base.get("target"),
                type=base.get("type"),
                role=tags.get("ai.cloud.role"),
            )
        )
    return spans


def trace_of(spans: Iterable[Span], root_run_id: str) -> list[Span]:
    """Every span in the trace whose root request is the run ``root_run_id``."""
    spans = list(spans)
    root = next(s for s in spans if s.kind == "request" and s.run_id == root_run_id)
    return [s for s in spans if s.trace_id == root.trace_id]


def events_in(envelopes: Iterable[Mapping[str, Any]], trace_id: str) -> list[tuple[str, str, str | None]]:
    """(event name, run id, operation parent id) of the custom events stored in a trace."""
    found = []
    for envelope in envelopes:
        tags = envelope.get("tags") or {}
        if envelope.get("name") == EVENT_ENVELOPE and tags.get("ai.operation.id") == trace_id:
            base = envelope["data"]["baseData"]
            found.append(
                (base["name"], base["properties"].get("run_id", ""), tags.get("ai.operation.parentId"))
            )
    return found


def tree(spans: list[Span]) -> list[tuple[int, Span]]:
    """(depth, span) in timeline order, children under their parent (what the transaction view lists)."""
    children: dict[str | None, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[int, Span]] = []

    def visit(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: (s.start, s.phase != "queue")):
            ordered.append((depth, span))
            visit(span.span_id, depth + 1)

    visit(None, 0)
    return ordered
