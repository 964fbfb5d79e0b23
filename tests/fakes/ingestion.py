"""A loopback stand-in for the Application Insights ingestion ("Breeze") endpoint.

It speaks the part of the Track API that ``azure-monitor-opentelemetry-exporter`` uses:
``POST {IngestionEndpoint}/v2.1/track`` (also ``/v2/track``) with a JSON array of envelopes (newline-
delimited JSON and gzip bodies are accepted too), answered with the Breeze shape
``{"itemsReceived": n, "itemsAccepted": k, "errors": [{"index": i, "statusCode": s, "message": m}]}``.

``envelopes`` holds what ingestion *accepted* (what a KQL query would later see); ``requests`` holds every
request as received, whatever the answer. Failure modes are switched with :meth:`IngestionServer.fail_with`,
or drawn per request by :attr:`IngestionServer.fault_hook` (the chaos simulator).

Like the real endpoint, it refuses every item whose ``time`` is more than 48 hours old or more than 2 hours
ahead, item by item, with ingestion's own message and status: ``206`` when other items were accepted, ``400``
with the same body when none was. The exact texts are ingestion's, as public logs and Microsoft's SDK tests
quote them: ``{"itemsReceived":6,"itemsAccepted":0,"appId":null,"errors":[{"index":0,"statusCode":400,
"message":"103: Field 'time' on type 'Envelope' is older than the allowed min date. Expected: now -
172800000ms"}, …]}`` (microsoft/ApplicationInsights-node.js#1466, Azure/aad-auth-proxy#53); a 206 with the
same per-item error (microsoft/ApplicationInsights-JS ``legacy/JavaScript/JavaScriptSDK.Tests/CheckinTests/
Sender.tests.ts``: "backend rejected 1 out of 2 payloads. First payload was too old and should be dropped
(non-retryable)"; Azure Monitor Java agent logs "Received response code 206 (103: …)"); and ``"104: Field
'time' on type 'Envelope' is newer than the max date. Expected: now + 7200000ms"`` (HTTP 400,
microsoft/ApplicationInsights-JS#2283).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

TRACK_PATHS = ("/v2.1/track", "/v2/track")
FAILURE_MODES = ("down", "slow", "partial")  # plus any HTTP status code (int)
EVENT_ENVELOPE = "Microsoft.ApplicationInsights.Event"
METRIC_ENVELOPE = "Microsoft.ApplicationInsights.Metric"
REQUEST_ENVELOPE = "Microsoft.ApplicationInsights.Request"
DEPENDENCY_ENVELOPE = "Microsoft.ApplicationInsights.RemoteDependency"
SPAN_ENVELOPES = (REQUEST_ENVELOPE, DEPENDENCY_ENVELOPE)
# Ingestion's window for an item's time, and what it says about an item outside it.
MAX_AGE_MS = 172_800_000
MAX_AHEAD_MS = 7_200_000
TOO_OLD = (
    f"103: Field 'time' on type 'Envelope' is older than the allowed min date. Expected: now - {MAX_AGE_MS}ms"
)
TOO_NEW = f"104: Field 'time' on type 'Envelope' is newer than the max date. Expected: now + {MAX_AHEAD_MS}ms"


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    envelopes: list[dict[str, Any]]
    status: int | None = None  # None: no answer was sent (the client had gone, or "slow" was released)
    body_error: str | None = None
    received_at: float = field(default_factory=time.time)  # wall clock: comparable across processes
    fault: str | None = None  # the failure mode applied to this request, if any
    accepted: list[int] = field(default_factory=list)  # indices of the envelopes ingestion stored
    answer: dict[str, Any] | None = None  # the Breeze body ingestion answered with

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass
class IngestionFault:
    """How to answer one track request (see :meth:`IngestionServer.fail_with` for the modes)."""

    mode: int | str
    remaining: int | None = None  # None: until reset()
    retry_after: float | None = None
    delay: float = 5.0
    partial_status: int = 500
    matching: str | None = None  # only requests holding an envelope whose name ends with this
    refused: frozenset[int] | None = None  # "partial": the indices refused (None: item 0)
    released_by_reset: bool = True  # "slow": reset() ends the hold early (else only close() does)

    def applies_to(self, request: RecordedRequest) -> bool:
        suffix = self.matching
        return suffix is None or any(str(e.get("name", "")).endswith(suffix) for e in request.envelopes)


@dataclass
class IngestionServer:
    """One fake ingestion endpoint on 127.0.0.1 with a random port, kept across "down" periods."""

    instrumentation_key: str = field(default_factory=lambda: str(uuid.uuid4()))
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        # Consulted when no fail_with() mode applies: the request -> a fault for it, or None.
        self.fault_hook: Callable[[RecordedRequest], IngestionFault | None] | None = None
        # Ingestion's clock, which judges each item's time (seconds since the epoch).
        self.clock: Callable[[], float] = time.time
        self._lock = threading.Lock()
        self._failure: IngestionFault | None = None
        self._release = threading.Event()  # frees requests held by "slow"
        self._closing = threading.Event()  # frees every held request
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> IngestionServer:
        handler = _handler_for(self)
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._httpd = httpd
        # A short poll interval keeps shutdown (teardown, "down") fast.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-ingestion", daemon=True
        )
        self._thread.start()
        return self

    def _stop_listening(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        # Kept-alive connections would otherwise go on being served by their handler threads.
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def close(self) -> None:
        self._closing.set()
        self._release.set()
        self._stop_listening()

    @property
    def listening(self) -> bool:
        return self._httpd is not None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def connection_string(self) -> str:
        # LiveEndpoint points here too, so even a live-metrics client that got enabled by mistake
        # would stay on loopback (and get 404s).
        return (
            f"InstrumentationKey={self.instrumentation_key};"
            f"IngestionEndpoint={self.endpoint};LiveEndpoint={self.endpoint}"
        )

    # -- failure switches ------------------------------------------------------------------------
    def fail_with(
        self,
        mode: int | str,
        *,
        times: int | None = None,
        retry_after: float | None = None,
        delay: float = 5.0,
        partial_status: int = 500,
        matching: str | None = None,
    ) -> None:
        """Answer the next ``times`` track requests (all, when None) with a failure.

        ``mode``: an HTTP status (500, 503, 429, 400, 401, 403...) answered with the Breeze error body;
        ``"partial"``: 206 where item 0 (with ``matching``: every item of that kind) is refused with
        ``partial_status`` and the rest accepted;
        ``"slow"``: hold the request ``delay`` seconds (or until reset) before a normal 200, so a client
        with a shorter timeout gives up while ingestion still stores the data, as the real one may;
        ``"down"``: stop listening, so connections are refused until :meth:`reset`.
        ``matching``: fail only requests carrying an envelope whose name ends with it (``"Metric"``,
        ``"Event"``); others are answered normally and do not count towards ``times``.
        """
        if not isinstance(mode, int) and mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}: an HTTP status or one of {FAILURE_MODES}")
        with self._lock:
            self._failure = IngestionFault(mode, times, retry_after, delay, partial_status, matching)
            self._release.clear()
        if mode == "down":
            self._stop_listening()

    def reset(self) -> None:
        """Back to normal: failures off, held requests released, listening again on the same port."""
        with self._lock:
            self._failure = None
        self._release.set()
        if not self.listening:
            self.start()

    def clear(self) -> None:
        """Forget what was recorded (the failure mode is kept)."""
        with self._lock:
            self.envelopes.clear()
            self.requests.clear()

    # -- queries ---------------------------------------------------------------------------------
    def track_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and _track_path(r.path)]

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """``baseData`` of accepted custom events (``name``/``properties``/``measurements``)."""
        with self._lock:
            envelopes = list(self.envelopes)
        found = []
        for envelope in envelopes:
            base = envelope.get("data", {}).get("baseData", {})
            if envelope.get("name") == EVENT_ENVELOPE and (name is None or base.get("name") == name):
                found.append(base)
        return found

    def metrics(self, name: str) -> list[dict[str, Any]]:
        """Accepted metric data points named ``name``, each with its envelope's ``properties``."""
        with self._lock:
            envelopes = list(self.envelopes)
        found = []
        for envelope in envelopes:
            if envelope.get("name") != METRIC_ENVELOPE:
                continue
            base = envelope.get("data", {}).get("baseData", {})
            for point in base.get("metrics", []):
                if point.get("name") == name:
                    found.append({**point, "properties": dict(base.get("properties") or {})})
        return found

    def spans(self) -> list[dict[str, Any]]:
        """Accepted ``requests`` and ``dependencies`` envelopes (spans), whole."""
        with self._lock:
            return [dict(e) for e in self.envelopes if e.get("name") in SPAN_ENVELOPES]

    # -- request handling (server threads) ------------------------------------------------------
    def _time_refusals(self, items: list[dict[str, Any]]) -> dict[int, str]:
        """Items whose ``time`` is outside ingestion's window → ingestion's message for each."""
        now_ms = self.clock() * 1000
        refused: dict[int, str] = {}
        for index, item in enumerate(items):
            moment = _envelope_time_ms(item.get("time"))
            if moment is None:
                continue
            if moment < now_ms - MAX_AGE_MS:
                refused[index] = TOO_OLD
            elif moment > now_ms + MAX_AHEAD_MS:
                refused[index] = TOO_NEW
        return refused

    def _answer_items(
        self, request: RecordedRequest, refused: dict[int, tuple[int, str]]
    ) -> tuple[int, dict[str, str], dict[str, Any]]:
        """Store what is not refused; 200, 206 (some refused) or 400 (all refused, with the same body)."""
        count = len(request.envelopes)
        accepted = [index for index in range(count) if index not in refused]
        self._accept(request, accepted)
        errors = [
            {"index": index, "statusCode": status, "message": message}
            for index, (status, message) in sorted(refused.items())
        ]
        status = 200 if not refused else (206 if accepted else 400)
        return status, {}, {"itemsReceived": count, "itemsAccepted": len(accepted), "errors": errors}

    def _take_failure(self, request: RecordedRequest) -> IngestionFault | None:
        with self._lock:
            failure = self._failure
            if failure is None or not failure.applies_to(request):
                hook = self.fault_hook
                return hook(request) if hook is not None else None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failure = None
            return failure

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _accept(self, request: RecordedRequest, indices: list[int]) -> None:
        with self._lock:
            request.accepted = indices
            self.envelopes.extend(request.envelopes[index] for index in indices)

    def _handle_track(self, request: RecordedRequest) -> tuple[int, dict[str, str], dict[str, Any]]:
        items = request.envelopes
        count = len(items)
        failure = self._take_failure(request)
        request.fault = None if failure is None else str(failure.mode)
        if failure is not None and failure.mode == "slow":
            (self._release if failure.released_by_reset else self._closing).wait(failure.delay)
            failure = None
        too_old_or_new = {index: (400, message) for index, message in self._time_refusals(items).items()}
        if failure is None or failure.mode == "down":
            return self._answer_items(request, too_old_or_new)
        if failure.mode == "partial":
            if failure.refused is not None:
                chosen = set(failure.refused)
            elif failure.matching is not None:  # the items of that kind, not the first one
                chosen = {i for i, e in enumerate(items) if str(e.get("name", "")).endswith(failure.matching)}
            else:
                chosen = {0}
            refused = {i: (failure.partial_status, "fake: item refused") for i in chosen & set(range(count))}
            status, headers, answer = self._answer_items(request, {**too_old_or_new, **refused})
            return (206 if answer["itemsAccepted"] else status), headers, answer
        assert isinstance(failure.mode, int)
        status = failure.mode
        headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
        errors = [
            {"index": index, "statusCode": status, "message": f"fake: ingestion answered {status}"}
            for index in range(count)
        ]
        return status, headers, {"itemsReceived": count, "itemsAccepted": 0, "errors": errors}


def _envelope_time_ms(value: object) -> float | None:
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:  # at most six fractional digits for fromisoformat
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000


def _track_path(path: str) -> bool:
    # The exporter joins "IngestionEndpoint=.../" and "/v2.1/track", giving a double slash.
    normalised = "/" + path.split("?", 1)[0].lstrip("/")
    return normalised in TRACK_PATHS


def _decode_envelopes(body: bytes, encoding: str | None) -> list[dict[str, Any]]:
    if encoding and encoding.lower() == "gzip":
        body = gzip.decompress(body)
    text = body.decode("utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        decoded = json.loads(text)
    else:  # newline-delimited JSON, which Breeze also accepts
        decoded = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(decoded, dict):
        decoded = [decoded]
    return [item for item in decoded if isinstance(item, dict)]


def _handler_for(server: IngestionServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms
            # to every kept-alive request, which would distort timings measured against the fake.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _send(self, status: int, headers: dict[str, str], body: dict[str, Any] | None) -> None:
            payload = json.dumps(body).encode() if body is not None else b""
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (timeout): nothing to tell it

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = RecordedRequest("POST", self.path, dict(self.headers.items()), [])
            server._record(request)
            if not _track_path(self.path):
                request.status = 404
                self._send(404, {}, {"error": f"fake ingestion has no {self.path}"})
                return
            try:
                request.envelopes = _decode_envelopes(body, self.headers.get("Content-Encoding"))
            except (ValueError, OSError) as exc:
                request.body_error = str(exc)
                request.status = 400
                self._send(400, {}, {"itemsReceived": 0, "itemsAccepted": 0, "errors": []})
                return
            status, headers, answer = server._handle_track(request)
            request.status, request.answer = status, answer
            self._send(status, headers, answer)

        def do_GET(self) -> None:
            server._record(RecordedRequest("GET", self.path, dict(self.headers.items()), [], 404))
            self._send(404, {}, {"error": "not found"})

    return Handler


@pytest.fixture
def ingestion_server() -> Iterator[IngestionServer]:
    server = IngestionServer().start()
    try:
        yield server
    finally:
        server.close()
