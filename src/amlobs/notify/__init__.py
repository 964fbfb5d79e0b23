"""Messages to the team's channel: Microsoft Teams (Workflows webhook, Adaptive Card) or Slack
(incoming webhook, Block Kit), one per failed pipeline run, and any :class:`Notice` another part of
the app has to say (the reconciler's missed and late schedules).

* :mod:`.settings`: the webhook (a secret), which statuses notify, host vetting at start.
* :mod:`.notice`: what a message says (pure); :mod:`.teams` and :mod:`.slack`: how each channel shows it.
* :mod:`.webhook`: the POST and its bounded retries; :mod:`.notifier`: once per key, health records.
"""

from __future__ import annotations

from .notice import Notice, pipeline_failure_notice, schedule_notice, schedule_notify_key
from .notifier import EVENT_NOTIFICATION_FAILED, Notifier, NotifyOutcome, pipeline_notify_key
from .settings import NotifySettings, WebhookTarget, webhook_target

__all__ = [
    "EVENT_NOTIFICATION_FAILED",
    "Notice",
    "Notifier",
    "NotifyOutcome",
    "NotifySettings",
    "WebhookTarget",
    "pipeline_failure_notice",
    "pipeline_notify_key",
    "schedule_notice",
    "schedule_notify_key",
    "webhook_target",
]
