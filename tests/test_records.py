"""Record mapping: the 2020 sample's record reproduced field for field from run history answers shaped
like the real API, time arithmetic, and the rule that an unknown value is absent, never invented."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amlobs.events import RUN_COMPLETED, parse_event
from amlobs.records import (
    EXTRA_FIELDS,
    RECORD_FIELDS,
    SEED_FIELDS,
    build_record,
    parse_utc_ms,
)
from amlobs.run_facts import MAX_ERROR_MESSAGE_CHARS
from amlobs.status_time import STATUS_TIME_FIELDS
from tests.test_events import SAMPLE_PIPELINE_EVENT, SAMPLE_STEP_EVENT, SAMPLE_TOPIC, json_values, wire_event

# The record of Azure-Samples/azure-machine-learning-pipeline-observability-sample (README.md), as
# published: every value a string there. Its experimentId lacks the last character of the event's
# ("...0a7"): a typo in the README, not a field of the run; the record takes the event's id.
SEED_RECORD: dict[str, str] = {
    "compute_target_type": "AmlCompute",
    "execution_time_ms": "111",
    "start_time_utc_ms": "1591557375869",
    "end_time_utc_ms": "1591557375980",
    "experimentName": "experimentName",
    "pipelinerunid": "096a41be-218d-4bdb-857d-be3222caa891",
    "docker_image": "mcr.microsoft.com/azureml/base:intelmpi2018.3-ubuntu16.04",
    "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a",
    "resourceGroup": "sample",
    "subscriptions": "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b",
    "amlWorkSpace": "sample-ws",
    "snapshot_id": "119c3ec1-9e46-46d2-8236-5f533e84a799",
    "step_type": "PythonScriptStep",
    "run_type": "azureml.StepRun",
    "node_id": "254c70df",
    "run_id": "9a9d8f51-1e44-4c23-b0a0-8246046eeb28",
    "target": "sample-compute",
    "script": "sampleStep.py",
    "status": "Completed",
}
NUMERIC_SEED_FIELDS = ("execution_time_ms", "start_time_utc_ms", "end_time_utc_ms")
SAMPLE_EXPERIMENT_ID = "eea3758a-4a75-42a7-b215-32739323a0a7"


def seed_record_as_built() -> dict[str, str | int]:
    """The seed record as build_record gives it: numbers as ints, the event's own experimentId."""
    expected: dict[str, str | int] = {
        k: int(v) if k in NUMERIC_SEED_FIELDS else v for k, v in SEED_RECORD.items()
    }
    expected["experimentId"] = SAMPLE_EXPERIMENT_ID
    return expected


STEP_RUN_ID = "9a9d8f51-1e44-4c23-b0a0-8246046eeb28"
PIPELINE_RUN_ID = "096a41be-218d-4bdb-857d-be3222caa891"

# GET .../experimentids/{id}/runs/{runId}/details (RunDetails of the run history API; the SDK v1's
# Run.get_details() answer): runDefinition is the v1 RunConfiguration, error an ErrorResponse.
STEP_RUN_DETAILS: dict[str, Any] = {
    "runId": STEP_RUN_ID,
    "runUuid": "3f0c1d52-7b7e-4f8e-9a5e-0c3a1b2d4e6f",
    "parentRunUuid": "a1b2c3d4-0000-4000-8000-000000000001",
    "rootRunUuid": "a1b2c3d4-0000-4000-8000-000000000001",
    "target": "sample-compute",
    "status": "Completed",
    "parentRunId": PIPELINE_RUN_ID,
    "createdTimeUtc": "2020-06-07T19:15:58.5123456+00:00",
    "startTimeUtc": "2020-06-07T19:16:15.869Z",
    "endTimeUtc": "2020-06-07T19:16:15.980Z",
    "error": None,
    "warnings": None,
    "tags": {
        "azureml.pipeline": "775ff4ae-c312-4533-b8df-d04a1ec09246",
        "azureml.pipelinerunid": PIPELINE_RUN_ID,
        "azureml.nodeid": "254c70df",
    },
    "properties": {
        "azureml.runsource": "azureml.StepRun",
        "ContentSnapshotId": "119c3ec1-9e46-46d2-8236-5f533e84a799",
        "StepType": "PythonScriptStep",
        "ComputeTargetType": "AmlCompute",
        "azureml.moduleid": "8c7f3d65-5e59-4f3a-9b21-3c2d6f0e1a77",
        "azureml.pipelinerunid": PIPELINE_RUN_ID,
        "azureml.nodeid": "254c70df",
        "_azureml.ComputeTargetType": "amlcompute",
        "ProcessInfoFile": "azureml-logs/process_info.json",
        "ProcessStatusFile": "azureml-logs/process_status.json",
    },
    "parameters": {},
    "inputDatasets": [],
    "outputDatasets": [],
    "runDefinition": {
        "script": "sampleStep.py",
        "command": "",
        "useAbsolutePath": False,
        "arguments": [],
        "sourceDirectoryDataStore": None,
        "framework": "Python",
        "communicator": "None",
        "target": "sample-compute",
        "dataReferences": {},
        "data": {},
        "outputData": {},
        "jobName": None,
        "maxRunDurationSeconds": None,
        "nodeCount": 1,
        "environment": {
            "name": "Experiment experimentName Environment",
            "version": "Autosave_2020-06-07T19:15:57Z_7d8bd0a0",
            "python": {
                "interpreterPath": "python",
                "userManagedDependencies": False,
                "condaDependencies": {
                    "name": "project_environment",
                    "dependencies": ["python=3.6.2", {"pip": ["azureml-defaults"]}],
                    "channels": ["anaconda", "conda-forge"],
                },
                "baseCondaEnvironment": None,
            },
            "environmentVariables": {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"},
            "docker": {
                "baseImage": "mcr.microsoft.com/azureml/base:intelmpi2018.3-ubuntu16.04",
                "platform": {"os": "Linux", "architecture": "amd64"},
                "baseDockerfile": None,
                "baseImageRegistry": {"address": None, "username": None, "password": None},
                "enabled": True,
                "arguments": [],
            },
            "spark": {"repositories": [], "packages": [], "precachePackages": True},
            "inferencingStackVersion": None,
        },
        "history": {"outputCollection": True, "directoriesToWatch": ["logs"], "snapshotProject": True},
        "amlCompute": {"name": None, "vmSize": None, "retainCluster": False, "clusterMaxNodeCount": 1},
    },
    "logFiles": {},
    "revision": 9,
    "computeDuration": "00:00:00.1110000",
    "runNumber": 1591557358,
    "rootRunId": PIPELINE_RUN_ID,
}
# GET .../experimentids/{id}/runs/{runId} (Run): the only answer with createdUtc.
STEP_RUN: dict[str, Any] = {
    "runNumber": 1591557358,
    "rootRunId": PIPELINE_RUN_ID,
    "createdUtc": "2020-06-07T19:15:58.5123456+00:00",
    "createdBy": {"userObjectId": "5c6a1e2f-0000-4000-8000-00000000beef", "userName": "Sample User"},
    "status": "Completed",
    "startTimeUtc": "2020-06-07T19:16:15.869Z",
    "endTimeUtc": "2020-06-07T19:16:15.980Z",
    "runId": STEP_RUN_ID,
    "parentRunId": PIPELINE_RUN_ID,
    "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a7",
    "displayName": "sampleStep.py",
    "runType": "azureml.StepRun",
    "target": "sample-compute",
    "scriptName": "sampleStep.py",
    "properties": STEP_RUN_DETAILS["properties"],
    "tags": STEP_RUN_DETAILS["tags"],
    "computeDuration": "00:00:00.1110000",
    "duration": "00:00:00.1110000",
    "hidden": False,
    "isVirtual": False,
}
CREATED_MS = 1591557358512  # 2020-06-07T19:15:58.512Z


def step_event(**overrides: Any) -> Any:
    return parse_event(wire_event(SAMPLE_STEP_EVENT, **overrides))


def test_record_keys_are_the_seed_keys_plus_the_design_extras() -> None:
    assert set(SEED_FIELDS) == set(SEED_RECORD)
    assert len(SEED_FIELDS) == 19
    assert {
        "event_id",
        "event_time",
        "parent_run_id",
        "created_time_utc_ms",
        "queue_time_ms",
        "error_code",
        "error_message",
        "enrichment_error",
    } <= set(EXTRA_FIELDS)
    # The cost keys are added by amlobs.cost_estimator to finished runs (issue 10).
    assert RECORD_FIELDS == SEED_FIELDS + EXTRA_FIELDS + STATUS_TIME_FIELDS + (
        "estimated_cost",
        "cost_currency",
        "cost_basis",
    )
    assert len(set(RECORD_FIELDS)) == len(RECORD_FIELDS)


def test_seed_record_reproduced_field_for_field() -> None:
    event = parse_event(SAMPLE_STEP_EVENT)  # the sample's own event, event_type key and all

    record = build_record(event, STEP_RUN_DETAILS, STEP_RUN)

    assert {k: record[k] for k in SEED_FIELDS if k in record} == seed_record_as_built()
    assert record["execution_time_ms"] == 111
    assert record["start_time_utc_ms"] == 1591557375869
    assert record["end_time_utc_ms"] == 1591557375980
    # ... and the extras, from the same answers
    assert {k: record[k] for k in EXTRA_FIELDS if k in record} == {
        "event_id": "8d2173-908c8-5785-9sa1d-da3922c2",
        "event_type": "Microsoft.MachineLearningServices.RunStatusChanged",
        "parent_run_id": PIPELINE_RUN_ID,
        "created_time_utc_ms": CREATED_MS,
        "queue_time_ms": 1591557375869 - CREATED_MS,
        # the fields SDK v2 jobs needed, filled for the v1 step from the same answers
        "root_run_id": PIPELINE_RUN_ID,  # Run.rootRunId
        "job_kind": "pipeline_step",  # runType azureml.StepRun
        "display_name": "sampleStep.py",  # Run.displayName
        "step_name": "sampleStep.py",  # no azureml.moduleName: the step's display name
        "compute_name": "sample-compute",  # RunDetails.target
        "compute_target_type_raw": "AmlCompute",  # properties.ComputeTargetType, already normalised
        # runDefinition.environment name:version
        "environment": "Experiment experimentName Environment:Autosave_2020-06-07T19:15:57Z_7d8bd0a0",
        "compute_duration_ms": 111,  # Run.computeDuration 00:00:00.1110000
    }
    assert set(record) <= set(RECORD_FIELDS)


def test_seed_record_from_the_run_history_fixtures_the_fake_serves() -> None:
    """tests/data/aml holds the answers the loopback run history fake serves for the sample's step."""
    data = Path(__file__).parent / "data"
    event = parse_event((data / "events" / "step_run_completed.json").read_text(encoding="utf-8"))
    details = json.loads((data / "aml" / "run_details_step_9a9d8f51.json").read_text(encoding="utf-8"))
    run = json.loads((data / "aml" / "run_step_9a9d8f51.json").read_text(encoding="utf-8"))

    record = build_record(event, details, run)

    assert {k: record[k] for k in SEED_FIELDS if k in record} == seed_record_as_built()
    assert record["parent_run_id"] == PIPELINE_RUN_ID
    assert record["queue_time_ms"] == record["start_time_utc_ms"] - record["created_time_utc_ms"] > 0


def test_seed_record_from_dotnet_seven_digit_timestamps() -> None:
    details = copy.deepcopy(STEP_RUN_DETAILS)
    details["startTimeUtc"] = "2020-06-07T19:16:15.8690000+00:00"
    details["endTimeUtc"] = "2020-06-07T19:16:15.9800000+00:00"

    record = build_record(step_event(), details, None)

    assert (record["start_time_utc_ms"], record["end_time_utc_ms"], record["execution_time_ms"]) == (
        1591557375869,
        1591557375980,
        111,
    )


def test_times_from_the_run_when_details_have_none() -> None:
    details = {k: v for k, v in STEP_RUN_DETAILS.items() if k not in ("startTimeUtc", "endTimeUtc")}
    record = build_record(step_event(), details, STEP_RUN)
    assert record["execution_time_ms"] == 111


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-06-07T19:16:15.869Z", 1591557375869),
        ("2020-06-07T19:16:15.869z", 1591557375869),
        ("2020-06-07T19:16:15.8690000Z", 1591557375869),
        ("2020-06-07T19:16:15.8690000+00:00", 1591557375869),
        ("2020-06-07T19:16:15.8691234+00:00", 1591557375869),
        ("2020-06-07T21:16:15.869+02:00", 1591557375869),
        ("2020-06-07T14:16:15.869-05:00", 1591557375869),
        ("2020-06-08T00:46:15.8690000+05:30", 1591557375869),
        ("2020-06-07T19:16:15.8Z", 1591557375800),
        ("2020-06-07T19:16:15Z", 1591557375000),
        ("2020-06-07T19:16:15.869", 1591557375869),  # no offset: run history times are UTC
        ("  2020-06-07T19:16:15.869Z ", 1591557375869),
        ("1970-01-01T00:00:00Z", 0),
        ("", None),
        ("   ", None),
        ("yesterday", None),
        ("2020-13-07T19:16:15Z", None),
        ("2020-06-07T19:16:15.869+25:00", None),
        (None, None),
        (1591557375869, None),
        ({"value": "2020-06-07T19:16:15Z"}, None),
    ],
)
def test_parse_utc_ms(text: object, expected: int | None) -> None:
    assert parse_utc_ms(text) == expected


@settings(max_examples=250, deadline=None)
@given(
    moment=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
    offset_minutes=st.integers(min_value=-14 * 60, max_value=14 * 60),
    style=st.sampled_from(["ms", "dotnet", "micro", "Z"]),
)
def test_parse_utc_ms_matches_the_instant_in_any_format(
    moment: datetime, offset_minutes: int, style: str
) -> None:
    instant = moment.replace(microsecond=moment.microsecond // 1000 * 1000, tzinfo=UTC)
    expected = (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    local = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))
    base = local.strftime("%Y-%m-%dT%H:%M:%S")
    millis = f"{local.microsecond // 1000:03d}"
    text = {
        "ms": f"{base}.{millis}{local.strftime('%z')[:3]}:{local.strftime('%z')[3:]}",
        "dotnet": f"{base}.{millis}0000{local.strftime('%z')[:3]}:{local.strftime('%z')[3:]}",
        "micro": local.isoformat(timespec="microseconds"),
        "Z": instant.strftime("%Y-%m-%dT%H:%M:%S.") + millis + "Z",
    }[style]
    assert parse_utc_ms(text) == expected, text


@settings(max_examples=250, deadline=None)
@given(st.text(max_size=40))
def test_parse_utc_ms_never_raises(text: str) -> None:
    value = parse_utc_ms(text)
    assert value is None or isinstance(value, int)


@pytest.mark.parametrize("event_time", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_event_time_whose_utc_instant_python_cannot_hold_is_kept_as_sent(event_time: str) -> None:
    # Converting these to UTC overflows datetime (year 0 / year 10000). An OverflowError here failed
    # replay and backfill outright; the event's own text is the one honest value left.
    record = build_record(step_event(eventTime=event_time))
    assert record["event_time"] == event_time
    assert record["run_id"] == STEP_RUN_ID


def test_negative_durations_are_dropped_not_reported() -> None:
    details = dict(
        STEP_RUN_DETAILS, startTimeUtc="2020-06-07T19:16:15.980Z", endTimeUtc="2020-06-07T19:16:15.869Z"
    )
    run = dict(STEP_RUN, createdUtc="2020-06-07T19:20:00Z")  # "created" after the start: clock skew

    record = build_record(step_event(), details, run)

    assert record["start_time_utc_ms"] == 1591557375980
    assert record["end_time_utc_ms"] == 1591557375869
    assert "execution_time_ms" not in record
    assert "queue_time_ms" not in record
    assert record["created_time_utc_ms"] == 1591557600000


def test_zero_duration_is_a_duration() -> None:
    details = dict(STEP_RUN_DETAILS, endTimeUtc=STEP_RUN_DETAILS["startTimeUtc"])
    assert build_record(step_event(), details, None)["execution_time_ms"] == 0


def test_running_run_has_a_start_and_no_end_or_duration() -> None:
    details = {k: v for k, v in STEP_RUN_DETAILS.items() if k != "endTimeUtc"}
    details["status"] = "Running"
    run = {k: v for k, v in STEP_RUN.items() if k != "endTimeUtc"}

    record = build_record(step_event(), details, run)

    assert record["start_time_utc_ms"] == 1591557375869
    assert "end_time_utc_ms" not in record
    assert "execution_time_ms" not in record
    assert record["queue_time_ms"] == 1591557375869 - CREATED_MS


def test_queue_time_from_the_details_creation_time_when_the_run_is_unavailable() -> None:
    # RunDetails calls it createdTimeUtc, Run calls it createdUtc.
    record = build_record(step_event(), STEP_RUN_DETAILS, None)
    assert record["created_time_utc_ms"] == CREATED_MS
    assert record["queue_time_ms"] == 1591557375869 - CREATED_MS


def test_run_creation_time_wins_over_details() -> None:
    run = dict(STEP_RUN, createdUtc="2020-06-07T19:16:00.000Z")
    record = build_record(step_event(), STEP_RUN_DETAILS, run)
    assert record["queue_time_ms"] == 15869


def test_failed_run_error_code_and_message() -> None:
    details = dict(
        STEP_RUN_DETAILS,
        status="Failed",
        error={
            "error": {
                "code": "UserError",
                "severity": None,
                "message": "Execution failed. User process 'python' exited with status code 1.",
                "messageFormat": None,
                "details": [],
                "innerError": None,
            },
            "correlation": None,
            "environment": None,
            "location": None,
            "time": "0001-01-01T00:00:00+00:00",
            "componentName": None,
        },
    )
    record = build_record(step_event(), details, STEP_RUN)
    assert record["error_code"] == "UserError"
    assert record["error_message"] == "Execution failed. User process 'python' exited with status code 1."


def test_error_from_the_run_when_details_have_none() -> None:
    run = dict(STEP_RUN, error={"error": {"code": "ServiceError", "message": "Node preempted"}})
    record = build_record(step_event(), STEP_RUN_DETAILS, run)
    assert (record["error_code"], record["error_message"]) == ("ServiceError", "Node preempted")


def test_long_error_message_is_truncated_and_marked() -> None:
    details = dict(STEP_RUN_DETAILS, error={"error": {"code": "UserError", "message": "x" * 100_000}})
    message = build_record(step_event(), details, None)["error_message"]
    assert isinstance(message, str)
    assert message == "x" * MAX_ERROR_MESSAGE_CHARS + "…"


def test_error_without_code_keeps_the_message_only() -> None:
    details = dict(STEP_RUN_DETAILS, error={"error": {"code": "", "message": "Something failed"}})
    record = build_record(step_event(), details, None)
    assert record["error_message"] == "Something failed"
    assert "error_code" not in record


def test_run_not_found_gives_the_event_fields_only() -> None:
    record = build_record(step_event(), enrichment_error="run 9a9d8f51 not found (404)")

    assert record == {
        "run_id": STEP_RUN_ID,
        "status": "Completed",
        "run_type": "azureml.StepRun",
        "experimentName": "experimentName",
        "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a7",
        "subscriptions": "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b",
        "resourceGroup": "sample",
        "amlWorkSpace": "sample-ws",
        # from the event's own runProperties / runTags
        "compute_target_type": "AmlCompute",
        "step_type": "PythonScriptStep",
        "node_id": "254c70df",
        "pipelinerunid": PIPELINE_RUN_ID,
        "snapshot_id": "119c3ec1-9e46-46d2-8236-5f533e84a799",
        "event_id": "8d2173-908c8-5785-9sa1d-da3922c2",
        "event_time": record["event_time"],  # the event's own time; its spelling is checked below
        "event_type": "Microsoft.MachineLearningServices.RunStatusChanged",
        "enrichment_error": "run 9a9d8f51 not found (404)",
        "job_kind": "pipeline_step",  # the event's runType
        "compute_target_type_raw": "AmlCompute",
    }
    assert parse_utc_ms(record["event_time"]) == parse_utc_ms("2020-06-07T19:16:17.1234567Z")


def test_pipeline_run_record_is_its_own_pipeline_and_has_no_parent() -> None:
    event = parse_event(SAMPLE_PIPELINE_EVENT)
    details = {
        "runId": event.run_id,
        "status": "Completed",
        "startTimeUtc": "2020-06-07T19:15:50.1000000+00:00",
        "endTimeUtc": "2020-06-07T19:16:40.6000000+00:00",
        "properties": dict(event.run_properties),
        "tags": dict(event.run_tags),
        "runDefinition": None,
    }

    record = build_record(event, details, None)

    assert record["pipelinerunid"] == "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35"
    assert record["execution_time_ms"] == 50500
    assert "parent_run_id" not in record
    assert "script" not in record and "docker_image" not in record  # runDefinition null: unknown


def test_minimal_event_gives_no_empty_or_invented_values() -> None:
    event = parse_event(
        {
            "id": "e-1",
            "eventType": RUN_COMPLETED,
            "topic": SAMPLE_TOPIC,
            "data": {
                "runId": "r-1",
                "experimentName": "exp",
                "runType": "",
                "runTags": {},
                "runProperties": {},
            },
        }
    )
    details = {
        "runId": "r-1",
        "target": "",
        "status": None,
        "startTimeUtc": None,
        "endTimeUtc": "",
        "properties": {"StepType": "  ", "azureml.nodeid": None},
        "tags": {},
        "runDefinition": {"script": None, "environment": {"docker": {"baseImage": ""}}},
        "error": {"error": {"code": None, "message": "  "}},
    }

    record = build_record(event, details, {"createdUtc": "", "target": "   "})

    assert record == {
        "run_id": "r-1",
        "status": "Completed",
        "experimentName": "exp",
        "subscriptions": "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b",
        "resourceGroup": "sample",
        "amlWorkSpace": "sample-ws",
        "event_id": "e-1",
        "event_type": RUN_COMPLETED,
    }


def test_event_status_is_the_record_status_even_if_the_run_moved_on() -> None:
    # Each status change is its own record: a late "Running" event must not be recorded as Completed.
    event = step_event()
    running = parse_event(
        dict(wire_event(SAMPLE_STEP_EVENT), data=dict(SAMPLE_STEP_EVENT["data"], runStatus="running"))
    )
    assert build_record(running, STEP_RUN_DETAILS, STEP_RUN)["status"] == "Running"
    assert build_record(event, dict(STEP_RUN_DETAILS, status="Failed"), None)["status"] == "Completed"


def test_status_from_run_history_when_the_event_has_none() -> None:
    payload = wire_event(SAMPLE_STEP_EVENT)
    del payload["data"]["runStatus"]
    record = build_record(parse_event(payload), dict(STEP_RUN_DETAILS, status="CANCELLED"), None)
    assert record["status"] == "Canceled"


def test_run_type_from_properties_or_run_when_the_event_has_none() -> None:
    payload = wire_event(SAMPLE_STEP_EVENT)
    del payload["data"]["runType"]
    payload["data"]["runProperties"] = {}
    event = parse_event(payload)
    assert build_record(event, STEP_RUN_DETAILS, None)["run_type"] == "azureml.StepRun"
    assert build_record(event, {}, {"runType": "azureml.scriptrun"})["run_type"] == "azureml.scriptrun"


def test_property_names_are_matched_whatever_their_case() -> None:
    # The event spells them stepType/computeTargetType/contentSnapshotId, run history StepType etc.
    payload = wire_event(SAMPLE_STEP_EVENT)
    payload["data"]["runProperties"] = {}
    payload["data"]["runTags"] = {}
    record = build_record(parse_event(payload), STEP_RUN_DETAILS, None)
    assert record["step_type"] == "PythonScriptStep"
    assert record["compute_target_type"] == "AmlCompute"
    assert record["snapshot_id"] == "119c3ec1-9e46-46d2-8236-5f533e84a799"
    assert record["node_id"] == "254c70df"
    assert record["pipelinerunid"] == PIPELINE_RUN_ID


# Any JSON object as a run history answer (fields of any type): the record never fails, never has
# an empty or null value, and keeps what the event says.
answer_shaped = st.fixed_dictionaries(
    {},
    optional={
        key: json_values
        | st.sampled_from(
            ["", " ", "2020-06-07T19:16:15.869Z", "2020-06-07T19:16:15.9801234+00:00", "Failed"]
        )
        for key in (
            "status",
            "target",
            "startTimeUtc",
            "endTimeUtc",
            "createdUtc",
            "createdTimeUtc",
            "parentRunId",
            "runType",
            "snapshotId",
            "computeTargetType",
            "experimentName",
            "experimentId",
        )
    }
    | {
        "properties": json_values | st.just(STEP_RUN_DETAILS["properties"]),
        "tags": json_values | st.just(STEP_RUN_DETAILS["tags"]),
        "runDefinition": json_values | st.just(STEP_RUN_DETAILS["runDefinition"]),
        "error": json_values | st.just({"error": {"code": "UserError", "message": "boom"}}),
    },
)


def _bare_step_event() -> Any:
    """The step event with nothing in runTags/runProperties: every lookup then reaches the answers."""
    payload = wire_event(SAMPLE_STEP_EVENT)
    payload["data"].update(runTags={}, runProperties={})
    del payload["data"]["runStatus"], payload["data"]["runType"]
    return parse_event(payload)


EVENTS_FOR_ANSWERS = [step_event(), _bare_step_event()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=st.sampled_from(EVENTS_FOR_ANSWERS),
    details=st.none() | answer_shaped,
    run=st.none() | answer_shaped,
    enrichment_error=st.none() | st.just("404"),
)
def test_any_answer_gives_a_clean_record(
    event: Any, details: dict[str, Any] | None, run: dict[str, Any] | None, enrichment_error: str | None
) -> None:
    record = build_record(event, details, run, enrichment_error=enrichment_error)

    assert set(record) <= set(RECORD_FIELDS)
    for key, value in record.items():
        assert type(value) in (str, int), (key, value)
        if isinstance(value, str):
            assert value.strip() == value and value, key
    for key in ("execution_time_ms", "queue_time_ms"):
        assert record.get(key, 0) >= 0
    assert record["run_id"] == event.run_id
    if event.run_status:
        assert record["status"] == event.run_status
    assert record["experimentId"] == event.experiment_id
    assert (record["subscriptions"], record["resourceGroup"], record["amlWorkSpace"]) == (
        "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b",
        "sample",
        "sample-ws",
    )
