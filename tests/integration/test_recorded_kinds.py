"""Every kind of AML job Microsoft's recordings show, through ``function_app`` and the loopback fakes.

The runs are ``tests/data/aml/kinds/*.json`` (each names the recording it comes from; the README
there lists them). Each record is compared, field for field, with values read by hand from those
recordings: the comment beside a value names the answer field it comes from. Times are the
recordings' strings, turned into epoch milliseconds by :func:`ms` (independent of the code).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tests.fakes.retail_prices import price_of
from tests.integration.conftest import App, sample_event
from tests.integration.host import invoke

WS = {
    "subscriptions": "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b",
    "resourceGroup": "sample",
    "amlWorkSpace": "sample-ws",
}
EVENT_TYPE = "Microsoft.MachineLearningServices.RunStatusChanged"


def ms(text: str) -> str:
    """``2023-02-12T05:00:07.6841599+00:00`` → epoch milliseconds (as customDimensions spell them)."""
    head, _, fraction = text.removesuffix("+00:00").removesuffix("Z").partition(".")
    whole = datetime.fromisoformat(head).replace(tzinfo=UTC)
    seconds = Decimal(int(whole.timestamp())) + Decimal(f"0.{fraction or '0'}")
    return str(round(seconds * 1000))


def live_at(text: str) -> dict[str, str]:
    """The status time and origin a live record carries (amlobs.status_time), to the millisecond."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(ms(text)))
    return {
        "status_time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "status_time_utc_ms": ms(text),
        "record_source": "live",
    }


def cost(hourly: Decimal, nodes: int, seconds: str) -> str:
    """hourly × nodes × seconds / 3600, to six decimals (round half up), as the record spells it."""
    return str(
        (hourly * nodes * Decimal(seconds) / 3600).quantize(Decimal("0.000001"), rounding="ROUND_HALF_UP")
    )


# The fake's cpu-cluster is Microsoft's recorded cluster (STANDARD_DS2_V2, Dedicated, Linux), placed in eastus.
DS2_V2 = price_of("eastus", "Standard_DS2_v2")


def diff_ms(later: str, earlier: str) -> str:
    return str(int(ms(later)) - int(ms(earlier)))


def record_of(app: App, kind: str, event_name: str) -> tuple[dict[str, Any], list[str]]:
    """Load a recorded kind, deliver one of its events; the record and the run history calls made."""
    spec = app.aml.workspace().load_kind(kind)
    app.aml.clear_records()
    event = spec["events"][event_name]
    invoke(event)
    [record] = [r for r in app.records() if r["event_id"] == event["id"]]
    calls = [f"{r.method} {r.path.rsplit('/workspaces/sample-ws', 1)[-1]}" for r in app.aml.requests]
    return record, [c for c in calls if not c.startswith("GET /msi/")]


def test_v2_pipeline_node_running_a_command(app: App) -> None:
    record, calls = record_of(app, "v2_pipeline", "command_node")

    assert record == {
        **WS,
        **live_at("2023-02-09T17:01:43.4139543+00:00"),  # the run's end (terminal status)
        "run_id": "7a5d9290-d4e1-4d9a-98c8-b0078a5bca04",
        "status": "Completed",
        "run_type": "azureml.StepRun",  # event runType = Run.runType
        "experimentName": "azure-ai-ml",
        "experimentId": "e1ba9c9f-b077-4a0b-94bc-0ac21660d4ba",
        "start_time_utc_ms": ms("2023-02-09T17:01:32.9590968+00:00"),
        "end_time_utc_ms": ms("2023-02-09T17:01:43.4139543+00:00"),
        "execution_time_ms": diff_ms(
            "2023-02-09T17:01:43.4139543+00:00", "2023-02-09T17:01:32.9590968+00:00"
        ),
        "target": "cpu-cluster",
        "compute_target_type": "AmlCompute",  # properties.ComputeTargetType
        "compute_target_type_raw": "AmlCompute",
        "compute_name": "cpu-cluster",  # Run.target
        "step_type": "PythonScriptStep",  # properties.StepType: the same for every v2 node
        # The component is anonymous (azureml.moduleName azureml_anonymous): the node's name
        "step_name": "hello_world_component_inline",
        "display_name": "hello_world_component_inline",
        "node_id": "a394d261",
        "pipelinerunid": "test_86111818450",
        "parent_run_id": "test_86111818450",
        "root_run_id": "test_86111818450",
        "snapshot_id": "8c5c1ef9-765b-4031-848c-e0a6c227bfc0",  # properties.ContentSnapshotId
        # /rundata runDefinition: script null, command set; environment name:version, no base image
        "script": "echo Hello World > DatasetOutputConfig:component_out_path/component_output",
        "docker_image": "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu:1",
        "environment": "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu:1",
        "job_kind": "pipeline_step",
        "run_type_v2_orchestrator": "Execution",
        "run_type_v2_attribution": "Aether",
        "run_type_v2_traits": "azureml.StepRun,scriptRun,remote,AlmostCommonRuntime,OsType:Linux,CommonRuntime",
        "created_time_utc_ms": ms("2023-02-09T17:01:08.2359257+00:00"),
        "queue_time_ms": diff_ms("2023-02-09T17:01:32.9590968+00:00", "2023-02-09T17:01:08.2359257+00:00"),
        "compute_duration_ms": "10455",  # Run.computeDuration 00:00:10.4548575
        # cpu-cluster's Linux dedicated hourly price × compute.instanceCount 1 × the compute duration
        "estimated_cost": cost(DS2_V2, 1, "10.455"),
        "cost_currency": "USD",
        "cost_basis": f"sku=Standard_DS2_v2; os=Linux; priority=dedicated; nodes=1; hourly_price={DS2_V2} USD; "
        "duration_s=10.455 (compute duration); region=eastus; compute=cluster cpu-cluster; "
        "meter=D2 v2/DS2 v2; retail list price",
        "event_id": "v2-command-node-completed",
        "event_time": "2023-02-09T17:01:43.413954Z",
        "event_type": EVENT_TYPE,
    }
    # /details has no definition for this v2 run: /rundata instead of GET /runs/{id}, two calls.
    assert [c for c in calls if "/runs/" in c or "/rundata" in c] == [
        "GET /runs/7a5d9290-d4e1-4d9a-98c8-b0078a5bca04/details",
        "POST /rundata",
    ]


def test_v2_pipeline_reused_node(app: App) -> None:
    record, _ = record_of(app, "v2_pipeline", "reused_node")

    assert record == {
        **WS,
        **live_at("2023-02-12T05:00:07.8874981+00:00"),  # the run's end
        "run_id": "9fd0d9f9-3a92-4168-bb40-339711114ed3",
        "status": "Completed",
        "run_type": "azureml.StepRun",
        "experimentName": "azure-ai-ml",
        "experimentId": "e1ba9c9f-b077-4a0b-94bc-0ac21660d4ba",
        "start_time_utc_ms": ms("2023-02-12T05:00:07.8393236+00:00"),
        "end_time_utc_ms": ms("2023-02-12T05:00:07.8874981+00:00"),
        "execution_time_ms": diff_ms(
            "2023-02-12T05:00:07.8874981+00:00", "2023-02-12T05:00:07.8393236+00:00"
        ),
        "created_time_utc_ms": ms("2023-02-12T05:00:07.8393236+00:00"),
        "queue_time_ms": "0",  # created and started at the same instant: nothing ran
        "compute_duration_ms": "48",  # 00:00:00.0481745
        "target": "cpu-cluster",
        "compute_name": "cpu-cluster",
        "compute_target_type": "AmlCompute",
        "compute_target_type_raw": "AmlCompute",
        "step_type": "PythonScriptStep",
        "step_name": "hello_world_component_inline",
        "display_name": "hello_world_component_inline",
        "node_id": "27b93a87",
        "pipelinerunid": "test_845087997000",
        "parent_run_id": "test_845087997000",
        "root_run_id": "test_845087997000",
        "snapshot_id": "8c5c1ef9-765b-4031-848c-e0a6c227bfc0",
        "is_reused": "true",  # properties.azureml.isreused
        "reused_run_id": "7a5d9290-d4e1-4d9a-98c8-b0078a5bca04",  # properties.azureml.reusedrunid
        # its output was computed by 7a5d9290: this run cost nothing
        "estimated_cost": "0.000000",
        "cost_currency": "USD",
        "cost_basis": "reused step: its output was computed earlier in run 7a5d9290-d4e1-4d9a-98c8-b0078a5bca04, "
        "this run used no compute",
        "job_kind": "pipeline_step",
        "run_type_v2_traits": "azureml.StepRun",  # orchestrator/attribution/computeType null
        "event_id": "v2-reused-node-completed",
        "event_time": "2023-02-12T05:00:07.887498Z",
        "event_type": EVENT_TYPE,
    }


def test_v2_pipeline_with_a_null_run_type_event_gets_its_summary(app: App) -> None:
    # Event Grid's documented sample has runType null: the summary is decided on the enriched record.
    record, calls = record_of(app, "v2_pipeline", "pipeline")

    assert record == {
        **WS,
        **live_at("2023-02-12T05:00:08.2305575+00:00"),  # the run's end
        "run_id": "test_845087997000",
        "status": "Completed",
        "run_type": "azureml.PipelineRun",  # properties.azureml.runsource
        "experimentName": "azure-ai-ml",
        "experimentId": "e1ba9c9f-b077-4a0b-94bc-0ac21660d4ba",
        # azureml.pipelines.stages Execution StartTime / EndTime
        "start_time_utc_ms": ms("2023-02-12T05:00:07.6841599+00:00"),
        "end_time_utc_ms": ms("2023-02-12T05:00:08.2305575+00:00"),
        "execution_time_ms": diff_ms(
            "2023-02-12T05:00:08.2305575+00:00", "2023-02-12T05:00:07.6841599+00:00"
        ),
        "created_time_utc_ms": ms("2023-02-12T05:00:07.0464553+00:00"),
        "queue_time_ms": diff_ms("2023-02-12T05:00:07.6841599+00:00", "2023-02-12T05:00:07.0464553+00:00"),
        "pipelinerunid": "test_845087997000",  # a pipeline run is its own pipeline
        "root_run_id": "test_845087997000",
        "job_kind": "pipeline",
        "run_source": "MFE",  # properties.runSource: submitted through the v2 job service
        "display_name": "test_845087997000",
        "cost_basis": "no estimate: a pipeline run's compute is its steps' (the AmlPipelineRunSummary sums them)",
        "event_id": "v2-pipeline-completed",
        "event_time": "2023-02-12T05:00:08.230557Z",
        "event_type": EVENT_TYPE,
    }
    [summary] = [e["properties"] for e in app.ingestion.events("AmlPipelineRunSummary")]
    assert summary["run_id"] == "test_845087997000"
    assert summary["step_count"] == "1"  # its one node, reused
    assert summary["reused_step_count"] == "1"
    assert summary["steps_execution_time_ms"] == "0"  # a reused node's time was spent earlier
    assert summary["sub_pipeline_count"] == "0"
    assert summary["pipeline_depth"] == "1"
    assert "slowest_step_run_id" not in summary
    assert summary["wall_time_ms"] == record["execution_time_ms"]
    assert summary["root_run_id"] == "test_845087997000"
    # Its one step was reused: an estimate of 0, not a missing one.
    assert (summary["estimated_cost"], summary["cost_currency"]) == ("0.000000", "USD")
    assert (summary["estimated_step_count"], summary["unestimated_step_count"]) == ("1", "0")
    assert summary["cost_basis"] == "sum of 1 step estimate(s)"
    # /details (no definition) → /rundata (the Run) → the children listing.
    assert [c.split("?")[0] for c in calls if "/runs" in c or "/rundata" in c] == [
        "GET /runs/test_845087997000/details",
        "POST /rundata",
        "GET /runs/test_845087997000/children",
    ]


def test_v2_command_job_on_a_cluster(app: App) -> None:
    record, _ = record_of(app, "v2_command_job", "command_job")

    assert record == {
        **WS,
        **live_at("2023-02-21T20:33:12.309891Z"),  # not terminal: the event's time
        "run_id": "test_829867244508",
        "status": "Starting",  # the recording's only status
        "experimentName": "mfe-test1",  # the job's experimentName; no experiment id is recorded
        "target": "testCompute",  # computeId .../computes/testCompute
        "compute_name": "testCompute",
        "compute_target_type": "AmlCompute",  # properties._azureml.ComputeTargetType amlctrain
        "compute_target_type_raw": "amlctrain",
        "script": 'echo "inputs dont need to be used in command"',  # the job's command
        # environmentId azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:33
        "docker_image": "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:33",
        "environment": "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:33",
        "job_kind": "command",
        "display_name": "test_829867244508",
        "root_run_id": "test_829867244508",
        "created_time_utc_ms": ms("2023-02-21T20:33:12.3098916+00:00"),
        "event_id": "v2-command-job-starting",
        "event_time": "2023-02-21T20:33:12.309891Z",
        "event_type": EVENT_TYPE,
    }


def test_serverless_job(app: App) -> None:
    record, _ = record_of(app, "serverless_job", "serverless_job")

    assert record == {
        **WS,
        **live_at("2023-02-21T20:33:22.211468Z"),  # not terminal: the event's time
        "run_id": "test_589279419362",
        "status": "Starting",
        "experimentName": "mfe-test1-dataset",
        # A cluster-type job (_azureml.ComputeTargetType amlctrain) that names no compute: serverless.
        "compute_target_type": "Serverless",
        "compute_target_type_raw": "amlctrain",
        "script": "pip freeze",
        "docker_image": "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:33",
        "environment": "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:33",
        "job_kind": "command",
        "display_name": "test_dataset_display_name1",
        "root_run_id": "test_589279419362",
        "created_time_utc_ms": ms("2023-02-21T20:33:22.211468+00:00"),
        "event_id": "serverless-job-starting",
        "event_time": "2023-02-21T20:33:22.211468Z",
        "event_type": EVENT_TYPE,
    }
    assert "compute_name" not in record and "target" not in record  # none named, none invented


def test_automl_parent(app: App) -> None:
    record, _ = record_of(app, "automl", "automl_parent")

    assert record == {
        **WS,
        **live_at("2023-03-08T17:14:42.000000Z"),  # Completed but no end time known: the event's time
        "run_id": "000000000000000000000",
        "status": "Completed",
        "run_type": "automl",  # properties.azureml.runsource
        "experimentName": "DPv2-classification-training-settings",
        "experimentId": "22188b48-2ffd-4809-b60f-746a48c96c16",
        "job_kind": "automl",  # properties.runTemplate AutoML
        "cost_basis": "no estimate: an AutoML job's compute is its trials' (each trial has its own estimate)",
        "display_name": "000000000000000000000",
        "root_run_id": "000000000000000000000",
        "created_time_utc_ms": ms("2023-03-08T17:07:38.826897+00:00"),
        "event_id": "automl-parent-completed",
        "event_time": "2023-03-08T17:14:42.000000Z",
        "event_type": EVENT_TYPE,
    }
    # An AutoML parent is not a pipeline: no summary.
    assert app.ingestion.events("AmlPipelineRunSummary") == []


def test_automl_trial_from_event_grids_own_sample(app: App) -> None:
    record, _ = record_of(app, "automl", "automl_trial")

    assert record == {
        **WS,
        **live_at("2017-06-26T18:41:00.958410Z"),  # Failed but no end time known: the event's time
        "run_id": "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5",
        "status": "Failed",  # runStatus "failed", normalised
        "experimentName": "automl-local-regression",
        "experimentId": "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1",
        "job_kind": "automl_trial",  # runProperties.runTemplate automl_child; runType is null
        "parent_run_id": "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc",
        "root_run_id": "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc",
        "cost_basis": "no estimate: run history does not say what compute the run used",
        "event_id": "831e1650-001e-001b-66ab-eeb76e069631",
        "event_time": "2017-06-26T18:41:00.958410Z",
        "event_type": EVENT_TYPE,
    }


def test_sweep_parent_and_trial(app: App) -> None:
    parent, _ = record_of(app, "sweep", "sweep_parent")
    assert parent == {
        **WS,
        **live_at("2023-04-08T23:36:18.000000Z"),  # not terminal: the event's time
        "run_id": "test_716267682714",
        "status": "Running",
        "run_type": "hyperdrive",  # properties.azureml.runsource
        "experimentName": "azure-ai-ml",
        "job_kind": "sweep",  # properties.runTemplate HyperDrive
        "target": "testCompute",
        "compute_name": "testCompute",
        "snapshot_id": "d6588597-291f-4b5f-8c97-f95112915cad",  # properties.ContentSnapshotId
        "display_name": "test_716267682714",
        "root_run_id": "test_716267682714",
        "created_time_utc_ms": ms("2023-04-08T23:33:16.0112513+00:00"),
        "event_id": "sweep-parent-running",
        "event_time": "2023-04-08T23:36:18.000000Z",
        "event_type": EVENT_TYPE,
    }

    trial, _ = record_of(app, "sweep", "sweep_trial")
    assert trial == {
        **WS,
        **live_at("2023-04-08T23:36:18.000000Z"),  # not terminal: the event's time
        "run_id": "test_716267682714_0",
        "status": "Running",
        "experimentName": "azure-ai-ml",
        "parent_run_id": "test_716267682714",  # Definition.ParentRunId
        "root_run_id": "test_716267682714",
        "target": "testCompute",
        "compute_name": "testCompute",
        "script": "python ./sweep_script.py --lr ${{search_space.lr}} --conv_size ${{search_space.conv_size}}"
        " --dropout_rate ${{search_space.dropout_rate}}",
        # Environment Name/Version (AssetId azureml://registries/azureml-dev/...; BaseImage null)
        "docker_image": "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:33",
        "environment": "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu:33",
        "display_name": "test_716267682714",
        "event_id": "sweep-trial-running",
        "event_time": "2023-04-08T23:36:18.000000Z",
        "event_type": EVENT_TYPE,
    }


def test_designer_step(app: App) -> None:
    record, calls = record_of(app, "designer_step", "designer_step")

    assert record == {
        **WS,
        **live_at("2020-06-07T19:20:05.2500000+00:00"),  # the run's end
        "run_id": "c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f",
        "status": "Completed",
        "run_type": "azureml.StepRun",
        "experimentName": "experimentName",
        "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a7",
        "start_time_utc_ms": ms("2020-06-07T19:16:20.0000000+00:00"),
        "end_time_utc_ms": ms("2020-06-07T19:20:05.2500000+00:00"),
        "execution_time_ms": "225250",
        "created_time_utc_ms": ms("2020-06-07T19:16:16.0000000+00:00"),
        "queue_time_ms": "4000",
        "target": "cpu-cluster",
        "compute_name": "cpu-cluster",
        "compute_target_type": "AmlCompute",
        "compute_target_type_raw": "AmlCompute",
        "step_type": "PythonScriptStep",
        "step_name": "train",  # properties.azureml.moduleName
        "display_name": "train",
        "node_id": "7c8d9e0f",
        "pipelinerunid": "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35",
        "parent_run_id": "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35",
        "root_run_id": "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35",
        "snapshot_id": "119c3ec1-9e46-46d2-8236-5f533e84a799",
        "script": "train.py",  # no definition anywhere: the run's scriptName
        "is_reused": "false",
        "job_kind": "pipeline_step",
        # The listing entry of the sample's Designer step reports neither compute nor computeRequest, and it
        # has no definition: the node count is unknown, so no estimate (never an assumed 1).
        "cost_basis": "no estimate: run history does not say how many nodes the run used",
        "event_id": "designer-step-completed",
        "event_time": "2020-06-07T19:20:05.250000Z",
        "event_type": EVENT_TYPE,
    }
    assert any(c.startswith("POST /rundata") for c in calls)


def test_failed_run_keeps_the_inner_error_chain(app: App) -> None:
    record, _ = record_of(app, "failed_run", "failed_node")

    assert record == {
        **WS,
        **live_at("2022-08-06T11:16:48.1243444+00:00"),  # the run's end
        "run_id": "xxxxxxxxxxxxxxx",
        "status": "Failed",
        "run_type": "azureml.StepRun",
        "experimentName": "azure-ai-ml",
        "experimentId": "e1ba9c9f-b077-4a0b-94bc-0ac21660d4ba",
        "end_time_utc_ms": ms("2022-08-06T11:16:48.1243444+00:00"),
        "target": "cpu-cluster",
        "compute_name": "cpu-cluster",
        "compute_target_type": "AmlCompute",
        "compute_target_type_raw": "AmlCompute",
        "step_type": "PythonScriptStep",
        "script": "echo Hello World > DatasetOutputConfig:component_out_path/component_output",
        "docker_image": "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu:1",
        "environment": "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu:1",
        "job_kind": "pipeline_step",
        "run_type_v2_orchestrator": "Execution",
        "run_type_v2_attribution": "Aether",
        "run_type_v2_traits": "azureml.StepRun,scriptRun,remote,AlmostCommonRuntime,OsType:Linux,CommonRuntime",
        "root_run_id": "xxxxxxxxxxxxxxx",
        "error_category": "ServiceError",  # error.error.code
        "error_code": "CommonRuntimeJobError",  # the innermost error.error.innerError...code
        "error_code_chain": "ServiceError > OrchestrateJobError > CommonRuntimeJobError",
        "error_message": "AzureMLCompute job failed.\nOrchestrateJobError: Failed to execute command group with"
        " error Got CommonRuntimeJobError from executing command: \nDocker container"
        " `xxxxxxxx-execution-wrapper` failed with status code `1` due to response error: \nNone",
        # The run failed before it started: no start time, no compute duration, nothing to bill.
        "cost_basis": "no estimate: run history gives neither a compute duration nor start and end times",
        "event_id": "failed-node",
        "event_time": "2022-08-06T11:16:48.124344Z",
        "event_type": EVENT_TYPE,
    }
    assert "step_name" not in record  # anonymous component, node name not reported: unknown


def test_v1_step_reads_its_definition_from_details_without_run_data(app: App) -> None:
    app.aml.clear_records()
    invoke(sample_event("step_run_completed"))

    history = [f"{r.method} {r.path.rsplit('/sample-ws', 1)[-1]}" for r in app.aml.requests_to("/history/")]
    assert history == [
        "GET /runs/9a9d8f51-1e44-4c23-b0a0-8246046eeb28/details",
        "GET /runs/9a9d8f51-1e44-4c23-b0a0-8246046eeb28",
    ]
    [record] = app.records()
    assert record["script"] == "sampleStep.py"  # runDefinition.script of /details
    assert record["docker_image"] == "mcr.microsoft.com/azureml/base:intelmpi2018.3-ubuntu16.04"
    assert (
        record["environment"]
        == "Experiment experimentName Environment:Autosave_2020-06-07T19:15:41Z_3d2b8e61"
    )
    assert record["step_name"] == "sampleStep.py"
    assert record["compute_duration_ms"] == "111"  # Run.computeDuration 00:00:00.1110000
