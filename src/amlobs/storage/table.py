"""Claims (see :mod:`amlobs.storage.claims`) in Azure Table storage, table ``processedevents``.

The three primitives map onto Table operations that Azure Storage and Azurite both make atomic:
insert (``409 EntityAlreadyExists`` when the key exists), read, and replace with ``If-Match`` on
the entity's ETag (``412 UpdateConditionNotSatisfied`` when it changed). Any other storage failure
surfaces as :class:`~amlobs.errors.StorageUnavailable`, a transient error: the invocation fails and
Event Grid redelivers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import StorageUnavailable
from ..settings import StorageSettings
from ._azure import CreatedOnce, Lazy, StorageTimeouts, check_identity, describe, table_client, utc_now
from .claims import (
    DEDUPE_TABLE,
    PARTIAL_REASON,
    ClaimPolicy,
    ClaimStoreBase,
    StoredClaim,
    VersionConflict,
    dedupe_key,
    read_claim,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient


class TableDedupeStore(ClaimStoreBase):
    def __init__(
        self,
        storage: StorageSettings,
        credential: TokenCredential | None = None,
        *,
        table_name: str = DEDUPE_TABLE,
        timeouts: StorageTimeouts | None = None,
        policy: ClaimPolicy | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] | None = None,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``client_options``: extra keyword arguments for the SDK client (transport, hooks, TLS)."""
        check_identity(storage, credential)
        super().__init__(policy, clock=clock, **({"sleep": sleep} if sleep is not None else {}))
        self.table_name = table_name
        self._client_options = dict(client_options or {})
        self._storage = storage
        self._credential = credential
        self._timeouts = timeouts or StorageTimeouts()
        self._client: Lazy[TableClient] = Lazy(self._build_client)
        self._table = CreatedOnce("table", table_name, "TableNotFound")

    def _build_client(self) -> TableClient:
        return table_client(
            self._storage, self._credential, self.table_name, self._timeouts, self._client_options
        )

    def _client_or_raise(self) -> TableClient:
        try:
            return self._client.get()
        except ValueError as exc:  # a connection string the SDK cannot parse
            raise StorageUnavailable(f"table storage is misconfigured: {exc}") from exc

    def _unavailable(self, what: str, error: Exception) -> StorageUnavailable:
        return StorageUnavailable(f"{what} in table {self.table_name} failed: {describe(error)}")

    # -- primitives ----------------------------------------------------------------------------------
    def _insert(self, entity: dict[str, Any]) -> str | None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        client = self._client_or_raise()
        try:
            metadata = self._table.write(client.create_table, lambda: client.create_entity(entity))
        except ResourceExistsError:
            raise VersionConflict from None
        except AzureError as exc:
            raise self._unavailable("claiming a run status", exc) from exc
        return _etag(metadata)

    def _read(self, key: str) -> tuple[StoredClaim, str | None] | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        table_key = dedupe_key(key)
        client = self._client_or_raise()
        try:
            entity = client.get_entity(table_key.partition_key, table_key.row_key)
        except ResourceNotFoundError:
            return None  # no entity, or no table yet
        except AzureError as exc:
            raise self._unavailable("reading a claim", exc) from exc
        return read_claim(entity), _etag(entity.metadata)

    def _read_entity(self, key: str) -> tuple[dict[str, Any], str | None] | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        table_key = dedupe_key(key)
        client = self._client_or_raise()
        try:
            entity = client.get_entity(table_key.partition_key, table_key.row_key)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._unavailable("reading a claim", exc) from exc
        return dict(entity), _etag(entity.metadata)

    def _replace(self, entity: dict[str, Any], version: str | None) -> str | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError
        from azure.data.tables import UpdateMode

        client = self._client_or_raise()
        try:
            metadata = client.update_entity(
                entity, mode=UpdateMode.REPLACE, etag=version, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            raise VersionConflict from None
        except AzureError as exc:
            raise self._unavailable(f"moving a claim to {entity.get('state')}", exc) from exc
        return _etag(metadata)

    def _partial_entities(self) -> list[Mapping[str, Any]]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        client = self._client_or_raise()
        # A comparison on a property an entity lacks is false for it (OData filters of the Table
        # service): only claims marked partial come back, whatever else the table holds.
        query = f"state eq 'done' and {PARTIAL_REASON} gt ''"
        try:
            return [dict(entity) for entity in client.query_entities(query)]
        except ResourceNotFoundError:
            return []  # no table yet: nothing recorded
        except AzureError as exc:
            raise self._unavailable("listing partial records", exc) from exc


def _etag(metadata: Mapping[str, Any] | None) -> str | None:
    value = (metadata or {}).get("etag")
    return str(value) if value else None
