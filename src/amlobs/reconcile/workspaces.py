"""The workspaces the reconciler passes over: what was deployed.

Today the deployment writes them into the app setting ``AML_OBS_WORKSPACE_IDS`` (comma-separated
resource ids, infra/modules/functionapp.bicep). Every caller goes through :func:`observed_workspaces`,
so the list can move elsewhere (a table, for a thousand workspaces) without touching the passes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import EventRejected
from ..events import WorkspaceRef
from ..settings import SettingsError

WORKSPACES_SETTING = "AML_OBS_WORKSPACE_IDS"


def observed_workspaces(env: Mapping[str, str] | None = None) -> list[WorkspaceRef]:
    """The deployed workspaces, in the order given, each once; an id that is not a workspace fails
    with the setting's name (a deployment error, not something to skip silently)."""
    env = os.environ if env is None else env
    seen: dict[str, WorkspaceRef] = {}
    for raw in env.get(WORKSPACES_SETTING, "").split(","):
        if not raw.strip():
            continue
        try:
            ws = WorkspaceRef.from_resource_id(raw.strip())
        except EventRejected as bad:
            raise SettingsError(f"{WORKSPACES_SETTING}: {bad.detail}") from None
        seen.setdefault(ws.cache_key, ws)
    return list(seen.values())
