"""One stand-in Functions worker process for the chaos simulator.

It indexes ``function_app`` and invokes ``aml_run_events`` exactly as ``tests/integration/host.py``
does (the worker's own binding rules), once per HTTP POST of an Event Grid event: 200 when the
invocation succeeded, 500 with the exception's type and message when it raised (the host then
reports a failed delivery and Event Grid retries). Invocations run on a pool of threads, as the
Python worker runs sync functions. ``kill -9`` of this process is one of the simulator's faults.

Usage: ``python -m tests.chaos.worker`` with the app settings in the environment; it prints
``READY <port>`` on stdout once it listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

READY = "READY"


def _install_guard() -> None:
    # The same loopback-only rule as the test suite and the benchmark's children.
    from bench.netguard import install

    install()


def main() -> int:
    _install_guard()
    from tests.integration.host import indexed_functions, invoke

    indexed_functions()  # index at start, as the worker does before the first invocation
    pool = ThreadPoolExecutor(max_workers=int(os.environ.get("CHAOS_WORKER_THREADS", "8")))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8")
            try:
                pool.submit(invoke, body).result()
            except Exception as exc:  # the host turns any exception into a failed invocation
                self._reply(500, {"error": type(exc).__name__, "message": str(exc)[:2000]})
            else:
                self._reply(200, {"ok": True})

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the simulator stopped waiting (delivery timeout)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"{READY} {server.server_address[1]}", flush=True)
    # The parent closes our stdin when it is done with us: exit then, even if it was killed.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever(poll_interval=0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
