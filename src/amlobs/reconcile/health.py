"""What a pass tells Application Insights: one ``AmlReconcilerPass`` per workspace and pass, and one
``AmlReconcilerHealth`` per problem (the workspace, the step, what went wrong, the permission missing).

Pure: the timer sends the units these build. Workspace keys are the run records' own
(``subscriptions``, ``resourceGroup``, ``amlWorkSpace``) so the workbook joins them without renaming.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..aml_transport import AccessRefused
from ..errors import RunNotFound, StorageUnavailable, TransientError
from ..events import WorkspaceRef
from ..telemetry_unit import TelemetryUnit, stringify

EVENT_RECONCILER_RUN = "AmlReconcilerPass"
EVENT_RECONCILER_HEALTH = "AmlReconcilerHealth"


def workspace_dimensions(ws: WorkspaceRef) -> dict[str, str]:
    return {
        "subscriptions": ws.subscription_id,
        "resourceGroup": ws.resource_group,
        "amlWorkSpace": ws.workspace_name,
        "workspace_id": ws.resource_id,
    }


@dataclass(frozen=True)
class Problem:
    """``code``: stable, for alerts and the workbook; ``missing_permission``: the role action to add."""

    code: str
    detail: str
    missing_permission: str | None = None


def classify(error: BaseException, *, permission: str) -> Problem:
    """Why a step failed for a workspace, in words an operator acts on."""
    detail = (str(error) or type(error).__name__)[:1000]
    if isinstance(error, AccessRefused):
        return Problem("access_refused", detail, permission)
    if isinstance(error, RunNotFound) and "workspace" in detail:
        # Discovery's 404: the workspace is deleted, or this identity cannot see it any more.
        return Problem("workspace_not_found", detail)
    if isinstance(error, StorageUnavailable):
        return Problem("storage_unavailable", detail)
    if isinstance(error, TransientError):
        return Problem("unavailable", detail)
    return Problem("failed", f"{type(error).__name__}: {detail}")


def health_unit(ws: WorkspaceRef, step: str, problem: Problem, pass_id: str) -> TelemetryUnit:
    unit = TelemetryUnit()
    unit.add_event(
        EVENT_RECONCILER_HEALTH,
        stringify(
            {
                **workspace_dimensions(ws),
                "step": step,
                "problem": problem.code,
                "detail": problem.detail,
                "missing_permission": problem.missing_permission,
                "pass_id": pass_id,
            }
        ),
    )
    return unit


def pass_unit(ws: WorkspaceRef, pass_id: str, values: Mapping[str, object]) -> TelemetryUnit:
    unit = TelemetryUnit()
    unit.add_event(
        EVENT_RECONCILER_RUN, stringify({**workspace_dimensions(ws), "pass_id": pass_id, **values})
    )
    return unit
