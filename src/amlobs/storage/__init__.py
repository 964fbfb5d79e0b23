"""Dedupe claims (Table ``processedevents``) and rejected events (Blob container ``rejected-events``).

* :mod:`.claims`: the claim protocol that records each (workspace, run, status) once and its pure core;
  :mod:`.table`: the same on Azure Table storage; :mod:`.memory`: in one process, or none at all;
  :mod:`.kept_unit`: the telemetry a claim keeps for a resend, within the Table limits.
* :mod:`.rejected`: rejected-event documents and their Blob, in-memory and null stores.

The SDK imports happen on first use, not at import: importing this package is part of the Function's
cold start. Clients are built once per store and stores once per process (``runtime.get_processor``).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..settings import STORAGE_SETTING, Settings
from ._azure import StorageTimeouts, logger
from .claims import (
    DEDUPE_TABLE,
    Claim,
    ClaimPolicy,
    DedupeStore,
    PartialClaim,
    dedupe_key,
)
from .memory import MemoryDedupeStore, NullDedupeStore
from .rejected import (
    MAX_STORED_PAYLOAD_BYTES,
    REJECTED_CONTAINER,
    BlobRejectedEventStore,
    MemoryRejectedEventStore,
    NullRejectedEventStore,
    RejectedEventStore,
    StoredRejection,
    rejected_document,
)
from .table import TableDedupeStore

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = [
    "DEDUPE_TABLE",
    "MAX_STORED_PAYLOAD_BYTES",
    "REJECTED_CONTAINER",
    "BlobRejectedEventStore",
    "Claim",
    "ClaimPolicy",
    "DedupeStore",
    "MemoryDedupeStore",
    "MemoryRejectedEventStore",
    "NullDedupeStore",
    "NullRejectedEventStore",
    "PartialClaim",
    "RejectedEventStore",
    "StorageTimeouts",
    "StoredRejection",
    "TableDedupeStore",
    "create_stores",
    "dedupe_key",
    "rejected_document",
]

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
        TableDedupeStore(
            storage, credential, timeouts=timeouts, policy=ClaimPolicy.for_lease(settings.claim_lease_seconds)
        ),
        BlobRejectedEventStore(storage, credential, timeouts=timeouts),
    )
