"""Event Grid event → validated :class:`RunEvent`, or :class:`EventRejected` with a reason.

Pure functions only: no I/O, so every rule here is unit- and property-tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import EventRejected

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
SUPPORTED_EVENT_TYPES: tuple[str, ...] = (RUN_STATUS_CHANGED, RUN_COMPLETED)

# Larger than any real AML event (tags and properties included) by a wide margin; anything bigger
# is rejected before we spend memory or storage on it.
MAX_EVENT_BYTES = 1024 * 1024
MAX_ID_LENGTH = 256
# A real AML event nests a handful of levels. Deeper JSON is refused before it is decoded: decoding
# (and later encoding) recurses once per level, and ~1,000 levels exhaust Python's stack.
MAX_NESTING = 128

# The AML run statuses (azure.ai.ml JobStatus / run history RunStatus), in their canonical spelling.
KNOWN_STATUSES: tuple[str, ...] = (
    "NotStarted",
    "Queued",
    "Preparing",
    "Provisioning",
    "Starting",
    "Running",
    "Finalizing",
    "CancelRequested",
    "Completed",
    "Failed",
    "Canceled",
    "NotResponding",
    "Paused",
    "Unknown",
)
TERMINAL_STATUSES: frozenset[str] = frozenset({"Completed", "Failed", "Canceled"})
_STATUS_BY_KEY = {s.lower(): s for s in KNOWN_STATUSES}
_STATUS_BY_KEY["cancelled"] = "Canceled"
_STATUS_BY_KEY["succeeded"] = "Completed"
_STATUS_BY_KEY["finished"] = "Completed"

_WORKSPACE_ID = re.compile(
    r"^/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<workspace>[^/]+)/?$",
    re.IGNORECASE,
)
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9._()\-]{1,256}")


def _is_safe_segment(value: str) -> bool:
    # fullmatch, not match with "$" (which also matches before a trailing newline); "." and ".." are
    # path segments that would walk up the run history / ARM URL the value is put into.
    return _SAFE_SEGMENT.fullmatch(value) is not None and value.strip(".") != ""


def normalise_status(value: object) -> str | None:
    """Canonical spelling of a run status (``"COMPLETED"``, ``"completed "`` → ``"Completed"``).

    An unrecognised status is kept (trimmed) rather than guessed; ``None``/blank gives ``None``.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    key = re.sub(r"[\s_\-]", "", text).lower()
    return _STATUS_BY_KEY.get(key, text)


@dataclass(frozen=True)
class WorkspaceRef:
    subscription_id: str
    resource_group: str
    workspace_name: str

    @property
    def resource_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )

    @property
    def cache_key(self) -> str:
        return self.resource_id.lower()

    @classmethod
    def from_resource_id(cls, resource_id: object) -> WorkspaceRef:
        if not isinstance(resource_id, str):
            raise EventRejected("topic_not_workspace", "topic is missing or not a string")
        match = _WORKSPACE_ID.match(resource_id.strip())
        if not match:
            raise EventRejected(
                "topic_not_workspace",
                f"topic is not an Azure Machine Learning workspace resource id: {resource_id[:300]!r}",
            )
        parts = (match["subscription"], match["group"], match["workspace"])
        if not all(_is_safe_segment(p) for p in parts):
            raise EventRejected(
                "topic_not_workspace", "topic has characters not allowed in a resource id segment"
            )
        return cls(*parts)


@dataclass(frozen=True)
class RunEvent:
    event_id: str
    event_type: str
    event_time: str | None
    subject: str | None
    workspace: WorkspaceRef
    run_id: str
    experiment_id: str | None
    experiment_name: str | None
    run_type: str | None
    run_status: str | None
    run_tags: Mapping[str, Any] = field(default_factory=dict)
    run_properties: Mapping[str, Any] = field(default_factory=dict)


def _size_in_bytes(payload: str | bytes | Mapping[str, Any]) -> int:
    """Size of the event as UTF-8 JSON, so the limit is the same whichever form the event arrives in
    (the Function hands over a dict, replay a dict or a line of text)."""
    if isinstance(payload, bytes):
        return len(payload)
    if isinstance(payload, str):
        if len(payload) > MAX_EVENT_BYTES:  # characters ≤ bytes: no need to encode a huge string
            return len(payload)
        return len(payload.encode("utf-8", "surrogatepass"))
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EventRejected("not_json", f"event cannot be represented as JSON: {exc}") from None
    return len(text.encode("utf-8", "surrogatepass"))


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def nested_deeper_than(text: str | bytes, limit: int) -> bool:
    """Whether JSON text opens more than ``limit`` arrays/objects inside each other (strings ignored).

    Iterative, so it answers for any depth; malformed text is left for the decoder to refuse.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def decode_event(payload: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    """Bytes/str → JSON object; a mapping passes through. Raises :class:`EventRejected`."""
    size = _size_in_bytes(payload)
    if size > MAX_EVENT_BYTES:
        raise EventRejected("too_large", f"event is {size} bytes, limit {MAX_EVENT_BYTES}")
    if isinstance(payload, Mapping):
        return payload
    if nested_deeper_than(payload, MAX_NESTING):
        raise EventRejected(
            "nested_too_deeply", f"event nests arrays/objects deeper than {MAX_NESTING} levels"
        )
    try:
        decoded = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EventRejected("not_json", f"event is not valid JSON: {exc}") from None
    except RecursionError:
        # "[[[[…" well within the size limit exhausts the parser's stack.
        raise EventRejected("not_json", "event is not valid JSON: nested too deeply") from None
    if not isinstance(decoded, dict):
        raise EventRejected("not_an_object", f"event is a JSON {type(decoded).__name__}, not an object")
    return decoded


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventRejected("wrong_type", f"data.{key} must be a string, got {type(value).__name__}")
    return value.strip() or None


def _optional_text(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _optional_map(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise EventRejected("wrong_type", f"data.{key} must be an object, got {type(value).__name__}")
    return dict(value)


def _identifier(value: object, name: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise EventRejected(f"missing_{name}", f"{name} is missing")
    if not isinstance(value, str):
        raise EventRejected("wrong_type", f"{name} must be a string, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH or not _is_safe_segment(value.strip()):
        raise EventRejected("bad_identifier", f"{name} is not a valid identifier: {value[:80]!r}")
    return value.strip()


def parse_event(payload: str | bytes | Mapping[str, Any]) -> RunEvent:
    """Validate one Event Grid schema event. Raises :class:`EventRejected` with the reason."""
    event = decode_event(payload)
    if "specversion" in event:
        raise EventRejected(
            "unsupported_schema", "CloudEvents schema is not supported: use the Event Grid schema"
        )
    # Event Grid's wire format says eventType; the azure-functions object (and the 2020 sample's
    # logging) says event_type. Accept both so dead-letter blobs and old captures replay.
    event_type = event.get("eventType", event.get("event_type"))
    if not isinstance(event_type, str) or not event_type:
        raise EventRejected("missing_event_type", "eventType is missing")
    if event_type not in SUPPORTED_EVENT_TYPES:
        raise EventRejected(
            "unsupported_event_type",
            f"eventType {event_type[:120]!r} is not one of {', '.join(SUPPORTED_EVENT_TYPES)}",
        )
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id.strip() or len(event_id) > MAX_ID_LENGTH:
        raise EventRejected("missing_id", "id is missing, not a string or longer than 256 characters")
    workspace = WorkspaceRef.from_resource_id(event.get("topic"))
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise EventRejected("missing_data", "data is missing or not an object")
    run_id = _identifier(data.get("runId"), "runId")
    experiment_id = data.get("experimentId")
    if isinstance(experiment_id, str) and not experiment_id.strip():
        experiment_id = None  # blank is unknown, as for experimentName: the name may still do
    experiment_id = _identifier(experiment_id, "experimentId") if experiment_id is not None else None
    experiment_name = _optional_str(data, "experimentName")
    if experiment_name is not None and not experiment_name.strip("."):
        # Used as a URL path segment when the id is unknown: "." and ".." would walk up the path.
        raise EventRejected("bad_identifier", f"experimentName is not a valid name: {experiment_name!r}")
    if experiment_id is None and experiment_name is None:
        raise EventRejected("missing_experiment", "data has neither experimentId nor experimentName")
    event_time = event.get("eventTime", event.get("event_time"))
    subject = event.get("subject")
    raw_status = data.get("runStatus")
    if raw_status is not None and not isinstance(raw_status, str):
        raise EventRejected("wrong_type", "data.runStatus must be a string")
    status = normalise_status(raw_status)
    if status is None and event_type == RUN_COMPLETED:
        status = "Completed"
    return RunEvent(
        event_id=event_id.strip(),
        event_type=event_type,
        event_time=_optional_text(event_time),
        subject=_optional_text(subject),
        workspace=workspace,
        run_id=run_id,
        experiment_id=experiment_id,
        experiment_name=experiment_name,
        run_type=_optional_str(data, "runType"),
        run_status=status,
        run_tags=_optional_map(data, "runTags"),
        run_properties=_optional_map(data, "runProperties"),
    )
