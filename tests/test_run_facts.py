"""The readers behind the record's SDK v1/v2 fields: one rule per test, on answer fragments shaped like
the recordings' (tests/data/aml/kinds)."""

from __future__ import annotations

from typing import Any

import pytest

from amlobs import run_facts as facts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:10.4548575", 10_455),  # the recorded v2 node's computeDuration
        ("00:00:00.0481745", 48),
        ("00:00:00.1110000", 111),
        ("01:02:03", 3_723_000),
        ("1.00:00:01.5", 86_401_500),  # days.hh:mm:ss.fraction
        ("-00:00:01", None),
        ("10 seconds", None),
        (None, None),
        (12, None),
    ],
)
def test_timespan_ms(text: Any, expected: int | None) -> None:
    assert facts.timespan_ms(text) == expected


@pytest.mark.parametrize(
    ("properties", "run", "expected"),
    [
        ({"ComputeTargetType": "AmlCompute"}, {}, ("AmlCompute", "AmlCompute")),
        ({"_azureml.ComputeTargetType": "amlctrain"}, {}, ("AmlCompute", "amlctrain")),
        ({}, {"runTypeV2": {"computeType": "AmlcTrain"}}, ("AmlCompute", "AmlcTrain")),
        ({}, {"compute": {"targetType": "amlcompute"}}, ("AmlCompute", "amlcompute")),
        ({"ComputeTargetType": "batchai"}, {}, ("AmlCompute", "batchai")),
        ({"ComputeTargetType": "ComputeInstance"}, {}, ("ComputeInstance", "ComputeInstance")),
        ({"ComputeTargetType": "Kubernetes"}, {}, ("Kubernetes", "Kubernetes")),
        ({"ComputeTargetType": "SomethingNew"}, {}, ("SomethingNew", "SomethingNew")),  # passes through
        ({}, {}, (None, None)),
    ],
)
def test_one_compute_type_vocabulary_with_the_raw_value_kept(
    properties: dict[str, str], run: dict[str, Any], expected: tuple[str | None, str | None]
) -> None:
    assert facts.compute_target_type([properties], [run]) == expected


def test_every_spelling_of_one_cluster_on_one_run_is_one_bucket() -> None:
    # The recorded v2 node says AmlCompute, amlctrain, AmlcTrain and amlcompute for the same cluster.
    run = {"runTypeV2": {"computeType": "AmlcTrain"}, "compute": {"targetType": "amlcompute"}}
    for properties in ({"ComputeTargetType": "AmlCompute"}, {"_azureml.ComputeTargetType": "amlctrain"}, {}):
        assert facts.compute_target_type([properties], [run])[0] == "AmlCompute"


def _definition(**docker: Any) -> dict[str, Any]:
    return {
        "environment": {
            "name": "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu",
            "version": "1",
            "assetId": "azureml://registries/azureml/environments/AzureML-sklearn-0.24-ubuntu18.04-py37-cpu/versions/1",
            "docker": {
                "baseImage": None,
                "baseDockerfile": "FROM mcr.microsoft.com/azureml/openmpi3.1.2",
                **docker,
            },
        }
    }


def test_image_is_the_base_image_when_there_is_one() -> None:
    definition = _definition(baseImage="mcr.microsoft.com/azureml/base:intelmpi2018.3-ubuntu16.04")
    assert facts.image(definition, []) == "mcr.microsoft.com/azureml/base:intelmpi2018.3-ubuntu16.04"


def test_image_of_a_curated_or_dockerfile_environment_is_the_environment() -> None:
    assert facts.image(_definition(), []) == "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu:1"


def test_image_by_asset_id_when_the_environment_has_no_name() -> None:
    definition = _definition()
    del definition["environment"]["name"]
    assert facts.image(definition, []) == definition["environment"]["assetId"]


def test_image_from_the_v1_derived_image_name_when_no_definition() -> None:
    properties = [{"AzureML.DerivedImageName": "azureml/azureml_0a1b2c3d4e5f"}]
    assert facts.image(None, properties) == "azureml/azureml_0a1b2c3d4e5f"
    assert facts.image(None, [{}]) is None


def test_script_then_command_then_script_name_trimmed() -> None:
    assert facts.script({"script": " train.py ", "command": "python x.py"}, None) == "train.py"
    assert facts.script({"script": None, "command": "  pip freeze\n"}, None) == "pip freeze"
    assert facts.script({"script": "", "command": ""}, {"scriptName": "step.py"}) == "step.py"
    long = facts.script({"command": "echo " + "x" * 5000}, None)
    assert long is not None and len(long) == facts.MAX_SCRIPT_CHARS and long.endswith("…")
    assert facts.script(None, None) is None


def test_a_definition_sent_as_a_json_string_is_read() -> None:
    # azure-ai-ml's TypeSpec models type runDefinition as a string; the service sends an object.
    assert facts.run_definition('{"script": "a.py"}') == {"script": "a.py"}
    assert facts.run_definition("not json") is None
    assert facts.run_definition({}) is None
    assert facts.run_definition(None) is None


@pytest.mark.parametrize(
    ("run_type", "properties", "expected"),
    [
        ("azureml.PipelineRun", {}, "pipeline"),
        ("azureml.StepRun", {"_azureml.ComputeTargetType": "amlctrain"}, "pipeline_step"),
        ("automl", {"runTemplate": "AutoML"}, "automl"),
        (None, {"runTemplate": "automl_child"}, "automl_trial"),  # Event Grid's sample: runType null
        ("hyperdrive", {"runTemplate": "HyperDrive"}, "sweep"),
        ("azureml.scriptrun", {}, "command"),
        (None, {"_azureml.ComputeTargetType": "amlctrain"}, "command"),  # a v2 command job
        (None, {}, None),
    ],
)
def test_job_kind(run_type: str | None, properties: dict[str, str], expected: str | None) -> None:
    assert facts.job_kind(run_type, [properties]) == expected


def test_step_name_is_the_component_or_for_an_anonymous_one_the_node() -> None:
    named = [{"azureml.moduleName": "prep_data"}]
    anonymous = [{"azureml.moduleName": "azureml_anonymous"}]
    node = {"displayName": "hello_world_component_inline", "name": "azureml_anonymous"}
    assert facts.step_name("pipeline_step", node, named) == "prep_data"
    assert facts.step_name("pipeline_step", node, anonymous) == "hello_world_component_inline"
    assert facts.step_name("pipeline_step", {"name": "azureml_anonymous"}, anonymous) is None
    assert facts.step_name("command", node, named) is None  # only steps have a component


def test_error_chain_category_code_and_details() -> None:
    answer = {
        "error": {
            "error": {
                "code": "UserError",
                "message": "Execution failed.",
                "details": [{"code": "ScriptExecution", "message": "exit 1"}, {"message": "see std_log"}],
                "innerError": {
                    "code": "BadArgument",
                    "innerError": {"code": "ArgumentInvalid", "innerError": None},
                },
            },
            "componentName": "execution",
        }
    }
    assert facts.error_facts(None, answer) == {
        "error_category": "UserError",
        "error_code": "ArgumentInvalid",
        "error_code_chain": "UserError > BadArgument > ArgumentInvalid",
        "error_message": "Execution failed.",
        "error_details": "ScriptExecution: exit 1\nsee std_log",
    }


def test_error_without_inner_errors_is_its_code_only() -> None:
    assert facts.error_facts({"error": {"code": "UserError", "message": "m"}}) == {
        "error_category": "UserError",
        "error_code": "UserError",
        "error_message": "m",
    }


def test_error_inner_chain_is_bounded() -> None:
    inner: dict[str, Any] = {"code": "Loop"}
    inner["innerError"] = inner  # a cycle cannot hang the invocation
    facts_ = facts.error_facts({"error": {"error": {"code": "UserError", "innerError": inner}}})
    assert facts_["error_code"] == "Loop"
    assert facts_["error_code_chain"].count("Loop") == 32


def test_serverless_is_a_cluster_type_without_a_compute_name() -> None:
    assert facts.serverless_type("AmlCompute", None) == "Serverless"
    assert facts.serverless_type("AmlCompute", "cpu-cluster") == "AmlCompute"
    assert facts.serverless_type("ComputeInstance", None) == "ComputeInstance"
    assert facts.serverless_type(None, None) is None
    assert facts.compute_name({"target": "serverless"}, [{"target": None}]) is None
