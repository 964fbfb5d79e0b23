"""One POST of a JSON message to a vetted webhook, retried within bounds; never a credential.

Built on :mod:`http.client` on purpose: nothing here logs a request line (urllib3 logs the URL's path,
which is the webhook's secret, at DEBUG), no redirect is followed, and no ``Authorization`` header is
ever set — a webhook URL is its own credential and the app's token goes nowhere near it.

Outcomes: 2xx delivered. 408, 429, 5xx, a timeout or a connection failure: retried with exponential
backoff (or the server's ``Retry-After``, up to a cap), within the attempts and the time budget.
Anything else (a 3xx, a 4xx such as Slack's ``invalid_payload`` or ``channel_not_found``) is
permanent: :class:`WebhookRefused` with the status and the body (capped), at once.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from ..retry_after import retry_after_seconds
from .settings import NotifySettings, WebhookTarget

MAX_BODY_CHARS = 1024
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = "amlobs-notify"


class WebhookError(Exception):
    """The message was not delivered. ``str()`` never contains the webhook URL."""

    def __init__(self, reason: str, *, status: int | None = None, body: str | None = None, attempts: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body
        self.attempts = attempts

    def __str__(self) -> str:
        return self.reason


class WebhookRefused(WebhookError):
    """A permanent refusal (3xx/4xx other than 408/429): retrying cannot help."""


class WebhookUnavailable(WebhookError):
    """Still failing (429/5xx/timeouts) when the attempts or the time budget ran out."""


@dataclass(frozen=True)
class Delivery:
    status: int
    attempts: int


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: str


def _secret_parts(url: str) -> list[str]:
    """The parts of a webhook URL that grant access, longest first: the URL, its path and query, and
    each long path segment or query value (a Slack token, a Workflows signature)."""
    parts = urlsplit(url)
    pieces = [url, f"{parts.path}?{parts.query}" if parts.query else "", parts.query, parts.path]
    pieces += [segment for segment in parts.path.split("/") if len(segment) >= 16]
    pieces += [value for _, value in parse_qsl(parts.query) if len(value) >= 8]
    pieces += [quote(value, safe="") for _, value in parse_qsl(parts.query) if len(value) >= 8]
    return sorted({piece for piece in pieces if len(piece) > 1}, key=len, reverse=True)


def _scrubbed(text: str, target: WebhookTarget) -> str:
    """A body as it may be recorded: capped, and without any part of the URL should the server echo it."""
    for secret in _secret_parts(target.url):
        text = text.replace(secret, "<webhook>")
    return text[:MAX_BODY_CHARS]


def _post_once(target: WebhookTarget, body: bytes, timeout: float) -> _Answer:
    parts = urlsplit(target.url)
    host, port = parts.hostname or "", parts.port
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=ssl.create_default_context()
        )
    else:  # http: only ever a loopback host (settings.webhook_target)
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    target_path = parts.path or "/"
    if parts.query:
        target_path += "?" + parts.query
    try:
        connection.request(
            "POST",
            target_path,
            body=body,
            headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT},
        )
        response = connection.getresponse()
        text = response.read(64 * 1024).decode("utf-8", "replace")
        return _Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, text)
    finally:
        connection.close()


def post_message(
    target: WebhookTarget,
    payload: Mapping[str, Any],
    settings: NotifySettings,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """POST ``payload`` until delivered, refused, or out of attempts or time (then raise)."""
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    deadline = clock() + settings.budget_seconds
    last: WebhookError | None = None
    for attempt in range(1, settings.max_attempts + 1):
        timeout = max(0.1, min(settings.timeout_seconds, deadline - clock()))
        answer: _Answer | None = None
        try:
            answer = _post_once(target, body, timeout)
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            # The type only: the message of a socket error may quote the host and path.
            last = WebhookUnavailable(f"{type(exc).__name__} talking to {target.host}", attempts=attempt)
        if answer is not None:
            if 200 <= answer.status < 300:
                return Delivery(answer.status, attempt)
            text = _scrubbed(answer.body, target)
            if answer.status not in RETRYABLE_STATUSES:
                raise WebhookRefused(
                    f"{target.host} refused the message: HTTP {answer.status}",
                    status=answer.status,
                    body=text,
                    attempts=attempt,
                )
            last = WebhookUnavailable(
                f"{target.host} answered HTTP {answer.status}",
                status=answer.status,
                body=text,
                attempts=attempt,
            )
        if attempt == settings.max_attempts:
            break
        asked = retry_after_seconds(answer.headers) if answer is not None else None
        if asked is not None and asked > settings.max_retry_after_seconds:
            assert last is not None
            last.reason += (
                f" (Retry-After {asked:.0f} s is over the {settings.max_retry_after_seconds:.0f} s cap)"
            )
            break
        delay = asked if asked is not None else min(8.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)  # noqa: S311
        if clock() + delay >= deadline:
            break
        sleep(delay)
    assert last is not None
    raise last
