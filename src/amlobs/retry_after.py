"""How long a server asked to be left alone: one reading of the retry headers for every HTTP client here.

Run history and Resource Manager (:mod:`amlobs.aml_transport`), Application Insights ingestion
(:mod:`amlobs._azure_monitor`) and the Retail Prices API (:mod:`amlobs.prices`) each cap what they
honour themselves; what the headers *say* is read the same way for all three, as azure-core's own
``RetryPolicy.get_retry_after`` does: ``x-ms-retry-after-ms``/``retry-after-ms`` first, then
``Retry-After`` in seconds or as an HTTP date.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import UTC, datetime


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Server-requested delay: ``x-ms-retry-after-ms``/``retry-after-ms``, else ``Retry-After``."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    for name in ("x-ms-retry-after-ms", "retry-after-ms"):
        raw = lowered.get(name, "").strip()
        if raw:
            try:
                milliseconds = float(raw)
            except ValueError:
                continue
            # float() also takes "nan"/"inf", which no sleep can honour.
            if math.isfinite(milliseconds):
                return max(milliseconds / 1000.0, 0.0)
    raw = lowered.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
