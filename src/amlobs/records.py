"""Run event + run history answers → the flat record sent to Application Insights.

The keys are the contract with the workbook, the alert rules and users' own KQL (DESIGN.md):
the 2020 sample's names are kept as they were. A value that is unknown is left out, never
invented, so ``isempty(customDimensions.x)`` in KQL always means "AML did not tell us".
Where each field comes from, for SDK v1 and v2 jobs, is the README's "What gets recorded" table;
the readers are in :mod:`amlobs.run_facts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from . import run_facts as facts
from .events import RunEvent, normalise_status
from .status_time import STATUS_TIME_FIELDS

RecordValue = str | int
Record = dict[str, RecordValue]

# The 2020 sample's record keys, same spelling.
SEED_FIELDS: tuple[str, ...] = (
    "run_id",
    "status",
    "run_type",
    "experimentName",
    "experimentId",
    "subscriptions",
    "resourceGroup",
    "amlWorkSpace",
    "start_time_utc_ms",
    "end_time_utc_ms",
    "execution_time_ms",
    "target",
    "compute_target_type",
    "step_type",
    "node_id",
    "pipelinerunid",
    "snapshot_id",
    "script",
    "docker_image",
)
EXTRA_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_time",
    "event_type",
    "parent_run_id",
    "created_time_utc_ms",
    "queue_time_ms",
    "error_code",
    "error_message",
    "enrichment_error",
    # SDK v2 / AutoML / sweep / Designer aware fields (issue 7).
    "root_run_id",
    "job_kind",
    "run_source",
    "run_type_v2_orchestrator",
    "run_type_v2_attribution",
    "run_type_v2_traits",
    "display_name",
    "step_name",
    "is_reused",
    "reused_run_id",
    "compute_name",
    "compute_target_type_raw",
    "environment",
    "compute_duration_ms",
    "error_category",
    "error_code_chain",
    "error_details",
)
# The estimated cost of a finished run (amlobs.cost_estimator; its arithmetic, amlobs.cost). Named
# here, not there: importing amlobs.cost loads decimal, and this module is on the cold-start path.
COST_FIELDS: tuple[str, ...] = ("estimated_cost", "cost_currency", "cost_basis")
# The status time and origin are stamped by the processor (amlobs.status_time), the cost keys by
# amlobs.cost_estimator.
RECORD_FIELDS: tuple[str, ...] = SEED_FIELDS + EXTRA_FIELDS + STATUS_TIME_FIELDS + COST_FIELDS


def parse_utc(value: object) -> datetime | None:
    """ISO 8601 timestamp (run history style, ``Z`` or offset, up to 7 fractional digits), aware."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    # Python's fromisoformat takes at most 6 fractional digits; .NET writes 7.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def parse_utc_ms(value: object) -> int | None:
    """ISO 8601 timestamp → epoch milliseconds (None when absent or unparseable)."""
    parsed = parse_utc(value)
    return None if parsed is None else round(parsed.timestamp() * 1000)


def elapsed_ms(start_ms: int | None, end_ms: int | None) -> int | None:
    """``end - start``, or None when either is unknown or the clock went backwards (unknown, not 0)."""
    if start_ms is None or end_ms is None or end_ms < start_ms:
        return None
    return end_ms - start_ms


def iso_utc(value: object) -> str | None:
    """One spelling for event times whichever path delivered them (the Functions host re-serialises
    ``eventTime`` with six fractional digits and an offset; replay files keep .NET's seven and ``Z``)."""
    parsed = parse_utc(value)
    if parsed is not None:
        try:
            return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        except OverflowError:  # 0001-01-01T00:00+01:00 is in year 0 in UTC: keep the text as sent
            pass
    return value.strip() or None if isinstance(value, str) else None


def _bool_text(value: str | None) -> str | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    return lowered if lowered in ("true", "false") else None


def build_record(
    event: RunEvent,
    details: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    enrichment_error: str | None = None,
    *,
    definition: Mapping[str, Any] | None = None,
) -> Record:
    """One record for one event.

    ``details`` is ``/runs/{id}/details``, ``run`` is ``/runs/{id}`` (or ``rundata``'s
    ``runMetadata``), ``definition`` the run definition when it did not come with ``details``.
    """
    properties = [event.run_properties, facts.path(details, "properties"), facts.path(run, "properties")]
    tags = [event.run_tags, facts.path(details, "tags"), facts.path(run, "tags")]
    answers = [details, run]
    definition = definition or facts.run_definition(facts.path(details, "runDefinition"))
    ws = event.workspace

    start_ms = parse_utc_ms(facts.path(details, "startTimeUtc")) or parse_utc_ms(
        facts.path(run, "startTimeUtc")
    )
    end_ms = parse_utc_ms(facts.path(details, "endTimeUtc")) or parse_utc_ms(facts.path(run, "endTimeUtc"))
    # Run (/runs/{id}) says createdUtc; RunDetails (/details) says createdTimeUtc.
    created_ms = (
        parse_utc_ms(facts.path(run, "createdUtc"))
        or parse_utc_ms(facts.path(details, "createdTimeUtc"))
        or parse_utc_ms(facts.path(details, "createdUtc"))
    )
    # The event's runType may be null (Event Grid's own sample is): the run answers then say it.
    run_type = (
        event.run_type
        or facts.lookup(properties, "azureml.runsource")
        or facts.text(facts.path(run, "runType"))
    )
    kind = facts.job_kind(run_type, properties)
    status = event.run_status or normalise_status(facts.path(details, "status") or facts.path(run, "status"))
    type_v2 = facts.path(run, "runTypeV2") or facts.path(details, "runTypeV2")
    traits = facts.path(type_v2, "traits")
    name = facts.compute_name(definition, answers)
    normalised_type, raw_type = facts.compute_target_type(properties, answers)

    candidates: dict[str, RecordValue | None] = {
        "run_id": event.run_id,
        "status": status,
        "run_type": run_type,
        "experimentName": event.experiment_name or facts.text(facts.path(run, "experimentName")),
        "experimentId": event.experiment_id or facts.text(facts.path(run, "experimentId")),
        "subscriptions": ws.subscription_id,
        "resourceGroup": ws.resource_group,
        "amlWorkSpace": ws.workspace_name,
        "start_time_utc_ms": start_ms,
        "end_time_utc_ms": end_ms,
        "execution_time_ms": elapsed_ms(start_ms, end_ms),
        "target": facts.first_text(facts.path(details, "target"), facts.path(run, "target")),
        # Only answers that name no compute say "serverless"; an event alone says nothing about it.
        "compute_target_type": facts.serverless_type(normalised_type, name)
        if details is not None or run is not None
        else normalised_type,
        "step_type": facts.lookup(properties, "stepType", "azureml.stepType"),
        "node_id": facts.lookup(properties + tags, "azureml.nodeid"),
        "pipelinerunid": facts.lookup(tags + properties, "azureml.pipelinerunid")
        or (event.run_id if facts.is_pipeline(run_type) else None),
        "snapshot_id": facts.lookup(properties, "contentSnapshotId", "azureml.contentSnapshotId")
        or facts.first_text(facts.path(details, "snapshotId"), facts.path(run, "snapshotId")),
        "script": facts.script(definition, run),
        "docker_image": facts.image(definition, properties),
        "event_id": event.event_id,
        "event_time": iso_utc(event.event_time),
        "event_type": event.event_type,
        "parent_run_id": facts.first_text(facts.path(details, "parentRunId"), facts.path(run, "parentRunId")),
        "created_time_utc_ms": created_ms,
        "queue_time_ms": elapsed_ms(created_ms, start_ms),
        "enrichment_error": enrichment_error,
        "root_run_id": facts.first_text(facts.path(run, "rootRunId"), facts.path(details, "rootRunId")),
        "job_kind": kind,
        "run_source": facts.lookup(properties, "runSource"),
        "run_type_v2_orchestrator": facts.text(facts.path(type_v2, "orchestrator")),
        "run_type_v2_attribution": facts.text(facts.path(type_v2, "attribution")),
        "run_type_v2_traits": ",".join(t for t in traits if isinstance(t, str) and t.strip())
        if isinstance(traits, list)
        else None,
        "display_name": facts.text(facts.path(run, "displayName")),
        "step_name": facts.step_name(kind, run, properties),
        "is_reused": _bool_text(facts.lookup(properties, "azureml.isreused")),
        "reused_run_id": facts.lookup(properties, "azureml.reusedrunid"),
        "compute_name": name,
        "compute_target_type_raw": raw_type,
        "environment": facts.environment(definition),
        "compute_duration_ms": facts.first_known(
            facts.timespan_ms(facts.path(run, "computeDuration")),
            facts.timespan_ms(facts.path(details, "computeDuration")),
        ),
        **facts.error_facts(details, run),
    }
    return {key: value for key, value in candidates.items() if value is not None and value != ""}
