"""scripts/try.sh and scripts/try.ps1 ("Try it without Azure"), run as a user runs them, under sh and pwsh.

The command drives ``function_app`` against the local stand-ins; what it prints is read back from what
the ingestion sink received. These tests read the printed table the way a user would: the failed node
with its error, the reused step, the nested sub-pipeline, every run status once although one event
was delivered twice, and costs that add up to the pipeline summary's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fakes.aml_data import load_kind
from tests.tools_on_path import find_tool

ROOT = Path(__file__).resolve().parents[1]
SHELLS = ("sh", "pwsh")
COLUMNS = ["run", "step", "status", "duration", "queue", "compute", "cost", "error"]
RECORDED_MESSAGE = load_kind("failed_run")["runs"][0]["run"]["error"]["error"]["message"]
TIMEOUT = 240  # seconds: generous for a loaded machine (docs/try-it.md gives the measured time)


def command(shell: str, *args: str) -> list[str]:
    if shell == "sh":
        return ["/bin/sh", str(ROOT / "scripts" / "try.sh"), *args]
    pwsh = find_tool(
        "pwsh",
        env_var="PWSH",
        how_to_install="scripts/try.ps1 was not run here (install PowerShell 7; CI takes it from ../shared/bin)",
    )
    return [pwsh, "-NoProfile", "-NonInteractive", "-File", str(ROOT / "scripts" / "try.ps1"), *args]


def run(shell: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(shell, *args),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=ROOT,
        env=env,
    )


def parse_table(stdout: str) -> list[dict[str, str]]:
    """The table (as printed, or as the docs show it) as rows of cells, cut where the header's columns
    start; the rows end at a blank line or at the first line that is not a row."""
    lines = stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split() == COLUMNS)
    spans = [m.span() for m in re.finditer(r"\S+", lines[head])]
    rows = []
    for line in lines[head + 1 :]:
        if line.startswith("--------"):
            continue
        if not line.strip() or not re.match(r"[0-9a-f]{8}  ", line):
            break
        cells = [
            line[start : spans[i + 1][0] if i + 1 < len(spans) else None]
            for i, (start, _) in enumerate(spans)
        ]
        rows.append(dict(zip(COLUMNS, (c.rstrip() for c in cells), strict=True)))
    return rows


def shown_in(document: str) -> list[dict[str, str]]:
    """The rows of the try-it output a document shows, run ids aside (they differ on every run)."""
    text = (ROOT / document).read_text(encoding="utf-8")
    return [{k: v for k, v in row.items() if k != "run"} for row in parse_table(text)]


def seconds(text: str) -> float:
    match = re.fullmatch(r"(?:(\d+) min )?(\d+(?:\.\d+)?) s", text)
    assert match, text
    return int(match[1] or 0) * 60 + float(match[2])


def only_tools(tmp_path: Path, *names: str) -> dict[str, str]:
    """The environment with PATH holding only ``names`` (linked from this machine)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in names:
        real = shutil.which(name)
        assert real, f"{name} is needed on this machine for the test"
        (bin_dir / name).symlink_to(real)
    return {**os.environ, "PATH": str(bin_dir)}


@pytest.mark.parametrize("shell", SHELLS)
def test_try_prints_the_pipeline_run_as_a_user_expects(shell: str) -> None:
    done = run(shell, "--no-pictures")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = parse_table(done.stdout)
    by_step = {(r["step"].strip(), r["status"]): r for r in rows}

    # Every run status once: six runs (pipeline, two nodes, sub-pipeline, its two nodes), Running and final.
    assert len(rows) == 12
    assert len({(r["run"], r["status"]) for r in rows}) == 12
    assert [r["step"].strip() for r in rows[::2]] == [
        "azure-ai-ml (pipeline)",
        "prep_data [reused]",
        "featurize",
        "train_and_evaluate (sub-pipeline)",
        "train_model",
        "evaluate_model",
    ]
    # Nesting shows: steps under the pipeline, the sub-pipeline's nodes one level further in.
    indent = {r["step"].strip(): len(r["step"]) - len(r["step"].lstrip()) for r in rows}
    assert (
        indent["featurize"] == indent["train_and_evaluate (sub-pipeline)"] > indent["azure-ai-ml (pipeline)"]
    )
    assert indent["evaluate_model"] > indent["train_and_evaluate (sub-pipeline)"]

    # The failed node, with the recorded error; its sub-pipeline and pipeline fail through it.
    failed = by_step[("evaluate_model", "Failed")]
    assert failed["error"] == "CommonRuntimeJobError"
    recorded = " ".join(RECORDED_MESSAGE.split())
    assert (
        f"  {failed['run']} evaluate_model: ServiceError > OrchestrateJobError > CommonRuntimeJobError: {recorded}\n"
        in done.stdout
    )
    assert by_step[("train_and_evaluate (sub-pipeline)", "Failed")]["error"] == "-"
    assert by_step[("azure-ai-ml (pipeline)", "Failed")]
    assert by_step[("train_model", "Completed")]["error"] == "-"

    # The reused node: done at once, nothing queued, on the pipeline's cluster.
    reused = by_step[("prep_data [reused]", "Completed")]
    assert seconds(reused["duration"]) < 1 and seconds(reused["queue"]) == 0
    assert seconds(by_step[("featurize", "Completed")]["duration"]) == 70.0  # the scenario's node time
    for step in ("prep_data [reused]", "featurize", "train_model", "evaluate_model"):
        assert by_step[(step, "Running")]["compute"] == "cpu-cluster (AmlCompute)"

    # Cost: finished nodes only; the pipeline summary's total is their sum.
    costs = [r["cost"] for r in rows if r["cost"] != "-"]
    assert all(c.endswith(" USD") for c in costs) and len(costs) == 4
    assert all(r["cost"] == "-" for r in rows if r["status"] == "Running")
    summary = re.search(r"Pipeline summary (\w+) \(Failed\): 4 steps, 1 failed, 1 reused, 1 sub-pipeline;"
                        r".*estimated cost ([\d.]+) USD\.", done.stdout)  # fmt: skip
    assert summary, done.stdout
    assert summary[1] == rows[0]["run"]
    assert float(summary[2]) == pytest.approx(sum(float(c.split()[0]) for c in costs), abs=0.0003)

    # The event delivered twice is recorded once.
    duplicate = re.search(
        r"one of them twice \((\w+) (\w+)\): 12 run statuses recorded, the duplicate once", done.stdout
    )
    assert duplicate, done.stdout
    assert [(r["run"], r["status"]) for r in rows].count((duplicate[1], duplicate[2])) == 1
    assert "Sent only to 127.0.0.1 (0 other connection(s) refused)" in done.stdout
    assert "Pictures: not drawn (--no-pictures)." in done.stdout

    # What the README and docs/try-it.md show is this output (all but the run ids, which are new each time).
    printed = [{k: v for k, v in row.items() if k != "run"} for row in rows]
    assert shown_in("docs/try-it.md") == printed
    assert shown_in("README.md") == [row for row in printed if row["status"] != "Running"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert ("sh scripts/try.sh" if shell == "sh" else "pwsh scripts/try.ps1") in readme


@pytest.mark.parametrize("shell", SHELLS)
def test_without_chromium_the_table_prints_and_the_pages_show_the_received_values(
    shell: str, tmp_path: Path
) -> None:
    out = tmp_path / "pictures"
    done = run(shell, "--out", str(out), env=only_tools(tmp_path, "node", "dirname"))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = parse_table(done.stdout)
    assert len(rows) == 12
    assert "the PNGs need Chromium: apt-get install chromium" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["dashboard.html", "trace.svg"]

    pipeline_run = rows[0]["run"]
    cost = re.search(r"estimated cost ([\d.]+) USD", done.stdout)
    assert cost
    page = (out / "dashboard.html").read_text(encoding="utf-8")
    # The Overview tiles count what was received: one pipeline run, five steps (the sub-pipeline is one).
    assert re.search(r'tile-title">Pipeline runs</div><div class="tile-big">1</div>', page)
    assert re.search(r'tile-title">Pipeline steps</div><div class="tile-big">5</div>', page)
    assert "made-up" not in page
    assert pipeline_run in page and "evaluate_model" in page and "CommonRuntimeJobError" in page
    assert f">{cost[1]}<" in page  # the summary's estimate, in the cost panels
    drawing = (out / "trace.svg").read_text(encoding="utf-8")
    assert "evaluate_model" in drawing and "CommonRuntimeJobError" in drawing and "prep_data" in drawing


@pytest.mark.parametrize("shell", SHELLS)
def test_a_missing_node_is_named_with_its_install_command(shell: str, tmp_path: Path) -> None:
    done = run(shell, "--no-pictures", env=only_tools(tmp_path, "dirname"))
    assert done.returncode == 2
    assert "needs Node.js, which is not on PATH: install it (apt-get install nodejs npm" in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("shell", SHELLS)
def test_without_the_test_environment_it_says_to_run_the_test_command(shell: str, tmp_path: Path) -> None:
    env = {**os.environ, "AMLOBS_PYTHON": str(tmp_path / "no-venv" / "python")}
    done = run(shell, env=env)
    assert done.returncode == 2
    assert "run 'sh scripts/test.sh' once first" in done.stderr


def test_the_sh_script_passes_shellcheck() -> None:
    shellcheck = find_tool("shellcheck", how_to_install="scripts/test.sh installs it with apt")
    done = subprocess.run(
        [shellcheck, "--shell=sh", str(ROOT / "scripts" / "try.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_command_guards_its_sockets_before_anything_is_imported() -> None:
    """Importing the command installs the loopback guard: a connection or a name look-up beyond
    127.0.0.1 is refused (no packet leaves) and counted, which the last line of the output reports."""
    probe = (
        "import socket, sys\n"
        "sys.path.insert(0, 'scripts')\n"
        "import try_it\n"
        "for attempt in (lambda: socket.socket().connect(('192.0.2.1', 443)),\n"
        "                lambda: socket.getaddrinfo('management.azure.com', 443)):\n"
        "    try:\n"
        "        attempt()\n"
        "    except OSError as refused:\n"
        "        print(type(refused).__name__)\n"
        "print(try_it.netguard.ATTEMPTS)\n"
    )
    python = ROOT / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "NonLoopbackConnection",
        "NonLoopbackConnection",
        "['connect 192.0.2.1:443', 'resolve management.azure.com']",
    ]
