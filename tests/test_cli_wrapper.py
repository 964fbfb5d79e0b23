"""scripts/amlobs.sh: runs ``python -m amlobs`` with the deployment's settings and the user's identity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from amlobs.settings import Settings
from tests.bicep_snapshots import load_snapshot, run_snapshot, snapshot_file, write_scenario
from tests.tools_on_path import find_tool

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "amlobs.sh"

FAKE_AZD = """#!/bin/sh
# azd env get-value NAME
case "$3" in
  AZURE_RESOURCE_GROUP) echo rg-dev ;;
  APPLICATIONINSIGHTS_NAME) echo appi-abc ;;
  AZURE_STORAGE_ACCOUNT_NAME) echo stabc ;;
  AML_OBS_COST_CURRENCY) [ -z "$FAKE_NO_COST_OUTPUTS" ] && echo EUR ;;
  AML_OBS_PRICES_ENDPOINT) [ -z "$FAKE_NO_COST_OUTPUTS" ] && echo https://prices.example.test/api/retail/prices ;;
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
        "AzureWebJobsStorage__accountName", "AzureWebJobsStorage", "AZURE_CLIENT_ID", "IDENTITY_ENDPOINT", "PYTHONPATH",
        "AML_OBS_COST_CURRENCY", "AML_OBS_PRICES_ENDPOINT"]
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
    # Costed as the deployment costs live records: its currency, its price list.
    settings = Settings.from_env({k: v for k, v in seen["env"].items() if v is not None})
    assert settings.cost_currency == "EUR"
    assert settings.prices_endpoint == "https://prices.example.test/api/retail/prices"
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


def test_wrapper_of_a_deployment_without_the_cost_outputs_asks_for_a_provision(tmp_path: Path) -> None:
    env = {**_tools(tmp_path), "FAKE_NO_COST_OUTPUTS": "1"}
    done = subprocess.run(
        ["/bin/sh", str(SCRIPT), "replay", "x.json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "AML_OBS_COST_CURRENCY and AML_OBS_PRICES_ENDPOINT are not in the azd environment" in done.stderr
    assert "run 'azd provision' once" in done.stderr


def test_the_cost_outputs_are_what_the_function_app_runs_with(tmp_path: Path) -> None:
    """A deployment with a non-default currency and price list: `bicep snapshot` (ARM's engine) gives
    the outputs scripts/amlobs.sh reads the same values as the Function App's settings."""
    bicep = find_tool("bicep", env_var="BICEP", how_to_install="the cost outputs were not compared")
    parameters = {
        "environmentName": "aml-obs-demo",
        "location": "eastus",
        "costCurrency": "EUR",
        "retailPricesEndpoint": "https://prices.example.test/api/retail/prices",
    }
    scenario = write_scenario(tmp_path, "eur", parameters)
    result = run_snapshot(bicep, scenario, "overwrite")
    assert result.ok, result.output
    snapshot = load_snapshot(snapshot_file(scenario))
    (app_settings,) = [
        r["properties"]
        for r in snapshot["predictedResources"]
        if r["type"] == "Microsoft.Web/sites/config" and r["name"].endswith("/appsettings")
    ]
    for name in ("AML_OBS_COST_CURRENCY", "AML_OBS_PRICES_ENDPOINT"):
        assert (
            snapshot["outputs"][name]
            == app_settings[name]
            == parameters["costCurrency" if name == "AML_OBS_COST_CURRENCY" else "retailPricesEndpoint"]
        )


def test_wrapper_passes_shellcheck() -> None:
    shellcheck = find_tool("shellcheck", how_to_install="scripts/amlobs.sh was not linted")
    done = subprocess.run(
        [shellcheck, "--shell=sh", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout
