"""Why a pipeline run failed, where to look: its root-cause step and the links to it.

* :mod:`.root_cause`: the first failed leaf step of a pipeline listing, as summary fields (pure).
* :mod:`.links`: the studio and Application Insights URL forms those fields and the messages use.
"""

from __future__ import annotations

from .links import studio_logs_url, studio_run_url, trace_query_url
from .root_cause import ROOT_CAUSE_FIELDS, root_cause_fields

__all__ = ["ROOT_CAUSE_FIELDS", "root_cause_fields", "studio_logs_url", "studio_run_url", "trace_query_url"]
