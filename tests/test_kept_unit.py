"""The unit a claim keeps (amlobs.resend + amlobs.storage.kept_unit): exact round trips, within the
Table limits, on Azurite (the real storage emulator), and the claims that say a record went out partial."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from amlobs.resend import UnitNotKeepable, decode_unit, encode_unit, flag_duplicate
from amlobs.settings import StorageSettings
from amlobs.storage import ClaimPolicy, MemoryDedupeStore, TableDedupeStore
from amlobs.storage.kept_unit import (
    CHUNK_BYTES,
    MAX_CHUNKS,
    MAX_KEPT_BYTES,
    NOT_KEPT_PROPERTY,
    kept_properties,
    read_kept,
)
from amlobs.telemetry_unit import TelemetryUnit
from amlobs.tracing import traced_unit
from tests.fakes.azurite import Azurite

NOW_MS = 1_796_000_000_000

RECORD: dict[str, str | int] = {
    "run_id": "step-1",
    "root_run_id": "pipe-1",
    "parent_run_id": "pipe-1",
    "status": "Completed",
    "amlWorkSpace": "ws",
    "subscriptions": "sub",
    "resourceGroup": "rg",
    "experimentName": "train",
    "step_name": "prep",
    "target": "cpu-cluster",
    "created_time_utc_ms": NOW_MS - 600_000,
    "start_time_utc_ms": NOW_MS - 500_000,
    "end_time_utc_ms": NOW_MS - 100_000,
    "execution_time_ms": 400_000,
    "queue_time_ms": 100_000,
    "cost_basis": "no estimate: prices API unavailable (HTTP 503)",
    "error_message": 'ünïcode ✓ and "quotes"',
}
SUMMARY: dict[str, str | int] = {
    "run_id": "pipe-1",
    "status": "Completed",
    "step_count": 2,
    "amlWorkSpace": "ws",
}


def _unit() -> TelemetryUnit:
    unit = traced_unit(RECORD, SUMMARY, now_ms=NOW_MS)
    unit.decided_at_ms = NOW_MS
    return unit


def test_a_unit_round_trips_exactly_spans_and_operations_included() -> None:
    unit = _unit()
    kinds = [item.kind for item in unit.items]
    assert kinds.count("span") == 2 and kinds.count("histogram") == 2 and kinds.count("event") == 2

    back = decode_unit(encode_unit(unit))

    assert back == unit
    assert [list(item.dimensions) for item in back.items] == [list(item.dimensions) for item in unit.items]


def test_the_flag_is_the_only_difference_of_a_flagged_copy() -> None:
    unit = _unit()
    flagged = flag_duplicate(decode_unit(encode_unit(unit)))
    # The same unit built the old way, flagged at build time, is what a flagged copy always was.
    built_flagged = traced_unit(RECORD, SUMMARY, now_ms=NOW_MS, maybe_duplicate=True)
    built_flagged.decided_at_ms = NOW_MS
    assert flagged == built_flagged
    assert all(
        item.dimensions.get("delivery_maybe_duplicate") == "true"
        for item in flagged.items
        if item.kind == "event"
    )


def test_a_unit_holding_a_finished_span_is_not_keepable() -> None:
    unit = TelemetryUnit()
    unit.add_span("x", object())
    with pytest.raises(UnitNotKeepable):
        encode_unit(unit)


@pytest.mark.parametrize("data", [b"garbage", encode_unit(_unit())[:-4], b""])
def test_bytes_it_did_not_write_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="not a kept telemetry unit"):
        decode_unit(data)


def test_chunks_stay_under_the_table_property_and_entity_limits() -> None:
    data = os.urandom(CHUNK_BYTES * 3 + 17)  # incompressible: the worst case
    properties = kept_properties(data)
    chunks = [v for k, v in properties.items() if k.startswith("unit_") and isinstance(v, bytes)]
    assert len(chunks) == 4 and all(len(c) <= CHUNK_BYTES < 64 * 1024 for c in chunks)
    assert read_kept(properties) == data
    assert MAX_KEPT_BYTES + 64 * 1024 < 1024 * 1024 and MAX_CHUNKS + 30 < 252
    # A chunk lost or changed: not trusted (the resend rebuilds instead of sending a wrong unit).
    assert read_kept({**properties, "unit_2": b"x"}) is None
    assert read_kept({k: v for k, v in properties.items() if k != "unit_3"}) is None


def test_a_unit_over_the_cap_is_not_kept_and_says_why() -> None:
    properties = kept_properties(b"\0" * (MAX_KEPT_BYTES + 1))
    assert list(properties) == [NOT_KEPT_PROPERTY]
    assert read_kept(properties) is None


def _table(azurite: Azurite) -> TableDedupeStore:
    return TableDedupeStore(
        StorageSettings(connection_string=azurite.connection_string),
        table_name=f"kept{uuid.uuid4().hex[:10]}",
        policy=ClaimPolicy(lease_seconds=60, wait_seconds=0.3, poll_seconds=0.05),
    )


@pytest.mark.parametrize("size", [2_000, CHUNK_BYTES * 5 + 1])
def test_kept_bytes_survive_release_and_take_over_on_azurite(storage_env: Azurite, size: int) -> None:
    store = _table(storage_env)
    data = os.urandom(size)
    first = store.claim("run|ws|r|completed", {"run_id": "r"})
    assert first is not None and first.kept is None
    first = store.start_sending(first, data)
    store.release(first, accepted=frozenset(), maybe_delivered=True)

    second = _table_like(store).claim("run|ws|r|completed", {"run_id": "r"})

    assert second is not None and second.kept == data and second.maybe_delivered
    second = store.start_sending(second)  # a resend keeps what it was given
    store.complete(second)
    [entity] = [e for e in storage_env.list_entities(store.table_name)]
    assert entity["state"] == "done"
    assert not any(name.startswith("unit_") for name in entity)  # dropped once done: nothing can need it


def _table_like(store: TableDedupeStore) -> TableDedupeStore:
    """Another worker's store on the same table."""
    return TableDedupeStore(store._storage, table_name=store.table_name, policy=store.policy)


def _record(store: Any, key: str, partial_reason: str | None = None) -> None:
    claim = store.claim(
        key, {"run_id": key.split("|")[2], "status": "Completed", "source_event_id": "e-" + key}
    )
    store.complete(store.start_sending(claim), partial_reason=partial_reason)


@pytest.mark.parametrize("kind", ["table", "memory"])
def test_claims_recorded_partial_are_listed_with_why(storage_env: Azurite, kind: str) -> None:
    store: Any = _table(storage_env) if kind == "table" else MemoryDedupeStore()
    assert store.partial_claims() == []  # no table yet: nothing recorded
    _record(store, "run|ws|complete|completed")
    _record(store, "run|ws|gone|completed", "run not found in run history for an event 40 min old")
    pending = store.claim("run|ws|pending|completed", {})
    store.release(store.start_sending(pending), accepted=frozenset(), maybe_delivered=False)

    [partial] = store.partial_claims()

    assert partial.key == "run|ws|gone|completed"
    assert partial.reason == "run not found in run history for an event 40 min old"
    assert (partial.run_id, partial.status, partial.source_event_id) == (
        "gone",
        "Completed",
        "e-run|ws|gone|completed",
    )
