"""``python -m amlobs replay`` and ``backfill``: the Function's code path from the command line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from amlobs.cli import main
from tests.fakes.aml_api import Fault
from tests.integration.conftest import App, sample_event
from tests.integration.host import invoke

REPO = Path(__file__).resolve().parents[2]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def dead_letter_blob(*events: dict[str, Any]) -> list[dict[str, Any]]:
    """The shape Event Grid writes to the dead-letter container: the events plus delivery history."""
    return [
        {
            **event,
            "deadLetterReason": "MaxDeliveryAttemptsExceeded",
            "deliveryAttempts": 30,
            "lastDeliveryOutcome": "GenericError",
            "publishTime": "2020-06-07T19:16:16.3Z",
            "lastDeliveryAttemptTime": "2020-06-08T19:16:16.3Z",
        }
        for event in events
    ]


def test_replay_of_a_dead_letter_blob_records_its_events_once(app: App, tmp_path: Path) -> None:
    blob = tmp_path / "deadletter" / "2020" / "06" / "08" / "abc.json"
    blob.parent.mkdir(parents=True)
    blob.write_text(
        json.dumps(
            dead_letter_blob(sample_event("step_run_completed"), sample_event("pipeline_run_completed"))
        )
    )

    code, _out, err = run_cli("replay", str(tmp_path / "deadletter"))
    assert code == 0, err
    assert "2 recorded" in err
    assert {r["run_id"] for r in app.records()} == {
        "9a9d8f51-1e44-4c23-b0a0-8246046eeb28",
        "129a171f-bc8d-4e0a-bd51-8fa2e8b94b35",
    }

    code, _out, err = run_cli("replay", str(blob))
    assert code == 0
    assert "2 duplicate" in err
    assert len(app.records()) == 2


def test_replay_reports_bad_lines_with_file_and_line_and_still_records_the_rest(
    app: App, tmp_path: Path
) -> None:
    lines = tmp_path / "events.jsonl"
    good = sample_event("step_run_completed", id="line-1")
    wrong_type = sample_event("step_run_completed", id="line-3", eventType="Microsoft.Storage.BlobCreated")
    lines.write_text(json.dumps(good) + "\n{not json\n" + json.dumps(wrong_type) + "\n\n")

    code, _out, err = run_cli("replay", str(lines))

    assert code == 1
    assert f"{lines}:2: line is not JSON" in err
    assert f"{lines}:3: rejected (unsupported_event_type)" in err
    assert [r["event_id"] for r in app.records()] == ["line-1"]
    # The rejected one is kept like any rejected event, the unparseable line is the user's to fix.
    assert [json.loads(b.content)["reason"] for b in app.rejected_blobs()] == ["unsupported_event_type"]


def test_replay_reports_json_nested_too_deeply_and_still_records_the_rest(app: App, tmp_path: Path) -> None:
    # json.loads raises RecursionError (not ValueError) on "[[[[…": one such file or line must not end
    # the whole replay with a traceback.
    deep = "[" * 100_000 + "]" * 100_000
    whole = tmp_path / "a-deep.json"
    whole.write_text(deep)
    lines = tmp_path / "b-events.jsonl"
    lines.write_text(json.dumps(sample_event("step_run_completed", id="after-deep")) + "\n" + deep + "\n")

    code, _out, err = run_cli("replay", str(whole), str(lines))

    assert code == 1
    assert f"{whole}:1: line is not JSON" in err
    assert f"{lines}:2: line is not JSON" in err
    assert [r["event_id"] for r in app.records()] == ["after-deep"]


def test_replay_dry_run_prints_records_and_sends_nothing(app: App, tmp_path: Path) -> None:
    single = tmp_path / "one.json"
    single.write_text(json.dumps(sample_event("step_run_completed")))

    code, out, err = run_cli("replay", "--dry-run", str(single))

    assert code == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert len(printed) == 1
    assert printed[0]["event"] == "AmlRunStatusChanged"
    assert printed[0]["execution_time_ms"] == 111
    assert printed[0]["script"] == "sampleStep.py"
    assert app.ingestion.track_requests() == []
    assert app.processed_ids() == set()


def test_replay_re_drives_a_rejected_event_blob_after_the_cause_is_fixed(app: App, tmp_path: Path) -> None:
    broken = sample_event("step_run_completed", id="fixed-later")
    broken["topic"] = "/subscriptions/x/resourceGroups/y"
    invoke(broken)
    [blob] = app.rejected_blobs()
    stored = json.loads(blob.content)
    fixed_payload = json.loads(stored["payload"])
    fixed_payload["topic"] = sample_event("step_run_completed")["topic"]
    stored["payload"] = json.dumps(fixed_payload)
    path = tmp_path / "rejected.json"
    path.write_text(json.dumps(stored))

    code, _out, err = run_cli("replay", str(path))

    assert code == 0, err
    assert [r["event_id"] for r in app.records()] == ["fixed-later"]


def test_replay_of_missing_or_empty_inputs_fails_clearly(app: App, tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("")
    code, _out, err = run_cli("replay", str(tmp_path / "nope.json"), str(empty))
    assert code == 1
    assert f"{tmp_path / 'nope.json'}: no such file or folder" in err
    assert f"{empty}: file is empty" in err


def test_replay_with_a_bad_setting_exits_2_naming_it(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AML_OBS_ARM_ENDPOINT", "http://10.1.2.3")
    code, _out, err = run_cli("replay", str(tmp_path))
    assert code == 2
    assert "AML_OBS_ARM_ENDPOINT" in err


def test_python_dash_m_amlobs_is_the_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "amlobs", "--help"],
        cwd=REPO / "src",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "replay" in done.stdout
    assert "backfill" in done.stdout


# -- backfill -------------------------------------------------------------------------------------


def _three_pipelines(app: App) -> list[str]:
    workspace = app.aml.workspace()
    run_ids = []
    for _ in range(3):
        pipeline, steps = workspace.add_pipeline_run(steps=3)
        run_ids += [pipeline["runId"], *(s["runId"] for s in steps)]
    app.aml.page_size = 2  # force many pages
    return run_ids


def test_backfill_records_every_past_run_across_pages(app: App, tmp_path: Path) -> None:
    run_ids = _three_pipelines(app)
    checkpoint = tmp_path / "ckpt.json"

    code, _out, err = run_cli(
        "backfill",
        "--workspace",
        app.aml.workspace().resource_id,
        "--since",
        "2024-01-01",
        "--checkpoint",
        str(checkpoint),
        "--concurrency",
        "3",
    )

    assert code == 0, err
    assert sorted(r["run_id"] for r in app.records()) == sorted(run_ids)
    assert len(app.ingestion.events("AmlPipelineRunSummary")) == 3
    assert "backfill complete: 12 runs" in err
    assert len(app.aml.requests_to("runs:query", "POST")) >= 6
    saved = json.loads(checkpoint.read_text())
    assert saved["complete"] is True


def test_backfill_skips_runs_already_recorded_live_and_vice_versa(app: App, tmp_path: Path) -> None:
    run_ids = _three_pipelines(app)
    workspace = app.aml.workspace()
    step = workspace.runs[run_ids[1]]
    live = sample_event(
        "step_run_completed",
        id="live-before-backfill",
        data={"runId": step["runId"], "experimentId": step["experimentId"], "runStatus": "Completed"},
    )
    invoke(live)

    code, _out, err = run_cli(
        "backfill",
        "--workspace",
        workspace.resource_id,
        "--since",
        "2024-01-01",
        "--checkpoint",
        str(tmp_path / "c.json"),
    )
    assert code == 0, err
    assert "1 duplicate" in err
    assert sorted(r["run_id"] for r in app.records()) == sorted(run_ids)

    # A late live event for a status backfill already recorded is a duplicate too.
    late = sample_event(
        "step_run_completed",
        id="live-after-backfill",
        data={"runId": run_ids[2], "experimentId": step["experimentId"], "runStatus": "completed"},
    )
    invoke(late)
    assert len(app.records()) == len(run_ids)


def test_backfill_resumes_after_an_interruption_without_duplicates(app: App, tmp_path: Path) -> None:
    run_ids = _three_pipelines(app)
    checkpoint = tmp_path / "resume.json"
    ws_id = app.aml.workspace().resource_id
    # The listing breaks after two pages (the client retries 3 times, so 3 faults exhaust it).
    app.aml.fail(
        "POST", "runs:query", Fault(passthrough=True), Fault(passthrough=True), *([Fault(status=500)] * 3)
    )

    code, _out, err = run_cli(
        "backfill", "--workspace", ws_id, "--since", "2024-01-01", "--checkpoint", str(checkpoint)
    )
    assert code == 1
    assert "re-run to resume" in err
    first_pass = len(app.records())
    assert 0 < first_pass < len(run_ids)
    assert json.loads(checkpoint.read_text())["continuation_token"]

    code, _out, err = run_cli(
        "backfill", "--workspace", ws_id, "--since", "2024-01-01", "--checkpoint", str(checkpoint)
    )
    assert code == 0, err
    assert "(resumed)" in err
    recorded = [r["run_id"] for r in app.records()]
    assert sorted(recorded) == sorted(run_ids)  # every run once: nothing lost, nothing twice


def test_backfill_invents_no_status_for_a_run_the_api_gives_none(app: App, tmp_path: Path) -> None:
    workspace = app.aml.workspace()
    _pipeline, [step] = workspace.add_pipeline_run(steps=1)
    workspace.runs[step["runId"]]["status"] = None
    workspace.details[step["runId"]]["status"] = None

    code, _out, err = run_cli(
        "backfill",
        "--workspace",
        workspace.resource_id,
        "--since",
        "2024-01-01",
        "--checkpoint",
        str(tmp_path / "c.json"),
    )

    assert code == 0, err
    [record] = [r for r in app.records() if r["run_id"] == step["runId"]]
    assert "status" not in record  # unknown is absent, not "Unknown" (itself a real AML status)
    assert record["execution_time_ms"] == "20000"  # the rest of the record is there


def test_backfill_dry_run_prints_and_sends_nothing(
    app: App, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_ids = _three_pipelines(app)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        "backfill", "--dry-run", "--workspace", app.aml.workspace().resource_id, "--since", "2024-01-01"
    )
    assert code == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    assert sorted(p["run_id"] for p in printed if p["event"] == "AmlRunStatusChanged") == sorted(run_ids)
    assert app.ingestion.track_requests() == []
    assert not (tmp_path / ".amlobs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since 'yesterday' is neither a duration"),
        (["--since", "0d"], "the duration must be positive"),
        (["--since", "2999-01-01"], "is in the future"),
        (["--since", "7d", "--concurrency", "0"], "--concurrency must be between 1 and 32"),
    ],
)
def test_backfill_bad_arguments_exit_2_with_a_clear_message(app: App, args: list[str], message: str) -> None:
    code, _out, err = run_cli("backfill", "--workspace", app.aml.workspace().resource_id, *args)
    assert code == 2
    assert message in err


def test_backfill_of_a_workspace_whose_discovery_names_a_foreign_host_says_so(app: App) -> None:
    app.aml.discovery_overrides["api"] = "https://my-ci.eastus.instances.azureml.ms"
    code, _out, err = run_cli("backfill", "--workspace", app.aml.workspace().resource_id, "--since", "7d")
    assert code == 1
    assert "cannot list the workspace's runs: workspace sample-ws: discovered API host" in err
    assert "no token was sent to it" in err and "Traceback" not in err
    assert app.aml.requests_to("/history/") == []


def test_backfill_refuses_a_workspace_that_is_not_a_workspace_id(app: App) -> None:
    code, _out, err = run_cli("backfill", "--workspace", "my-workspace", "--since", "7d")
    assert code == 2
    assert "not an Azure Machine Learning workspace resource id" in err
