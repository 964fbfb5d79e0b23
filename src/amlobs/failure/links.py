"""The URL forms a person follows from a failed pipeline run: the run in Azure ML studio, its logs,
and its trace in Application Insights. Pure string building; nothing here is fetched.

* **A run in the studio**: ``https://ml.azure.com/runs/{run id}?wsid=/subscriptions/{s}/resourcegroups/
  {rg}/workspaces/{ws}``. This is the form azure-ai-ml builds (``azure/ai/ml/_utils/_studio_url_utils.py``,
  ``studio_url_from_job_id``) and the one the service itself returns as a job's ``services.Studio.endpoint``
  in Microsoft's recorded job answers (``sdk/ml/azure-ai-ml/tests/recordings``, with ``&tid=`` appended,
  which only picks the directory). A pipeline step is a run like any other: its run id opens the step.
* **Its logs**: the same page on its *Outputs + logs* tab, where the step's own output is
  ``user_logs/std_log.txt`` (MicrosoftLearning/mslearn-azure-ml, lab "Explore developer tools for
  workspace interaction": "Under Outputs + logs, you'll find the output of the script in
  user_logs/std_log.txt"). The studio addresses that tab with the ``#outputsAndLogs`` fragment of a run
  link (a studio link copied from the browser: dkmiller/tidbits ``2020/2020-12-18_hydra-pl/README.md``,
  ``…/runs/pt-lightning-ddp-tutorial_1610722264_acb99097?wsid=…#outputsAndLogs``); a studio that ignores
  the fragment still opens the run.
* **Its trace**: the portal's end-to-end transaction view is addressed by a telemetry *item* id
  (``#view/AppInsightsExtension/DetailsV2Blade/ComponentId~/…/DataModel~/{"eventId": itemId, …}``, as
  Grafana's Azure Monitor data source builds it: grafana/grafana
  ``pkg/tsdb/azuremonitor/loganalytics/azure-log-analytics-datasource.go``, ``getTracesQueryUrl``), and
  ingestion assigns ``itemId`` only after the message is sent. So the message links the Logs query of the
  pipeline's operation id instead, in the share-link form the same file builds (``getQueryUrl``:
  ``#blade/Microsoft_OperationsManagementSuite_Workspace/AnalyticsBlade/initiator/AnalyticsShareLinkToQuery/
  isQueryEditorVisible/true/scope/{"resources":[{"resourceId": …}]}/query/{gzip+base64 query}/
  isQueryBase64Compressed/true/timespan/{from}/{to}``): each row it lists opens the transaction view.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from ..events import WorkspaceRef

STUDIO_ENDPOINT = "https://ml.azure.com"
PORTAL_ENDPOINT = "https://portal.azure.com"
LOGS_TAB_FRAGMENT = "#outputsAndLogs"
STEP_LOG_FILE = "user_logs/std_log.txt"
# The query's time span around the pipeline's end: its trace's spans start with the pipeline (up to
# 47 hours before it ended, amlobs.tracing) and the records arrive shortly after it ended.
_TRACE_BEFORE = timedelta(hours=48)
_TRACE_AFTER = timedelta(hours=6)


def studio_run_url(ws: WorkspaceRef, run_id: str) -> str:
    """The run's page in Azure ML studio (a pipeline, one of its steps, any job)."""
    wsid = (
        f"/subscriptions/{ws.subscription_id}/resourcegroups/{ws.resource_group}"
        f"/workspaces/{ws.workspace_name}"
    )
    return f"{STUDIO_ENDPOINT}/runs/{quote(run_id, safe='')}?wsid={quote(wsid, safe='/')}"


def studio_logs_url(ws: WorkspaceRef, run_id: str) -> str:
    """The run's *Outputs + logs* tab in the studio."""
    return studio_run_url(ws, run_id) + LOGS_TAB_FRAGMENT


def trace_query(operation_id: str) -> str:
    """Every item of one trace, oldest first: the pipeline's request, its steps' dependencies, records."""
    if not operation_id.isalnum():
        raise ValueError(f"not an operation id: {operation_id!r}")
    return (
        "union requests, dependencies, customEvents\n"
        f"| where operation_Id == '{operation_id}'\n"
        "| project timestamp, itemType, name, operation_Id, operation_ParentId, id, itemId,\n"
        "    customDimensions\n"
        "| order by timestamp asc"
    )


def trace_query_url(app_insights_resource_id: str, operation_id: str, end_ms: int | None) -> str:
    """The Logs share link of :func:`trace_query` on the Application Insights component."""
    scope = json.dumps({"resources": [{"resourceId": app_insights_resource_id}]}, separators=(",", ":"))
    compressed = base64.b64encode(gzip.compress(trace_query(operation_id).encode("utf-8"), mtime=0)).decode()
    end = datetime.fromtimestamp(end_ms / 1000, UTC) if end_ms is not None else datetime.now(UTC)
    span = f"{_rfc3339(end - _TRACE_BEFORE)}/{_rfc3339(end + _TRACE_AFTER)}"
    return (
        f"{PORTAL_ENDPOINT}/#blade/Microsoft_OperationsManagementSuite_Workspace/AnalyticsBlade/initiator/"
        f"AnalyticsShareLinkToQuery/isQueryEditorVisible/true/scope/{quote(scope, safe='')}"
        f"/query/{quote(compressed, safe='')}/isQueryBase64Compressed/true/timespan/{quote(span, safe='')}"
    )


def _rfc3339(moment: datetime) -> str:
    return moment.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
