"""How the suite finds Bicep, PowerShell, shellcheck and azd's schema on a fork's machine: where a
user installs them the documented way, nothing from ``../shared`` (tests/tools_on_path.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests import azd_schema
from tests.tools_on_path import (
    BICEP_VERSION,
    bicep_version,
    locate_bicep,
    locate_pwsh,
    locate_shellcheck,
    missing,
)

ROOT = Path(__file__).resolve().parents[1]


def _fake_bicep(directory: Path, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "bicep"
    path.write_text(f"#!/bin/sh\necho 'Bicep CLI version {version} (0123456789)'\n")
    path.chmod(0o755)
    return path


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    return {"PATH": str(empty), "HOME": str(tmp_path / "home"), **extra}


def test_bicep_from_az_bicep_install_is_found_off_path(tmp_path: Path) -> None:
    installed = _fake_bicep(tmp_path / "home" / ".azure" / "bin", BICEP_VERSION)
    assert locate_bicep(_environ(tmp_path)).path == str(installed)


def test_bicep_from_a_configured_azure_cli_folder_is_found(tmp_path: Path) -> None:
    installed = _fake_bicep(tmp_path / "az-config" / "bin", BICEP_VERSION)
    found = locate_bicep(_environ(tmp_path, AZURE_CONFIG_DIR=str(tmp_path / "az-config")))
    assert found.path == str(installed)


def test_bicep_of_another_version_is_refused_naming_the_one_needed(tmp_path: Path) -> None:
    # azd downloads its own Bicep (0.45.15 in cli/azd/pkg/tools/bicep/bicep.go) into ~/.azd/bin.
    installed = _fake_bicep(tmp_path / "home" / ".azd" / "bin", "0.45.15")
    found = locate_bicep(_environ(tmp_path))
    assert found.path is None
    assert f"{installed} is Bicep 0.45.15, not {BICEP_VERSION}" in found.problem
    assert f"az bicep install --version v{BICEP_VERSION}" in found.problem


def test_path_and_dollar_bicep_come_before_the_install_folders(tmp_path: Path) -> None:
    _fake_bicep(tmp_path / "home" / ".azure" / "bin", BICEP_VERSION)
    chosen = _fake_bicep(tmp_path / "chosen", BICEP_VERSION)
    assert locate_bicep(_environ(tmp_path, BICEP=str(chosen))).path == str(chosen)


def test_no_bicep_anywhere_says_where_it_looked_and_how_to_install(tmp_path: Path) -> None:
    found = locate_bicep(_environ(tmp_path))
    assert found.path is None
    assert str(tmp_path / "home" / ".azd" / "bin") in found.problem
    assert str(tmp_path / "home" / ".azure" / "bin") in found.problem
    assert BICEP_VERSION in found.problem


def test_pwsh_from_the_dotnet_global_tool_is_found_off_path(tmp_path: Path) -> None:
    tools = tmp_path / "home" / ".dotnet" / "tools"
    tools.mkdir(parents=True)
    (tools / "pwsh").write_text("#!/bin/sh\n")
    (tools / "pwsh").chmod(0o755)
    assert locate_pwsh(_environ(tmp_path)).path == str(tools / "pwsh")


def test_shellcheck_is_the_test_venvs_own_first(tmp_path: Path) -> None:
    found = locate_shellcheck(_environ(tmp_path))
    assert found.path == str(Path(sys.executable).parent / "shellcheck"), found


def test_the_azd_schema_is_looked_for_in_shared_dir_then_the_cache(tmp_path: Path) -> None:
    environ = {"SHARED_DIR": str(tmp_path / "empty"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert azd_schema.candidates(environ) == [
        tmp_path / "empty" / "schemas" / "azd" / "azure.yaml.json",
        tmp_path / "cache" / "amlobs" / "azd-schema" / azd_schema.COMMIT / "azure.yaml.json",
    ]
    assert azd_schema.locate(environ) is None


def _wrapper(path: Path, real: str, extra_env: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\n{extra_env}exec "{real}" "$@"\n')
    path.chmod(0o755)
    return path


def test_a_clone_without_shared_finds_every_tool_installed_the_documented_way(tmp_path: Path) -> None:
    """SHARED_DIR is an empty folder, PATH has neither bicep nor pwsh: Bicep is where `az bicep install`
    puts it, PowerShell in $PWSH, azd's schema in the cache scripts/test.sh fills; with tools required,
    the tests that run them pass."""
    bicep, pwsh, schema = locate_bicep().path, locate_pwsh().path, azd_schema.locate()
    if not (bicep and pwsh and schema):
        missing(f"this check needs the tools found first: bicep {bicep}, pwsh {pwsh}, azd schema {schema}")
    # The tools here may be launchers that unpack into the user's cache: they keep theirs.
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    keep_cache = f'XDG_CACHE_HOME="{cache}"; export XDG_CACHE_HOME\n'
    home = tmp_path / "home"
    _wrapper(home / ".azure" / "bin" / "bicep", bicep, keep_cache)
    own_pwsh = _wrapper(tmp_path / "opt" / "powershell" / "pwsh", pwsh, keep_cache)
    user_cache = tmp_path / "cache"
    cached = azd_schema.cache_file({"XDG_CACHE_HOME": str(user_cache)})
    cached.parent.mkdir(parents=True)
    shutil.copyfile(schema, cached)
    (tmp_path / "empty").mkdir()
    # PATH as it is, less every folder with a bicep or a pwsh in it (a CI's ../shared/bin).
    path = os.pathsep.join(
        d
        for d in os.environ["PATH"].split(os.pathsep)
        if d and not any((Path(d) / t).exists() for t in ("bicep", "pwsh"))
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("BICEP", "PWSH", "AMLOBS_AZD_SCHEMA")},
        "PATH": path,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(user_cache),
        "SHARED_DIR": str(tmp_path / "empty"),
        "PWSH": str(own_pwsh),
        "AMLOBS_REQUIRE_TOOLS": "1",
    }
    listed = subprocess.run(
        [sys.executable, "-m", "tests.tools_on_path"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert f"bicep      {home / '.azure' / 'bin' / 'bicep'}" in listed.stdout, listed.stdout
    assert f"pwsh       {own_pwsh}" in listed.stdout, listed.stdout
    assert f"azd schema {cached}" in listed.stdout, listed.stdout
    assert bicep_version(str(home / ".azure" / "bin" / "bicep")) == BICEP_VERSION
    tests = [
        "tests/test_hooks.py::test_azure_yaml_matches_the_azd_schema",
        "tests/test_hooks.py::test_pwsh_hooks_parse",
        "tests/test_hooks.py::test_sh_hooks_pass_shellcheck",
        "tests/test_infra.py::test_bicep_lint_reports_nothing_for_any_file",
    ]
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert f"{len(tests)} passed" in ran.stdout, ran.stdout[-2000:]
