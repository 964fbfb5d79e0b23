"""The benchmark: our Function App versus the 2020 sample's stack, side by side in one run.

``bench/run.sh`` (or ``.venv/bin/python bench/run.py``) prints a Markdown table and writes
``bench/results/latest.json``. It is not part of the test suite: nothing here asserts a timing.

What is measured (docs/bench.md has the method and the caveats):
  * installed size of each stack in its own fresh venv (site-packages, no pip/setuptools);
  * cold start: a fresh interpreter importing ``function_app`` and indexing its functions (ours)
    or the sample's imports (baseline); wall time and peak RSS of the child, median of N rounds;
  * first invocation: cold start + the first event end to end against the loopback fakes;
  * per event: median/p99 latency, events/s on one worker and HTTP calls per event.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import socketserver
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baseline_fake import start_baseline_fake
from report import latency_stats, per_event_calls, per_event_http_ms, percentile, render, to_json

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
PROBE = BENCH / "probe.py"
READY_MARKER = "@@bench-ready@@"

# The exporter and the sample's opencensus handler must stay on loopback and quiet.
QUIET_TELEMETRY_ENV = {
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_LIVE_METRICS_DISABLED": "true",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- venvs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    name: str
    requirements: Path

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.venv / "lib" / version / "site-packages"


OURS = Stack("ours", ROOT / "src" / "requirements.txt")
BASELINE = Stack("baseline", BENCH / "baseline-requirements.txt")


def ensure_venv(stack: Stack, *, rebuild: bool) -> float | None:
    """Create the stack's venv unless an identical one exists; returns the install time if built.

    ``--without-pip`` plus ``pip --python`` from the dev venv keeps pip and setuptools out of the
    measured site-packages: what is left is exactly what the requirements install.
    """
    stamp = hashlib.sha256(stack.requirements.read_bytes() + sys.version.encode()).hexdigest()
    marker = stack.venv / ".bench-stamp"
    if not rebuild and marker.exists() and marker.read_text() == stamp and stack.python.exists():
        return None
    log(f"building venv {stack.venv.relative_to(ROOT)} from {stack.requirements.relative_to(ROOT)}")
    if stack.venv.exists():
        subprocess.run(["rm", "-rf", str(stack.venv)], check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(stack.venv)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(stack.python),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "-r",
            str(stack.requirements),
        ],
        check=True,
    )
    elapsed = time.perf_counter() - start
    marker.write_text(stamp)
    return elapsed


def installed_size(stack: Stack) -> dict[str, Any]:
    total = files = 0
    for path in stack.site_packages.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
            files += 1
    dists = sorted(p.name.removesuffix(".dist-info") for p in stack.site_packages.glob("*.dist-info"))
    return {"bytes": total, "files": files, "distributions": dists}


# --- child processes ----------------------------------------------------------------------------


@dataclass
class ChildResult:
    wall_s: float
    max_rss_kib: int
    report: dict[str, Any]
    # Spawn → the child's "first event done" marker: interpreter + import + index + first event,
    # without the process exit (the sample's log handlers flush at exit).
    ready_s: float | None = None


def run_child(
    python: Path,
    mode: str,
    *,
    env: dict[str, str],
    events: Path | None = None,
    on_ready: Any = None,
    timeout: float = 300.0,
) -> ChildResult:
    """Run one probe; wall time from spawn to exit, peak RSS as the child's own VmHWM."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "out.json"
        argv = [str(python), str(PROBE), mode, "--out", str(out)]
        if events is not None:
            argv += ["--events", str(events)]
        start = time.perf_counter()
        process = subprocess.Popen(
            argv, env=env, cwd=tmp, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None and process.stdin is not None
        ready_s = None
        if mode.endswith("-events"):
            for line in process.stdout:
                if line.decode(errors="replace").strip() == READY_MARKER:
                    ready_s = time.perf_counter() - start
                    if on_ready is not None:
                        on_ready()
                    # A child that died before the marker is reported below, with its stderr.
                    with contextlib.suppress(BrokenPipeError):
                        process.stdin.write(b"go\n")
                        process.stdin.flush()
                    break
        # wait4: this child's own exit, without reaping anything else.
        deadline = time.monotonic() + timeout
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, rusage = os.wait4(process.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        process.stdout.close()
        if process.stderr:
            process.stderr.close()
        process.stdin.close()
        if process.returncode != 0 or not out.exists():
            raise RuntimeError(f"probe {mode} failed (exit {process.returncode}):\n{stderr[-4000:]}")
        report = json.loads(out.read_text())
        report["stderr_tail"] = stderr[-2000:]
        # ru_maxrss of a fork+exec'd child includes the parent's pages before exec; the child's own
        # VmHWM does not, so it is the peak memory reported (ru_maxrss is kept in the JSON).
        report["ru_maxrss_kib"] = rusage.ru_maxrss
        return ChildResult(wall_s=wall, max_rss_kib=report["vm_hwm_kib"], report=report, ready_s=ready_s)


_HOME: list[str] = []


def _bench_home() -> str:
    if not _HOME:
        _HOME.append(tempfile.mkdtemp(prefix="amlobs-bench-home-"))
        atexit.register(shutil.rmtree, _HOME[0], ignore_errors=True)
    return _HOME[0]


def base_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "BENCH_PROFILE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(QUIET_TELEMETRY_ENV)
    # azureml-core needs a HOME (os.getenv('HOME') at import); a private one keeps ~/.azureml out.
    env["HOME"] = _bench_home()
    env["PYTHONUNBUFFERED"] = "1"
    return env


def summarise(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "p99": percentile(ordered, 99),
        "n": len(ordered),
    }


# --- cold start ---------------------------------------------------------------------------------


def cold_start(rounds: int) -> dict[str, Any]:
    """Interleaved rounds (bare, ours, baseline in rotating order) after one discarded warm-up round.

    The warm-up compiles src/'s bytecode and warms the page cache for both stacks alike: the numbers
    are a warm-disk cold start of a fresh interpreter, like a worker restart on a warm instance.
    """
    probes = {
        "bare": (OURS.python, "bare"),
        "ours": (OURS.python, "ours-import"),
        "baseline": (BASELINE.python, "baseline-import"),
    }
    env = base_env()
    samples: dict[str, list[ChildResult]] = {name: [] for name in probes}
    names = list(probes)
    for round_index in range(rounds + 1):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            python, mode = probes[name]
            result = run_child(python, mode, env=env)
            if round_index > 0:
                samples[name].append(result)
        log(f"cold start round {round_index}/{rounds} done")
    out: dict[str, Any] = {}
    for name, results in samples.items():
        out[name] = {
            "wall_s": summarise([r.wall_s for r in results]),
            "import_s": summarise([r.report["import_s"] for r in results]),
            "max_rss_mib": summarise([r.max_rss_kib / 1024 for r in results]),
            "modules": results[0].report["modules"],
            "network_attempts": sorted({a for r in results for a in r.report["network_attempts"]}),
        }
    return out


# --- per event ----------------------------------------------------------------------------------


STEP_RUN = "9a9d8f51-1e44-4c23-b0a0-8246046eeb28"
FIXTURES = ROOT / "tests" / "data" / "aml"


def step_run_id(index: int) -> str:
    return f"{STEP_RUN[:24]}{index:012d}"


def step_runs(count: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``count`` copies of the sample's step run (run + details fixtures), each with its own run id.

    Distinct runs matter: the processor dedupes on (workspace, run, status) as well as on the
    event id, so replaying one run's event would measure the duplicate short-cut, not the work.
    """
    run_text = (FIXTURES / "run_step_9a9d8f51.json").read_text()
    details_text = (FIXTURES / "run_details_step_9a9d8f51.json").read_text()
    return [
        (
            json.loads(run_text.replace(STEP_RUN, step_run_id(i))),
            json.loads(details_text.replace(STEP_RUN, step_run_id(i))),
        )
        for i in range(count)
    ]


def write_events(path: Path, template: dict[str, Any], first_index: int, count: int) -> Path:
    """Event Grid events for runs ``first_index`` .. ``first_index + count - 1`` of :func:`step_runs`."""
    text = json.dumps(template)
    events = []
    for index in range(first_index, first_index + count):
        event = json.loads(text.replace(STEP_RUN, step_run_id(index)))
        event["id"] = f"bench-{time.time_ns()}-{index}"
        events.append(json.dumps(event))
    path.write_text(json.dumps(events))
    return path


def load_sample_event() -> dict[str, Any]:
    """The sample's step-run event (tests/data/events), or the same event re-stated if not there yet."""
    path = ROOT / "tests" / "data" / "events" / "step_run_completed.json"
    if path.exists():
        loaded = json.loads(path.read_text())
        return loaded[0] if isinstance(loaded, list) else loaded
    raise SystemExit(f"{path} is missing: the per-event benchmark uses the sample's step-run event")


@contextlib.contextmanager
def ours_fakes(
    runs: Sequence[tuple[dict[str, Any], dict[str, Any]]],
) -> Iterator[tuple[dict[str, str], tuple[int, int], Any]]:
    """The project's loopback fakes (tests/fakes): AML API + token endpoint, ingestion, Azurite."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes.aml_api import start_aml_api
    from tests.fakes.azurite import start_azurite
    from tests.fakes.ingestion import IngestionServer

    with contextlib.ExitStack() as stack:
        aml = stack.enter_context(start_aml_api())
        workspace = aml.workspace()
        for run, details in runs:
            workspace.add_run(run, details)
        azurite = stack.enter_context(start_azurite())
        ingestion = IngestionServer().start()
        stack.callback(ingestion.close)
        env = dict(aml.env())
        env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = ingestion.connection_string
        env["AzureWebJobsStorage"] = azurite.connection_string
        yield env, (azurite.blob_port, azurite.table_port), ingestion


def _finish(
    first: list[ChildResult], steady: ChildResult, events: int, storage_ports: Sequence[int]
) -> dict[str, Any]:
    return {
        "first": first,
        "steady": steady,
        "stats": latency_stats(steady.report["latencies_s"], steady.report["steady_total_s"]),
        "calls_first": per_event_calls(first[0].report["first_requests"], 1, storage_ports),
        "calls_steady": per_event_calls(steady.report["steady_requests"], events, storage_ports),
        "http_ms_steady": per_event_http_ms(steady.report["steady_requests"], events, storage_ports),
        "storage_ports": list(storage_ports),
    }


def per_event_ours(steady_events: int, first_runs: int) -> dict[str, Any]:
    template = load_sample_event()
    runs = step_runs(first_runs + steady_events + 1)
    with ours_fakes(runs) as (fake_env, storage_ports, ingestion), tempfile.TemporaryDirectory() as tmp:
        env = base_env() | fake_env
        first: list[ChildResult] = []
        for i in range(first_runs):
            events = write_events(Path(tmp) / f"first{i}.json", template, i, 1)
            first.append(run_child(OURS.python, "ours-events", env=env, events=events))
        events = write_events(Path(tmp) / "steady.json", template, first_runs, steady_events + 1)
        before = len(ingestion.envelopes)
        steady = run_child(OURS.python, "ours-events", env=env, events=events)
        envelopes = len(ingestion.envelopes) - before
    out = _finish(first, steady, steady_events, storage_ports)
    out["telemetry_items_per_event"] = envelopes / (steady_events + 1)
    return out


def per_event_baseline(steady_events: int, first_runs: int) -> dict[str, Any]:
    template = load_sample_event()
    with start_baseline_fake() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.workspace_topic = template["topic"]
        for run, details in step_runs(first_runs + steady_events + 1):
            fake.add_run(run, details)
        env = base_env() | fake.sample_env()
        first: list[ChildResult] = []
        first_calls: list[list[str]] = []
        for i in range(first_runs):
            # A fresh HOME: azureml-core caches discovery in ~/.azureml, a new instance has none.
            home = Path(tmp) / f"home-first{i}"
            home.mkdir()
            events = write_events(Path(tmp) / f"first{i}.json", template, i, 1)
            first_env = env | {"HOME": str(home)}
            before = len(fake.calls)
            first.append(run_child(BASELINE.python, "baseline-events", env=first_env, events=events))
            first_calls.append([c.line for c in fake.calls[before:]])
        home = Path(tmp) / "home-steady"
        home.mkdir()
        events = write_events(Path(tmp) / "steady.json", template, first_runs, steady_events + 1)
        calls_before = len(fake.calls)
        snapshot: dict[str, int] = {}

        def on_ready() -> None:
            snapshot["calls"] = len(fake.calls)

        steady_env = env | {"HOME": str(home)}
        steady = run_child(
            BASELINE.python, "baseline-events", env=steady_env, events=events, on_ready=on_ready
        )
        out = _finish(first, steady, steady_events, ())
        # Telemetry leaves the sample asynchronously (AzureLogHandler's worker thread, and at exit),
        # so the baseline's calls are counted on the server, after the child has exited.
        out["calls_first"] = per_event_calls(first_calls[0], 1)
        out["calls_steady"] = per_event_calls(
            [c.line for c in fake.calls[snapshot["calls"] :]], steady_events
        )
        items = sum(c.items for c in fake.calls[calls_before:])
        out["telemetry_items_per_event"] = items / (steady_events + 1)
        out["fake_calls"] = [f"{c.answered} {c.line}" for c in fake.calls]
    return out


# --- report -------------------------------------------------------------------------------------


def _no_nagle_in_fakes() -> None:
    """TCP_NODELAY on every loopback fake served from this process.

    The fakes write the status line + headers and the body in two sends; with Nagle on, the body
    waits for the client's delayed ACK (~40 ms on Linux) on a kept-alive connection. Real Azure
    front ends do not stall like that, so leaving it on would measure the fake, not the code.
    """
    socketserver.StreamRequestHandler.disable_nagle_algorithm = True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="cold-start repetitions per stack")
    parser.add_argument("--events", type=int, default=200, help="steady-state events per stack")
    parser.add_argument("--first-runs", type=int, default=5, help="first-invocation repetitions")
    parser.add_argument("--skip-events", action="store_true", help="cold start and size only")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the bench venvs")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    _no_nagle_in_fakes()
    install_s = {s.name: ensure_venv(s, rebuild=args.rebuild) for s in (OURS, BASELINE)}
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "install_s": install_s,
        "size": {s.name: installed_size(s) for s in (OURS, BASELINE)},
        "cold_start": cold_start(args.rounds),
    }
    if not args.skip_events:
        log("per-event: ours against tests/fakes (AML API, ingestion, Azurite)")
        result["events_ours"] = per_event_ours(args.events, args.first_runs)
        log("per-event: baseline against bench/baseline_fake.py")
        result["events_baseline"] = per_event_baseline(args.events, args.first_runs)
    result["elapsed_s"] = time.perf_counter() - started
    table = render(result)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(to_json(result), indent=2, default=str))
    log(f"wrote {(RESULTS / 'latest.json').relative_to(ROOT)} in {result['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
