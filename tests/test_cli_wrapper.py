"""scripts/amlobs.sh: runs ``python -m amlobs`` with the deployment's settings and the user's identity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.tools_on_path import find_tool

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "amlobs.sh"

FAKE_AZD = """#!/bin/sh
# azd env get-value NAME
case "$3" in
  AZURE_RESOURCE_GROUP) echo rg-dev ;;
  APPLICATIONINSIGHTS_NAME) echo appi-abc ;;
  AZURE_STORAGE_ACCOUNT_NAME) echo stabc ;;
  *) echo "ERROR: key '$3' not found" >&2; exit 1 ;;
esac
"""
FAKE_AZ = """#!/bin/sh
echo "$@" > "$FAKE_AZ_ARGS"
echo 'InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://eastus-8.in.applicationinsights.azure.com/'
"""
# Stands in for the venv's python: reports what it was started with.
FAKE_PYTHON = """#!{python}
import json, os, sys
keys = ["APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AzureWebJobsStorage__accountName", "AzureWebJobsStorage", "AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "PYTHONPATH"]
print(json.dumps({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keys}}}}))
"""


def _tools(tmp_path: Path, *, with_azd: bool = True) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"az": FAKE_AZ, "python": FAKE_PYTHON.format(python=sys.executable)}
    if with_azd:
        scripts["azd"] = FAKE_AZD
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    for tool in ("dirname",):
        real = shutil.which(tool)
        assert real
        (bin_dir / tool).symlink_to(real)
    return {
        "PATH": str(bin_dir),
        "AMLOBS_PYTHON": str(bin_dir / "python"),
        "FAKE_AZ_ARGS": str(tmp_path / "az-args"),
        "AZURE_CLIENT_ID": "left-over-managed-identity",
        "IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    }


def test_wrapper_passes_arguments_and_the_deployment_settings(tmp_path: Path) -> None:
    env = _tools(tmp_path)
    done = subprocess.run(
        ["/bin/sh", str(SCRIPT), "backfill", "--since", "7d", "--workspace", "/subscriptions/s/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["argv"] == ["-m", "amlobs", "backfill", "--since", "7d", "--workspace", "/subscriptions/s/x"]
    assert seen["env"]["APPLICATIONINSIGHTS_CONNECTION_STRING"].startswith("InstrumentationKey=")
    assert seen["env"]["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "Authorization=AAD"
    assert seen["env"]["AzureWebJobsStorage__accountName"] == "stabc"
    # The user's az login is used: no managed identity or connection string from the shell leaks in.
    assert seen["env"]["AZURE_CLIENT_ID"] is None
    assert seen["env"]["IDENTITY_ENDPOINT"] is None
    assert seen["env"]["AzureWebJobsStorage"] is None
    assert seen["env"]["PYTHONPATH"].split(":")[0] == str(ROOT / "src")
    az_args = (tmp_path / "az-args").read_text()
    assert "--resource-group rg-dev --name appi-abc" in az_args
    assert "Microsoft.Insights/components" in az_args


def test_wrapper_without_a_provisioned_environment_says_what_to_do(tmp_path: Path) -> None:
    env = _tools(tmp_path, with_azd=False)
    done = subprocess.run(
        ["/bin/sh", str(SCRIPT), "replay", "x.json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "run 'azd up' first" in done.stderr


def test_wrapper_passes_shellcheck() -> None:
    shellcheck = find_tool("shellcheck", how_to_install="scripts/amlobs.sh was not linted")
    done = subprocess.run(
        [shellcheck, "--shell=sh", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout
