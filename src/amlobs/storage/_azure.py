"""What the Table and Blob stores share: client timeouts, lazy clients, create-once, error wording.

The azure.data.tables / azure.storage.blob / azure.core imports happen inside functions only: importing
``amlobs.storage`` is part of the Function's cold start.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..settings import STORAGE_SETTING, Settings, SettingsError, StorageSettings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient

logger = logging.getLogger("amlobs.storage")

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


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


class Lazy(Generic[T]):
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


class CreatedOnce:
    """The table or container a store writes to: created on the first write (Bicep creates it too),
    and once more if it was deleted behind the store's back."""

    def __init__(self, kind: str, name: str, not_found_code: str) -> None:
        self.kind = kind
        self.name = name
        self._not_found_code = not_found_code
        self._ready = False
        self._lock = threading.Lock()

    def write(self, create: Callable[[], object], write: Callable[[], T]) -> T:
        from azure.core.exceptions import AzureError

        self._ensure(create)
        try:
            return write()
        except AzureError as exc:
            if not is_not_found(exc, self._not_found_code):
                raise
            self._ready = False
            self._ensure(create)
            return write()

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


def check_identity(storage: StorageSettings, credential: TokenCredential | None) -> None:
    if storage.connection_string:
        return
    if credential is None:
        raise SettingsError(f"{STORAGE_SETTING}__* (identity-based storage) needs a credential")
    for uri in (storage.blob_service_uri, storage.table_service_uri):
        # The SDKs refuse bearer tokens over plain http (even on loopback): say so at start-up.
        if uri and not uri.lower().startswith("https://"):
            raise SettingsError(f"identity-based storage needs https:// service URIs, got {uri!r}")


def table_client(
    storage: StorageSettings,
    credential: TokenCredential | None,
    table_name: str,
    timeouts: StorageTimeouts,
    extra_options: Mapping[str, Any] | None = None,
) -> TableClient:
    """The SDK client of one table, with the bounded timeouts and retries every store uses."""
    from azure.data.tables import TableClient

    options: dict[str, Any] = {
        "connection_timeout": timeouts.connection_timeout_seconds,
        "read_timeout": timeouts.read_timeout_seconds,
        "retry_total": timeouts.max_attempts - 1,
        "retry_backoff_factor": timeouts.backoff_seconds,
        "retry_backoff_max": 4,
        **(extra_options or {}),
    }
    if storage.connection_string:
        return TableClient.from_connection_string(storage.connection_string, table_name, **options)
    assert storage.table_service_uri is not None
    return TableClient(storage.table_service_uri, table_name, credential=credential, **options)


def describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    code = getattr(error, "error_code", None)
    code = getattr(code, "value", code)
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    parts = [f"HTTP {status}" if status else None, str(code) if code else None, first_line]
    return ", ".join(p for p in parts if p)


def error_code(error: Exception) -> str | None:
    """The service's error code: the SDK's ``error_code``, else the one in the body (the Tables SDK's
    ``create_entity`` raises without decoding it)."""
    # error_code is a str enum (TableErrorCode / StorageErrorCode): equal to its wire value.
    code = getattr(error, "error_code", None)
    if code:
        return str(getattr(code, "value", code))
    response = getattr(error, "response", None)
    try:
        body = json.loads(response.text()) if response is not None else None
    except (ValueError, AttributeError, TypeError):
        return None
    odata = body.get("odata.error") if isinstance(body, dict) else None
    code = odata.get("code") if isinstance(odata, dict) else None
    return code if isinstance(code, str) else None


def is_not_found(error: Exception, code: str) -> bool:
    from azure.core.exceptions import ResourceNotFoundError

    return isinstance(error, ResourceNotFoundError) and error_code(error) == code
