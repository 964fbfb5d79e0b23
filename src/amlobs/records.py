"""Run event + run history answers → the flat record sent to Application Insights.

The keys are the contract with the workbook, the alert rules and users' own KQL (DESIGN.md):
the 2020 sample's names are kept as they were. A value that is unknown is left out, never
invented, so ``isempty(customDimensions.x)`` in KQL always means "AML did not tell us".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

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
)
# The status time and origin are stamped by the processor (amlobs.status_time).
RECORD_FIELDS: tuple[str, ...] = SEED_FIELDS + EXTRA_FIELDS + STATUS_TIME_FIELDS

PIPELINE_RUN_TYPE = "azureml.PipelineRun"
MAX_ERROR_MESSAGE_CHARS = 4096


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


def _lookup(sources: Iterable[Mapping[str, Any] | None], *keys: str) -> str | None:
    """First non-empty string value among ``keys`` (case-insensitive) across ``sources``, in order."""
    wanted = [k.lower() for k in keys]
    for source in sources:
        # A malformed answer (properties as a list or a string) is unknown, not a crash that would
        # fail the invocation on every redelivery.
        if not isinstance(source, Mapping) or not source:
            continue
        lowered = {str(k).lower(): v for k, v in source.items()}
        for key in wanted:
            value = lowered.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
    return None


def _path(source: Mapping[str, Any] | None, *keys: str) -> Any:
    current: Any = source
    for key in keys:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _error(details: Mapping[str, Any] | None, run: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    for source in (details, run):
        error = _path(source, "error", "error") or _path(source, "error")
        if isinstance(error, Mapping):
            code = _text(error.get("code"))
            message = _text(error.get("message"))
            if code or message:
                if message and len(message) > MAX_ERROR_MESSAGE_CHARS:
                    message = message[:MAX_ERROR_MESSAGE_CHARS] + "…"
                return code, message
    return None, None


def build_record(
    event: RunEvent,
    details: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
    enrichment_error: str | None = None,
) -> Record:
    """One record for one event. ``details`` is ``/runs/{id}/details``, ``run`` is ``/runs/{id}``."""
    properties = [event.run_properties, _path(details, "properties"), _path(run, "properties")]
    tags = [event.run_tags, _path(details, "tags"), _path(run, "tags")]
    ws = event.workspace

    start_ms = parse_utc_ms(_path(details, "startTimeUtc")) or parse_utc_ms(_path(run, "startTimeUtc"))
    end_ms = parse_utc_ms(_path(details, "endTimeUtc")) or parse_utc_ms(_path(run, "endTimeUtc"))
    # Run (/runs/{id}) says createdUtc; RunDetails (/details) says createdTimeUtc.
    created_ms = (
        parse_utc_ms(_path(run, "createdUtc"))
        or parse_utc_ms(_path(details, "createdTimeUtc"))
        or parse_utc_ms(_path(details, "createdUtc"))
    )
    run_type = event.run_type or _lookup(properties, "azureml.runsource") or _text(_path(run, "runType"))
    error_code, error_message = _error(details, run)
    status = event.run_status or normalise_status(_path(details, "status") or _path(run, "status"))

    candidates: dict[str, RecordValue | None] = {
        "run_id": event.run_id,
        "status": status,
        "run_type": run_type,
        "experimentName": event.experiment_name or _text(_path(run, "experimentName")),
        "experimentId": event.experiment_id or _text(_path(run, "experimentId")),
        "subscriptions": ws.subscription_id,
        "resourceGroup": ws.resource_group,
        "amlWorkSpace": ws.workspace_name,
        "start_time_utc_ms": start_ms,
        "end_time_utc_ms": end_ms,
        "execution_time_ms": elapsed_ms(start_ms, end_ms),
        "target": _text(_path(details, "target")) or _text(_path(run, "target")),
        "compute_target_type": _lookup(
            properties, "computeTargetType", "azureml.computeTargetType", "_azureml.ComputeTargetType"
        )
        or _text(_path(run, "computeTargetType")),
        "step_type": _lookup(properties, "stepType", "azureml.stepType"),
        "node_id": _lookup(properties + tags, "azureml.nodeid"),
        "pipelinerunid": _lookup(tags + properties, "azureml.pipelinerunid")
        or (event.run_id if run_type == PIPELINE_RUN_TYPE else None),
        "snapshot_id": _lookup(properties, "contentSnapshotId", "azureml.contentSnapshotId")
        or _text(_path(details, "snapshotId"))
        or _text(_path(run, "snapshotId")),
        "script": _text(_path(details, "runDefinition", "script")),
        "docker_image": _text(_path(details, "runDefinition", "environment", "docker", "baseImage")),
        "event_id": event.event_id,
        "event_time": iso_utc(event.event_time),
        "event_type": event.event_type,
        "parent_run_id": _text(_path(details, "parentRunId")) or _text(_path(run, "parentRunId")),
        "created_time_utc_ms": created_ms,
        "queue_time_ms": elapsed_ms(created_ms, start_ms),
        "error_code": error_code,
        "error_message": error_message,
        "enrichment_error": enrichment_error,
    }
    return {key: value for key, value in candidates.items() if value is not None}
