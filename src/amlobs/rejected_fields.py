"""What can still be read of an event the processor rejects: its text to store, its id and type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import EventRejected
from .events import decode_event


def payload_text(payload: str | bytes | Mapping[str, Any]) -> str | bytes:
    if isinstance(payload, Mapping):
        try:
            return json.dumps(payload, default=str, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError) as exc:
            # The parser rejected the event for this very reason (not_json); raising here would fail
            # every redelivery instead of storing the rejection.
            return f"<event not representable as JSON: {type(exc).__name__}>"
    return payload


def _top_level_only(text: str) -> str:
    """JSON text with every array/object inside the outermost one replaced by ``null``.

    An event refused for its nesting still has readable top-level fields (id, eventType, topic) that
    say which event it was; this reads them with a flat, iterative scan instead of a recursive decode.
    """
    out: list[str] = []
    depth = 0
    skipping = False
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if char == '"':
            end = index + 1
            while end < size and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if not skipping:
                out.append(text[index : end + 1])
            index = end + 1
            continue
        if char in "[{":
            depth += 1
            if depth == 2 and not skipping:
                skipping = True
                out.append("null")
            elif not skipping:
                out.append(char)
        elif char in "]}":
            if not skipping:
                out.append(char)
            elif depth == 2:
                skipping = False
            depth -= 1
        elif not skipping:
            out.append(char)
        index += 1
    return "".join(out)


def best_effort_fields(payload: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    """What can still be read of an event that failed validation (for the blob and the log line)."""
    try:
        return decode_event(payload)
    except EventRejected as rejection:
        if rejection.code != "nested_too_deeply" or isinstance(payload, Mapping):
            return {}
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    try:
        shallow = json.loads(_top_level_only(text))
    except (ValueError, RecursionError):
        return {}
    return shallow if isinstance(shallow, dict) else {}


def field_text(decoded: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = decoded.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:256]
    return None
