"""Where messages go, and which pipeline statuses send one: read once, refused at start when unsafe.

The webhook URL is a secret (anyone holding it can post to the channel): in Azure it is a Key Vault
reference, and no message, log line or record here ever quotes it. A refusal names the setting and,
at most, the host.

Accepted hosts (https only, port 443; a loopback host, plain http and any port included, only with the
test-only ``AML_OBS_TEST_ALLOW_LOOPBACK``: the test sinks):

* Microsoft Teams, *Workflows* ("Post to a channel when a webhook request is received"): the flow's
  HTTP trigger URL, on ``*.logic.azure.com`` (``https://prod-NN.<region>.logic.azure.com/workflows/…``)
  or, for flows created since the Power Platform move, ``*.api.powerplatform.com`` /
  ``*.api.powerautomate.com`` (Argo CD's Teams Workflows service documents the same set:
  argo-cd ``docs/operator-manual/notifications/services/teams-workflows.md``); the retired Office 365
  connector hosts ``*.webhook.office.com`` too, for the webhooks that still answer.
* Slack incoming webhooks: ``hooks.slack.com`` (``https://hooks.slack.com/services/T…/B…/…``,
  docs.slack.dev ``messaging/sending-messages-using-incoming-webhooks``).
* Any other host only when named in ``AML_OBS_NOTIFY_ALLOWED_HOSTS`` together with
  ``AML_OBS_NOTIFY_FORMAT`` (``teams`` or ``slack``): a relay of your own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from ..settings import (
    TEST_LOOPBACK_SETTING,
    SettingsError,
    _reject_unresolved_key_vault_reference,
    _test_loopback,
    is_loopback_host,
)

WEBHOOK_SETTING = "AML_OBS_NOTIFY_WEBHOOK_URL"
STATUSES_SETTING = "AML_OBS_NOTIFY_STATUSES"
ALLOWED_HOSTS_SETTING = "AML_OBS_NOTIFY_ALLOWED_HOSTS"
FORMAT_SETTING = "AML_OBS_NOTIFY_FORMAT"
APP_INSIGHTS_ID_SETTING = "AML_OBS_APPINSIGHTS_RESOURCE_ID"

WebhookFormat = Literal["teams", "slack"]
NOTIFIABLE_STATUSES = ("Failed", "Canceled")
DEFAULT_STATUSES = ("Failed",)
TEAMS_HOST_SUFFIXES = (
    ".logic.azure.com",
    ".api.powerplatform.com",
    ".api.powerautomate.com",
    ".webhook.office.com",
)
SLACK_HOSTS = ("hooks.slack.com",)


@dataclass(frozen=True)
class WebhookTarget:
    """A vetted webhook. ``repr`` never shows the URL."""

    format: WebhookFormat
    host: str
    url: str = field(repr=False)


@dataclass(frozen=True)
class NotifySettings:
    target: WebhookTarget | None
    statuses: frozenset[str] = frozenset(DEFAULT_STATUSES)
    app_insights_resource_id: str | None = None
    # One message's delivery: at most this many POSTs, each bounded, all within the budget (the event's
    # claim is held meanwhile: amlobs.processor), Retry-After honoured up to its cap.
    max_attempts: int = 4
    timeout_seconds: float = 5.0
    budget_seconds: float = 20.0
    max_retry_after_seconds: float = 10.0

    @property
    def enabled(self) -> bool:
        return self.target is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifySettings:
        env = os.environ if env is None else env
        _reject_unresolved_key_vault_reference(WEBHOOK_SETTING, env.get(WEBHOOK_SETTING, ""))
        raw = env.get(WEBHOOK_SETTING, "").strip()
        allowed = frozenset(
            h.strip().lower() for h in env.get(ALLOWED_HOSTS_SETTING, "").split(",") if h.strip()
        )
        declared = env.get(FORMAT_SETTING, "").strip().lower() or None
        if declared not in (None, "teams", "slack"):
            raise SettingsError(f"{FORMAT_SETTING} must be 'teams' or 'slack', got {declared!r}")
        app_insights = env.get(APP_INSIGHTS_ID_SETTING, "").strip() or None
        if app_insights is not None and not app_insights.lower().startswith("/subscriptions/"):
            raise SettingsError(
                f"{APP_INSIGHTS_ID_SETTING} must be a resource id (/subscriptions/…), got {app_insights!r}"
            )
        return cls(
            target=webhook_target(
                raw, allowed_hosts=allowed, declared=declared, allow_loopback=_test_loopback(env)
            )
            if raw
            else None,
            statuses=_statuses(env.get(STATUSES_SETTING, "")),
            app_insights_resource_id=app_insights,
        )


def _statuses(raw: str) -> frozenset[str]:
    if not raw.strip():
        return frozenset(DEFAULT_STATUSES)
    wanted: set[str] = set()
    for item in raw.split(","):
        match = next((s for s in NOTIFIABLE_STATUSES if s.lower() == item.strip().lower()), None)
        if match is None:
            raise SettingsError(
                f"{STATUSES_SETTING} lists {item.strip()!r}: only {', '.join(NOTIFIABLE_STATUSES)} can notify"
            )
        wanted.add(match)
    return frozenset(wanted)


def _known_format(host: str) -> WebhookFormat | None:
    if host in SLACK_HOSTS:
        return "slack"
    if any(host.endswith(suffix) for suffix in TEAMS_HOST_SUFFIXES):
        return "teams"
    return None


def webhook_target(
    url: str,
    *,
    allowed_hosts: frozenset[str] = frozenset(),
    declared: str | None = None,
    allow_loopback: bool = False,
) -> WebhookTarget:
    """The vetted target of ``url``, or :class:`SettingsError` saying why not (never quoting the URL).

    A loopback host (the test suite's sinks) only with ``allow_loopback``: the test-only
    ``AML_OBS_TEST_ALLOW_LOOPBACK``, refused on an Azure host (:mod:`amlobs.settings`).
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        raise SettingsError(f"{WEBHOOK_SETTING} is not a valid URL") from None
    if not host or not url.isascii() or any(ch.isspace() or ch == "\\" for ch in url) or "@" in parts.netloc:
        raise SettingsError(
            f"{WEBHOOK_SETTING} is not a plain absolute URL (no user info, spaces or backslashes)"
        )
    loopback = is_loopback_host(host)
    if loopback and not allow_loopback:
        raise SettingsError(
            f"{WEBHOOK_SETTING}: a loopback host ({host!r}) takes messages only in the test suite "
            f"({TEST_LOOPBACK_SETTING}=true)"
        )
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise SettingsError(
            f"{WEBHOOK_SETTING} must be an https:// URL (the message carries run details), "
            f"got a {parts.scheme or 'scheme-less'} URL for host {host!r}"
        )
    if not loopback and port not in (None, 443):
        raise SettingsError(f"{WEBHOOK_SETTING}: port {port} is not 443 (host {host!r})")
    known = _known_format(host)
    if known is not None:
        if declared is not None and declared != known:
            raise SettingsError(f"{FORMAT_SETTING}={declared} but {host!r} is a {known} webhook host")
        return WebhookTarget(known, host, url)
    if host in allowed_hosts or loopback:  # loopback: the test sinks, and a local relay
        if declared is None:
            raise SettingsError(
                f"{WEBHOOK_SETTING}: {host!r} is allowed by {ALLOWED_HOSTS_SETTING}; set {FORMAT_SETTING} "
                "to teams or slack to say which message it takes"
            )
        return WebhookTarget("teams" if declared == "teams" else "slack", host, url)
    raise SettingsError(
        f"{WEBHOOK_SETTING}: host {host!r} is not a Microsoft Teams Workflows or Slack incoming-webhook host "
        f"(*.logic.azure.com, *.api.powerplatform.com, *.api.powerautomate.com, *.webhook.office.com, "
        f"hooks.slack.com); to post to a relay of your own, list its host in {ALLOWED_HOSTS_SETTING} and set "
        f"{FORMAT_SETTING}"
    )
