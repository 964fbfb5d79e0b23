"""The reconciler: a timer pass that records what Event Grid never delivered (docs/reconciler.md).

* :mod:`.options`: the reconciler's settings (period, overlap, bounds, ``BACKFILL_DAYS``);
* :mod:`.workspaces`: the observed workspaces (one function: where the list comes from may change);
* :mod:`.state`: the per-workspace watermark and the pass lease, in the storage account (Table);
* :mod:`.runs_step`: the run listing since the watermark, each (run, status) through the processor;
* :mod:`.timer`: one pass: the lease, a shared budget, and the list of after-the-fact steps;
* :mod:`.health`: the pass and health events the steps send.

Imports stay lazy at package level: ``function_app`` imports this package at indexing time.
"""

from __future__ import annotations
