"""The AML fake serves the service's shapes: every field of the run history models, and the recorded
kinds exactly as their files hold them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes.aml_data import (
    KINDS_DIR,
    RUN_DETAILS_FIELDS,
    RUN_FIELDS,
    FakeWorkspace,
    load_fixture,
    load_kind,
)


def _workspace() -> FakeWorkspace:
    return FakeWorkspace("sub", "rg", "ws", load_fixture("workspace_get.json"))


def test_generated_runs_carry_every_field_of_the_run_history_models() -> None:
    # azure-ai-ml 1.35.2 _restclient/runhistory/models/_models.py: Run has 63 fields, RunDetails 41.
    assert (len(RUN_FIELDS), len(RUN_DETAILS_FIELDS)) == (63, 41)
    workspace = _workspace()
    root, steps = workspace.add_pipeline_run(steps=2)
    sub, _ = workspace.add_pipeline_run(steps=1, parent=root)
    for run in (root, sub, *steps):
        assert list(workspace.runs[run["runId"]]) == list(RUN_FIELDS)
        assert list(workspace.details[run["runId"]]) == list(RUN_DETAILS_FIELDS)
    assert sub["parentRunId"] == root["runId"] and sub["rootRunId"] == root["runId"]


@pytest.mark.parametrize("path", sorted(KINDS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_recorded_kinds_name_their_source_and_have_model_shaped_runs(path: Path) -> None:
    kind = load_kind(path.stem)
    assert kind["_source"] and all(
        "recording" in s or ".md" in s or "model" in s for s in kind["_source"][:1]
    )
    for entry in kind["runs"]:
        assert set(RUN_FIELDS) <= set(entry["run"]), entry["run"]["runId"]
        assert list(entry["details"]) == list(RUN_DETAILS_FIELDS)
    for event in kind["events"].values():
        assert event["eventType"] == "Microsoft.MachineLearningServices.RunStatusChanged"
        assert event["data"]["runId"] in {e["run"]["runId"] for e in kind["runs"]}


def test_run_data_answers_the_recorded_definition_or_the_one_in_details() -> None:
    workspace = _workspace()
    workspace.load_kind("v2_pipeline")
    node = workspace.run_data("7a5d9290-d4e1-4d9a-98c8-b0078a5bca04")
    assert set(node) == {"runMetadata", "runDefinition", "jobSpecification", "systemSettings"}
    assert node["runDefinition"]["command"].startswith("echo Hello World")
    pipeline, _ = workspace.add_pipeline_run(steps=1)
    assert workspace.run_data(pipeline["runId"])["runDefinition"] is None
    assert json.dumps(node)  # plain JSON, as the service sends
