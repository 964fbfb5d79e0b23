"""What the hardware did: per-run GPU/CPU use from Azure Monitor, idle GPU/CPU cost, idle cluster cost.

An after-the-fact pass (docs/resource-use.md), never on the live path: metrics land minutes after a run
ends. The live path only notes a finished run as *due* (:mod:`.due`); a timer pass reads the due runs
(:mod:`.run_pass`), asks the workspace's Azure Monitor metrics for each (:mod:`.metrics_query`, one GET),
reduces them (:mod:`.usage`) and sends one ``AmlRunResourceUse`` event per run (:mod:`.events`), judged
once through the claims. :mod:`.cluster_idle` prices the node-hours no run used, per cluster per day.

Imports stay lazy at package level: ``function_app`` imports this package at indexing time.
"""
