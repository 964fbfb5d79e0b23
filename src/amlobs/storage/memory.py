"""Claims without Table storage: in one process (``replay --dry-run``, tests), or none at all."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .claims import (
    CLAIMED,
    DONE,
    PARTIAL_REASON,
    SENDING,
    Claim,
    ClaimPolicy,
    ClaimStoreBase,
    PartialClaim,
    StoredClaim,
    VersionConflict,
    dedupe_key,
    read_claim,
)


class MemoryDedupeStore(ClaimStoreBase):
    """Claims within one process (``replay --dry-run``, unit tests), with the Table store's semantics."""

    def __init__(self, policy: ClaimPolicy | None = None, **kwargs: Any) -> None:
        super().__init__(policy, **kwargs)
        self._lock = threading.Lock()
        self.entities: dict[str, tuple[dict[str, Any], int]] = {}

    @property
    def recorded(self) -> set[str]:
        """The keys recorded so far."""
        with self._lock:
            return {entity["event_id"] for entity, _ in self.entities.values() if entity["state"] == DONE}

    def _insert(self, entity: dict[str, Any]) -> str | None:
        with self._lock:
            if entity["RowKey"] in self.entities:
                raise VersionConflict
            self.entities[entity["RowKey"]] = (entity, 1)
            return "1"

    def _read(self, key: str) -> tuple[StoredClaim, str | None] | None:
        with self._lock:
            found = self.entities.get(dedupe_key(key).row_key)
        return (read_claim(found[0]), str(found[1])) if found is not None else None

    def _replace(self, entity: dict[str, Any], version: str | None) -> str | None:
        with self._lock:
            found = self.entities.get(entity["RowKey"])
            if found is None or str(found[1]) != version:
                raise VersionConflict
            self.entities[entity["RowKey"]] = (entity, found[1] + 1)
            return str(found[1] + 1)

    def _read_entity(self, key: str) -> tuple[dict[str, Any], str | None] | None:
        with self._lock:
            found = self.entities.get(dedupe_key(key).row_key)
        return (dict(found[0]), str(found[1])) if found is not None else None

    def _partial_entities(self) -> list[Mapping[str, Any]]:
        with self._lock:
            return [entity for entity, _ in self.entities.values() if entity.get(PARTIAL_REASON)]


class NullDedupeStore:
    """Storage off: every event is recorded (at-least-once delivery may then record duplicates)."""

    def claim(self, key: str, context: Mapping[str, str]) -> Claim | None:
        return Claim(key, uuid.uuid4().hex, None, CLAIMED)

    def start_sending(self, claim: Claim, kept: bytes | None = None) -> Claim:
        return replace(claim, state=SENDING)

    def complete(self, claim: Claim, *, partial_reason: str | None = None) -> None:
        return None

    def release(self, claim: Claim, *, accepted: frozenset[str], maybe_delivered: bool) -> None:
        return None

    def partial_claims(self) -> list[PartialClaim]:
        return []  # nothing is stored, so nothing is known to be partial

    def clear_partial(self, key: str) -> str | None:
        return None

    def mark_partial(self, key: str, reason: str) -> None:
        return None
