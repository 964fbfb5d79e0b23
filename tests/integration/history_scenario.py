"""A month of AML history recorded the three ways it reaches Application Insights, with its ground truth.

1. ``backfill --since 30d`` (the CLI) of two workspaces: a month of pipeline runs, some failed, one
   still running, one much slower than usual that finished ten minutes ago;
2. a day of live events through ``function_app`` (the host's own converter): on-time and late ones
   (an Event Grid retry hours after the status changed), a late *intermediate* status delivered after
   the run's terminal one, a failure whose record ingestion holds twice (a client timeout on a POST
   that ingestion had stored), an invocation that fails and is redelivered, a rejected event;
3. ``replay`` (the CLI) of a dead-letter blob: failures from two days and from four minutes ago.

While building the runs the scenario writes down what a correct dashboard must show: one
:class:`Status` per (workspace, run, status) at the time that status changed, and one :class:`Summary`
per finished pipeline run. Times are relative to the real clock (``t0``): the envelopes are real
sends, whose ``timestamp`` is the real time of sending.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from amlobs import runtime
from amlobs.events import RUN_STATUS_CHANGED, TERMINAL_STATUSES
from amlobs.records import parse_utc
from tests.fakes.aml_api import SAMPLE_SUBSCRIPTION, FakeAmlApi, FakeWorkspace, Fault, start_aml_api
from tests.fakes.azure_monitor_metrics import MetricsData
from tests.fakes.azurite import Azurite
from tests.fakes.ingestion import IngestionServer
from tests.fakes.retail_prices import price_of
from tests.integration.host import invoke
from tests.integration.test_cli import dead_letter_blob, run_cli
from tests.kql_engine import Invocation, custom_events, custom_metrics, requests, spans

MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
FUNCTION = "aml_run_events"
# The hourly price each (workspace, cluster) is estimated at: the sample workspace's cpu-cluster is a
# dedicated Standard_DS2_v2, its gpu-cluster a low-priority Standard_NC6s_v3 (billed at the Spot rate);
# old-ws has no compute resources at all (its runs get no estimate).
HOURLY = {
    ("sample-ws", "cpu-cluster"): price_of("eastus", "Standard_DS2_v2"),
    ("sample-ws", "gpu-cluster"): price_of("eastus", "Standard_NC6s_v3", kind="Spot"),
}


def step_cost(workspace: str, run: dict[str, Any]) -> Decimal | None:
    """What a finished step's estimate must be: hourly price × 1 node × its duration, to six decimals."""
    hourly = HOURLY.get((workspace, run.get("target") or ""))
    start, end = parse_utc(run.get("startTimeUtc")), parse_utc(run.get("endTimeUtc"))
    if hourly is None or start is None or end is None or run["status"] not in TERMINAL_STATUSES:
        return None
    exact = hourly * Decimal(_ms(end - start)) / Decimal(3_600_000)
    return exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Status:
    """One (workspace, run, status) as the dashboard must count it."""

    workspace: str
    run_id: str
    run_type: str
    pipeline: str
    pipeline_run_id: str
    status: str
    at: datetime  # when the status changed
    source: str
    created: datetime
    start: datetime | None
    end: datetime | None
    target: str | None
    compute_target_type: str | None
    cost: Decimal | None = None  # the estimate of a finished step (None: none, or not finished)
    parent_run_id: str | None = None  # a step's pipeline run, a nested sub-pipeline's parent

    @property
    def execution_ms(self) -> int | None:
        return None if self.start is None or self.end is None else _ms(self.end - self.start)

    @property
    def queue_ms(self) -> int | None:
        return None if self.start is None else _ms(self.start - self.created)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Summary:
    workspace: str
    run_id: str
    pipeline: str
    status: str
    at: datetime
    source: str
    wall_ms: int
    queue_ms: int
    cost: Decimal | None = None  # the sum of its steps' estimates (None: some step has none)


@dataclass(frozen=True)
class ResourceUse:
    """One finished run as the resource-use pass must judge it (its AmlRunResourceUse event)."""

    workspace: str
    run_id: str
    pipeline: str
    pipeline_run_id: str
    step: str
    target: str
    at: datetime  # the run's end: its status time
    outcome: str  # measured, too_short, no_data
    cost: Decimal | None
    gpu: list[float] = field(default_factory=list)  # per-minute samples served (one node)
    cpu: list[float] = field(default_factory=list)

    @property
    def gpu_avg(self) -> float | None:
        return sum(self.gpu) / len(self.gpu) if self.gpu else None

    @property
    def cpu_avg(self) -> float | None:
        return sum(self.cpu) / len(self.cpu) if self.cpu else None

    def _idle(self, average: float | None) -> Decimal | None:
        if average is None or self.cost is None:
            return None
        busy = Decimal(str(average)) / 100
        return (self.cost * (1 - busy)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)

    @property
    def idle_gpu(self) -> Decimal | None:
        return self._idle(self.gpu_avg) if self.target == "gpu-cluster" else None

    @property
    def idle_cpu(self) -> Decimal | None:
        return self._idle(self.cpu_avg) if self.target != "gpu-cluster" else None


@dataclass
class History:
    t0: datetime
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    statuses: dict[tuple[str, str, str], Status] = field(default_factory=dict)
    summaries: dict[tuple[str, str], Summary] = field(default_factory=dict)
    invocations: list[Invocation] = field(default_factory=list)
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    rejected_reasons: list[str] = field(default_factory=list)
    # Runs the checks single out, by role.
    runs: dict[str, str] = field(default_factory=dict)
    # Finished runs the resource-use pass judged (due: ended at least 15 minutes before it ran).
    resource_uses: dict[tuple[str, str], ResourceUse] = field(default_factory=dict)
    # (workspace, cluster, day) -> idle node-hours the pass priced (days: the two before it ran, less 1 h).
    idle_days: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "customEvents": custom_events(self.envelopes),
            "customMetrics": custom_metrics(self.envelopes),
            # In Azure both land in requests: the host's invocations and the pipeline runs' root spans.
            "requests": requests(self.invocations) + spans(self.envelopes, "requests"),
            "dependencies": spans(self.envelopes, "dependencies"),
        }


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key(run: dict[str, Any], name: str) -> str | None:
    """A property or tag of the run, whatever the case of its key (run history's are not consistent)."""
    for bag in (run.get("properties") or {}, run.get("tags") or {}):
        for key, value in bag.items():
            if key.lower() == name.lower() and value:
                return str(value)
    return None


def _time(run: dict[str, Any], key: str) -> datetime | None:
    return parse_utc(run.get(key))


class Builder:
    def __init__(self, aml: FakeAmlApi, ingestion: IngestionServer, work: Path) -> None:
        self.aml = aml
        self.ingestion = ingestion
        self.work = work
        self.history = History(t0=datetime.now(UTC).replace(microsecond=0))
        self.t0 = self.history.t0
        self._served: dict[tuple[str, str], tuple[list[float], list[float]]] = {}

    # -- runs in the fake run history ------------------------------------------------------------
    def pipeline(
        self,
        ws: FakeWorkspace,
        name: str,
        *,
        ended: timedelta | None = None,
        started: timedelta | None = None,
        status: str = "Completed",
        steps: int = 2,
        step_seconds: float = 20.0,
        target: str = "cpu-cluster",
        extra_step_queue: timedelta = timedelta(0),
        run_id: str | None = None,
        parent: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A pipeline run that ended ``ended`` before t0 (or, running, started ``started`` before t0);
        a sub-pipeline nested in ``parent`` if given."""
        if ended is not None:
            length = timedelta(seconds=6 + steps * (6 + step_seconds))  # the fake's created → end
            created = self.t0 - ended - length
        else:
            assert started is not None
            created = self.t0 - started - timedelta(seconds=4)
        pipeline, step_runs = ws.add_pipeline_run(
            name,
            steps=steps,
            created=created,
            status=status,
            step_seconds=step_seconds,
            target=target,
            run_id=run_id,
            parent=parent,
        )
        for step in step_runs:  # a longer wait for compute than the fake's default
            moved = _iso(parse_utc(step["createdUtc"]) - extra_step_queue)  # type: ignore[operator]
            step["createdUtc"] = ws.details[step["runId"]]["createdTimeUtc"] = moved
        return pipeline, step_runs

    def _status(self, ws: FakeWorkspace, run: dict[str, Any], status: str, at: datetime, source: str) -> None:
        key = (ws.name, run["runId"], status)
        if key in self.history.statuses:
            return  # recorded once, whatever path brought it again
        # The fake keeps it where the recordings do (a property); older runs had it as a tag.
        pipeline_run_id = _key(run, "azureml.pipelinerunid") or run["runId"]
        self.history.statuses[key] = Status(
            workspace=ws.name,
            run_id=run["runId"],
            run_type=run["runType"],
            pipeline=ws.experiments[run["experimentId"]]["name"],
            pipeline_run_id=pipeline_run_id,
            status=status,
            at=at,
            source=source,
            created=_time(run, "createdUtc"),  # type: ignore[arg-type]
            start=_time(run, "startTimeUtc"),
            end=_time(run, "endTimeUtc"),
            target=run.get("target"),
            compute_target_type=_key(run, "computeTargetType"),
            cost=step_cost(ws.name, run) if status in TERMINAL_STATUSES else None,
            parent_run_id=run.get("parentRunId"),
        )
        # Only a top-level pipeline run is summarised; its steps are those of its sub-pipelines too.
        if (
            run["runType"] == "azureml.PipelineRun"
            and not run.get("parentRunId")
            and status in TERMINAL_STATUSES
        ):
            start, end = _time(run, "startTimeUtc"), _time(run, "endTimeUtc")
            assert start is not None and end is not None
            step_costs = [
                step_cost(ws.name, step)
                for step in ws.runs.values()
                if step.get("rootRunId") == run["runId"] and step["runType"] != "azureml.PipelineRun"
            ]
            known = [c for c in step_costs if c is not None]
            self.history.summaries.setdefault(
                (ws.name, run["runId"]),
                Summary(
                    workspace=ws.name,
                    run_id=run["runId"],
                    pipeline=ws.experiments[run["experimentId"]]["name"],
                    status=status,
                    at=end,
                    source=source,
                    wall_ms=_ms(end - start),
                    queue_ms=_ms(start - _time(run, "createdUtc")),  # type: ignore[operator]
                    # a partial sum is not the pipeline's cost (it is sent as estimated_cost_lower_bound)
                    cost=sum(known, Decimal(0)) if known and len(known) == len(step_costs) else None,
                ),
            )

    # -- the three paths -------------------------------------------------------------------------
    def backfill(self, ws: FakeWorkspace) -> None:
        code, _out, err = run_cli(
            "backfill", "--workspace", ws.resource_id, "--since", "30d",
            "--checkpoint", str(self.work / f"backfill-{ws.name}.json"), "--concurrency", "4",
        )  # fmt: skip
        assert code == 0, err
        for run in ws.runs.values():
            if _time(run, "createdUtc") < self.t0 - 30 * DAY:  # type: ignore[operator]
                continue  # the 2020 sample's runs: older than --since
            status = run["status"]
            # The run's own times: it reached a terminal status when it ended, Running when it started.
            at = _time(run, "endTimeUtc") if status in TERMINAL_STATUSES else _time(run, "startTimeUtc")
            assert at is not None
            self._status(ws, run, status, at, "backfill")

    def event(self, ws: FakeWorkspace, run: dict[str, Any], status: str, at: datetime) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "topic": ws.resource_id,
            "subject": f"experiments/{run['experimentId']}/runs/{run['runId']}",
            "eventType": RUN_STATUS_CHANGED,
            "eventTime": _iso(at),
            "dataVersion": "2",
            "metadataVersion": "1",
            "data": {
                "runStatus": status,
                "experimentId": run["experimentId"],
                "experimentName": ws.experiments[run["experimentId"]]["name"],
                "runId": run["runId"],
                "runType": run["runType"],
                "runTags": run.get("tags") or {},
                "runProperties": run.get("properties") or {},
            },
        }

    def invoke(self, event: dict[str, Any] | str) -> bool:
        started, clock = datetime.now(UTC), time.perf_counter()
        try:
            invoke(event)
            succeeded = True
        except Exception:
            succeeded = False
        self.history.invocations.append(
            Invocation(
                FUNCTION, started, timedelta(seconds=time.perf_counter() - clock), succeeded, uuid.uuid4().hex
            )
        )
        return succeeded

    def live(
        self, ws: FakeWorkspace, run: dict[str, Any], status: str, *, late_by: timedelta = timedelta(0)
    ) -> None:
        """Deliver the event of ``status``; its time is the run's (start, or end + 1 s) plus ``late_by``
        (an intermediate status AML reports after the run's recorded end)."""
        terminal = status in TERMINAL_STATUSES or status == "Finalizing"
        base = _time(run, "endTimeUtc") if terminal else _time(run, "startTimeUtc")
        assert base is not None
        at = base + (timedelta(seconds=1) if status in TERMINAL_STATUSES else late_by)
        assert self.invoke(self.event(ws, run, status, at)), f"live {status} of {run['runId']} failed"
        self._status(ws, run, status, base if status in TERMINAL_STATUSES else at, "live")

    def live_pipeline(self, ws: FakeWorkspace, pipeline: dict[str, Any], steps: list[dict[str, Any]], *,
                      running: bool = False) -> None:  # fmt: skip
        status = pipeline["status"]
        if running:
            self.live(ws, pipeline, "Running")
            for step in steps:
                self.live(ws, step, "Running")
        for step in steps:
            self.live(ws, step, status)
        self.live(ws, pipeline, status)

    def live_with_a_duplicate_in_ingestion(self, ws: FakeWorkspace, run: dict[str, Any]) -> None:
        """Ingestion stores the first POST of the events but answers after the client gave up; the retry
        (inside the flush, or Event Grid's redelivery) sends them again: two copies, one status."""
        status = run["status"]
        event = self.event(ws, run, status, _time(run, "endTimeUtc") + timedelta(seconds=1))  # type: ignore[operator]
        self.ingestion.fail_with("slow", times=1, delay=2.0, matching="Event")
        if not self.invoke(event):
            self.invoke(event)  # Event Grid redelivers (it may be refused again: "maybe delivered")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._copies(run["runId"], status) < 2:
            time.sleep(0.1)
        self.ingestion.reset()
        copies = [e for e in self.ingestion.envelopes if _is_record(e, run["runId"], status)]
        assert copies, f"the {status} record of {run['runId']} never reached ingestion"
        if len(copies) == 1:
            # The processor avoided this duplicate. Ingestion has no idempotency, so some "maybe delivered"
            # POSTs still end up stored twice (issue 11): hold one the way ingestion would, so the queries
            # are still shown one.
            _post(
                self.ingestion,
                [envelope for envelope in self.ingestion.envelopes if envelope["time"] == copies[0]["time"]],
            )
        assert self._copies(run["runId"], status) == 2, "the scenario needs ingestion to hold a duplicate"
        self._status(ws, run, status, _time(run, "endTimeUtc"), "live")  # type: ignore[arg-type]

    def partial_copy_first(self, ws: FakeWorkspace, run: dict[str, Any]) -> None:
        """A partial record of the run's terminal status goes out first: run history answered 404 for an
        event judged old enough to take it as deleted. The complete copy follows (``live``, as a
        reconciler's would): the dashboards must show the complete one, whichever arrived first."""
        status = run["status"]
        event = self.event(ws, run, status, _time(run, "endTimeUtc") + timedelta(seconds=1))  # type: ignore[operator]
        hidden = ws.runs.pop(run["runId"]), ws.details.pop(run["runId"])
        with pytest.MonkeyPatch.context() as env:
            # No claim: the complete copy that follows must not find this run status recorded.
            env.delenv("AzureWebJobsStorage")
            env.setenv("AML_OBS_RUN_NOT_FOUND_GRACE_MINUTES", "0.001")
            runtime.reset_processor()
            try:
                assert self.invoke(event), f"the partial {status} record of {run['runId']} failed"
            finally:
                runtime.reset_processor()
        ws.runs[run["runId"]], ws.details[run["runId"]] = hidden
        partial = [
            e for e in self.ingestion.envelopes
            if _is_record(e, run["runId"], status) and "enrichment_error" in e["data"]["baseData"]["properties"]
        ]  # fmt: skip
        assert len(partial) == 1, "the scenario needs a partial copy in ingestion"

    def _copies(self, run_id: str, status: str) -> int:
        return sum(
            1
            for e in self.ingestion.events("AmlRunStatusChanged")
            if e["properties"].get("run_id") == run_id and e["properties"].get("status") == status
        )

    def replay(self, ws: FakeWorkspace, *runs: dict[str, Any]) -> None:
        events = []
        for run in runs:
            at = _time(run, "endTimeUtc")
            assert at is not None
            events.append(self.event(ws, run, run["status"], at + timedelta(seconds=1)))
        blob = self.work / "deadletter" / "blob.json"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_text(json.dumps(dead_letter_blob(*events)))
        code, _out, err = run_cli("replay", str(blob))
        assert code == 0, err
        for run in runs:
            self._status(ws, run, run["status"], _time(run, "endTimeUtc"), "replay")  # type: ignore[arg-type]

    # -- the resource-use pass ---------------------------------------------------------------------
    def metrics(
        self, ws: FakeWorkspace, step: dict[str, Any], *, gpu: Sequence[float] = (), cpu: Sequence[float] = ()
    ) -> None:
        """Serve a step's per-minute utilisation from the workspace's (fake) Azure Monitor metrics."""
        start = _time(step, "startTimeUtc")
        assert start is not None
        nodes: dict[str, list[Any]] = {}
        if gpu:
            nodes["GpuUtilizationPercentage"] = list(gpu)
        if cpu:
            nodes["CpuUtilizationPercentage"] = list(cpu)
        self.aml.metrics.setdefault(ws.name.lower(), MetricsData()).set_run(
            step["runId"], start, {"node-0": nodes}
        )
        self._served[(ws.name, step["runId"])] = (list(gpu), list(cpu))

    def resource_use_pass(self, ws: FakeWorkspace) -> None:
        """The timer function once; then what it must have judged: every run recorded live whose end is at
        least 15 minutes old (the pass's delay), except orchestrators."""
        passed = datetime.now(UTC)
        invoke(json.dumps({"Schedule": {}, "ScheduleStatus": None, "IsPastDue": False}), "aml_resource_use")
        last = (passed - HOUR).date() - DAY
        for day in (last, last - DAY):
            for cluster, metrics in self.aml.metrics[ws.name.lower()].clusters.items():
                hours = sum(float(v) for v in metrics.get("Idle Nodes", []) if isinstance(v, (int, float)))
                self.history.idle_days[(ws.name, cluster, day.isoformat())] = hours
        for status in self.history.statuses.values():
            if status.source != "live" or not status.terminal or status.run_type == "azureml.PipelineRun":
                continue
            assert status.end is not None and status.start is not None
            if status.end + 15 * MIN > passed:
                continue
            run = ws.runs[status.run_id]
            gpu, cpu = self._served.get((ws.name, status.run_id), ([], []))
            short = status.end - status.start < MIN
            self.history.resource_uses[(ws.name, status.run_id)] = ResourceUse(
                workspace=ws.name,
                run_id=status.run_id,
                pipeline=status.pipeline,
                pipeline_run_id=status.pipeline_run_id,
                step=_key(run, "azureml.moduleName") or "",
                target=status.target or "",
                at=status.end,
                outcome="too_short" if short else "measured" if gpu or cpu else "no_data",
                cost=status.cost,
                gpu=gpu,
                cpu=cpu,
            )

    def duplicate_resource_use(self, run_id: str) -> None:
        """Ingestion holds one resource-use event twice (a retried POST): the panels show it once."""
        [envelope] = [
            e
            for e in self.ingestion.envelopes
            if e.get("data", {}).get("baseData", {}).get("name") == "AmlRunResourceUse"
            and e["data"]["baseData"].get("properties", {}).get("run_id") == run_id
        ]
        _post(self.ingestion, [envelope])


def _is_record(envelope: dict[str, Any], run_id: str, status: str) -> bool:
    base = envelope.get("data", {}).get("baseData", {})
    properties = base.get("properties") or {}
    return base.get("name") == "AmlRunStatusChanged" and (
        properties.get("run_id"),
        properties.get("status"),
    ) == (
        run_id,
        status,
    )


def _post(ingestion: IngestionServer, envelopes: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{ingestion.endpoint}v2.1/track", data=json.dumps(envelopes).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def build(aml: FakeAmlApi, ingestion: IngestionServer, work: Path) -> History:
    b = Builder(aml, ingestion, work)
    a = aml.workspace()
    old = aml.add_workspace(SAMPLE_SUBSCRIPTION, "other-rg", "old-ws")
    runs = b.history.runs

    # 1. History, recorded by backfill.
    for days in (28, 25, 21, 14, 7, 3):
        # v2 job names are chosen by users: the same run id may exist in two workspaces (see old-ws below)
        same_name = "nightly-train-0412" if days == 14 else None
        pipeline, _ = b.pipeline(
            a, "train", ended=days * DAY + 3 * HOUR, step_seconds=500 if days == 21 else 20, run_id=same_name
        )
        if days == 21:
            runs["old-outlier"] = pipeline["runId"]
    for hours, seconds in zip((40, 32, 26, 20, 8, 2), (18, 19, 20, 21, 22, 22), strict=True):
        b.pipeline(a, "train", ended=hours * HOUR, step_seconds=seconds)  # the regression baseline
    runs["backfilled-slow"] = b.pipeline(a, "train", ended=10 * MIN, step_seconds=150)[0]["runId"]
    for days in (26, 12, 5):
        b.pipeline(
            a,
            "etl",
            ended=days * DAY,
            steps=1,
            step_seconds=30,
            target="gpu-cluster",
            extra_step_queue=10 * MIN,
        )
    runs["backfilled-old-failure"] = b.pipeline(
        a, "etl", ended=10 * DAY, status="Failed", steps=1, step_seconds=300, target="gpu-cluster"
    )[0]["runId"]
    runs["backfilled-recent-failure"] = b.pipeline(
        a, "etl", ended=10 * MIN, status="Failed", steps=1, step_seconds=300, target="gpu-cluster"
    )[0]["runId"]
    runs["backfilled-running"] = b.pipeline(a, "train", started=3 * HOUR, status="Running")[0]["runId"]
    b.pipeline(a, "etl", ended=2 * DAY + 5 * HOUR, status="Canceled", steps=1, target="gpu-cluster")
    b.pipeline(old, "train", ended=20 * DAY, steps=1, run_id="nightly-train-0412")
    b.backfill(a)
    b.backfill(old)

    # 2. A day of live events.
    early, early_steps = b.pipeline(a, "train", ended=18 * HOUR)
    aml.fail("GET", f"/runs/{early['runId']}/details", *[Fault(status=500)] * 3)
    failed_once = b.event(a, early, "Running", _time(early, "startTimeUtc"))  # type: ignore[arg-type]
    assert not b.invoke(failed_once), "run history answered 500: the invocation must fail"
    b.live_pipeline(a, early, early_steps, running=True)  # Event Grid redelivers: recorded once
    late_intermediate, late_steps = b.pipeline(a, "train", ended=6 * HOUR)
    b.live_pipeline(a, late_intermediate, late_steps, running=True)
    b.live(a, late_intermediate, "Finalizing", late_by=5 * MIN)  # after Completed, dated after the run's end
    b.live(a, late_steps[0], "Finalizing", late_by=5 * MIN)
    runs["late-intermediate"] = late_intermediate["runId"]
    runs["late-intermediate-step"] = late_steps[0]["runId"]
    slow, slow_steps = b.pipeline(a, "train", ended=5 * MIN, step_seconds=150)
    for step in slow_steps:
        b.live(a, step, "Completed")
    b.live_with_a_duplicate_in_ingestion(a, slow)
    within_factor, within_factor_steps = b.pipeline(a, "train", ended=8 * MIN, step_seconds=70)
    b.live_pipeline(a, within_factor, within_factor_steps)  # slower than the p95, not by the factor
    runs["live-slow"] = slow["runId"]
    late_slow, late_slow_steps = b.pipeline(a, "train", ended=3 * HOUR, step_seconds=60)
    b.live_pipeline(a, late_slow, late_slow_steps)
    runs["late-slow"] = late_slow["runId"]
    failure, failure_steps = b.pipeline(
        a, "etl", ended=5 * MIN, status="Failed", steps=1, step_seconds=300, target="gpu-cluster"
    )
    b.live_with_a_duplicate_in_ingestion(a, failure_steps[0])
    b.live_with_a_duplicate_in_ingestion(a, failure)
    runs["live-failure"] = failure["runId"]
    runs["live-failure-step"] = failure_steps[0]["runId"]  # its root cause: its only step failed
    # A pipeline run failing because its nested sub-pipeline failed: both recorded, one alert (the pipeline's).
    nesting, nesting_steps = b.pipeline(
        a, "etl", ended=6 * MIN, status="Failed", steps=1, step_seconds=300, target="gpu-cluster"
    )
    sub_pipeline, sub_steps = b.pipeline(
        a,
        "etl",
        ended=6 * MIN,
        status="Failed",
        steps=1,
        step_seconds=240,
        target="gpu-cluster",
        parent=nesting,
    )
    b.live_pipeline(a, sub_pipeline, sub_steps)
    b.live_pipeline(a, nesting, nesting_steps)
    runs["live-nested-failure"], runs["live-failed-sub-pipeline"] = nesting["runId"], sub_pipeline["runId"]
    # Its root cause: of its failed leaf steps (its own and the sub-pipeline's), the one that ended first.
    runs["live-nested-failure-step"] = min(
        (*nesting_steps, *sub_steps), key=lambda step: parse_utc(step["endTimeUtc"])
    )["runId"]
    late_failure, late_failure_steps = b.pipeline(
        a, "etl", ended=3 * HOUR, status="Failed", steps=1, step_seconds=300, target="gpu-cluster"
    )
    # Its step's and its own failure first went out partial (run history 404), then complete.
    b.partial_copy_first(a, late_failure_steps[0])
    b.partial_copy_first(a, late_failure)
    b.live_pipeline(a, late_failure, late_failure_steps)
    runs["late-failure"] = late_failure["runId"]
    twenty_late, twenty_late_steps = b.pipeline(
        a, "etl", ended=20 * MIN, status="Failed", steps=1, step_seconds=300, target="gpu-cluster"
    )
    b.live_pipeline(a, twenty_late, twenty_late_steps)  # later than the failure rule's 15-minute window
    runs["failure-20-min-late"] = twenty_late["runId"]
    long, long_steps = b.pipeline(a, "etl", ended=12 * HOUR, steps=1, step_seconds=7200, target="gpu-cluster")
    b.live_pipeline(a, long, long_steps, running=True)
    runs["long"] = long["runId"]
    not_a_workspace = b.event(a, early, "Completed", b.t0)
    not_a_workspace["topic"] = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st"
    )
    assert b.invoke(not_a_workspace)  # rejected: stored and counted, the invocation succeeds
    b.history.rejected_reasons.append("topic_not_workspace")

    # The resource-use pass: GPU steps at 5 %, 70 % and 20 % (the long one: expensive and mostly idle),
    # CPU steps at 25 %; the 20-second steps are too short for a sample; runs that ended minutes ago wait.
    b.metrics(a, late_failure_steps[0], gpu=[5.0] * 5)
    b.metrics(a, twenty_late_steps[0], gpu=[60.0, 70.0, 80.0, 70.0, 70.0])
    b.metrics(a, long_steps[0], gpu=[10.0, 30.0] * 60)
    b.metrics(a, late_slow_steps[0], cpu=[25.0])
    # Idle nodes: cpu-cluster keeps one node all day; gpu-cluster two for three hours (the scale-down delay).
    a_metrics = aml.metrics.setdefault(a.name.lower(), MetricsData())
    a_metrics.clusters = {
        "cpu-cluster": {"Idle Nodes": [1.0] * 24},
        "gpu-cluster": {"Idle Nodes": [0.0] * 10 + [2.0] * 3 + [0.0] * 11},
    }
    b.resource_use_pass(a)
    b.duplicate_resource_use(long_steps[0]["runId"])
    runs["idle-gpu-long"], runs["idle-gpu-cheap"] = long_steps[0]["runId"], late_failure_steps[0]["runId"]

    # 3. Dead letters, replayed.
    replayed = [
        b.pipeline(
            a, "etl", ended=40 * HOUR, status="Failed", steps=1, step_seconds=300, target="gpu-cluster"
        )[0],
        b.pipeline(a, "etl", ended=4 * MIN, status="Failed", steps=1, step_seconds=300, target="gpu-cluster")[
            0
        ],
        b.pipeline(a, "train", ended=20 * MIN, step_seconds=150)[0],
    ]
    b.replay(a, *replayed)
    runs["replayed-recent-failure"], runs["replayed-slow"] = replayed[1]["runId"], replayed[2]["runId"]

    b.history.envelopes = list(ingestion.envelopes)
    b.history.now = datetime.now(UTC) + timedelta(seconds=1)
    assert b.history.now - b.t0 < 4 * MIN, "the scenario took so long that its 'minutes ago' drifted"
    return b.history


@contextmanager
def recorded_history(azurite: Azurite, work: Path) -> Iterator[History]:
    """The scenario against fresh fakes, with the app settings the `app` fixture uses."""
    ingestion = IngestionServer().start()
    try:
        with pytest.MonkeyPatch.context() as env, start_aml_api() as aml:
            for name, value in aml.env().items():
                env.setenv(name, value)
            env.delenv("AML_OBS_API_ENDPOINT", raising=False)
            env.setenv("AzureWebJobsStorage", azurite.connection_string)
            env.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", ingestion.connection_string)
            env.setenv(
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING", f"Authorization=AAD;ClientId={aml.client_id}"
            )
            env.setenv("AML_OBS_HTTP_MAX_ATTEMPTS", "3")
            env.setenv("AML_OBS_HTTP_TIMEOUT_SECONDS", "1.5")
            env.setenv("AML_OBS_MAX_RETRY_AFTER_SECONDS", "2")
            env.chdir(work)
            azurite.clear()
            runtime.reset_processor()
            try:
                yield build(aml, ingestion, work)
            finally:
                runtime.reset_processor()
    finally:
        ingestion.close()
