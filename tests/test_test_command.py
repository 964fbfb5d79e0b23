"""scripts/test.sh checks its prerequisites before installing anything and names the fix for each.

The script runs from a copy in an empty folder (so no .venv exists) with only stand-ins on PATH: a
``python3`` and a ``node`` that report the versions each case needs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tools_on_path import find_tool

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test.sh"

# A python3 stand-in: `-c CODE` answers the version and module checks as the case says.
FAKE_PYTHON = """#!/bin/sh
case "$2" in
  *version_info*) exit {too_old} ;;
  *python_version*) echo {version} ;;
  *ensurepip*) exit {no_venv} ;;
esac
touch "$0.installed-something"
exit 1
"""
FAKE_NODE = """#!/bin/sh
case "$1" in
  -p) echo {major} ;;
  --version) echo v{major}.0.0 ;;
esac
"""


def _run(
    tmp_path: Path, *, python: str = "3.11.9", node: int | None = 20
) -> subprocess.CompletedProcess[str]:
    clone = tmp_path / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, clone / "scripts" / "test.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    major, minor = (int(part) for part in python.split(".")[:2])
    tools = {
        "python3": FAKE_PYTHON.format(
            too_old=int((major, minor) < (3, 11)), version=python, no_venv=int(python.endswith("+novenv"))
        )
    }
    if node is not None:
        tools["node"] = FAKE_NODE.format(major=node)
        tools["npm"] = "#!/bin/sh\nexit 0\n"
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for name in ("dirname", "date"):
        real = shutil.which(name)
        assert real
        (bin_dir / name).symlink_to(real)
    return subprocess.run(
        ["/bin/sh", str(clone / "scripts" / "test.sh")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _nothing_installed(tmp_path: Path) -> bool:
    return not (tmp_path / "clone" / ".venv").exists() and not list(
        tmp_path.glob("bin/*.installed-something")
    )


def test_an_old_python_stops_it_before_any_install_naming_the_fix(tmp_path: Path) -> None:
    result = _run(tmp_path, python="3.10.12")
    assert result.returncode == 2
    assert "python3 is Python 3.10.12, the suite needs 3.11 or later" in result.stderr
    assert "set PYTHON=python3.11" in result.stderr
    assert _nothing_installed(tmp_path)


def test_a_python_without_venv_names_the_debian_package(tmp_path: Path) -> None:
    result = _run(tmp_path, python="3.11.2+novenv")
    assert result.returncode == 2
    assert "cannot create a virtual environment" in result.stderr
    assert "apt-get install python3-venv" in result.stderr
    assert _nothing_installed(tmp_path)


@pytest.mark.parametrize(
    ("node", "says"), [(None, "install Node.js 20 LTS with npm"), (18, "node is v18.0.0")]
)
def test_a_missing_or_old_node_is_named(tmp_path: Path, node: int | None, says: str) -> None:
    result = _run(tmp_path, node=node)
    assert result.returncode == 2
    assert says in result.stderr
    assert _nothing_installed(tmp_path)


def test_every_missing_prerequisite_is_reported_at_once(tmp_path: Path) -> None:
    result = _run(tmp_path, python="3.9.2", node=None)
    assert result.returncode == 2
    assert "2 prerequisite(s) missing: nothing was installed" in result.stderr


def test_it_needs_no_root_and_installs_nothing_with_apt() -> None:
    text = SCRIPT.read_text()
    # apt-get appears only inside the fixes it prints, never as a command it runs.
    assert not re.search(r"^\s*(sudo\s+)?apt-get\b|\(\s*apt-get|&&\s*apt-get|apt-get update", text, re.M)
    assert "sudo" not in text and "id -u" not in text


def test_it_passes_shellcheck() -> None:
    shellcheck = find_tool("shellcheck", how_to_install="scripts/test.sh was not linted")
    result = subprocess.run(
        [shellcheck, "--shell=sh", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
