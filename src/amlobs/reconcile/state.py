"""Where each workspace's reconciliation stands, and the lease that lets one pass run at a time.

Both live in the storage account's Table service (table ``reconciler``), next to the claims:

* the lease: one entity (``lease``/``pass``) holding its owner and expiry. Taking it is an insert, or a
  replace conditional on the ETag of an expired one, so two instances never both hold it; a pass that
  dies releases it by expiring.
* one entity per workspace (``workspace``/<sha256 of its id>): the watermark (every run created before
  it, minus the overlap, is recorded), the listing in progress (its start, its continuation token:
  written only after a page is fully recorded, so a killed pass redoes at most one page and the
  claims make that harmless), the runs seen not yet finished, and when the reconciler first saw the
  workspace (runs that ended before it are history: ``record_source`` = ``backfill``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import StorageUnavailable
from ..storage._azure import (
    CreatedOnce,
    Lazy,
    StorageTimeouts,
    check_identity,
    describe,
    table_client,
    utc_now,
)

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient

    from ..settings import StorageSettings

RECONCILER_TABLE = "reconciler"
_LEASE_KEY = ("lease", "pass")
_WORKSPACE_PARTITION = "workspace"
# A Table string property holds 64 KiB (32K UTF-16 characters): the open runs stay well below.
_MAX_OPEN_RUNS_CHARS = 30_000


@dataclass
class WorkspaceState:
    workspace_id: str
    installed_at: datetime
    watermark: datetime | None = None
    listing_since: datetime | None = None
    listing_started_at: datetime | None = None
    listing_token: str | None = None
    # run id -> the last status recorded for it while it had not finished
    open_runs: dict[str, str] = field(default_factory=dict)
    # the creation time of the oldest open run not kept in open_runs (too many): listings start there
    open_floor: datetime | None = None
    history_complete: bool = False
    # after-the-fact steps keep their own positions here (name -> ISO time), e.g. the schedules step
    positions: dict[str, str] = field(default_factory=dict)


def workspace_row_key(workspace_id: str) -> str:
    return hashlib.sha256(workspace_id.lower().encode()).hexdigest()[:40]


def state_entity(state: WorkspaceState) -> dict[str, Any]:
    open_runs = json.dumps(state.open_runs, separators=(",", ":"))
    if len(open_runs) > _MAX_OPEN_RUNS_CHARS:
        raise ValueError("open runs exceed what one entity property holds; cap them first")
    entity: dict[str, Any] = {
        "PartitionKey": _WORKSPACE_PARTITION,
        "RowKey": workspace_row_key(state.workspace_id),
        "workspace_id": state.workspace_id,
        "installed_at": state.installed_at,
        "listing_token": state.listing_token or "",
        "open_runs": open_runs,
        "history_complete": state.history_complete,
        "positions": json.dumps(state.positions, separators=(",", ":")),
    }
    for name in ("watermark", "listing_since", "listing_started_at", "open_floor"):
        value = getattr(state, name)
        if value is not None:
            entity[name] = value
    return entity


def _time(entity: Mapping[str, Any], name: str) -> datetime | None:
    value = entity.get(name)
    return value if isinstance(value, datetime) else None


def read_state(entity: Mapping[str, Any]) -> WorkspaceState:
    installed = _time(entity, "installed_at")
    if installed is None:
        raise ValueError("reconciler state without installed_at")
    try:
        open_runs = json.loads(str(entity.get("open_runs") or "{}"))
        positions = json.loads(str(entity.get("positions") or "{}"))
    except ValueError:
        open_runs, positions = {}, {}
    return WorkspaceState(
        workspace_id=str(entity.get("workspace_id") or ""),
        installed_at=installed,
        watermark=_time(entity, "watermark"),
        listing_since=_time(entity, "listing_since"),
        listing_started_at=_time(entity, "listing_started_at"),
        listing_token=str(entity.get("listing_token") or "") or None,
        open_runs={str(k): str(v) for k, v in open_runs.items()} if isinstance(open_runs, dict) else {},
        open_floor=_time(entity, "open_floor"),
        history_complete=bool(entity.get("history_complete")),
        positions={str(k): str(v) for k, v in positions.items()} if isinstance(positions, dict) else {},
    )


class ReconcilerStore(Protocol):
    def acquire_lease(self, owner: str, seconds: float) -> bool: ...
    def release_lease(self, owner: str) -> None: ...
    def load(self, workspace_id: str) -> WorkspaceState | None: ...
    def save(self, state: WorkspaceState) -> None: ...


class MemoryReconcilerStore:
    """The same contract in memory (unit tests, the benchmark's in-process comparisons)."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._lease: tuple[str, datetime] | None = None
        self._states: dict[str, dict[str, Any]] = {}

    def acquire_lease(self, owner: str, seconds: float) -> bool:
        from datetime import timedelta

        now = self._clock()
        if self._lease is not None and self._lease[0] != owner and self._lease[1] > now:
            return False
        self._lease = (owner, now + timedelta(seconds=seconds))
        return True

    def release_lease(self, owner: str) -> None:
        if self._lease is not None and self._lease[0] == owner:
            self._lease = None

    def load(self, workspace_id: str) -> WorkspaceState | None:
        entity = self._states.get(workspace_row_key(workspace_id))
        return read_state(entity) if entity is not None else None

    def save(self, state: WorkspaceState) -> None:
        entity = state_entity(state)
        self._states[entity["RowKey"]] = entity


class TableReconcilerStore:
    """:class:`ReconcilerStore` on Azure Table storage (Azurite in the tests)."""

    def __init__(
        self,
        storage: StorageSettings,
        credential: TokenCredential | None = None,
        *,
        table_name: str = RECONCILER_TABLE,
        timeouts: StorageTimeouts | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        check_identity(storage, credential)
        self.table_name = table_name
        self._storage = storage
        self._credential = credential
        self._timeouts = timeouts or StorageTimeouts()
        self._clock = clock
        self._client: Lazy[TableClient] = Lazy(self._build_client)
        self._table = CreatedOnce("table", table_name, "TableNotFound")

    def _build_client(self) -> TableClient:
        return table_client(self._storage, self._credential, self.table_name, self._timeouts)

    def _fail(self, what: str, error: Exception) -> StorageUnavailable:
        return StorageUnavailable(f"{what} in table {self.table_name} failed: {describe(error)}")

    def acquire_lease(self, owner: str, seconds: float) -> bool:
        from datetime import timedelta

        from azure.core import MatchConditions
        from azure.core.exceptions import (
            AzureError,
            ResourceExistsError,
            ResourceModifiedError,
            ResourceNotFoundError,
        )
        from azure.data.tables import UpdateMode

        client = self._client.get()
        now = self._clock()
        entity = {
            "PartitionKey": _LEASE_KEY[0],
            "RowKey": _LEASE_KEY[1],
            "owner": owner,
            "lease_until": now + timedelta(seconds=seconds),
        }
        try:
            self._table.write(client.create_table, lambda: client.create_entity(entity))
            return True
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise self._fail("taking the reconciler lease", exc) from exc
        try:
            current = client.get_entity(*_LEASE_KEY)
            until = current.get("lease_until")
            if current.get("owner") != owner and isinstance(until, datetime) and until > now:
                return False
            client.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=current.metadata.get("etag"),
                match_condition=MatchConditions.IfNotModified,
            )
            return True
        except (ResourceModifiedError, ResourceNotFoundError):
            return False  # another instance took it (or released it) in between: it runs this tick
        except AzureError as exc:
            raise self._fail("taking the reconciler lease", exc) from exc

    def release_lease(self, owner: str) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        client = self._client.get()
        try:
            current = client.get_entity(*_LEASE_KEY)
            if current.get("owner") == owner:
                client.delete_entity(
                    *_LEASE_KEY,
                    etag=current.metadata.get("etag"),
                    match_condition=MatchConditions.IfNotModified,
                )
        except AzureError:
            pass  # it expires on its own

    def load(self, workspace_id: str) -> WorkspaceState | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        client = self._client.get()
        try:
            entity = client.get_entity(_WORKSPACE_PARTITION, workspace_row_key(workspace_id))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._fail("reading the watermark", exc) from exc
        return read_state(entity)

    def save(self, state: WorkspaceState) -> None:
        from azure.core.exceptions import AzureError
        from azure.data.tables import UpdateMode

        client = self._client.get()
        entity = state_entity(state)
        try:
            self._table.write(
                client.create_table, lambda: client.upsert_entity(entity, mode=UpdateMode.REPLACE)
            )
        except AzureError as exc:
            raise self._fail("writing the watermark", exc) from exc
