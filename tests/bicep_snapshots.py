"""The template's what-if, offline: `bicep snapshot` of the `.bicepparam` scenarios in infra/scenarios/.

`bicep snapshot` runs Resource Manager's own template engine on a parameters file and writes the
resources a deployment would create or update (`<scenario>.snapshot.json`), with every expression it
can evaluate before deployment resolved. The committed snapshots are the reviewed what-if of each
scenario; the test suite re-runs them in `--mode validate`, so a change to infra/ that changes a
predicted resource fails until its snapshot is regenerated and the diff reviewed.

Regenerate every committed snapshot (after an infrastructure change), or check them:

    python -m tests.bicep_snapshots            # --mode overwrite, then `git diff infra/scenarios`
    python -m tests.bicep_snapshots --check    # --mode validate: prints what changed

The Bicep CLI is found as the tests find it (tests/tools_on_path.py): PATH, $BICEP, azd's or
`az bicep install`'s folder, and must be the version the snapshots were made with.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tests.tools_on_path import locate_bicep

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
SCENARIOS = INFRA / "scenarios"

# The deployment every snapshot predicts: fixed, so that a snapshot changes only with the template or
# the scenario. The subscription is the one the scenarios' "same subscription" workspaces live in.
SUBSCRIPTION_ID = "11111111-1111-1111-1111-111111111111"
TENANT_ID = "22222222-2222-2222-2222-222222222222"
LOCATION = "eastus"
DEPLOYMENT_NAME = "aml-obs-snapshot"

# main.bicep's defaults for the parameters a scenario may leave out (checked against the compiled
# template by tests/test_infra.py).
PARAMETER_DEFAULTS: dict[str, Any] = {
    "amlWorkspaceIds": "",
    "enableEventSubscription": False,
    "detachObservedWorkspaces": False,
    "alertEmails": "",
    "adoptedSystemTopics": "",
}

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

Mode = Literal["overwrite", "validate"]


def find_bicep() -> str | None:
    """The Bicep CLI of the version the snapshots need (tests/tools_on_path.py), else None."""
    return locate_bicep().path


def scenario_files() -> list[Path]:
    return sorted(SCENARIOS.glob("*.bicepparam"))


def snapshot_file(param_file: Path) -> Path:
    """Where `bicep snapshot` writes the snapshot of a parameters file: beside it."""
    return param_file.with_name(param_file.name.removesuffix(".bicepparam") + ".snapshot.json")


def write_scenario(directory: Path, name: str, parameters: dict[str, Any]) -> Path:
    """A `.bicepparam` file for main.bicep with these parameter values (strings, bools, ints, lists)."""

    def literal(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, list):
            return "[\n" + "".join(f"  {literal(item)}\n" for item in value) + "]"
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    directory.mkdir(parents=True, exist_ok=True)
    # `using` takes a relative path.
    main = Path(os.path.relpath(MAIN, directory)).as_posix()
    lines = [f"using '{main}'", ""] + [f"param {key} = {literal(value)}" for key, value in parameters.items()]
    path = directory / f"{name}.bicepparam"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Result:
    param_file: Path
    returncode: int
    output: str  # stdout + stderr, colours removed

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_snapshot(bicep: str, param_file: Path, mode: Mode) -> Result:
    completed = subprocess.run(
        [
            bicep,
            "snapshot",
            str(param_file),
            "--mode",
            mode,
            "--subscription-id",
            SUBSCRIPTION_ID,
            "--tenant-id",
            TENANT_ID,
            "--location",
            LOCATION,
            "--deployment-name",
            DEPLOYMENT_NAME,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    return Result(
        param_file, completed.returncode, _ANSI.sub("", completed.stdout + completed.stderr).strip()
    )


def canonicalize(snapshot_path: Path) -> None:
    """Outputs in name order: `bicep snapshot` writes them in no stable order, which would make every
    regeneration a diff to review. `--mode validate` compares the content, not the order."""
    raw = snapshot_path.read_text(encoding="utf-8")
    snapshot = json.loads(raw)
    if isinstance(snapshot.get("outputs"), dict):
        snapshot["outputs"] = dict(sorted(snapshot["outputs"].items()))
    text = json.dumps(snapshot, indent=2, ensure_ascii=False) + ("\n" if raw.endswith("\n") else "")
    snapshot_path.write_text(text, encoding="utf-8")


def run_all(bicep: str, param_files: Sequence[Path], mode: Mode) -> list[Result]:
    """Each file's snapshot, two at a time (each run is a separate .NET process)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda f: run_snapshot(bicep, f, mode), param_files))


def scenario_parameters(bicep: str, param_files: Sequence[Path], workdir: Path) -> dict[Path, dict[str, Any]]:
    """The parameter values of each scenario as the compiler reads them, main.bicep's defaults filled
    in: one `bicep build-params` per directory (each run is a .NET process start)."""
    found: dict[Path, dict[str, Any]] = {}
    for n, directory in enumerate(sorted({f.parent for f in param_files})):
        outdir = workdir / f"params-{n}"
        completed = subprocess.run(
            [
                bicep,
                "build-params",
                "--pattern",
                f"{directory.as_posix()}/*.bicepparam",
                "--outdir",
                str(outdir),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"bicep build-params in {directory} failed:\n{completed.stdout}{completed.stderr}"
            )
        for param_file in (f for f in param_files if f.parent == directory):
            built = json.loads((outdir / (param_file.name.removesuffix(".bicepparam") + ".json")).read_text())
            values = {name: entry["value"] for name, entry in built["parameters"].items()}
            found[param_file] = {**PARAMETER_DEFAULTS, **values}
    return found


def load_snapshot(path: Path) -> dict[str, Any]:
    snapshot: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return snapshot


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bicep_snapshots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the committed snapshots instead of rewriting them"
    )
    parser.add_argument(
        "scenarios", nargs="*", type=Path, help="parameters files (default: infra/scenarios/*)"
    )
    args = parser.parse_args(argv)
    bicep = find_bicep()
    if bicep is None:
        print(locate_bicep().problem, file=sys.stderr)
        return 2
    files = [f.resolve() for f in args.scenarios] or scenario_files()
    results = run_all(bicep, files, "validate" if args.check else "overwrite")
    failed = [r for r in results if not r.ok]
    if not args.check:
        for result in results:
            if result.ok:
                canonicalize(snapshot_file(result.param_file))
    for result in results:
        status = "ok" if result.ok else "FAILED"
        print(
            f"{status:6} {result.param_file.relative_to(ROOT) if result.param_file.is_relative_to(ROOT) else result.param_file}"
        )
        if not result.ok:
            print(result.output, file=sys.stderr)
    if not args.check and not failed:
        print("review the change: git diff -- infra/scenarios")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
