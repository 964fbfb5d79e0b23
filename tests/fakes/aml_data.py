"""What the AML fake knows: workspaces, experiments, runs, their details and run definitions.

Shapes are the service's: ``Run`` and ``RunDetails`` carry every field of azure-ai-ml's run history
models (``azure/ai/ml/_restclient/runhistory/models/_models.py`` of azure-ai-ml 1.35.2, classes
``Run`` (63 fields) and ``RunDetails`` (41 fields)), in the order Microsoft's recordings show them.
Runs come from three places:

* the 2020 sample (``tests/data/aml/run_*.json``): the seed's SDK v1 step and pipeline runs;
* recorded kinds (``tests/data/aml/kinds/*.json``, ``load_case``): SDK v2 pipeline, command node,
  reused node, command job, serverless, AutoML, sweep, Designer step and a failed run, each naming
  the recording it comes from (``tests/data/aml/README.md``);
* generated pipelines (``add_pipeline_run``) for the paging, fault and volume tests.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "aml"
KINDS_DIR = DATA_DIR / "kinds"

# azure-ai-ml 1.35.2, _restclient/runhistory/models/_models.py: class Run (line 3119).
RUN_FIELDS: tuple[str, ...] = (
    "runNumber", "rootRunId", "createdUtc", "createdBy", "userId", "token", "tokenExpiryTimeUtc", "error",
    "warnings", "revision", "statusRevision", "runUuid", "parentRunUuid", "rootRunUuid", "hasVirtualParent",
    "lastStartTimeUtc", "currentComputeTime", "computeDuration", "effectiveStartTimeUtc", "lastModifiedBy",
    "lastModifiedUtc", "duration", "cancelationReason", "runId", "parentRunId", "experimentId", "status",
    "startTimeUtc", "endTimeUtc", "options", "isVirtual", "displayName", "name", "dataContainerId",
    "description", "hidden", "runType", "runTypeV2", "properties", "parameters", "actionUris", "scriptName",
    "target", "uniqueChildRunComputeTargets", "tags", "settings", "services", "inputDatasets",
    "outputDatasets", "runDefinition", "jobSpecification", "primaryMetricName", "createdFrom", "cancelUri",
    "completeUri", "diagnosticsUri", "computeRequest", "compute", "retainForLifetimeOfWorkspace",
    "queueingInfo", "activeChildRunId", "inputs", "outputs",
)  # fmt: skip
# Same file: class RunDetails (line 3549).
RUN_DETAILS_FIELDS: tuple[str, ...] = (
    "runId", "runUuid", "parentRunUuid", "rootRunUuid", "target", "status", "parentRunId", "createdTimeUtc",
    "startTimeUtc", "endTimeUtc", "error", "warnings", "tags", "properties", "parameters", "services",
    "inputDatasets", "outputDatasets", "runDefinition", "logFiles", "jobCost", "revision", "runTypeV2",
    "settings", "computeRequest", "compute", "createdBy", "computeDuration", "effectiveStartTimeUtc",
    "runNumber", "rootRunId", "userId", "statusRevision", "hasVirtualParent", "currentComputeTime",
    "lastStartTimeUtc", "lastModifiedBy", "lastModifiedUtc", "duration", "inputs", "outputs",
)  # fmt: skip

# The user the recordings show (tests/data/aml/kinds/v2_pipeline.json, createdBy).
RECORDED_USER = {
    "userObjectId": "b3a957de-450c-4ca7-b2aa-88dd98c87fef",
    "userPuId": "10037FFEAD05DD5D",
    "userIdp": None,
    "userAltSecId": None,
    "userIss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
    "userTenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "userName": "Sample User",
    "upn": None,
}
TERMINAL = ("Completed", "Failed", "Canceled")


def load_fixture(name: str) -> Any:
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


def load_kind(name: str) -> dict[str, Any]:
    """A recorded kind: ``{"_source": [...], "runs": [{"run", "details", "definition"?}], "events": {...}}``."""
    loaded: dict[str, Any] = json.loads((KINDS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def iso(moment: datetime) -> str:
    """.NET's round-trip format with an offset, as the recordings spell run history times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0+00:00")


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def shift_times(value: Any, delta: timedelta) -> Any:
    """A copy of a run history answer (or event) with every timestamp moved by ``delta`` (whole seconds),
    each keeping its spelling (fraction digits, ``Z`` or offset): the same run, recorded at another time."""
    if delta % timedelta(seconds=1):
        raise ValueError("shift by whole seconds: the fraction digits are kept as recorded")
    if isinstance(value, Mapping):
        return {key: shift_times(item, delta) for key, item in value.items()}
    if isinstance(value, list):
        return [shift_times(item, delta) for item in value]
    if isinstance(value, str) and (match := _ISO.match(value)):
        moved = datetime.fromisoformat(match[1]) + delta
        return f"{moved.isoformat(timespec='seconds')}{match[2] or ''}{match[3]}"
    return value


def timespan(seconds: float) -> str:
    """.NET TimeSpan text, as ``computeDuration``/``duration`` are spelled."""
    whole = int(seconds)
    return (
        f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}.{round((seconds - whole) * 1e7):07d}"
    )


def run_shape(
    run_id: str,
    experiment_id: str,
    *,
    run_type: str,
    status: str,
    created: datetime,
    start: datetime | None,
    end: datetime | None,
    parent: str | None,
    root: str,
    properties: dict[str, str],
    tags: dict[str, str],
    target: str | None,
    display: str,
    compute_type: str | None,
) -> dict[str, Any]:
    """A generated ``Run`` with every field of the model, valued as the recorded v2 node's are."""
    duration = timespan((end - start).total_seconds()) if start and end else None
    run: dict[str, Any] = dict.fromkeys(RUN_FIELDS)
    run.update(
        {
            "rootRunId": root,
            "createdUtc": iso(created),
            "createdBy": copy.deepcopy(RECORDED_USER),
            "userId": RECORDED_USER["userObjectId"],
            "revision": 3,
            "statusRevision": 2,
            "runUuid": str(uuid.uuid4()),
            "parentRunUuid": str(uuid.uuid4()) if parent else None,
            "rootRunUuid": str(uuid.uuid4()),
            "hasVirtualParent": False,
            "lastStartTimeUtc": iso(start) if start else None,
            "computeDuration": duration,
            "lastModifiedBy": copy.deepcopy(RECORDED_USER),
            "lastModifiedUtc": iso(end or start or created),
            "duration": duration,
            "runId": run_id,
            "parentRunId": parent,
            "experimentId": experiment_id,
            "status": status,
            "startTimeUtc": iso(start) if start else None,
            "endTimeUtc": iso(end) if end else None,
            "options": {"generateDataContainerIdIfNotSpecified": True},
            "isVirtual": False,
            "displayName": display,
            "name": display,
            "dataContainerId": f"dcid.{run_id}",
            "hidden": False,
            "runType": run_type,
            "runTypeV2": {
                "orchestrator": "Execution" if target else None,
                "traits": [run_type] if target else [],
                "attribution": "Aether" if target else None,
                "computeType": compute_type,
            },
            "properties": properties,
            "parameters": {},
            "actionUris": {},
            "target": target,
            "uniqueChildRunComputeTargets": [],
            "tags": tags,
            "settings": {},
            "services": {},
            "inputDatasets": [],
            "outputDatasets": [],
            "computeRequest": {"nodeCount": 1, "gpuCount": 0} if target else None,
            "compute": {
                "target": target,
                "targetType": "amlcompute",
                "vmSize": None,
                "instanceType": None,
                "instanceCount": 1,
                "gpuCount": 0,
                "priority": None,
                "region": None,
                "armId": None,
                "properties": None,
            }
            if target
            else None,
        }
    )
    return run


def details_from_run(run: Mapping[str, Any], definition: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``RunDetails`` of a ``Run``: every field of the model; ``runDefinition`` as given."""
    details = {key: copy.deepcopy(run.get(key)) for key in RUN_DETAILS_FIELDS}
    details["createdTimeUtc"] = run.get("createdUtc")
    details["runDefinition"] = copy.deepcopy(definition)
    details["logFiles"] = {}
    details["jobCost"] = None
    return details


def v1_definition(script: str, target: str | None) -> dict[str, Any]:
    """An SDK v1 ``RunDefinition`` (the sample step's, tests/data/aml/run_details_step_9a9d8f51.json)."""
    sample = load_fixture("run_details_step_9a9d8f51.json")["runDefinition"]
    definition: dict[str, Any] = copy.deepcopy(sample)
    definition["script"] = script
    definition["target"] = target
    return definition


@dataclass
class FakeWorkspace:
    subscription_id: str
    resource_group: str
    name: str
    arm_body: dict[str, Any]
    discovery_url: str | None = None  # None: the server's /discovery
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The run definition POST /rundata answers (None: the one in the run's details, if any).
    definitions: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    # ARM compute resources by lower-cased name (GET …/computes/{name}).
    computes: dict[str, dict[str, Any]] = field(default_factory=dict)
    # ARM schedule resources (GET …/schedules): see schedule_resource()
    schedules: list[dict[str, Any]] = field(default_factory=list)

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"
        )

    def add_compute(
        self,
        name: str,
        *,
        vm_size: str = "STANDARD_DS2_V2",
        priority: str = "Dedicated",
        os_type: str = "Linux",
        location: str = "eastus",
        compute_type: str = "AmlCompute",
    ) -> dict[str, Any]:
        """A compute resource as Resource Manager answers it: the recorded cluster (compute_amlcompute.json)
        with this name, size, priority, OS and region; a compute instance or Kubernetes compute from the
        spec examples (compute_instance.json, compute_kubernetes.json)."""
        fixture = {"AmlCompute": "compute_amlcompute.json", "ComputeInstance": "compute_instance.json"}.get(
            compute_type, "compute_kubernetes.json"
        )
        body: dict[str, Any] = load_fixture(fixture)
        body["id"] = f"{self.resource_id}/computes/{name}"
        body["name"] = name
        body["location"] = location
        if compute_type == "AmlCompute":
            body["properties"]["computeLocation"] = location
            inner = body["properties"]["properties"]
            inner.update(vmSize=vm_size, vmPriority=priority, osType=os_type)
        elif compute_type == "ComputeInstance":
            body["properties"]["properties"]["vmSize"] = vm_size
        self.computes[name.lower()] = body
        return body

    def add_experiment(self, name: str, experiment_id: str | None = None) -> dict[str, Any]:
        for existing in self.experiments.values():
            if existing["name"] == name:
                return existing
        experiment = {
            "experimentId": experiment_id or str(uuid.uuid4()),
            "name": name,
            "description": None,
            "createdUtc": "2020-06-01T08:02:11.8803517Z",
            "tags": {},
            "archivedTime": None,
            "retainForLifetimeOfWorkspace": False,
            "artifactLocation": None,
        }
        self.experiments[experiment["experimentId"]] = experiment
        return experiment

    def add_run(
        self,
        run: dict[str, Any],
        details: dict[str, Any] | None = None,
        definition: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a ``Run``; ``details`` defaults to a ``RunDetails`` derived from it; ``definition`` is
        what ``/rundata`` answers when the details carry none."""
        run_id = run["runId"]
        self.runs[run_id] = run
        self.details[run_id] = details if details is not None else details_from_run(run)
        self.definitions[run_id] = definition
        return run

    def run_data(self, run_id: str) -> dict[str, Any]:
        """``GetRunDataResult`` of a run."""
        definition = self.definitions.get(run_id) or self.details[run_id].get("runDefinition")
        return {
            "runMetadata": copy.deepcopy(self.runs[run_id]),
            "runDefinition": copy.deepcopy(definition),
            "jobSpecification": None,
            "systemSettings": None,
        }

    def load_kind(self, name: str, *, shift: timedelta | None = None) -> dict[str, Any]:
        """Serve a recorded kind's runs (experiments added by id); returns the kind (its events).

        ``shift`` moves every time of the runs and events (the pipeline traces' tests need runs inside
        ingestion's 48-hour window; the recordings are from 2023)."""
        kind = load_kind(name)
        if shift is not None:
            kind = shift_times(kind, shift)
        for entry in kind["runs"]:
            run = copy.deepcopy(entry["run"])
            if run.get("experimentId"):
                experiment = next(
                    (
                        e["data"].get("experimentName")
                        for e in kind["events"].values()
                        if e["data"].get("experimentId") == run["experimentId"]
                    ),
                    None,
                )
                self.add_experiment(experiment or run["experimentId"], run["experimentId"])
            self.add_run(run, copy.deepcopy(entry.get("details")), copy.deepcopy(entry.get("definition")))
        return kind

    def add_pipeline_run(
        self,
        experiment_name: str = "experimentName",
        *,
        steps: int = 3,
        run_id: str | None = None,
        created: datetime | None = None,
        status: str = "Completed",
        step_seconds: float = 20.0,
        target: str = "cpu-cluster",
        parent: dict[str, Any] | None = None,
        node_template: Mapping[str, Any] | None = None,
        reused: Collection[int] = (),
        failed: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A pipeline run (a sub-pipeline of ``parent`` if given) and ``steps`` step runs, shaped like
        the recorded v2 pipeline's, queued then run in turn. v1 steps: their definition is in details.

        ``node_template``: a recorded kind's run entry (``{"run", "definition"}``, e.g. the v2 command
        node of ``kinds/v2_pipeline.json``): each step is a copy of it (its properties, compute,
        ``runTypeV2``) with the step's ids and times, its definition served by ``/rundata`` as v2 nodes'
        are. ``reused``: indices of steps reused from an earlier run (``azureml.isreused``, created and
        started at once, done 48 ms later, as the recorded reused node). ``failed``: index → the
        ``RunHistoryErrorResponse`` of a step that failed (its pipeline run still ends with ``status``).
        """
        failed = failed or {}
        experiment = self.add_experiment(experiment_name)
        created = created or datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
        pipeline_id = run_id or str(uuid.uuid4())
        root = parent["rootRunId"] if parent else pipeline_id
        graph_id = str(uuid.uuid4())
        start = created + timedelta(seconds=4)
        step_runs: list[dict[str, Any]] = []
        cursor = start
        finished = status in TERMINAL
        for index in range(steps):
            step_id = str(uuid.uuid4())
            node_id = uuid.uuid4().hex[:8]
            step_start = cursor + timedelta(seconds=6)
            step_end = step_start + timedelta(seconds=step_seconds)
            if index in reused:  # the recorded reused node: created started, 48 ms (0.0481745 s)
                step_start, step_end = cursor, cursor + timedelta(microseconds=48_175)
            properties = {
                "azureml.runsource": "azureml.StepRun",
                "azureml.nodeid": node_id,
                "ContentSnapshotId": str(uuid.uuid4()),
                "StepType": "PythonScriptStep",
                "ComputeTargetType": "AmlCompute",
                "azureml.moduleName": f"step_{index}",
                "azureml.pipelinerunid": pipeline_id,
                "azureml.pipeline": graph_id,
                "_azureml.ComputeTargetType": "amlctrain",
            }
            if index in reused:
                properties.update({"azureml.isreused": "true", "azureml.reusedrunid": str(uuid.uuid4())})
            step = run_shape(
                step_id,
                experiment["experimentId"],
                run_type="azureml.StepRun",
                status=_step_status(index, status, failed, finished=finished),
                created=cursor,
                start=step_start,
                end=step_end if finished else None,
                parent=pipeline_id,
                root=root,
                properties=properties,
                tags={"azureml.pipeline": graph_id, "azureml.nodeid": node_id},
                target=target,
                display=f"step_{index}",
                compute_type="AmlcTrain",
            )
            if index in failed and finished:
                step["error"] = copy.deepcopy(dict(failed[index]))
            if node_template is not None:
                step = _v2_node(node_template["run"], step, index, reused=index in reused)
                self.add_run(step, details_from_run(step), copy.deepcopy(node_template.get("definition")))
            else:
                step["scriptName"] = f"step_{index}.py"
                self.add_run(step, details_from_run(step, v1_definition(f"step_{index}.py", target)))
            step_runs.append(step)
            cursor = step_end
        pipeline = run_shape(
            pipeline_id,
            experiment["experimentId"],
            run_type="azureml.PipelineRun",
            status=status,
            created=created,
            start=start,
            end=cursor + timedelta(seconds=2) if finished else None,
            parent=parent["runId"] if parent else None,
            root=root,
            properties={
                "azureml.runsource": "azureml.PipelineRun",
                "runSource": "SDK",
                "runType": "SDK",
                "azureml.parameters": "{}",
                "azureml.pipelineid": graph_id,
            },
            tags={"azureml.pipelineComponent": "pipelinerun"},
            target=None,
            display="pipeline",
            compute_type=None,
        )
        self.add_run(pipeline)
        return pipeline, step_runs


def _step_status(index: int, status: str, failed: Mapping[int, Any], *, finished: bool) -> str:
    """Every step ends as its pipeline did, unless some steps are said to fail: then the others complete."""
    if not finished or not failed:
        return status
    return "Failed" if index in failed else "Completed"


def _v2_node(
    template: Mapping[str, Any], step: Mapping[str, Any], index: int, *, reused: bool
) -> dict[str, Any]:
    """The recorded v2 node ``template`` as step ``index``: its own properties and envelope, with the
    generated step's ids, linkage, times, status, error and compute."""
    node = copy.deepcopy(dict(template))
    for key in (
        "runId", "parentRunId", "rootRunId", "experimentId", "status", "createdUtc", "startTimeUtc",
        "endTimeUtc", "lastStartTimeUtc", "lastModifiedUtc", "computeDuration", "duration", "error",
        "runUuid", "parentRunUuid", "rootRunUuid", "dataContainerId", "target",
    ):  # fmt: skip
        node[key] = copy.deepcopy(step.get(key))
    node["displayName"] = f"{template.get('displayName') or 'node'}_{index}"
    properties = dict(node.get("properties") or {})
    generated = step["properties"]
    properties.update(
        {
            "azureml.nodeid": generated["azureml.nodeid"],
            "azureml.pipelinerunid": generated["azureml.pipelinerunid"],
            "azureml.pipeline": generated["azureml.pipeline"],
            "ContentSnapshotId": generated["ContentSnapshotId"],
        }
    )
    if reused:
        properties.update(
            {"azureml.isreused": "true", "azureml.reusedrunid": generated["azureml.reusedrunid"]}
        )
    node["properties"] = properties
    node["tags"] = {**(node.get("tags") or {}), **step["tags"]}
    if isinstance(node.get("compute"), dict):
        node["compute"]["target"] = step.get("target")
    return node


def schedule_resource(
    workspace_id: str, name: str, trigger: dict[str, Any], *, enabled: bool = True
) -> dict[str, Any]:
    """A ``ScheduleResource`` as Schedules_List answers it: the 2023-06-01-preview spec example
    (examples/Schedule/list.json) with a pipeline job action, this name, trigger and enabled flag."""
    return {
        "id": f"{workspace_id}/schedules/{name}",
        "name": name,
        "type": "Microsoft.MachineLearningServices/workspaces/schedules",
        "properties": {
            "description": None,
            "tags": {},
            "properties": {},
            "displayName": name,
            "isEnabled": enabled,
            "trigger": trigger,
            "action": {"actionType": "CreateJob", "jobDefinition": {"jobType": "Pipeline"}},
            "provisioningState": "Succeeded",
        },
        "systemData": {
            "createdAt": "2026-01-01T00:00:00.000Z",
            "createdBy": "someone@example.com",
            "createdByType": "User",
            "lastModifiedAt": "2026-01-01T00:00:00.000Z",
            "lastModifiedBy": "someone@example.com",
            "lastModifiedByType": "User",
        },
    }
