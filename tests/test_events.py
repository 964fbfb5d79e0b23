"""Event parsing: the two events of the 2020 sample, status spelling, workspace coordinates, every
rejection reason, and property tests that no input can make the parser fail in any other way."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amlobs import events
from amlobs.errors import EventRejected
from amlobs.events import (
    KNOWN_STATUSES,
    MAX_EVENT_BYTES,
    MAX_NESTING,
    RUN_COMPLETED,
    RUN_STATUS_CHANGED,
    SUPPORTED_EVENT_TYPES,
    RunEvent,
    WorkspaceRef,
    normalise_status,
    parse_event,
)
from amlobs.summary import needs_summary

# The two events of Azure-Samples/azure-machine-learning-pipeline-observability-sample (README.md),
# data copied as published, including the "event_type" key of the sample's log format.
SAMPLE_TOPIC = (
    "/subscriptions/38e0c6f9-393e-413e-9d17-6e95dc2b5a5b/resourceGroups/sample"
    "/providers/Microsoft.MachineLearningServices/workspaces/sample-ws"
)
SAMPLE_PIPELINE_EVENT: dict[str, Any] = {
    "id": "9168ed-fb6f-5514-a60e-bb503a04",
    "data": {
        "runStatus": "Completed",
        "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a7",
        "experimentName": "experimentName",
        "runId": "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35",
        "runType": "azureml.PipelineRun",
        "runTags": {"azureml.Designer": "true", "azureml.pipelineComponent": "pipelinerun"},
        "runProperties": {
            "azureml.runsource": "azureml.PipelineRun",
            "runSource": "Designer",
            "runType": "HTTP",
            "azureml.parameters": "{}",
        },
    },
    "topic": SAMPLE_TOPIC,
    "subject": "experiments/eea3758a-4a75-42a7-b215-32739323a0a7/runs/129a171f-bc8d-4e0a-bd51-8fa2e8b94b35",
    "event_type": "Microsoft.MachineLearningServices.RunStatusChanged",
}
SAMPLE_STEP_EVENT: dict[str, Any] = {
    "id": "8d2173-908c8-5785-9sa1d-da3922c2",
    "data": {
        "runStatus": "Completed",
        "experimentId": "eea3758a-4a75-42a7-b215-32739323a0a7",
        "experimentName": "experimentName",
        "runId": "9a9d8f51-1e44-4c23-b0a0-8246046eeb28",
        "runType": "azureml.StepRun",
        "runTags": {
            "azureml.pipeline": "775ff4ae-c312-4533-b8df-d04a1ec09246",
            "azureml.pipelinerunid": "096a41be-218d-4bdb-857d-be3222caa891",
            "azureml.nodeid": "254c70df",
        },
        "runProperties": {
            "azureml.runsource": "azureml.StepRun",
            "azureml.nodeid": "254c70df",
            "contentSnapshotId": "119c3ec1-9e46-46d2-8236-5f533e84a799",
            "stepType": "PythonScriptStep",
            "computeTargetType": "AmlCompute",
        },
    },
    "topic": SAMPLE_TOPIC,
    "subject": "experiments/eea3758a-4a75-42a7-b215-32739323a0a7/runs/9a9d8f51-1e44-4c23-b0a0-8246046eeb28",
    "event_type": "Microsoft.MachineLearningServices.RunStatusChanged",
}


def wire_event(sample: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """The sample event as Event Grid delivers it (``eventType``, ``eventTime``, versions)."""
    event = copy.deepcopy(sample)
    event["eventType"] = event.pop("event_type")
    event.update(eventTime="2020-06-07T19:16:17.1234567Z", dataVersion="2", metadataVersion="1")
    event.update(overrides)
    return event


def rejection(payload: Any) -> EventRejected:
    with pytest.raises(EventRejected) as caught:
        parse_event(payload)
    return caught.value


# --- the sample's events -----------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dict", "text", "bytes"])
def test_sample_pipeline_run_event_parses_with_its_event_type_key(form: str) -> None:
    text = json.dumps(SAMPLE_PIPELINE_EVENT, indent="\t")
    payload = {"dict": SAMPLE_PIPELINE_EVENT, "text": text, "bytes": text.encode()}[form]

    event = parse_event(payload)

    assert event == RunEvent(
        event_id="9168ed-fb6f-5514-a60e-bb503a04",
        event_type=RUN_STATUS_CHANGED,
        event_time=None,
        subject="experiments/eea3758a-4a75-42a7-b215-32739323a0a7/runs/129a171f-bc8d-4e0a-bd51-8fa2e8b94b35",
        workspace=WorkspaceRef("38e0c6f9-393e-413e-9d17-6e95dc2b5a5b", "sample", "sample-ws"),
        run_id="129a171f-bc8d-4e0a-bd51-8fa2e8b94b35",
        experiment_id="eea3758a-4a75-42a7-b215-32739323a0a7",
        experiment_name="experimentName",
        run_type="azureml.PipelineRun",
        run_status="Completed",
        run_tags=SAMPLE_PIPELINE_EVENT["data"]["runTags"],
        run_properties=SAMPLE_PIPELINE_EVENT["data"]["runProperties"],
    )
    assert needs_summary(event)


def test_sample_step_run_event_parses() -> None:
    event = parse_event(SAMPLE_STEP_EVENT)

    assert event.event_id == "8d2173-908c8-5785-9sa1d-da3922c2"
    assert event.run_id == "9a9d8f51-1e44-4c23-b0a0-8246046eeb28"
    assert event.run_type == "azureml.StepRun"
    assert event.run_status == "Completed"
    assert event.workspace.resource_id == SAMPLE_TOPIC
    assert event.run_tags["azureml.pipelinerunid"] == "096a41be-218d-4bdb-857d-be3222caa891"
    assert event.run_properties["stepType"] == "PythonScriptStep"
    assert not needs_summary(event)  # a step, not a pipeline


def test_wire_format_event_type_and_time_are_read() -> None:
    event = parse_event(wire_event(SAMPLE_STEP_EVENT))
    assert event.event_type == RUN_STATUS_CHANGED
    assert event.event_time == "2020-06-07T19:16:17.1234567Z"


def test_event_type_key_wins_over_sample_log_key_when_both_are_present() -> None:
    payload = wire_event(SAMPLE_STEP_EVENT, event_type="Something.Else")
    assert parse_event(payload).event_type == RUN_STATUS_CHANGED


def test_run_completed_without_run_status_is_completed() -> None:
    payload = wire_event(SAMPLE_PIPELINE_EVENT, eventType=RUN_COMPLETED)
    del payload["data"]["runStatus"]  # RunCompleted's data has no runStatus

    event = parse_event(payload)

    assert event.event_type == RUN_COMPLETED
    assert event.run_status == "Completed"
    assert needs_summary(event)


def test_run_status_changed_without_status_has_no_made_up_status() -> None:
    payload = wire_event(SAMPLE_STEP_EVENT)
    del payload["data"]["runStatus"]
    assert parse_event(payload).run_status is None


@pytest.mark.parametrize(
    ("file", "sample"),
    [("pipeline_run_completed.json", SAMPLE_PIPELINE_EVENT), ("step_run_completed.json", SAMPLE_STEP_EVENT)],
)
def test_wire_format_copies_of_the_sample_events_parse_like_the_sample(
    file: str, sample: dict[str, Any]
) -> None:
    """tests/data/events holds the sample's events as Event Grid delivers them (used by replay tests)."""
    text = (Path(__file__).parent / "data" / "events" / file).read_text(encoding="utf-8")
    from_file = parse_event(text.encode("utf-8"))
    from_sample = parse_event(sample)
    assert from_file.event_time is not None
    assert from_file == dataclasses.replace(from_sample, event_time=from_file.event_time)


# --- status spelling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Completed", "Completed"),
        ("completed", "Completed"),
        ("COMPLETED", "Completed"),
        ("  Completed\n", "Completed"),
        ("Cancelled", "Canceled"),
        ("CANCELLED", "Canceled"),
        ("canceled", "Canceled"),
        ("cancel_requested", "CancelRequested"),
        ("Not Started", "NotStarted"),
        ("not-responding", "NotResponding"),
        ("failed", "Failed"),
        ("running", "Running"),
        ("Finalizing", "Finalizing"),
        ("  SomethingNew  ", "SomethingNew"),  # unknown: kept (trimmed), never guessed
        ("", None),
        ("   ", None),
        (None, None),
        (3, None),
    ],
)
def test_status_normalisation(raw: object, expected: str | None) -> None:
    assert normalise_status(raw) == expected


def test_every_known_status_is_its_own_canonical_spelling() -> None:
    for status in KNOWN_STATUSES:
        assert normalise_status(status) == status
        assert normalise_status(status.upper()) == status
        assert normalise_status(f" {status.lower()} ") == status


@pytest.mark.parametrize(
    ("raw", "expected"), [("CANCELLED", "Canceled"), (" failed ", "Failed"), ("Weird", "Weird")]
)
def test_event_status_is_normalised(raw: str, expected: str) -> None:
    payload = wire_event(SAMPLE_PIPELINE_EVENT)
    payload["data"]["runStatus"] = raw
    assert parse_event(payload).run_status == expected


# --- workspace coordinates ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic",
    [
        SAMPLE_TOPIC,
        SAMPLE_TOPIC + "/",
        f"  {SAMPLE_TOPIC}  ",
        SAMPLE_TOPIC.replace("Microsoft.MachineLearningServices", "microsoft.machinelearningservices"),
        SAMPLE_TOPIC.replace("Microsoft.MachineLearningServices", "MICROSOFT.MACHINELEARNINGSERVICES"),
        SAMPLE_TOPIC.replace("/resourceGroups/", "/resourcegroups/").replace("/workspaces/", "/Workspaces/"),
    ],
)
def test_workspace_coordinates_from_topic(topic: str) -> None:
    ws = parse_event(wire_event(SAMPLE_STEP_EVENT, topic=topic)).workspace
    assert (ws.subscription_id, ws.resource_group, ws.workspace_name) == (
        "38e0c6f9-393e-413e-9d17-6e95dc2b5a5b",
        "sample",
        "sample-ws",
    )
    assert ws.resource_id == SAMPLE_TOPIC


def test_workspace_cache_key_ignores_case_but_coordinates_keep_it() -> None:
    upper = WorkspaceRef.from_resource_id(SAMPLE_TOPIC.replace("sample-ws", "Sample-WS"))
    lower = WorkspaceRef.from_resource_id(SAMPLE_TOPIC)
    assert upper.workspace_name == "Sample-WS"
    assert upper.cache_key == lower.cache_key


@pytest.mark.parametrize(
    "topic",
    [
        "/subscriptions/38e0c6f9-393e-413e-9d17-6e95dc2b5a5b/resourceGroups/sample"
        "/providers/Microsoft.Storage/storageAccounts/samplestorage",
        SAMPLE_TOPIC + "/computes/cpu-cluster",
        "/subscriptions/38e0c6f9/resourceGroups//providers/Microsoft.MachineLearningServices/workspaces/ws",
        "/subscriptions/../resourceGroups/sample/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "/subscriptions/s/resourceGroups/sample/providers/Microsoft.MachineLearningServices/workspaces/..",
        "/subscriptions/s\n/resourceGroups/sample/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "/subscriptions/s/resourceGroups/sample/providers/Microsoft.MachineLearningServices/workspaces/w s",
        "subscriptions/s/resourceGroups/sample/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "not a topic",
        "",
        42,
        None,
        ["/subscriptions/s"],
    ],
)
def test_topic_that_is_not_a_workspace_is_rejected(topic: object) -> None:
    rejected = rejection(wire_event(SAMPLE_STEP_EVENT, topic=topic))
    assert rejected.code == "topic_not_workspace"
    assert "topic" in rejected.detail


# --- every rejection reason --------------------------------------------------------------------


def _with_data(**changes: Any) -> dict[str, Any]:
    payload = wire_event(SAMPLE_STEP_EVENT)
    for key, value in changes.items():
        if value is _DELETE:
            del payload["data"][key]
        else:
            payload["data"][key] = value
    return payload


_DELETE = object()
_VALID_TEXT = json.dumps(wire_event(SAMPLE_STEP_EVENT))

# (case, payload, code, a word the detail must contain)
REJECTIONS: list[tuple[str, Any, str, str]] = [
    ("not json", "{not json", "not_json", "JSON"),
    ("invalid utf-8", b'{"id": "\xff\xfe\xfa"}', "not_json", "JSON"),
    ("empty body", b"", "not_json", "JSON"),
    ("deeply nested", "[" * 200_000, "nested_too_deeply", "deeper than 128"),
    ("deeply nested object", '{"a":' * 200_000, "nested_too_deeply", "deeper than 128"),
    ("nested one level too deep", '{"a":' * 128 + "[]" + "}" * 128, "nested_too_deeply", "deeper than 128"),
    ("array", json.dumps([wire_event(SAMPLE_STEP_EVENT)]), "not_an_object", "not an object"),
    ("string", '"an event"', "not_an_object", "not an object"),
    ("null", "null", "not_an_object", "not an object"),
    ("too large text", _VALID_TEXT[:-1] + ', "pad": "' + "x" * MAX_EVENT_BYTES + '"}', "too_large", "bytes"),
    (
        "too large in utf-8 only",
        _VALID_TEXT[:-1] + ', "pad": "' + "é" * (MAX_EVENT_BYTES // 2 + 10) + '"}',
        "too_large",
        "bytes",
    ),
    ("too large dict", wire_event(SAMPLE_STEP_EVENT, pad="x" * MAX_EVENT_BYTES), "too_large", "bytes"),
    (
        "cloudevents",
        {
            "specversion": "1.0",
            "type": RUN_STATUS_CHANGED,
            "source": SAMPLE_TOPIC,
            "id": "x",
            "data": SAMPLE_STEP_EVENT["data"],
        },
        "unsupported_schema",
        "CloudEvents",
    ),
    (
        "no event type",
        {k: v for k, v in SAMPLE_STEP_EVENT.items() if k != "event_type"},
        "missing_event_type",
        "eventType",
    ),
    (
        "event type not a string",
        wire_event(SAMPLE_STEP_EVENT, eventType=7),
        "missing_event_type",
        "eventType",
    ),
    (
        "other event type",
        wire_event(SAMPLE_STEP_EVENT, eventType="Microsoft.MachineLearningServices.ModelRegistered"),
        "unsupported_event_type",
        "ModelRegistered",
    ),
    (
        "storage event",
        wire_event(SAMPLE_STEP_EVENT, eventType="Microsoft.Storage.BlobCreated"),
        "unsupported_event_type",
        "BlobCreated",
    ),
    ("no id", {k: v for k, v in wire_event(SAMPLE_STEP_EVENT).items() if k != "id"}, "missing_id", "id"),
    ("blank id", wire_event(SAMPLE_STEP_EVENT, id="  "), "missing_id", "id"),
    ("numeric id", wire_event(SAMPLE_STEP_EVENT, id=12), "missing_id", "id"),
    ("huge id", wire_event(SAMPLE_STEP_EVENT, id="a" * 257), "missing_id", "256"),
    (
        "no topic",
        {k: v for k, v in wire_event(SAMPLE_STEP_EVENT).items() if k != "topic"},
        "topic_not_workspace",
        "topic",
    ),
    (
        "no data",
        {k: v for k, v in wire_event(SAMPLE_STEP_EVENT).items() if k != "data"},
        "missing_data",
        "data",
    ),
    ("data is a list", wire_event(SAMPLE_STEP_EVENT, data=[1]), "missing_data", "data"),
    (
        "data is a string",
        wire_event(SAMPLE_STEP_EVENT, data=json.dumps(SAMPLE_STEP_EVENT["data"])),
        "missing_data",
        "data",
    ),
    ("no runId", _with_data(runId=_DELETE), "missing_runId", "runId"),
    ("null runId", _with_data(runId=None), "missing_runId", "runId"),
    ("empty runId", _with_data(runId=""), "missing_runId", "runId"),
    ("blank runId", _with_data(runId="   "), "missing_runId", "runId"),
    ("numeric runId", _with_data(runId=12345), "wrong_type", "runId"),
    ("runId object", _with_data(runId={"id": "x"}), "wrong_type", "runId"),
    ("runId with slash", _with_data(runId="abc/def"), "bad_identifier", "runId"),
    ("runId path traversal", _with_data(runId="../../subscriptions"), "bad_identifier", "runId"),
    ("runId dot-dot", _with_data(runId=".."), "bad_identifier", "runId"),
    ("runId dot", _with_data(runId="."), "bad_identifier", "runId"),
    ("runId with query", _with_data(runId="abc?api-version=1"), "bad_identifier", "runId"),
    ("runId with newline", _with_data(runId="abc\ndef"), "bad_identifier", "runId"),
    ("runId too long", _with_data(runId="a" * 257), "bad_identifier", "runId"),
    ("experimentId with slash", _with_data(experimentId="a/b"), "bad_identifier", "experimentId"),
    ("experimentId dot-dot", _with_data(experimentId=".."), "bad_identifier", "experimentId"),
    ("experimentId numeric", _with_data(experimentId=5), "wrong_type", "experimentId"),
    ("experimentName numeric", _with_data(experimentName=5), "wrong_type", "experimentName"),
    (
        "experimentName dot-dot",
        _with_data(experimentId=_DELETE, experimentName=".."),
        "bad_identifier",
        "experimentName",
    ),
    ("runType list", _with_data(runType=["azureml.StepRun"]), "wrong_type", "runType"),
    ("runStatus number", _with_data(runStatus=2), "wrong_type", "runStatus"),
    ("runTags list", _with_data(runTags=["a"]), "wrong_type", "runTags"),
    ("runProperties string", _with_data(runProperties="{}"), "wrong_type", "runProperties"),
    (
        "no experiment",
        _with_data(experimentId=_DELETE, experimentName=_DELETE),
        "missing_experiment",
        "experiment",
    ),
    ("blank experiment", _with_data(experimentId=" ", experimentName=""), "missing_experiment", "experiment"),
]


@pytest.mark.parametrize(
    ("payload", "code", "word"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejection_reason_and_detail(payload: Any, code: str, word: str) -> None:
    rejected = rejection(payload)
    assert rejected.code == code
    assert word in rejected.detail
    assert len(rejected.detail) < 600  # a reason, not the payload echoed back


def test_an_event_nested_exactly_to_the_limit_is_decoded_and_strings_do_not_count() -> None:
    event = wire_event(SAMPLE_STEP_EVENT)
    # The event itself nests 3 levels (event → data → runProperties); brackets inside strings are text.
    deep: Any = "[[[[{{{{"
    for _ in range(MAX_NESTING - 3):
        deep = {"k": deep}
    event["data"]["runProperties"]["deep"] = deep
    parsed = parse_event(json.dumps(event))
    assert parsed.run_id == SAMPLE_STEP_EVENT["data"]["runId"]


def _codes_in_source() -> set[str]:
    source = Path(events.__file__).read_text(encoding="utf-8")
    literal = set(re.findall(r'EventRejected\(\s*"([a-z_]+)"', source))
    templated = {f"missing_{name}" for name in re.findall(r'_identifier\(.*?,\s*"(\w+)"\)', source)}
    return literal | templated


def test_every_rejection_code_in_the_parser_is_reached_by_a_test() -> None:
    reached = {code for _, _, code, _ in REJECTIONS} | {"topic_not_workspace"}
    # missing_experimentId is not reachable: a blank experimentId counts as absent (the name may do).
    assert _codes_in_source() - {"missing_experimentId"} <= reached
    assert reached <= _codes_in_source()


def test_exactly_max_event_bytes_is_not_too_large() -> None:
    text = json.dumps(wire_event(SAMPLE_STEP_EVENT))
    padded = text[:-1] + " " * (MAX_EVENT_BYTES - len(text)) + "}"
    assert len(padded.encode()) == MAX_EVENT_BYTES
    assert parse_event(padded).run_id == "9a9d8f51-1e44-4c23-b0a0-8246046eeb28"
    assert rejection(padded[:-1] + " }").code == "too_large"


def test_blank_experiment_id_with_a_name_is_accepted_as_unknown_id() -> None:
    event = parse_event(_with_data(experimentId="  "))
    assert event.experiment_id is None
    assert event.experiment_name == "experimentName"


def test_experiment_name_alone_is_enough() -> None:
    event = parse_event(_with_data(experimentId=_DELETE))
    assert (event.experiment_id, event.experiment_name) == (None, "experimentName")


def test_identifiers_are_trimmed() -> None:
    event = parse_event(_with_data(runId=" 9a9d8f51 ", experimentId=" e1 ", experimentName=" exp "))
    assert (event.run_id, event.experiment_id, event.experiment_name) == ("9a9d8f51", "e1", "exp")


def test_blank_event_time_and_subject_are_unknown_not_empty() -> None:
    event = parse_event(wire_event(SAMPLE_STEP_EVENT, eventTime=" ", subject=""))
    assert event.event_time is None
    assert event.subject is None


def test_real_run_id_shapes_are_accepted() -> None:
    for run_id in (
        "HD_0b8e1a4c-62b3-4d7c-9c4a-9f3b8c2f1d7e_3",
        "AutoML_4a1c3c8e-1f0e-4a70-9d2f-6f1e8c0b7a55_12",
        "sharp_kettle_q1w2e3r4t5",
        "mslearn-diabetes_1591557375_b1c2d3e4",
        "run.v2(1)",
    ):
        assert parse_event(_with_data(runId=run_id)).run_id == run_id


# --- properties: nothing but RunEvent or EventRejected -----------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=24)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
interesting_strings = st.sampled_from(
    [
        "",
        " ",
        ".",
        "..",
        "a/b",
        "a\nb",
        "x" * 300,
        "Completed",
        "CANCELLED",
        RUN_STATUS_CHANGED,
        RUN_COMPLETED,
        SAMPLE_TOPIC,
        SAMPLE_TOPIC + "/",
        "9a9d8f51-1e44-4c23-b0a0-8246046eeb28",
        "azureml.PipelineRun",
    ]
)
any_value = json_values | interesting_strings


def _maybe(valid: Any) -> st.SearchStrategy[Any]:
    return st.just(valid) | any_value


event_shaped = st.fixed_dictionaries(
    {},
    optional={
        "id": _maybe("e-1"),
        "eventType": _maybe(RUN_STATUS_CHANGED) | st.just(RUN_COMPLETED),
        "event_type": _maybe(RUN_COMPLETED),
        "topic": _maybe(SAMPLE_TOPIC),
        "subject": _maybe("experiments/e/runs/r"),
        "eventTime": _maybe("2020-06-07T19:16:17Z"),
        "specversion": st.just("1.0"),
        "data": st.fixed_dictionaries(
            {},
            optional={
                "runId": _maybe("r-1"),
                "experimentId": _maybe("e-1"),
                "experimentName": _maybe("exp"),
                "runType": _maybe("azureml.StepRun"),
                "runStatus": _maybe("Running"),
                "runTags": _maybe({"a": "b"}),
                "runProperties": _maybe({"azureml.nodeid": "n"}),
            },
        )
        | any_value,
    },
)


def _outcome(payload: Any) -> RunEvent | tuple[str, str]:
    """Parse; anything but a RunEvent or a well-formed EventRejected fails the test."""
    try:
        event = parse_event(payload)
    except EventRejected as rejected:
        assert isinstance(rejected.code, str) and re.fullmatch(r"[a-z]+(_[a-zA-Z]+)*", rejected.code)
        assert rejected.code in _codes_in_source()
        assert isinstance(rejected.detail, str) and rejected.detail.strip()
        return (rejected.code, rejected.detail)
    assert isinstance(event, RunEvent)
    _assert_accepted_invariants(event)
    return event


def _assert_accepted_invariants(event: RunEvent) -> None:
    assert event.event_type in SUPPORTED_EVENT_TYPES
    assert event.event_id.strip() == event.event_id and event.event_id
    assert re.fullmatch(r"[A-Za-z0-9._()\-]{1,256}", event.run_id) and set(event.run_id) != {"."}
    for segment in (
        event.workspace.subscription_id,
        event.workspace.resource_group,
        event.workspace.workspace_name,
    ):
        assert re.fullmatch(r"[A-Za-z0-9._()\-]{1,256}", segment) and set(segment) != {"."}
    assert event.experiment_id is not None or event.experiment_name is not None
    for text in (
        event.experiment_id,
        event.experiment_name,
        event.run_type,
        event.run_status,
        event.event_time,
    ):
        assert text is None or (text.strip() == text and text)
    assert isinstance(event.run_tags, dict) and isinstance(event.run_properties, dict)


FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.binary(max_size=300))
def test_any_bytes(payload: bytes) -> None:
    _outcome(payload)


@FAST
@given(st.text(max_size=300))
def test_any_text(payload: str) -> None:
    _outcome(payload)


@FAST
@given(json_values)
def test_any_json_value(value: Any) -> None:
    _outcome(json.dumps(value))
    if isinstance(value, dict):
        _outcome(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_shaped)
def test_any_event_shaped_dict(candidate: dict[str, Any]) -> None:
    as_dict = _outcome(candidate)
    assert _outcome(json.dumps(candidate)) == as_dict
    assert _outcome(json.dumps(candidate).encode()) == as_dict


# A valid event with one field replaced (or removed): the outcome is the same whatever the payload's
# form, a rejection names a reason that belongs to that field, and an acceptance leaves every other
# field of the parsed event as it was.
_DATA_CODES = {"missing_data", "missing_runId", "wrong_type", "bad_identifier", "missing_experiment"}
MUTATIONS: dict[tuple[str, ...], tuple[set[str], set[str]]] = {
    # path: (codes it may cause, RunEvent attributes it may change)
    ("id",): ({"missing_id"}, {"event_id"}),
    ("eventType",): ({"missing_event_type", "unsupported_event_type"}, {"event_type"}),
    ("topic",): ({"topic_not_workspace"}, {"workspace"}),
    ("subject",): (set(), {"subject"}),
    ("eventTime",): (set(), {"event_time"}),
    ("dataVersion",): (set(), set()),
    ("data",): (
        _DATA_CODES,
        {
            "run_id",
            "experiment_id",
            "experiment_name",
            "run_type",
            "run_status",
            "run_tags",
            "run_properties",
        },
    ),
    ("data", "runId"): ({"missing_runId", "wrong_type", "bad_identifier"}, {"run_id"}),
    ("data", "experimentId"): ({"wrong_type", "bad_identifier"}, {"experiment_id"}),
    ("data", "experimentName"): ({"wrong_type", "bad_identifier"}, {"experiment_name"}),
    ("data", "runType"): ({"wrong_type"}, {"run_type"}),
    ("data", "runStatus"): ({"wrong_type"}, {"run_status"}),
    ("data", "runTags"): ({"wrong_type"}, {"run_tags"}),
    ("data", "runProperties"): ({"wrong_type"}, {"run_properties"}),
    ("data", "runTags", "azureml.nodeid"): (set(), {"run_tags"}),
}
BASE_EVENT = wire_event(SAMPLE_STEP_EVENT)
BASE_PARSED = parse_event(BASE_EVENT)
REMOVE = object()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(sorted(MUTATIONS)), value=any_value | st.just(REMOVE))
def test_one_mutated_field_is_accepted_or_rejected_consistently(path: tuple[str, ...], value: Any) -> None:
    mutated = copy.deepcopy(BASE_EVENT)
    parent = mutated
    for key in path[:-1]:
        parent = parent[key]
    if value is REMOVE:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value

    outcome = _outcome(mutated)
    assert _outcome(json.dumps(mutated)) == outcome
    assert _outcome(json.dumps(mutated).encode("utf-8")) == outcome

    allowed_codes, changeable = MUTATIONS[path]
    if isinstance(outcome, tuple):
        assert outcome[0] in allowed_codes, (path, value, outcome)
    else:
        for attribute in set(RunEvent.__dataclass_fields__) - changeable:
            assert getattr(outcome, attribute) == getattr(BASE_PARSED, attribute), attribute
