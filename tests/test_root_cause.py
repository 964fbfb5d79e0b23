"""The root cause of a failed pipeline run (amlobs.failure), on the recorded children listing of the
sample's Designer pipeline (tests/data/aml/child_runs_failed.json) and nested listings made from it."""

from __future__ import annotations

import copy
from typing import Any

from amlobs.enrichment import PipelineListing
from amlobs.events import WorkspaceRef
from amlobs.failure import root_cause_fields
from amlobs.failure.root_cause import MAX_ROOT_CAUSE_MESSAGE_CHARS, first_failed_step
from tests.test_summary import PIPELINE_RUN, PIPELINE_RUN_ID, page

WS = WorkspaceRef("38e0c6f9-393e-413e-9d17-6e95dc2b5a5b", "sample", "sample-ws")
FAILED_STEPS = page("failed")["value"]
TRAIN = next(step for step in FAILED_STEPS if step["displayName"] == "train")


def failed(run_id: str, end: str, name: str, code: str = "UserError") -> dict[str, Any]:
    step = copy.deepcopy(TRAIN)
    step.update(runId=run_id, endTimeUtc=end, displayName=name, name=name)
    step["error"]["error"]["code"] = code
    return step


def sub_pipeline(run_id: str, name: str) -> dict[str, Any]:
    run = copy.deepcopy(PIPELINE_RUN)
    run.update(runId=run_id, displayName=name, status="Failed")
    return run


def test_the_recorded_failed_step_is_named_with_its_error_and_links() -> None:
    fields = root_cause_fields(
        WS, PIPELINE_RUN_ID, "Failed", PIPELINE_RUN, PipelineListing(PIPELINE_RUN_ID, FAILED_STEPS)
    )

    assert fields["root_cause_step_run_id"] == TRAIN["runId"]
    assert fields["root_cause_step_name"] == "train"
    assert fields["root_cause_error_category"] == fields["root_cause_error_code"] == "UserError"
    assert "root_cause_error_code_chain" not in {k for k, v in fields.items() if v}  # one level: no chain
    assert fields["root_cause_error_message"] == TRAIN["error"]["error"]["message"]
    assert fields["root_cause_step_logs_url"] == fields["root_cause_step_studio_url"] + "#outputsAndLogs"  # type: ignore[operator]
    assert fields.get("root_cause_note") is None


def test_the_failed_step_that_ended_first_wins_wherever_it_sits() -> None:
    late = failed("late", "2020-06-08T08:05:00Z", "late_step")
    early_inner = failed("early-inner", "2020-06-08T08:02:00Z", "inner_step", code="ServiceError")
    listing = PipelineListing(PIPELINE_RUN_ID, [late, sub_pipeline("sub-1", "prepare")])
    listing.nested["sub-1"] = PipelineListing("sub-1", [early_inner])

    fields = root_cause_fields(WS, PIPELINE_RUN_ID, "Failed", PIPELINE_RUN, listing)

    assert (fields["root_cause_step_run_id"], fields["root_cause_step_path"]) == (
        "early-inner",
        "prepare > inner_step",
    )
    assert fields["root_cause_error_code"] == "ServiceError"


def test_ties_go_to_the_listing_order_and_a_step_without_end_time_counts_last() -> None:
    unfinished = failed("no-end", "", "no_end")
    unfinished["endTimeUtc"] = None
    first, second = (
        failed("first", "2020-06-08T08:02:00Z", "a"),
        failed("second", "2020-06-08T08:02:00Z", "b"),
    )
    step, path = first_failed_step(PipelineListing(PIPELINE_RUN_ID, [unfinished, first, second]))  # type: ignore[misc]
    assert step["runId"] == "first" and path == ()


def test_a_failed_step_inside_an_unlisted_sub_pipeline_is_said_to_be_unknown() -> None:
    listing = PipelineListing(PIPELINE_RUN_ID, [sub_pipeline("sub-1", "prepare")])
    listing.nested["sub-1"] = PipelineListing("sub-1", None, error="HTTP 404")

    fields = root_cause_fields(WS, PIPELINE_RUN_ID, "Failed", PIPELINE_RUN, listing, incomplete_levels=1)

    assert (
        fields["root_cause_note"]
        == "no failed step among the listed steps (1 sub-pipeline(s) could not be listed)"
    )


def test_a_long_message_is_bounded_and_a_failed_step_without_error_says_so() -> None:
    step = failed("s", "2020-06-08T08:02:00Z", "s")
    step["error"]["error"]["message"] = "x" * 10_000
    fields = root_cause_fields(
        WS, PIPELINE_RUN_ID, "Failed", PIPELINE_RUN, PipelineListing(PIPELINE_RUN_ID, [step])
    )
    assert len(fields["root_cause_error_message"]) == MAX_ROOT_CAUSE_MESSAGE_CHARS  # type: ignore[arg-type]

    step["error"] = None
    fields = root_cause_fields(
        WS, PIPELINE_RUN_ID, "Failed", PIPELINE_RUN, PipelineListing(PIPELINE_RUN_ID, [step])
    )
    assert fields["root_cause_note"] == "the failed step's run carries no error: open its logs"


def test_a_completed_pipeline_has_links_but_no_root_cause() -> None:
    fields = root_cause_fields(
        WS, PIPELINE_RUN_ID, "Completed", PIPELINE_RUN, PipelineListing(PIPELINE_RUN_ID, FAILED_STEPS)
    )
    assert set(fields) == {"studio_url", "trace_operation_id"}
