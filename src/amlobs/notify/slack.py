"""A :class:`~.notice.Notice` as a Slack incoming-webhook message: Block Kit within Slack's limits.

Limits (docs.slack.dev ``reference/block-kit/blocks``): at most 50 blocks per message; ``header``
plain text ≤ 150 characters; ``section`` text ≤ 3000 characters, ``fields`` ≤ 10 items of ≤ 2000
characters each; ``actions`` ≤ 25 elements; a ``button``'s text ≤ 75 characters and its ``url`` ≤ 3000
characters; ``context`` ≤ 10 elements. ``text`` is the notification fallback Slack asks for alongside
``blocks``. In ``mrkdwn`` only ``&``, ``<`` and ``>`` are escaped (``&amp;``, ``&lt;``, ``&gt;``:
docs.slack.dev ``messaging/formatting-message-text``), so a run's text cannot turn into a link or mention.
"""

from __future__ import annotations

from typing import Any

from .notice import Notice

MAX_BLOCKS = 50
MAX_HEADER_CHARS = 150
MAX_SECTION_TEXT_CHARS = 3000
MAX_FIELDS = 10
MAX_FIELD_CHARS = 2000
MAX_ACTION_ELEMENTS = 25
MAX_BUTTON_TEXT_CHARS = 75
MAX_BUTTON_URL_CHARS = 3000
_CODE_FENCE = "```"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(notice: Notice) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(notice.title, MAX_HEADER_CHARS), "emoji": False},
        }
    ]
    fields = [
        {"type": "mrkdwn", "text": _cut(f"*{escape(label)}*\n{escape(value)}", MAX_FIELD_CHARS)}
        for label, value in notice.facts
    ]
    for start in range(0, len(fields), MAX_FIELDS):
        blocks.append({"type": "section", "fields": fields[start : start + MAX_FIELDS]})
    if notice.detail:
        room = MAX_SECTION_TEXT_CHARS - 2 * len(_CODE_FENCE)
        detail = _cut(escape(notice.detail.replace(_CODE_FENCE, "'''")), room)
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{_CODE_FENCE}{detail}{_CODE_FENCE}"}}
        )
    buttons = [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": _cut(label, MAX_BUTTON_TEXT_CHARS)},
            "url": url,
        }
        for label, url in notice.links
        if len(url)
        <= MAX_BUTTON_URL_CHARS  # a longer link cannot be a button: Slack would refuse the message
    ][:MAX_ACTION_ELEMENTS]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": escape(notice.fallback_text), "blocks": blocks[:MAX_BLOCKS]}
