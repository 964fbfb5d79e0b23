"""The telemetry a claim sent, kept on the claim's own Table entity so a resend repeats it exactly.

What a run status sends is decided once, when its claim moves to "sending"; a later attempt on the
same key (a POST that got no answer, a worker killed while sending, a 206) sends those bytes again
instead of asking run history and the prices API afresh, whose answers may have changed meanwhile.
This module only stores opaque bytes (``amlobs.resend`` encodes the unit); it is the Table layout.

Azure Table storage limits (https://learn.microsoft.com/azure/storage/tables/scalability-targets and
"Understanding the Table service data model", property types,
https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model):
an entity holds at most 1 MiB of data and 255 properties (PartitionKey, RowKey and Timestamp
included); an ``Edm.Binary`` or ``Edm.String`` property at most 64 KiB. So the (zlib-compressed)
bytes are cut into binary chunks of :data:`CHUNK_BYTES` (under 64 KiB) in properties ``unit_0`` …
``unit_<n-1>``, at most :data:`MAX_CHUNKS` of them (720,000 bytes, leaving far more than the claim's
own ~20 small properties need under 1 MiB). A compressed unit is a few KiB: one record, its summary,
two histogram points and two spans, each of which ingestion itself caps at 64 KB. One that would not
fit is not kept (the claim says so in ``unit_not_kept``): a resend then rebuilds it, as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

CHUNK_BYTES = 60_000
MAX_CHUNKS = 12
MAX_KEPT_BYTES = CHUNK_BYTES * MAX_CHUNKS
CHUNK_PREFIX = "unit_"
COUNT_PROPERTY = "unit_chunks"
DIGEST_PROPERTY = "unit_sha256"
NOT_KEPT_PROPERTY = "unit_not_kept"
PROPERTIES = frozenset(
    {COUNT_PROPERTY, DIGEST_PROPERTY, NOT_KEPT_PROPERTY, *(f"{CHUNK_PREFIX}{i}" for i in range(MAX_CHUNKS))}
)


def kept_properties(data: bytes | None) -> dict[str, Any]:
    """The entity properties holding ``data`` (none for None; a note instead when it is too large)."""
    if data is None:
        return {}
    if len(data) > MAX_KEPT_BYTES:
        return {NOT_KEPT_PROPERTY: f"{len(data)} bytes compressed, over the {MAX_KEPT_BYTES} kept on a claim"}
    chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    properties: dict[str, Any] = {f"{CHUNK_PREFIX}{i}": chunk for i, chunk in enumerate(chunks)}
    properties[COUNT_PROPERTY] = len(chunks)
    properties[DIGEST_PROPERTY] = hashlib.sha256(data).hexdigest()
    return properties


def read_kept(entity: Mapping[str, Any]) -> bytes | None:
    """The bytes :func:`kept_properties` stored, or None (none kept, or not intact: then rebuilt)."""
    count = entity.get(COUNT_PROPERTY)
    if not isinstance(count, int) or not 0 < count <= MAX_CHUNKS:
        return None
    parts = [entity.get(f"{CHUNK_PREFIX}{i}") for i in range(count)]
    if not all(isinstance(part, (bytes, bytearray)) for part in parts):
        return None
    data = b"".join(bytes(part) for part in parts if isinstance(part, (bytes, bytearray)))
    if hashlib.sha256(data).hexdigest() != entity.get(DIGEST_PROPERTY):
        return None
    return data
