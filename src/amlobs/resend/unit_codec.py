"""A telemetry unit ⇄ bytes, exactly: what a later attempt on the same key sends again.

Everything an envelope is built from is in the bytes: each item's key, kind, name, dimensions, value
and place in its trace, each span's plan (ids, times, attributes, status), and the moment the unit
was decided (``decided_at_ms``: the time of the event and metric envelopes). The Azure Monitor sink
builds envelopes from these alone, so a resend differs from the first send only by the flag
``delivery_maybe_duplicate`` (and, for a unit resent after ingestion's 48 h window closed on its
time, by that time: amlobs._azure_monitor).

JSON compressed with zlib (a unit is a few KiB of repetitive text); keys keep their order, so the
decoded dimensions list in the order they were first sent.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..telemetry_unit import MAYBE_DUPLICATE, TelemetryItem, TelemetryUnit
from ..tracing import SpanPlan

FORMAT_VERSION = 1
_FLAG = {MAYBE_DUPLICATE: "true"}


class UnitNotKeepable(ValueError):
    """The unit holds something that cannot be kept as bytes (a finished OpenTelemetry span)."""


def _span_to_json(plan: object, key: str) -> dict[str, Any]:
    if not isinstance(plan, SpanPlan):
        raise UnitNotKeepable(f"telemetry item {key} holds a {type(plan).__name__}, not a span plan")
    return {
        "key": plan.key,
        "name": plan.name,
        "root": plan.root,
        "trace_id": format(plan.trace_id, "032x"),
        "span_id": format(plan.span_id, "016x"),
        "parent_span_id": None if plan.parent_span_id is None else format(plan.parent_span_id, "016x"),
        "start_ms": plan.start_ms,
        "end_ms": plan.end_ms,
        "workspace": plan.workspace,
        "attributes": dict(plan.attributes),
        "error": plan.error,
    }


def _span_from_json(data: Mapping[str, Any]) -> SpanPlan:
    parent = data.get("parent_span_id")
    return SpanPlan(
        key=str(data["key"]),
        name=str(data["name"]),
        root=bool(data["root"]),
        trace_id=int(data["trace_id"], 16),
        span_id=int(data["span_id"], 16),
        parent_span_id=None if parent is None else int(parent, 16),
        start_ms=int(data["start_ms"]),
        end_ms=int(data["end_ms"]),
        workspace=str(data["workspace"]),
        attributes=dict(data.get("attributes") or {}),
        error=data.get("error"),
    )


def _item_to_json(item: TelemetryItem) -> dict[str, Any]:
    return {
        "key": item.key,
        "kind": item.kind,
        "name": item.name,
        "dimensions": dict(item.dimensions),
        "value": item.value,
        "operation": None if item.operation is None else [format(part, "x") for part in item.operation],
        "span": None if item.kind != "span" else _span_to_json(item.span, item.key),
    }


def _item_from_json(data: Mapping[str, Any]) -> TelemetryItem:
    operation = data.get("operation")
    span = data.get("span")
    return TelemetryItem(
        key=str(data["key"]),
        kind=data["kind"],
        name=str(data["name"]),
        dimensions={str(k): str(v) for k, v in (data.get("dimensions") or {}).items()},
        value=float(data.get("value") or 0.0),
        span=None if span is None else _span_from_json(span),
        operation=None if operation is None else (int(operation[0], 16), int(operation[1], 16)),
    )


def encode_unit(unit: TelemetryUnit) -> bytes:
    """The unit as compressed bytes. Raises :class:`UnitNotKeepable` for a unit that cannot be kept."""
    document = {
        "v": FORMAT_VERSION,
        "decided_at_ms": unit.decided_at_ms,
        "items": [_item_to_json(item) for item in unit.items],
    }
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return zlib.compress(text.encode("utf-8"), 9)


def decode_unit(data: bytes) -> TelemetryUnit:
    """The unit :func:`encode_unit` kept. Raises ``ValueError`` for bytes it did not write."""
    try:
        document = json.loads(zlib.decompress(data).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a kept telemetry unit: {exc}") from exc
    if not isinstance(document, dict) or document.get("v") != FORMAT_VERSION:
        raise ValueError("not a kept telemetry unit of this version")
    decided = document.get("decided_at_ms")
    try:
        items = [_item_from_json(item) for item in document.get("items") or []]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"not a kept telemetry unit: {exc!r}") from exc
    return TelemetryUnit(items, decided_at_ms=decided if isinstance(decided, int) else None)


def flag_duplicate(unit: TelemetryUnit) -> TelemetryUnit:
    """The same unit saying ``delivery_maybe_duplicate=true`` on its events and spans (as a copy sent
    after an attempt whose outcome nobody knows does); metric points carry no such dimension."""
    return TelemetryUnit([_flagged(item) for item in unit.items], decided_at_ms=unit.decided_at_ms)


def _flagged(item: TelemetryItem) -> TelemetryItem:
    if item.kind == "event":
        return replace(item, dimensions={**item.dimensions, **_FLAG})
    if item.kind == "span" and isinstance(item.span, SpanPlan):
        return replace(item, span=replace(item.span, attributes={**item.span.attributes, **_FLAG}))
    return item
