"""The chaos run, small: Event Grid's at-least-once delivery against the real function in worker
processes, with and without faults (the larger runs are ``bench/chaos.sh``; README "Reliability").

Targets: no (run, status) is ever lost; with no fault none is recorded twice, however deliveries
duplicate, reorder and race (``RunCompleted`` with ``RunStatusChanged``/Completed included); with
faults, the only duplicates are those the app could not rule out (a POST left unanswered, a worker
killed while sending) and each of them says so (``delivery_maybe_duplicate``). The same for the span
of each finished run, and every pipeline run's spans in one trace.
"""

from __future__ import annotations

import pytest

from tests.chaos.eventgrid import DeliveryPolicy
from tests.chaos.faults import FaultPlan
from tests.chaos.simulator import ChaosConfig, ChaosResult, run_chaos
from tests.fakes.azurite import missing_azurite_message

pytestmark = pytest.mark.integration


def _explain(result: ChaosResult) -> str:
    return f"figures: {result.figures.as_dict()}\nfailed deliveries: {result.failures_by_error()}"


@pytest.fixture(autouse=True)
def _azurite_installed() -> None:
    problem = missing_azurite_message()
    if problem:
        pytest.fail(problem, pytrace=False)


def test_without_faults_every_run_status_is_recorded_exactly_once() -> None:
    result = run_chaos(ChaosConfig(keys=90, seed=5, delivery=DeliveryPolicy(duplicate_rate=0.15)))
    figures = result.figures
    assert (
        figures.duplicate_deliveries > 0 and figures.published > figures.keys
    )  # duplicates and RunCompleted
    assert figures.lost == 0, _explain(result)
    # Every record enriched: the client's requests (api-version, /runs/{id}, /details, /children) are
    # the form the AML fake accepts, which refuses any other with a 400 (a partial record).
    assert figures.unenriched_records == 0 and figures.unenriched_keys == 0, _explain(result)
    assert (figures.disagreeing_keys, figures.disagreeing_summaries) == (0, 0), _explain(result)
    assert (figures.duplicated_keys, figures.extra_records) == (0, 0), _explain(result)
    assert (figures.duplicated_summaries, figures.missing_summaries) == (0, 0), _explain(result)
    assert figures.duration_points_stored == figures.duration_points_expected, _explain(result)
    assert figures.deadlettered == 0, _explain(result)
    # The cost estimate ran inside each claim (compute GET and prices from the fakes) for every step.
    assert figures.finished_steps > 0, _explain(result)
    assert (figures.unestimated_steps, figures.unestimated_summaries) == (0, 0), _explain(result)
    # Every finished run's span sent once, each pipeline run in one trace.
    assert figures.spans_expected > 0 and figures.spans_lost == 0, _explain(result)
    assert (figures.duplicated_spans, figures.traces_split) == (0, 0), _explain(result)


def test_with_faults_nothing_is_lost_and_every_duplicate_is_counted() -> None:
    config = ChaosConfig(
        keys=90,
        seed=7,
        # Few attempts, so that deliveries caught in an outage are dead-lettered and replay recovers them;
        # their backoff (0.6 + 1.2 + 2.4 s) outlasts a storage restart on a loaded machine (seconds), so
        # that most deliveries still reach AML and ingestion, where the per-request faults are injected.
        delivery=DeliveryPolicy(spread_seconds=6.0, max_attempts=4, backoff_seconds=0.6),
        faults=FaultPlan(
            rate=0.2,
            worker_kills=1,
            azurite_pauses=1,
            azurite_restarts=1,
            aml_403_windows=1,
            outage_window_fraction=0.6,  # all outages while deliveries are still going on
        ),
    )
    result = run_chaos(config)
    figures = result.figures
    assert sum(figures.faults.values()) > 20, _explain(result)
    outages = {name: figures.faults[name] for name in ("worker_kill", "azurite_pause", "azurite_restart")}
    assert outages == {"worker_kill": 1, "azurite_pause": 1, "azurite_restart": 1}, _explain(result)
    assert figures.faults["aml_403_window"] == 1, _explain(result)
    assert figures.lost == 0, _explain(result)
    assert figures.missing_summaries == 0, _explain(result)
    assert figures.uncounted_extra_records == 0, _explain(result)
    assert figures.duplicated_summaries == figures.counted_duplicated_summaries, _explain(result)
    assert figures.spans_lost == 0 and figures.traces_split == 0, _explain(result)
    assert figures.uncounted_duplicated_spans == 0, _explain(result)
    # Every copy of a key says the same, and no run (all of them exist) is left without its details.
    assert figures.faults["aml_404"] > 0, _explain(result)
    assert (figures.disagreeing_keys, figures.disagreeing_summaries) == (0, 0), _explain(result)
    assert figures.unenriched_keys == 0, _explain(result)
    if figures.deadlettered:
        assert result.replay_exit_code is not None, _explain(result)
