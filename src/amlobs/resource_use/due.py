"""Finished runs due for the resource-use pass: noted by the live path, read after the fact.

Where the pass's list comes from: when the processor records a run's terminal status it notes the run
here, with the part of its record the pass needs (:data:`DUE_KEYS`: coordinates, compute, window, the
estimated cost and what it was computed from), due :data:`METRICS_DELAY_MS` after the run ended. Noting
costs one Table write and no HTTP call; the metrics are read by the pass alone. The note is written
before the record is sent, so a failed write fails the delivery (Event Grid redelivers) and no finished
run is forgotten; writing it twice is harmless (an upsert on the run's key).

Stored in the storage account's Table service (table ``resourceusedue``), one partition, rows ordered by
due time: ``RowKey = <due time, 13-digit ms>-<sha256 of workspace and run id>``, so "what is due now" is
one range query. A transient failure of the pass moves the row later (``tries`` + 1); a judged run's row
is deleted. Without storage (local runs) the list lives in memory.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import StorageUnavailable
from ..events import WorkspaceRef
from ..storage._azure import CreatedOnce, Lazy, StorageTimeouts, check_identity, describe, table_client

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.data.tables import TableClient

    from ..settings import Settings, StorageSettings

DUE_TABLE = "resourceusedue"
_PARTITION = "due"
# Azure Monitor platform metrics land minutes after the fact; a quarter of an hour leaves them room.
METRICS_DELAY_MS = 15 * 60_000
# The record keys the pass needs: the event's coordinates and links, the window, the estimate.
DUE_KEYS: tuple[str, ...] = (
    "run_id",
    "status",
    "experimentName",
    "subscriptions",
    "resourceGroup",
    "amlWorkSpace",
    "parent_run_id",
    "root_run_id",
    "pipelinerunid",
    "step_name",
    "job_kind",
    "target",
    "compute_name",
    "compute_target_type",
    "start_time_utc_ms",
    "end_time_utc_ms",
    "status_time",
    "estimated_cost",
    "cost_currency",
    "cost_basis",
)


@dataclass(frozen=True)
class DueRun:
    workspace_id: str
    run_id: str
    record: Mapping[str, str]
    due_at_ms: int
    tries: int = 0

    @property
    def ws(self) -> WorkspaceRef:
        return WorkspaceRef.from_resource_id(self.workspace_id)

    @property
    def key(self) -> str:
        return f"{self.workspace_id.lower()}|{self.run_id}"

    @property
    def row_key(self) -> str:
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:40]
        return f"{self.due_at_ms:013d}-{digest}"

    def later(self, due_at_ms: int) -> DueRun:
        return replace(self, due_at_ms=due_at_ms, tries=self.tries + 1)


def due_run_of(
    ws: WorkspaceRef, record: Mapping[str, Any], *, delay_ms: int = METRICS_DELAY_MS
) -> DueRun | None:
    """The note for a record, or None when the record is not a finished run with an end time."""
    end = record.get("end_time_utc_ms")
    run_id = record.get("run_id")
    if not isinstance(end, int) or isinstance(end, bool) or not isinstance(run_id, str):
        return None
    kept = {key: str(record[key]) for key in DUE_KEYS if record.get(key) not in (None, "")}
    return DueRun(ws.resource_id, run_id, kept, end + delay_ms)


class DueRuns(Protocol):
    def add(self, run: DueRun) -> None: ...
    def due(self, now_ms: int, limit: int) -> list[DueRun]: ...
    def move(self, old: DueRun, new: DueRun) -> None: ...
    def remove(self, run: DueRun) -> None: ...


# Runs whose compute is their children's, or that used none: nothing to measure, so nothing to note.
_ORCHESTRATOR_KINDS = frozenset({"pipeline", "sweep", "automl"})
_TERMINAL = frozenset({"Completed", "Failed", "Canceled"})


def is_due_for_resource_use(record: Mapping[str, Any]) -> bool:
    return (
        record.get("status") in _TERMINAL
        and record.get("job_kind") not in _ORCHESTRATOR_KINDS
        and record.get("run_type") != "azureml.PipelineRun"
        and record.get("is_reused") != "true"
        and "enrichment_error" not in record
    )


class DueNoter:
    """What the processor calls for every record it is about to send (cheap unless the run is due)."""

    def __init__(self, due: DueRuns, *, delay_ms: int = METRICS_DELAY_MS) -> None:
        self.due = due
        self._delay_ms = delay_ms

    def note(self, ws: WorkspaceRef, record: Mapping[str, Any]) -> None:
        if not is_due_for_resource_use(record):
            return
        run = due_run_of(ws, record, delay_ms=self._delay_ms)
        if run is not None:
            self.due.add(run)


class MemoryDueRuns:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, DueRun] = {}  # run key -> its note (one per run, like the Table's upsert)

    def add(self, run: DueRun) -> None:
        with self._lock:
            self._rows[run.key] = run

    def due(self, now_ms: int, limit: int) -> list[DueRun]:
        with self._lock:
            ready = sorted((r for r in self._rows.values() if r.due_at_ms <= now_ms), key=lambda r: r.row_key)
        return ready[:limit]

    def move(self, old: DueRun, new: DueRun) -> None:
        self.add(new)

    def remove(self, run: DueRun) -> None:
        with self._lock:
            if self._rows.get(run.key) == run:
                del self._rows[run.key]

    def __len__(self) -> int:
        return len(self._rows)


def _entity(run: DueRun) -> dict[str, Any]:
    return {
        "PartitionKey": _PARTITION,
        "RowKey": run.row_key,
        "workspace_id": run.workspace_id,
        "run_id": run.run_id,
        "record": json.dumps(dict(run.record), sort_keys=True),
        "due_at_ms": str(run.due_at_ms),
        "tries": run.tries,
    }


def _read(entity: Mapping[str, Any]) -> DueRun | None:
    try:
        record = json.loads(entity["record"])
        return DueRun(
            str(entity["workspace_id"]),
            str(entity["run_id"]),
            {str(k): str(v) for k, v in record.items()},
            int(entity["due_at_ms"]),
            int(entity.get("tries") or 0),
        )
    except (KeyError, TypeError, ValueError):
        return None


class TableDueRuns:
    """The due list in Table storage (see the module docstring)."""

    def __init__(
        self,
        storage: StorageSettings,
        credential: TokenCredential | None = None,
        *,
        table_name: str = DUE_TABLE,
        timeouts: StorageTimeouts | None = None,
    ) -> None:
        check_identity(storage, credential)
        self.table_name = table_name
        self._storage = storage
        self._credential = credential
        self._timeouts = timeouts or StorageTimeouts()
        self._client: Lazy[TableClient] = Lazy(self._build_client)
        self._table = CreatedOnce("table", table_name, "TableNotFound")

    def _build_client(self) -> TableClient:
        return table_client(self._storage, self._credential, self.table_name, self._timeouts)

    def _fail(self, what: str, error: Exception) -> StorageUnavailable:
        return StorageUnavailable(f"{what} in table {self.table_name} failed: {describe(error)}")

    def add(self, run: DueRun) -> None:
        from azure.core.exceptions import AzureError

        client = self._client.get()
        try:
            self._table.write(client.create_table, lambda: client.upsert_entity(_entity(run)))
        except AzureError as exc:
            raise self._fail("noting a run due for its resource use", exc) from exc

    def due(self, now_ms: int, limit: int) -> list[DueRun]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        client = self._client.get()
        query = "PartitionKey eq @p and RowKey lt @upto"
        try:
            runs: list[DueRun] = []
            for entity in client.query_entities(
                query,
                parameters={"p": _PARTITION, "upto": f"{now_ms + 1:013d}"},
                results_per_page=min(limit, 1000),
            ):
                run = _read(entity)
                if run is not None:
                    runs.append(run)
                if len(runs) >= limit:
                    break
            return runs
        except ResourceNotFoundError:
            return []  # no table yet: nothing was ever due
        except AzureError as exc:
            raise self._fail("listing the runs due", exc) from exc

    def move(self, old: DueRun, new: DueRun) -> None:
        self.add(new)
        self.remove(old)

    def remove(self, run: DueRun) -> None:
        from azure.core.exceptions import AzureError

        try:
            self._client.get().delete_entity(_PARTITION, run.row_key)
        except AzureError as exc:
            raise self._fail("removing a judged run", exc) from exc


def create_due_runs(settings: Settings, credential: TokenCredential | None) -> DueRuns:
    """Table storage when the app has a storage account, else a list in this process's memory."""
    if settings.storage is None:
        return MemoryDueRuns()
    return TableDueRuns(settings.storage, credential, timeouts=StorageTimeouts.from_settings(settings))
