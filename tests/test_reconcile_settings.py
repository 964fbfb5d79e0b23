"""The reconciler's settings and its workspace list: every bad value is refused with the setting named."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from amlobs.reconcile.options import ReconcileOptions
from amlobs.reconcile.state import MemoryReconcilerStore, WorkspaceState, read_state, state_entity
from amlobs.reconcile.workspaces import observed_workspaces
from amlobs.schedules.step import ScheduleOptions
from amlobs.settings import SettingsError

WS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"


def test_defaults_are_the_documented_ones() -> None:
    options = ReconcileOptions.from_env({})
    assert (options.overlap_seconds, options.max_runs_per_pass, options.max_seconds_per_pass) == (
        600,
        2000,
        240,
    )
    assert options.backfill_days == 0 and options.lease_seconds > options.max_seconds_per_pass
    schedules = ScheduleOptions.from_env({})
    assert (schedules.grace_seconds, schedules.overdue_factor, schedules.expectations) == (900, 2, ())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AML_OBS_BACKFILL_DAYS", "-1"),
        ("AML_OBS_BACKFILL_DAYS", "thirty"),
        ("AML_OBS_RECONCILE_MAX_RUNS", "0"),
        ("AML_OBS_RECONCILE_MAX_SECONDS", "nan"),
        ("AML_OBS_RECONCILE_OVERLAP_MINUTES", "inf"),
        ("AML_OBS_RECONCILE_CONCURRENCY", "99"),
    ],
)
def test_a_bad_reconciler_setting_is_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ReconcileOptions.from_env({name: value})


@pytest.mark.parametrize("value", ["{not json", '{"name": "x"}', "[1, 2]"])
def test_bad_expectations_are_refused_by_name(value: str) -> None:
    with pytest.raises(SettingsError, match="AML_OBS_EXPECTED_RUNS"):
        ScheduleOptions.from_env({"AML_OBS_EXPECTED_RUNS": value})


def test_the_workspace_list_is_the_deployed_one_each_once() -> None:
    other = WS.replace("/ws", "/other")
    found = observed_workspaces({"AML_OBS_WORKSPACE_IDS": f" {WS}, ,{other},{WS.upper()}"})
    assert [w.workspace_name for w in found] == ["ws", "other"]
    assert observed_workspaces({}) == []
    with pytest.raises(SettingsError, match="AML_OBS_WORKSPACE_IDS"):
        observed_workspaces({"AML_OBS_WORKSPACE_IDS": "/subscriptions/s/resourceGroups/rg"})


def test_the_watermark_round_trips_through_its_entity() -> None:
    at = datetime(2026, 12, 8, 6, tzinfo=UTC)
    state = WorkspaceState(WS, installed_at=at, watermark=at, listing_token="tok", open_runs={"r": "Running"})
    state.positions["schedule:schedule:s"] = "2026-12-08T06:00:00.000Z"
    assert read_state(state_entity(state)) == state


def test_the_lease_is_held_by_one_owner_until_it_expires() -> None:
    now = [datetime(2026, 12, 8, tzinfo=UTC)]
    store = MemoryReconcilerStore(clock=lambda: now[0])
    assert store.acquire_lease("a", 60) and not store.acquire_lease("b", 60)
    now[0] = now[0].replace(minute=2)
    assert store.acquire_lease("b", 60)
