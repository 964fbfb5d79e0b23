"""The root cause of a failed or canceled pipeline run, as fields of its summary.

The root cause is the first failed *leaf* step: the failed step that ended first, sub-pipelines
descended (a failed sub-pipeline is never the answer, the step inside it is), ties in listing order.
Its error comes from the step's own run in the children listing (``Run.error``, a
``RunHistoryErrorResponse``: ``amlobs.run_facts.error_facts``), so no extra call is made. When no step
failed, the summary says so and names the pipeline run's own error, if it has one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .. import run_facts as facts
from ..enrichment import PipelineListing, is_pipeline_child
from ..events import WorkspaceRef, normalise_status
from ..records import RecordValue, parse_utc_ms
from .links import STEP_LOG_FILE, studio_logs_url, studio_run_url

ROOT_CAUSE_STATUSES = frozenset({"Failed", "Canceled"})
MAX_ROOT_CAUSE_MESSAGE_CHARS = 1024
_PATH_SEPARATOR = " > "

ROOT_CAUSE_FIELDS: tuple[str, ...] = (
    "studio_url",
    "trace_operation_id",
    "root_cause_step_run_id",
    "root_cause_step_name",
    "root_cause_step_node_id",
    "root_cause_step_path",
    "root_cause_step_studio_url",
    "root_cause_step_logs_url",
    "root_cause_step_log_file",
    "root_cause_error_category",
    "root_cause_error_code",
    "root_cause_error_code_chain",
    "root_cause_error_message",
    "root_cause_note",
)


def _name(run: Mapping[str, Any]) -> str | None:
    return facts.text(run.get("displayName")) or facts.text(run.get("name"))


def _leaf_steps(
    listing: PipelineListing, path: tuple[str, ...] = ()
) -> Iterator[tuple[dict[str, Any], tuple[str, ...]]]:
    """Each leaf step with the names of the sub-pipelines it sits in, in listing order."""
    for child in listing.children or ():
        if not is_pipeline_child(child):
            yield child, path
            continue
        nested = listing.nested.get(facts.text(child.get("runId")) or "")
        if nested is not None:
            label = _name(child) or facts.text(child.get("runId")) or "sub-pipeline"
            yield from _leaf_steps(nested, (*path, label))


def first_failed_step(listing: PipelineListing) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """The failed leaf step that ended first (one without an end time counts as ending last)."""
    failed = [
        (index, step, path)
        for index, (step, path) in enumerate(_leaf_steps(listing))
        if normalise_status(step.get("status")) == "Failed"
    ]
    if not failed:
        return None
    never = float("inf")
    _, step, path = min(failed, key=lambda item: (parse_utc_ms(item[1].get("endTimeUtc")) or never, item[0]))
    return step, path


def _capped(message: str | None) -> str | None:
    if message and len(message) > MAX_ROOT_CAUSE_MESSAGE_CHARS:
        return message[: MAX_ROOT_CAUSE_MESSAGE_CHARS - 1] + "…"
    return message


def _error_fields(answer: Mapping[str, Any] | None) -> dict[str, RecordValue | None]:
    found = facts.error_facts(answer)
    return {
        "root_cause_error_category": found.get("error_category"),
        "root_cause_error_code": found.get("error_code"),
        "root_cause_error_code_chain": found.get("error_code_chain"),
        "root_cause_error_message": _capped(found.get("error_message")),
    }


def root_cause_fields(
    ws: WorkspaceRef,
    run_id: str,
    status: str | None,
    pipeline_run: Mapping[str, Any] | None,
    listing: PipelineListing | None,
    *,
    incomplete_levels: int = 0,
) -> dict[str, RecordValue | None]:
    """The summary's links for any finished pipeline, plus its root cause when it failed or was canceled.

    ``listing`` None: the steps are unknown, and the note says the root cause could not be read.
    ``incomplete_levels``: sub-pipelines that could not be listed (a failed step may hide there).
    """
    values: dict[str, RecordValue | None] = {"studio_url": studio_run_url(ws, run_id)}
    if pipeline_run is not None:  # else its root, and so its trace, is unknown (amlobs.tracing.operation_of)
        from ..tracing import trace_id_for  # on the first summary, not at the host's indexing (cold start)

        root_run_id = facts.text(pipeline_run.get("rootRunId")) or run_id
        values["trace_operation_id"] = f"{trace_id_for(ws.cache_key, root_run_id):032x}"

    if status not in ROOT_CAUSE_STATUSES:
        return values
    found = first_failed_step(listing) if listing is not None else None
    if found is not None:
        step, path = found
        step_id = facts.text(step.get("runId"))
        values.update(
            root_cause_step_run_id=step_id,
            root_cause_step_name=_name(step),
            root_cause_step_node_id=facts.lookup(
                [step.get("properties"), step.get("tags")], "azureml.nodeid"
            ),
            root_cause_step_path=_PATH_SEPARATOR.join((*path, _name(step) or step_id or "step"))
            if path
            else None,
            root_cause_step_studio_url=studio_run_url(ws, step_id) if step_id else None,
            root_cause_step_logs_url=studio_logs_url(ws, step_id) if step_id else None,
            root_cause_step_log_file=STEP_LOG_FILE if step_id else None,
            **_error_fields(step),
        )
        if values["root_cause_error_code"] is None and values["root_cause_error_message"] is None:
            values["root_cause_note"] = "the failed step's run carries no error: open its logs"
        return values
    # No failed step: the pipeline's own error (a failed validation, a canceled run's reason) is all there is.
    values.update(_error_fields(pipeline_run))
    reason = facts.text((pipeline_run or {}).get("cancelationReason"))
    if listing is None:
        note = "no root cause: the pipeline's steps could not be listed"
    elif incomplete_levels:
        note = (
            f"no failed step among the listed steps ({incomplete_levels} sub-pipeline(s) could not be listed)"
        )
    elif status == "Canceled":
        note = "no step failed: the pipeline run was canceled" + (f" ({reason})" if reason else "")
    else:
        note = "no step failed: the pipeline run itself failed" + (
            "" if values["root_cause_error_code"] else " and says no error"
        )
    values["root_cause_note"] = note
    return values
