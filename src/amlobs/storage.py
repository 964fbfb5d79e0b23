"""Dedupe state (Table ``processedevents``) and rejected events (Blob container ``rejected-events``).

The azure.data.tables / azure.storage.blob imports happen on first use, not at import: importing
this module is part of the Function's cold start. Clients are built once per store and stores once
per process (``runtime.get_processor``). Every storage failure surfaces as
:class:`~amlobs.errors.StorageUnavailable`, a transient error, so the invocation fails and Event
Grid redelivers: nothing is marked processed and no rejected event is lost.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .errors import StorageUnavailable
from .settings import STORAGE_SETTING, Settings, SettingsError, StorageSettings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient
    from azure.storage.blob import ContainerClient

logger = logging.getLogger("amlobs.storage")

DEDUPE_TABLE = "processedevents"
REJECTED_CONTAINER = "rejected-events"

# Event Grid caps an event at 1 MB, so a payload above this is already pathological: keep its head
# plus size and sha256 rather than let one event fill memory or storage.
MAX_STORED_PAYLOAD_BYTES = 1024 * 1024
# How much of a payload a log line carries when storage is off (log records have size limits too).
LOG_PAYLOAD_HEAD_CHARS = 2000

# 256 partitions: enough spread for any event rate this app sees, few enough to scan per partition.
_PARTITION_HEX_CHARS = 2
_MAX_CONTEXT_PROPERTIES = 16
_MAX_CONTEXT_VALUE_CHARS = 1024
_MAX_STORED_ID_CHARS = 1024
_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_RESERVED_PROPERTIES = frozenset({"PartitionKey", "RowKey", "Timestamp", "event_id", "processed_at"})
_BLOB_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class DedupeStore(Protocol):
    def is_processed(self, event_id: str) -> bool: ...
    def mark_processed(self, event_id: str, context: Mapping[str, str]) -> None: ...


class RejectedEventStore(Protocol):
    def store(self, payload: str | bytes, *, reason: str, detail: str, event_id: str | None) -> str | None:
        """Keep a rejected event; returns where it went (a blob name) or ``None`` when storage is off."""
        ...


# ---------------------------------------------------------------------------------------------
# Pure core: keys, names and documents.


@dataclass(frozen=True)
class DedupeKey:
    partition_key: str
    row_key: str


def dedupe_key(event_id: str) -> DedupeKey:
    """Table keys for an event id.

    Table keys forbid ``/ \\ # ?`` and control characters and are limited to 1 KiB, while an event
    id is any string: the RowKey is the SHA-256 of its UTF-8 bytes (lossless for lookup, collisions
    are not a practical concern) and the PartitionKey its first hex digits, which spreads load.
    """
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()
    return DedupeKey(partition_key=digest[:_PARTITION_HEX_CHARS], row_key=digest)


def dedupe_entity(event_id: str, context: Mapping[str, str], processed_at: datetime) -> dict[str, Any]:
    """The entity stored for a processed event: keys, the id itself and a little ops context."""
    key = dedupe_key(event_id)
    entity: dict[str, Any] = {}
    for name, value in context.items():
        # Property names must be identifiers; a context key that is not one is ops sugar, not worth
        # failing an invocation whose telemetry is already flushed.
        if len(entity) >= _MAX_CONTEXT_PROPERTIES:
            break
        if _PROPERTY_NAME.match(name) and name not in _RESERVED_PROPERTIES:
            entity[name] = str(value)[:_MAX_CONTEXT_VALUE_CHARS]
    entity.update(
        PartitionKey=key.partition_key,
        RowKey=key.row_key,
        event_id=event_id[:_MAX_STORED_ID_CHARS],
        processed_at=processed_at,
    )
    return entity


def _utc_now() -> datetime:
    return datetime.now(UTC)


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


class MemoryDedupeStore:
    """Dedupe within one process (``replay --dry-run``, unit tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.processed: dict[str, dict[str, str]] = {}

    def is_processed(self, event_id: str) -> bool:
        with self._lock:
            return event_id in self.processed

    def mark_processed(self, event_id: str, context: Mapping[str, str]) -> None:
        with self._lock:
            self.processed[event_id] = dict(context)


@dataclass(frozen=True)
class StoredRejection:
    name: str
    document: dict[str, Any]
    metadata: dict[str, str]


class MemoryRejectedEventStore:
    """Keeps rejected events in a list, with the same names and documents as the blob store."""

    def __init__(self, clock: Callable[[], datetime] = _utc_now) -> None:
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


class NullDedupeStore:
    """Storage off: every event is processed (at-least-once delivery may then record duplicates)."""

    def is_processed(self, event_id: str) -> bool:
        return False

    def mark_processed(self, event_id: str, context: Mapping[str, str]) -> None:
        return None


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
# Azure Storage stores.


@dataclass(frozen=True)
class StorageTimeouts:
    """Client timeouts and retries: a dead storage account must fail an invocation in seconds.

    Storage sits in the Function's region, so a connection that takes seconds is already broken;
    Event Grid's redelivery (minutes apart) is the long-term retry.
    """

    connection_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 10.0
    max_attempts: int = 3
    backoff_seconds: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageTimeouts:
        return cls(
            connection_timeout_seconds=min(settings.http_timeout_seconds, 5.0),
            read_timeout_seconds=settings.http_timeout_seconds,
            max_attempts=max(1, min(settings.http_max_attempts, 3)),
        )


T = TypeVar("T")


class _Lazy(Generic[T]):
    """Built on first use, once, even when invocations run on several threads."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._factory()
        return self._value


class _CreatedOnce:
    """The table or container a store writes to: created on the first write (Bicep creates it too),
    and once more if it was deleted behind the store's back."""

    def __init__(self, kind: str, name: str, not_found_code: str) -> None:
        self.kind = kind
        self.name = name
        self._not_found_code = not_found_code
        self._ready = False
        self._lock = threading.Lock()

    def write(self, create: Callable[[], object], write: Callable[[], object]) -> None:
        from azure.core.exceptions import AzureError

        self._ensure(create)
        try:
            write()
        except AzureError as exc:
            if not _is_not_found(exc, self._not_found_code):
                raise
            self._ready = False
            self._ensure(create)
            write()

    def _ensure(self, create: Callable[[], object]) -> None:
        if self._ready:
            return
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        with self._lock:
            if self._ready:
                return
            try:
                create()
                logger.info("created %s %s", self.kind, self.name)
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise
                # An identity may hold data rights without create rights; Bicep creates the
                # table and containers, and a missing one still surfaces on the write itself.
                logger.info(
                    "may not create %s %s (%s): assuming it exists",
                    self.kind,
                    self.name,
                    getattr(exc, "error_code", None),
                )
            self._ready = True


def _check_identity(storage: StorageSettings, credential: TokenCredential | None) -> None:
    if storage.connection_string:
        return
    if credential is None:
        raise SettingsError(f"{STORAGE_SETTING}__* (identity-based storage) needs a credential")
    for uri in (storage.blob_service_uri, storage.table_service_uri):
        # The SDKs refuse bearer tokens over plain http (even on loopback): say so at start-up.
        if uri and not uri.lower().startswith("https://"):
            raise SettingsError(f"identity-based storage needs https:// service URIs, got {uri!r}")


def _describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    code = getattr(error, "error_code", None)
    code = getattr(code, "value", code)
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    parts = [f"HTTP {status}" if status else None, str(code) if code else None, first_line]
    return ", ".join(p for p in parts if p)


def _is_not_found(error: Exception, code: str) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    # error_code is a str enum (TableErrorCode / StorageErrorCode): equal to its wire value.
    return isinstance(error, ResourceNotFoundError) and getattr(error, "error_code", None) == code


class TableDedupeStore:
    """Processed event ids in Azure Table storage (table ``processedevents`` by default)."""

    def __init__(
        self,
        storage: StorageSettings,
        credential: TokenCredential | None = None,
        *,
        table_name: str = DEDUPE_TABLE,
        timeouts: StorageTimeouts | None = None,
        clock: Callable[[], datetime] = _utc_now,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``client_options``: extra keyword arguments for the SDK client (transport, hooks, TLS)."""
        _check_identity(storage, credential)
        self.table_name = table_name
        self._client_options = dict(client_options or {})
        self._storage = storage
        self._credential = credential
        self._timeouts = timeouts or StorageTimeouts()
        self._clock = clock
        self._client: _Lazy[TableClient] = _Lazy(self._build_client)
        self._table = _CreatedOnce("table", table_name, "TableNotFound")

    def _build_client(self) -> TableClient:
        from azure.data.tables import TableClient

        t = self._timeouts
        options: dict[str, Any] = {
            "connection_timeout": t.connection_timeout_seconds,
            "read_timeout": t.read_timeout_seconds,
            "retry_total": t.max_attempts - 1,
            "retry_backoff_factor": t.backoff_seconds,
            "retry_backoff_max": 4,
        }
        options.update(self._client_options)
        if self._storage.connection_string:
            return TableClient.from_connection_string(
                self._storage.connection_string, self.table_name, **options
            )
        assert self._storage.table_service_uri is not None
        return TableClient(
            self._storage.table_service_uri, self.table_name, credential=self._credential, **options
        )

    def _client_or_raise(self) -> TableClient:
        try:
            return self._client.get()
        except ValueError as exc:  # a connection string the SDK cannot parse
            raise StorageUnavailable(f"table storage is misconfigured: {exc}") from exc

    def is_processed(self, event_id: str) -> bool:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        key = dedupe_key(event_id)
        client = self._client_or_raise()
        try:
            client.get_entity(key.partition_key, key.row_key, select=["event_id"])
        except ResourceNotFoundError:
            # No entity, or no table yet (nothing was ever marked): not processed either way.
            return False
        except AzureError as exc:
            raise StorageUnavailable(
                f"dedupe lookup in table {self.table_name} failed: {_describe(exc)}"
            ) from exc
        return True

    def mark_processed(self, event_id: str, context: Mapping[str, str]) -> None:
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        entity = dedupe_entity(event_id, context, self._clock())
        client = self._client_or_raise()
        try:
            self._table.write(
                client.create_table, lambda: client.upsert_entity(entity, mode=UpdateMode.REPLACE)
            )
        except AzureError as exc:
            raise StorageUnavailable(
                f"marking event processed in table {self.table_name} failed: {_describe(exc)}"
            ) from exc


class BlobRejectedEventStore:
    """Rejected events as JSON blobs in container ``rejected-events`` (by default)."""

    def __init__(
        self,
        storage: StorageSettings,
        credential: TokenCredential | None = None,
        *,
        container_name: str = REJECTED_CONTAINER,
        timeouts: StorageTimeouts | None = None,
        clock: Callable[[], datetime] = _utc_now,
        max_payload_bytes: int = MAX_STORED_PAYLOAD_BYTES,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``client_options``: extra keyword arguments for the SDK client (transport, hooks, TLS)."""
        _check_identity(storage, credential)
        self.container_name = container_name
        self._client_options = dict(client_options or {})
        self._storage = storage
        self._credential = credential
        self._timeouts = timeouts or StorageTimeouts()
        self._clock = clock
        self._max_payload_bytes = max_payload_bytes
        self._client: _Lazy[ContainerClient] = _Lazy(self._build_client)
        self._container = _CreatedOnce("blob container", container_name, "ContainerNotFound")

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
                f"storing rejected event in container {self.container_name} failed: {_describe(exc)}"
            ) from exc
        return name


# ---------------------------------------------------------------------------------------------
# Factory.

_storage_off_warned = False
_warn_lock = threading.Lock()


def _warn_storage_off_once() -> None:
    global _storage_off_warned  # noqa: PLW0603 - once per process by design
    with _warn_lock:
        if _storage_off_warned:
            return
        _storage_off_warned = True
    logger.warning(
        "%s is not set: dedupe and rejected-event storage are off; redelivered events may be recorded "
        "twice and rejected events are only logged",
        STORAGE_SETTING,
    )


def create_stores(
    settings: Settings, credential: TokenCredential | None
) -> tuple[DedupeStore, RejectedEventStore]:
    """The stores for ``settings``: Azure Storage when configured, else null stores (one warning).

    Cheap: no SDK import and no network until the first event needs one. Raises
    :class:`~amlobs.settings.SettingsError` when identity-based storage cannot work (no
    credential, plain-http URIs).
    """
    storage = settings.storage
    if storage is None:
        _warn_storage_off_once()
        return NullDedupeStore(), NullRejectedEventStore()
    if storage.client_id and settings.azure_client_id and storage.client_id != settings.azure_client_id:
        # The host authenticates with __clientId, this app with the credential it is given.
        logger.warning(
            "%s__clientId (%s) differs from AZURE_CLIENT_ID (%s): dedupe and rejected events use the "
            "identity of AZURE_CLIENT_ID, which then needs the storage data roles too",
            STORAGE_SETTING,
            storage.client_id,
            settings.azure_client_id,
        )
    timeouts = StorageTimeouts.from_settings(settings)
    return (
        TableDedupeStore(storage, credential, timeouts=timeouts),
        BlobRejectedEventStore(storage, credential, timeouts=timeouts),
    )
