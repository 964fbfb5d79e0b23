"""A :class:`~.notice.Notice` as the message a Microsoft Teams Workflows webhook posts: an Adaptive Card.

* Envelope: ``{"type": "message", "attachments": [{"contentType":
  "application/vnd.microsoft.card.adaptive", "contentUrl": null, "content": <card>}]}`` — the form
  Teams documents for sending an Adaptive Card through a webhook (MicrosoftDocs/msteams-docs
  ``msteams-platform/webhooks-and-connectors/how-to/connectors-using.md``, "Send Adaptive Cards using an
  Incoming Webhook"), which the Workflows template "Post to a channel when a webhook request is
  received" takes as is.
* Card schema version **1.5**: "Teams is also limited to version 1.5" (learn.microsoft.com,
  microsoft-copilot-studio ``adaptive-cards-overview``); the tests validate every card against
  microsoft/AdaptiveCards ``schemas/1.5.0/adaptive-card.json``.
* Size: Teams refuses a webhook message over 28 KB (connectors-using.md): the error text is capped
  (:data:`~.notice.MAX_DETAIL_CHARS`) and the envelope checked.
"""

from __future__ import annotations

import json
from typing import Any

from .notice import Notice

CARD_VERSION = "1.5"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_MESSAGE_BYTES = 28 * 1024
_COLOR = {"Failed": "Attention", "Missed": "Attention"}
_STYLE = {"Failed": "attention", "Missed": "attention"}


def adaptive_card(notice: Notice) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "Container",
            "style": _STYLE.get(notice.status, "warning"),
            "bleed": True,
            "items": [
                {
                    "type": "TextBlock",
                    "text": notice.title,
                    "size": "Large",
                    "weight": "Bolder",
                    "color": _COLOR.get(notice.status, "Warning"),
                    "wrap": True,
                    "style": "heading",
                }
            ],
        },
        {"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in notice.facts]},
    ]
    if notice.detail:
        body.append(
            {
                "type": "TextBlock",
                "text": notice.detail,
                "wrap": True,
                "fontType": "Monospace",
                "isSubtle": True,
            }
        )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "body": body,
    }
    if notice.links:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": label, "url": url} for label, url in notice.links
        ]
    return card


def teams_payload(notice: Notice) -> dict[str, Any]:
    payload = {
        "type": "message",
        "attachments": [
            {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": adaptive_card(notice)}
        ],
    }
    size = len(json.dumps(payload, ensure_ascii=False).encode("utf-8"))
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"the Teams message is {size} bytes, over Teams' {MAX_MESSAGE_BYTES}-byte limit")
    return payload
