"""One measured child process of the benchmark: a fresh interpreter, as the Functions worker has.

Run by ``bench/run.py`` with the interpreter of the venv under test (ours: ``src/requirements.txt``;
baseline: the 2020 sample's stack). Stdlib only outside the code under test, so both venvs run the
same harness. Results go to the JSON file named by ``--out``; peak memory is this process's VmHWM
(/proc), wall time is measured both here (phases) and by the parent (spawn to exit).

Modes:
  bare             the interpreter floor: nothing imported beyond the harness itself
  ours-import      ``import function_app`` + index ``app.get_functions()`` (what the worker does)
  baseline-import  the 2020 sample's module-level imports
  ours-events      import + index, then events through the user function, decoded as the host does
  baseline-events  the sample's imports, then its per-event flow (azureml-core v1 + AzureLogHandler)

In the events modes the first event is timed on its own ("first invocation"), then the child prints
a marker line and waits for a line on stdin, so the parent can snapshot the fakes' request counters
before the steady-state events run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import netguard

READY_MARKER = "@@bench-ready@@"
ROOT = Path(__file__).resolve().parent.parent


def _index_ours() -> Callable[[Any], Any]:
    sys.path.insert(0, str(ROOT / "src"))
    import function_app

    # The worker's indexing: list the functions and serialise their bindings.
    functions = function_app.app.get_functions()
    for function in functions:
        function.get_raw_bindings()
    (target,) = [f for f in functions if f.get_function_name() == "aml_run_events"]
    return target.get_user_function()  # type: ignore[no-any-return]


def _import_baseline() -> None:
    # The sample's module-level imports (event_processor.py, utils/*.py, __init__.py).
    import azure.functions  # noqa: F401
    from azureml.core import Experiment, Run, Workspace  # noqa: F401
    from azureml.core.authentication import ServicePrincipalAuthentication  # noqa: F401
    from opencensus.ext.azure.log_exporter import AzureLogHandler  # noqa: F401


def _decode(event_json: str) -> Any:
    # Exactly the host's conversion of an Event Grid trigger payload into an EventGridEvent argument.
    from azure.functions.eventgrid import EventGridEventInConverter
    from azure.functions.meta import Datum

    return EventGridEventInConverter.decode(Datum(event_json, "json"), trigger_metadata=None)


def _decoder_for(function: Callable[[Any], Any]) -> Callable[[str], Any]:
    """The worker's binding rule (azure-functions-python-worker functions.py): a ``str``/``bytes``
    trigger parameter gets the payload's JSON text (generic binding), any other the converter's object."""
    import inspect
    import typing

    first = next(iter(inspect.signature(function).parameters), None)
    if first is not None and typing.get_type_hints(function).get(first) in (str, bytes):
        return lambda event_json: event_json
    return _decode


def _baseline_function() -> Callable[[Any], None]:
    """The 2020 sample's per-event flow, re-stated (not copied) from its event_processor.py.

    Per event it built a new ServicePrincipalAuthentication + Workspace (an ARM lookup), an
    Experiment and a Run, called get_details(), and added a new AzureLogHandler to its logger before
    logging one record. The handler leak is reproduced on purpose: it is what the sample did.
    """
    import logging

    import requests.adapters
    from azureml.core import Experiment, Run, Workspace
    from azureml.core.authentication import ServicePrincipalAuthentication
    from opencensus.ext.azure.log_exporter import AzureLogHandler

    fake = os.environ["BENCH_BASELINE_FAKE"]
    real_send = requests.adapters.HTTPAdapter.send

    def send_to_fake(self: Any, request: Any, **kwargs: Any) -> Any:
        # Every Azure URL goes to the loopback fake, which sees the original in a header.
        from urllib.parse import urlsplit

        original = request.url
        parts = urlsplit(original)
        if parts.hostname not in ("127.0.0.1", "localhost"):
            request.headers["X-Bench-Original-Url"] = original
            request.url = f"{fake}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return real_send(self, request, **kwargs)

    requests.adapters.HTTPAdapter.send = send_to_fake  # type: ignore[method-assign]

    logger = logging.getLogger("bench.sample")
    logger.setLevel("INFO")

    def main(event: Any) -> None:
        data = event.get_json()
        auth = ServicePrincipalAuthentication(
            tenant_id=os.environ["TENANT_ID"],
            service_principal_id=os.environ["APP_ID"],
            service_principal_password=os.environ["SERVICE_PRINCIPAL_PASSWORD"],
        )
        workspace = Workspace(
            subscription_id=os.environ["SUBSCRIPTION_ID"],
            resource_group=os.environ["AML_RESOURCE_GROUP"],
            workspace_name=os.environ["AML_WORKSPACE_NAME"],
            auth=auth,
        )
        experiment = Experiment(workspace=workspace, name=data["experimentName"])
        details = Run(experiment, data["runId"]).get_details()
        if "endTimeUtc" in details:
            logger.addHandler(
                AzureLogHandler(
                    connection_string=os.environ["APPINSIGHTS_CONNECTION_STRING"],
                    enable_standard_metrics=False,
                )
            )
            metrics = {
                "run_id": details["runId"],
                "status": details["status"],
                "start_time_utc": details["startTimeUtc"],
                "end_time_utc": details["endTimeUtc"],
                "experimentName": data["experimentName"],
                "experimentId": data["experimentId"],
            }
            logger.info("aml_pipeline_run_metrics", extra={"custom_dimensions": metrics})

    return main


def _count_http_requests() -> list[str]:
    """Every HTTP request this process sends, as ``host:port METHOD path <ms>``: urllib3 and
    requests (hence azure-core and msrest) all go through http.client. The time is from the request
    line to the response headers, which is most of a loopback call (bodies here are small)."""
    import http.client

    sent: list[str] = []
    started: dict[int, tuple[str, float]] = {}
    real_putrequest = http.client.HTTPConnection.putrequest
    real_getresponse = http.client.HTTPConnection.getresponse

    def putrequest(
        self: http.client.HTTPConnection, method: str, url: str, *args: Any, **kwargs: Any
    ) -> None:
        started[id(self)] = (f"{self.host}:{self.port} {method} {url.split('?')[0]}", time.perf_counter())
        real_putrequest(self, method, url, *args, **kwargs)

    def getresponse(self: http.client.HTTPConnection) -> http.client.HTTPResponse:
        try:
            return real_getresponse(self)
        finally:
            line, start = started.pop(id(self), ("? ? ?", time.perf_counter()))
            sent.append(f"{line} {(time.perf_counter() - start) * 1000:.3f}")

    http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
    http.client.HTTPConnection.getresponse = getresponse  # type: ignore[method-assign]
    return sent


def _run_events(function: Callable[[Any], Any], events: list[str], out: dict[str, Any]) -> None:
    decode = _decoder_for(function)
    sent = _count_http_requests()
    start = time.perf_counter()
    function(decode(events[0]))
    out["first_event_s"] = time.perf_counter() - start
    out["modules_after_first_event"] = len(sys.modules)
    out["first_requests"] = list(sent)
    del sent[:]
    print(READY_MARKER, flush=True)
    sys.stdin.readline()
    latencies = []
    profile = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    loop_start = time.perf_counter()
    for event_json in events[1:]:
        start = time.perf_counter()
        function(decode(event_json))
        latencies.append(time.perf_counter() - start)
    out["steady_total_s"] = time.perf_counter() - loop_start
    if profile is not None:
        import io
        import pstats

        profile.disable()
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(60)
        out["profile"] = text.getvalue()
    out["latencies_s"] = latencies
    out["steady_requests"] = list(sent)


def _peak_rss_kib() -> int:
    """VmHWM: this process's peak RSS since exec (ru_maxrss also counts the forked parent's pages
    from before exec, which would put the bench's own memory in every sample)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--out", required=True)
    parser.add_argument("--events", help="JSON file: a list of Event Grid event JSON texts")
    args = parser.parse_args()
    netguard.install()
    out: dict[str, Any] = {"mode": args.mode}
    start = time.perf_counter()
    try:
        if args.mode == "bare":
            pass
        elif args.mode in ("ours-import", "ours-events"):
            function = _index_ours()
        elif args.mode in ("baseline-import", "baseline-events"):
            _import_baseline()
        else:
            raise SystemExit(f"unknown mode {args.mode}")
        out["import_s"] = time.perf_counter() - start
        out["modules"] = len(sys.modules)
        if args.mode.endswith("-events"):
            events = json.loads(Path(args.events).read_text())
            if args.mode == "baseline-events":
                function = _baseline_function()
            _run_events(function, events, out)
    finally:
        out["network_attempts"] = netguard.ATTEMPTS
        out["vm_hwm_kib"] = _peak_rss_kib()
        Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
