"""The reconciler completes a run status recorded partial (issues 21 and 16), through ``function_app``
against the AML fake and Azurite: an old event whose run 404s is recorded alone; once run history
answers for the run, one pass sends exactly one complete copy, flagged as completing, and clears the
claim's partial mark; a later pass sends nothing; the dashboards then show the complete copy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from amlobs.reconcile.runtime import reset_reconciler
from amlobs.settings import Settings
from amlobs.storage import TableDedupeStore
from tests.dashboard_sources import load_workbook, workbook_query_items
from tests.integration.conftest import App
from tests.integration.dashboard_checks import MONTH, Queries, Runner
from tests.integration.history_scenario import History
from tests.integration.host import invoke
from tests.integration.reconcile_helpers import tick
from tests.integration.test_record_integrity import event_of
from tests.kql_engine import Engine, custom_events


@pytest.fixture
def rapp(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("AML_OBS_WORKSPACE_IDS", app.aml.workspace().resource_id)
    reset_reconciler()
    try:
        yield app
    finally:
        reset_reconciler()


def _claims() -> TableDedupeStore:
    settings = Settings.from_env()
    assert settings.storage is not None
    return TableDedupeStore(settings.storage)


def _records(app: App, run_id: str) -> list[dict[str, str]]:
    return [r for r in app.records() if r.get("run_id") == run_id]


def _last_pass(app: App) -> dict[str, str]:
    return [e["properties"] for e in app.ingestion.events("AmlReconcilerPass")][-1]


def _slowest_steps(app: App, now: datetime) -> list[dict[str, object]]:
    """The workbook's "slowest steps" panel, executed on what ingestion accepted."""
    [item] = [i for i in workbook_query_items(load_workbook()) if i["name"] == "slowest-steps"]
    origin = "workbook:slowest-steps"
    runner = Runner(
        Engine({"customEvents": custom_events(app.ingestion.envelopes)}),
        History(t0=now - timedelta(days=1), now=now + timedelta(minutes=1)),
        Queries({origin: item["content"]["query"]}),
    )
    return runner(origin, MONTH)


def test_a_partial_record_is_completed_once_when_run_history_answers_again(rapp: App) -> None:
    ws = rapp.aml.workspace()
    tick()  # the first pass: the workspace's watermark starts now
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    _pipeline, [step] = ws.add_pipeline_run("train", steps=1, created=created, step_seconds=60)
    run_id = step["runId"]
    hidden = ws.runs.pop(run_id), ws.details.pop(run_id)
    invoke(event_of(ws, step, event_time=datetime.now(UTC) - timedelta(minutes=40)))
    [partial_copy] = _records(rapp, run_id)
    assert partial_copy["enrichment_error"].startswith("run not found in run history")
    assert len(_claims().partial_claims()) == 1

    tick()  # the run still 404s: nothing sent, the mark stays, the pass counts it
    assert len(_records(rapp, run_id)) == 1
    assert len(_claims().partial_claims()) == 1
    assert _last_pass(rapp)["partial_still_partial"] == "1"

    ws.runs[run_id], ws.details[run_id] = hidden  # run history answers for it again
    tick()

    first, complete = _records(rapp, run_id)
    assert first == partial_copy
    assert "enrichment_error" not in complete
    assert complete["record_source"] == "reconcile" and complete["completes_partial"] == "true"
    assert complete["status"] == "Completed" and complete["target"] == "cpu-cluster"
    assert int(complete["execution_time_ms"]) == 60_000
    assert _claims().partial_claims() == []
    assert _last_pass(rapp)["partial_completed"] == "1"

    tick()  # a second pass sends nothing more
    assert len(_records(rapp, run_id)) == 2
    assert _last_pass(rapp)["partial_completed"] == "0"

    # The dashboards keep, per key, the copy without enrichment_error: the step shows its duration.
    [row] = [r for r in _slowest_steps(rapp, datetime.now(UTC)) if r["Step run"] == run_id]
    assert (row["Duration (s)"], row["Compute target"], row["Status"]) == (60.0, "cpu-cluster", "Completed")


def test_two_racing_passes_send_the_completing_copy_once(rapp: App, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = rapp.aml.workspace()
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    _pipeline, [step] = ws.add_pipeline_run("train", steps=1, created=created, step_seconds=60)
    run_id = step["runId"]
    hidden = ws.runs.pop(run_id), ws.details.pop(run_id)
    invoke(event_of(ws, step, event_time=datetime.now(UTC) - timedelta(minutes=40)))
    ws.runs[run_id], ws.details[run_id] = hidden
    [partial] = _claims().partial_claims()

    # Both passes read the marked claim; the other clears it between this one's read and its write,
    # so this one's ETag no longer matches: it gets nothing to send.
    one, two = _claims(), _claims()
    read = two._read_entity

    def read_then_lose_the_race(key: str) -> tuple[dict[str, Any], str | None] | None:
        found = read(key)
        assert one.clear_partial(key) == partial.reason
        return found

    monkeypatch.setattr(two, "_read_entity", read_then_lose_the_race)
    assert two.clear_partial(partial.key) is None
    assert _claims().partial_claims() == []
    tick()  # and a pass now finds nothing to complete
    assert len(_records(rapp, run_id)) == 1
