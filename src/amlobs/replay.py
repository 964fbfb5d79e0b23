"""Reading events for ``replay``: files or folders of single events, arrays, JSON lines, Event Grid
dead-letter blobs, and this product's own rejected-event blobs (their original payload is re-driven).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .events import MAX_EVENT_BYTES

EVENT_FILE_SUFFIXES = frozenset({".json", ".jsonl", ".ndjson", ".txt", ""})
MAX_INPUT_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class InputItem:
    """One event to replay, with where it came from (``file:line`` or ``file[index]``)."""

    location: str
    payload: str | dict[str, Any] | None
    error: str | None = None


def _unwrap(value: Any) -> str | dict[str, Any]:
    """An event as found in a file: our rejected-event blob carries the original under ``payload``."""
    if isinstance(value, dict) and "payload" in value and "reason" in value and "id" not in value:
        payload = value["payload"]
        if isinstance(payload, str):
            return payload
    if isinstance(value, dict):
        return value
    return json.dumps(value)


def _read_text(path: Path) -> tuple[str | None, str | None]:
    try:
        size = path.stat().st_size
        if size > MAX_INPUT_FILE_BYTES:
            return None, f"file is {size} bytes, larger than {MAX_INPUT_FILE_BYTES}"
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot read file: {exc}"
    if not text.strip():
        return None, "file is empty"
    return text, None


def _iter_json_lines(path: Path, text: str) -> Iterator[InputItem]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        location = f"{path}:{number}"
        if len(line) > MAX_EVENT_BYTES:
            # Passed through so the processor rejects (and stores) it with the usual reason.
            yield InputItem(location, line)
            continue
        try:
            yield InputItem(location, _unwrap(json.loads(line)))
        except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[…" nested too deeply
            yield InputItem(location, line, f"line is not JSON: {exc}")


def iter_file(path: Path) -> Iterator[InputItem]:
    text, error = _read_text(path)
    if text is None:
        yield InputItem(str(path), None, error)
        return
    try:
        whole = json.loads(text)
    except (ValueError, RecursionError):
        yield from _iter_json_lines(path, text)
        return
    if not isinstance(whole, list):
        yield InputItem(str(path), _unwrap(whole))
        return
    # An Event Grid dead-letter blob is an array of events, each with its delivery history.
    if not whole:
        yield InputItem(str(path), None, "file holds an empty array")
    for index, item in enumerate(whole):
        yield InputItem(f"{path}[{index}]", _unwrap(item))


def iter_paths(paths: list[Path]) -> Iterator[InputItem]:
    for path in paths:
        if path.is_dir():
            files = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in EVENT_FILE_SUFFIXES
            )
            if not files:
                yield InputItem(str(path), None, "folder has no .json/.jsonl/.ndjson files")
            for file in files:
                yield from iter_file(file)
        elif path.is_file():
            yield from iter_file(path)
        else:
            yield InputItem(str(path), None, "no such file or folder")
