"""The resource-use timer's pass: the finished runs due (:mod:`.run_pass`), then the idle cluster days
(:mod:`.cluster_idle`) of the observed workspaces.

The observed workspaces are the deployment's ``AML_OBS_WORKSPACE_IDS`` (comma-separated resource ids, the
reconciler's setting) when it is set, plus every workspace whose runs this pass judged; without the setting,
a workspace whose clusters idled all day with no run finishing is not priced that day.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import EventRejected
from ..events import WorkspaceRef
from .cluster_idle import ClusterIdlePass, IdleReport
from .run_pass import PassReport, ResourceUsePass

WORKSPACES_SETTING = "AML_OBS_WORKSPACE_IDS"


def configured_workspaces(env: Mapping[str, str] | None = None) -> list[WorkspaceRef]:
    """The deployed workspaces; an id that is not a workspace's is skipped (the reconciler reports it)."""
    env = os.environ if env is None else env
    found: dict[str, WorkspaceRef] = {}
    for raw in env.get(WORKSPACES_SETTING, "").split(","):
        try:
            ws = WorkspaceRef.from_resource_id(raw.strip()) if raw.strip() else None
        except EventRejected:
            continue
        if ws is not None:
            found.setdefault(ws.cache_key, ws)
    return list(found.values())


@dataclass(frozen=True)
class TimerReport:
    runs: PassReport
    clusters: IdleReport


class ResourceUseTimer:
    def __init__(self, runs: ResourceUsePass, clusters: ClusterIdlePass) -> None:
        self.runs = runs
        self.clusters = clusters

    def run(self, env: Mapping[str, str] | None = None) -> TimerReport:
        report = self.runs.run()
        workspaces = {ws.cache_key: ws for ws in configured_workspaces(env)}
        for workspace_id in sorted(report.workspaces):
            ws = WorkspaceRef.from_resource_id(workspace_id)
            workspaces.setdefault(ws.cache_key, ws)
        return TimerReport(report, self.clusters.run(workspaces.values()))
