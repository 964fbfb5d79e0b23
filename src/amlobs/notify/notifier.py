"""One message per failed pipeline run: the claim, the POST, and a health record when it cannot go.

Each message has its own claim key (``notify|<workspace>|<run>``) in the same claim store as the run
statuses (``amlobs.storage.claims``), so redeliveries, concurrent deliveries, a ``RunCompleted`` beside
its ``RunStatusChanged`` and a later replay of the same failure all find it taken, whatever the
status key did. History recorded by ``replay`` or ``backfill`` never notifies: it is not news.

A message that cannot be delivered never fails the event: the refusal (status and body) or the last
transient failure becomes an ``AmlNotificationFailed`` custom event and a warning, and the claim is
marked done so that no redelivery posts a late duplicate. An attempt that stopped in the middle of a
POST (its claim is taken over from "sending") is not resent: at most one message, and a health record
saying it may be missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..errors import ClaimLost, DeliveryInProgress, StorageUnavailable
from ..telemetry_unit import TelemetryUnit, stringify
from .notice import Notice, pipeline_failure_notice
from .settings import NotifySettings, WebhookTarget
from .slack import slack_payload
from .teams import teams_payload
from .webhook import Delivery, WebhookError, post_message

if TYPE_CHECKING:
    from ..storage.claims import Claim

logger = logging.getLogger("amlobs.notify")

EVENT_NOTIFICATION_FAILED = "AmlNotificationFailed"
NOTIFYING_SOURCES = frozenset({"live", "reconcile"})
Result = Literal["sent", "duplicate", "busy", "not_sent", "off", "ignored"]


class _Dedupe(Protocol):
    def claim(self, key: str, context: Mapping[str, str]) -> Claim | None: ...
    def start_sending(self, claim: Claim) -> Claim: ...
    def complete(self, claim: Claim) -> None: ...


class _Telemetry(Protocol):
    def send(self, unit: TelemetryUnit) -> None: ...


Poster = Callable[[WebhookTarget, Mapping[str, Any], NotifySettings], Delivery]


@dataclass(frozen=True)
class NotifyOutcome:
    result: Result
    detail: str | None = None


def pipeline_notify_key(summary: Mapping[str, Any]) -> str | None:
    keys = ("subscriptions", "resourceGroup", "amlWorkSpace", "run_id")
    parts = [str(summary.get(key) or "").strip() for key in keys]
    if not all(parts):
        return None
    return "notify|" + "/".join(part.lower() for part in parts[:3]) + "|" + parts[3]


def message_for(target: WebhookTarget, notice: Notice) -> dict[str, Any]:
    return teams_payload(notice) if target.format == "teams" else slack_payload(notice)


class Notifier:
    def __init__(
        self, settings: NotifySettings, dedupe: _Dedupe, telemetry: _Telemetry, *, post: Poster = post_message
    ) -> None:
        self.settings = settings
        self._dedupe = dedupe
        self._telemetry = telemetry
        self._post = post

    def pipeline_finished(self, summary: Mapping[str, Any], *, source: str) -> NotifyOutcome:
        """The message of a top-level pipeline run's summary, if its status is one that notifies."""
        status = str(summary.get("status") or "")
        if source not in NOTIFYING_SOURCES:
            return NotifyOutcome("ignored", f"recorded by {source}: history does not notify")
        if status not in self.settings.statuses:
            return NotifyOutcome("ignored", f"status {status or '?'} does not notify")
        key = pipeline_notify_key(summary)
        if key is None:
            return NotifyOutcome("ignored", "the summary names no workspace or run")
        notice = pipeline_failure_notice(summary, self.settings.app_insights_resource_id)
        context = {"run_id": str(summary.get("run_id") or ""), "status": status, "kind": "notification"}
        return self.send(key, notice, context)

    def send(self, key: str, notice: Notice, context: Mapping[str, str] | None = None) -> NotifyOutcome:
        """Post ``notice`` once for ``key`` (any stable text: a run, a missed schedule and its due time)."""
        target = self.settings.target
        if target is None:
            return NotifyOutcome("off")
        claim, refused = self._claim(key, target, context or {})
        if claim is None:
            return refused
        try:
            delivery = self._post(target, message_for(target, notice), self.settings)
        except WebhookError as failure:
            self._done(claim)
            self._health(
                key,
                target,
                failure.reason,
                status=failure.status,
                body=failure.body,
                attempts=failure.attempts,
            )
            return NotifyOutcome("not_sent", failure.reason)
        except ValueError as too_big:  # over the channel's size limit: it can never be sent
            self._done(claim)
            self._health(key, target, str(too_big))
            return NotifyOutcome("not_sent", str(too_big))
        self._done(claim)
        logger.info(
            "%s: message posted to %s (%s, attempt %d)", key, target.format, target.host, delivery.attempts
        )
        return NotifyOutcome("sent")

    def _claim(
        self, key: str, target: WebhookTarget, context: Mapping[str, str]
    ) -> tuple[Claim | None, NotifyOutcome]:
        """This invocation's "sending" claim on the message, or why it must not send it."""
        try:
            claim = self._dedupe.claim(key, dict(context))
        except DeliveryInProgress:
            return None, NotifyOutcome("busy", "another invocation is sending this message")
        except StorageUnavailable as exc:
            self._health(key, target, "claim store unavailable: message not sent", detail=str(exc))
            return None, NotifyOutcome("not_sent", "claim store unavailable")
        if claim is None:
            return None, NotifyOutcome("duplicate")
        if claim.taken_over == "sending":
            self._done(claim)
            self._health(
                key, target, "an earlier attempt stopped while posting: not resent, it may be missing"
            )
            return None, NotifyOutcome("not_sent", "maybe delivered by an earlier attempt")
        try:
            return self._dedupe.start_sending(claim), NotifyOutcome("sent")
        except ClaimLost:
            return None, NotifyOutcome("busy", "another invocation took the message over")

    def _done(self, claim: Claim) -> None:
        try:
            self._dedupe.complete(claim)
        except StorageUnavailable as exc:
            logger.warning("%s: could not mark the message done: %s", claim.key, exc)

    def _health(
        self,
        key: str,
        target: WebhookTarget,
        reason: str,
        *,
        status: int | None = None,
        body: str | None = None,
        attempts: int | None = None,
        detail: str | None = None,
    ) -> None:
        dimensions = stringify(
            {
                "notification_key": key,
                "format": target.format,
                "host": target.host,
                "reason": reason,
                "http_status": status,
                "response_body": body,
                "attempts": attempts,
                "detail": detail,
            }
        )
        logger.warning(
            "%s: message to %s (%s) not delivered: %s%s",
            key,
            target.format,
            target.host,
            reason,
            f"; response: {body}" if body else "",
        )
        unit = TelemetryUnit()
        unit.add_event(EVENT_NOTIFICATION_FAILED, dimensions)
        try:
            self._telemetry.send(unit)
        except Exception:  # the health record is best effort: the warning above stays
            logger.exception("%s: the health record of an undelivered message could not be sent", key)
