"""Rejected events: JSON blobs in container ``rejected-events``, or kept in memory, or only logged.

A rejected event is one that can never be processed (malformed, unsupported): it is kept with its
reason and its original payload, as text when it is valid UTF-8 and base64 otherwise, so that it can
be examined and replayed (``amlobs replay`` re-drives these blobs). Every storage failure surfaces as
:class:`~amlobs.errors.StorageUnavailable`: the invocation fails and Event Grid redelivers, so no
rejected event is lost.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import StorageUnavailable
from ..settings import StorageSettings
from ._azure import CreatedOnce, Lazy, StorageTimeouts, check_identity, describe, logger, utc_now

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.storage.blob import ContainerClient

REJECTED_CONTAINER = "rejected-events"

# Event Grid caps an event at 1 MB, so a payload above this is already pathological: keep its head
# plus size and sha256 rather than let one event fill memory or storage.
MAX_STORED_PAYLOAD_BYTES = 1024 * 1024
# How much of a payload a log line carries when storage is off (log records have size limits too).
LOG_PAYLOAD_HEAD_CHARS = 2000

_BLOB_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RejectedEventStore(Protocol):
    def store(self, payload: str | bytes, *, reason: str, detail: str, event_id: str | None) -> str | None:
        """Keep a rejected event; returns where it went (a blob name) or ``None`` when storage is off."""
        ...


def rejected_blob_name(event_id: str | None, received_at: datetime, unique: str) -> str:
    """``YYYY/MM/DD/<id or sha>-<unique>.json``: browsable by day, never colliding."""
    if event_id and _BLOB_SAFE_ID.match(event_id):
        stem = event_id
    elif event_id:
        stem = "sha256-" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    else:
        stem = "no-event-id"
    return f"{received_at.astimezone(UTC):%Y/%m/%d}/{stem}-{unique}.json"


def _payload_bytes(payload: str | bytes) -> bytes:
    if isinstance(payload, bytes):
        return payload
    # surrogatepass: a str with lone surrogates still round-trips (it is then stored as base64).
    return payload.encode("utf-8", "surrogatepass")


def rejected_document(
    payload: str | bytes,
    *,
    reason: str,
    detail: str,
    event_id: str | None,
    received_at: datetime,
    max_payload_bytes: int = MAX_STORED_PAYLOAD_BYTES,
) -> dict[str, Any]:
    """The JSON body of a rejected-event blob.

    The payload is kept as text when it is valid UTF-8, else base64 (``payload_encoding`` says
    which), so even garbage can be examined and replayed. Above ``max_payload_bytes`` only the
    head is kept (``payload_truncated``); size and SHA-256 always describe the whole payload.
    """
    data = _payload_bytes(payload)
    truncated = len(data) > max_payload_bytes
    head = data[:max_payload_bytes] if truncated else data
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(head).decode("ascii"), "base64"
    else:
        # A cut inside a multi-byte character leaves a partial sequence at the very end only.
        text, encoding = head.decode("utf-8", "ignore"), "utf-8"
    document: dict[str, Any] = {
        "reason": reason,
        "detail": detail,
        "received_at": received_at.astimezone(UTC).isoformat(timespec="milliseconds"),
    }
    if event_id is not None:
        document["event_id"] = event_id
    document.update(
        payload=text,
        payload_encoding=encoding,
        payload_truncated=truncated,
        payload_size_bytes=len(data),
        payload_sha256=hashlib.sha256(data).hexdigest(),
    )
    return document


def rejected_body(document: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON; a lone surrogate (legal in a JSON-decoded id or detail) is kept as a \\u escape."""
    try:
        return json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(document, ensure_ascii=True).encode("ascii")


def _header_safe(value: str, limit: int = 256) -> str:
    """Blob metadata travels as HTTP headers: printable ASCII only."""
    return re.sub(r"[^\x20-\x7e]", "_", value).strip()[:limit]


def rejected_metadata(document: Mapping[str, Any]) -> dict[str, str]:
    metadata = {
        "reason": _header_safe(str(document["reason"])) or "unknown",
        "payload_truncated": "true" if document["payload_truncated"] else "false",
    }
    event_id = document.get("event_id")
    # Only an id that survives as a header verbatim: a mangled id in metadata would mislead.
    if isinstance(event_id, str) and event_id and _header_safe(event_id) == event_id:
        metadata["event_id"] = event_id
    return metadata


def payload_head(payload: str | bytes, limit: int = LOG_PAYLOAD_HEAD_CHARS) -> str:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


# ---------------------------------------------------------------------------------------------
# In-memory and null stores.


@dataclass(frozen=True)
class StoredRejection:
    name: str
    document: dict[str, Any]
    metadata: dict[str, str]


class MemoryRejectedEventStore:
    """Keeps rejected events in a list, with the same names and documents as the blob store."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.stored: list[StoredRejection] = []

    def store(self, payload: str | bytes, *, reason: str, detail: str, event_id: str | None) -> str | None:
        received_at = self._clock()
        document = rejected_document(
            payload, reason=reason, detail=detail, event_id=event_id, received_at=received_at
        )
        name = rejected_blob_name(event_id, received_at, uuid.uuid4().hex)
        with self._lock:
            self.stored.append(StoredRejection(name, document, rejected_metadata(document)))
        return name


class NullRejectedEventStore:
    """Storage off: a rejected event is only logged, with the head of its payload, and counted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def store(self, payload: str | bytes, *, reason: str, detail: str, event_id: str | None) -> str | None:
        with self._lock:
            self.count += 1
        logger.warning(
            "rejected event %s not stored (no storage configured): %s: %s; payload: %s",
            event_id or "<no id>",
            reason,
            detail,
            payload_head(payload),
        )
        return None


# ---------------------------------------------------------------------------------------------


class BlobRejectedEventStore:
    """Rejected events as JSON blobs in container ``rejected-events`` (by default)."""

    def __init__(
        self,
        storage: StorageSettings,
        credential: TokenCredential | None = None,
        *,
        container_name: str = REJECTED_CONTAINER,
        timeouts: StorageTimeouts | None = None,
        clock: Callable[[], datetime] = utc_now,
        max_payload_bytes: int = MAX_STORED_PAYLOAD_BYTES,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``client_options``: extra keyword arguments for the SDK client (transport, hooks, TLS)."""
        check_identity(storage, credential)
        self.container_name = container_name
        self._client_options = dict(client_options or {})
        self._storage = storage
        self._credential = credential
        self._timeouts = timeouts or StorageTimeouts()
        self._clock = clock
        self._max_payload_bytes = max_payload_bytes
        self._client: Lazy[ContainerClient] = Lazy(self._build_client)
        self._container = CreatedOnce("blob container", container_name, "ContainerNotFound")

    def _build_client(self) -> ContainerClient:
        from azure.storage.blob import ContainerClient, LinearRetry

        t = self._timeouts
        options: dict[str, Any] = {
            "connection_timeout": t.connection_timeout_seconds,
            "read_timeout": t.read_timeout_seconds,
            # The blob SDK's default retry waits 15 s and more between attempts.
            "retry_policy": LinearRetry(
                backoff=t.backoff_seconds,  # type: ignore[arg-type]  # annotated int, any number works
                retry_total=t.max_attempts - 1,
                random_jitter_range=0,
            ),
        }
        options.update(self._client_options)
        if self._storage.connection_string:
            return ContainerClient.from_connection_string(
                self._storage.connection_string, self.container_name, **options
            )
        assert self._storage.blob_service_uri is not None
        return ContainerClient(
            self._storage.blob_service_uri, self.container_name, credential=self._credential, **options
        )

    def store(self, payload: str | bytes, *, reason: str, detail: str, event_id: str | None) -> str | None:
        from azure.core.exceptions import AzureError
        from azure.storage.blob import ContentSettings

        received_at = self._clock()
        document = rejected_document(
            payload,
            reason=reason,
            detail=detail,
            event_id=event_id,
            received_at=received_at,
            max_payload_bytes=self._max_payload_bytes,
        )
        name = rejected_blob_name(event_id, received_at, uuid.uuid4().hex)
        body = rejected_body(document)
        upload: dict[str, Any] = {
            "overwrite": False,
            "metadata": rejected_metadata(document),
            "content_settings": ContentSettings(content_type="application/json; charset=utf-8"),
        }
        try:
            client = self._client.get()
        except ValueError as exc:
            raise StorageUnavailable(f"blob storage is misconfigured: {exc}") from exc
        try:
            self._container.write(client.create_container, lambda: client.upload_blob(name, body, **upload))
        except AzureError as exc:
            raise StorageUnavailable(
                f"storing rejected event in container {self.container_name} failed: {describe(exc)}"
            ) from exc
        return name
