"""azure.yaml and the azd hook scripts.

The hooks are real POSIX sh run by /bin/sh; only `azd` and `az` are stand-ins (small programs that
keep an azd environment in a JSON file and log their calls), because no Azure is reachable here.
What is checked is what `azd up` / `azd down` rely on: the event subscriptions get switched on
exactly once after the first deploy, a failed attempt leaves the environment retryable, a bad
AML_WORKSPACE_IDS stops provisioning, and `azd down` is preceded by a detach and followed by the
clean-up of everything outside the environment's resource group.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools_on_path import find_tool

ROOT = Path(__file__).resolve().parents[1]
AZURE_YAML = ROOT / "azure.yaml"
SCRIPTS = ROOT / "scripts"

FAKE_CLI = r'''#!{python}
"""Stand-in for `{name}`: an azd environment in a JSON file, every call logged."""
import json, os, sys
state_path = os.environ["FAKE_CLI_STATE"]
with open(state_path) as f:
    state = json.load(f)
args = sys.argv[1:]
state["calls"].append({{"cli": "{name}", "args": args, "in_predown": os.environ.get("AML_OBS_IN_PREDOWN")}})
code = 0
if "{name}" == "azd" and args[:2] == ["env", "get-value"]:
    if args[2] in state["env"]:
        print(state["env"][args[2]])
    else:
        print(f"ERROR: key '{{args[2]}}' not found in the environment values", file=sys.stderr)
        code = 1
elif "{name}" == "azd" and args[:2] == ["env", "set"]:
    state["env"][args[2]] = args[3]
elif "{name}" == "azd" and args[:1] == ["provision"]:
    state["provisions"] += 1
    if state["provisions"] <= state["failing_provisions"]:
        print("ERROR: deployment failed: function not found", file=sys.stderr)
        code = 1
with open(state_path, "w") as f:
    json.dump(state, f)
sys.exit(code)
'''

WS_A = "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ws-a"
WS_B = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/Team_RG.(x)/providers/Microsoft.MachineLearningServices/workspaces/ws_b"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    state: dict[str, Any]

    def calls(self, cli: str) -> list[list[str]]:
        return [c["args"] for c in self.state["calls"] if c["cli"] == cli]


# The shared pwsh (../shared/bin/pwsh) is a sh launcher that unpacks PowerShell once into a cache
# under $XDG_CACHE_HOME (else $HOME/.cache) and needs `dirname` to find itself. The hook still sees
# only the fakes and these few tools on PATH; HOME points into the test's own folder.
_CACHE_HOME = os.environ.get("XDG_CACHE_HOME") or str(Path(os.environ.get("HOME", "/tmp")) / ".cache")
PWSH_LAUNCHER_TOOLS: dict[str, tuple[str, ...]] = {"sh": (), "pwsh": ("dirname",)}
PWSH_ENV: dict[str, dict[str, str]] = {
    "sh": {},
    "pwsh": {
        "XDG_CACHE_HOME": _CACHE_HOME,
        "POWERSHELL_TELEMETRY_OPTOUT": "1",
        "POWERSHELL_UPDATECHECK": "Off",
    },
}

SHELLS = ("sh", "pwsh")


def _shell_command(shell: str, script: Path) -> list[str]:
    if shell == "sh":
        return ["/bin/sh", str(script)]
    pwsh = find_tool(
        "pwsh",
        env_var="PWSH",
        how_to_install="the PowerShell hooks were not run here (install PowerShell 7; CI takes it from ../shared/bin)",
    )
    # azd runs a pwsh hook as `pwsh <script>` (Azure/azure-dev cli/azd/pkg/tools/powershell/powershell.go,
    # through `cmd /c` on Windows and `/bin/sh -c` elsewhere); a script path as first argument is -File.
    # -NoProfile keeps this machine's profile out of the test, -NonInteractive turns a prompt into an error.
    return [pwsh, "-NoProfile", "-NonInteractive", "-File", str(script)]


@pytest.fixture(params=SHELLS)
def hook(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Run]:
    """Run scripts/<name>.sh with /bin/sh, or scripts/<name>.ps1 with pwsh, as azd does; fake azd
    (and az unless with_az=False) first on PATH."""
    shell: str = request.param

    def run(
        name: str,
        env: dict[str, str] | None = None,
        *,
        failing_provisions: int = 0,
        with_az: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> Run:
        script = SCRIPTS / f"{name}.{'sh' if shell == 'sh' else 'ps1'}"
        command = _shell_command(shell, script)
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for cli in ("azd", "az"):
            target = bin_dir / cli
            target.unlink(missing_ok=True)
            if cli == "az" and not with_az:
                continue
            target.write_text(FAKE_CLI.format(python=sys.executable, name=cli))
            target.chmod(0o755)
        # Only the tools the hooks use, so a real az installed on this machine cannot leak in.
        tools = tmp_path / "tools"
        tools.mkdir(exist_ok=True)
        for tool in ("tr", "cut", "grep", "sleep", "cat", *PWSH_LAUNCHER_TOOLS[shell]):
            link = tools / tool
            if not link.exists():
                real = shutil.which(tool)
                assert real, f"{tool} is needed to run the hooks"
                link.symlink_to(real)
        state_path = tmp_path / "state.json"
        state_path.write_text(
            json.dumps(
                {"env": env or {}, "calls": [], "provisions": 0, "failing_provisions": failing_provisions}
            )
        )
        process_env = {
            "PATH": f"{bin_dir}:{tools}",
            "FAKE_CLI_STATE": str(state_path),
            "AML_OBS_RETRY_DELAY_SECONDS": "0",
            **PWSH_ENV[shell],
            **({"HOME": str(tmp_path)} if shell == "pwsh" else {}),
            **(extra_env or {}),
        }
        result = subprocess.run(
            command,
            env=process_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Run(result.returncode, result.stdout, result.stderr, json.loads(state_path.read_text()))

    run.shell = shell  # type: ignore[attr-defined]
    return run


# ---- azure.yaml --------------------------------------------------------------------------------


def _azure_yaml() -> dict[str, Any]:
    loaded = yaml.safe_load(AZURE_YAML.read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_azure_yaml_deploys_src_as_a_python_function_app() -> None:
    services = _azure_yaml()["services"]
    assert list(services) == ["processor"]
    processor = services["processor"]
    assert (processor["host"], processor["language"]) == ("function", "python")
    assert (ROOT / processor["project"] / "function_app.py").exists()
    # The function app is found by its azd-service-name tag, set from this service name.
    assert "var serviceName = 'processor'" in (ROOT / "infra" / "main.bicep").read_text()


def _hooks() -> dict[str, dict[str, Any]]:
    hooks = _azure_yaml()["hooks"]
    assert isinstance(hooks, dict)
    return hooks


def test_azure_yaml_names_hooks_that_exist_for_both_shells() -> None:
    hooks = _hooks()
    assert set(hooks) == {"preprovision", "postdeploy", "predown", "postdown"}
    for event, spec in hooks.items():
        posix, windows = spec["posix"], spec["windows"]
        assert posix["shell"] == "sh" and posix["run"].endswith(".sh"), event
        assert windows["shell"] == "pwsh" and windows["run"].endswith(".ps1"), event
        for run in (posix["run"], windows["run"]):
            script = (ROOT / run).resolve()
            assert script.is_file() and script.parent == SCRIPTS, run
        assert Path(posix["run"]).stem == Path(windows["run"]).stem == event
        # A failing hook must stop azd: a half-enabled subscription or an undetached down is worse.
        assert posix["continueOnError"] is False and windows["continueOnError"] is False


def _hook_scripts(suffix: str) -> list[Path]:
    return sorted(
        (ROOT / spec[shell]["run"]).resolve()
        for spec in _hooks().values()
        for shell in ("posix", "windows")
        if spec[shell]["run"].endswith(suffix)
    )


@pytest.mark.parametrize("script", _hook_scripts(".sh"), ids=lambda p: p.name)
def test_sh_hook_parses(script: Path) -> None:
    result = subprocess.run(["/bin/sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_sh_hooks_pass_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip(
            "shellcheck not on PATH: install it (scripts/test.sh does, with apt) to lint the sh hooks"
        )
    scripts = [str(p) for p in _hook_scripts(".sh")]
    result = subprocess.run([shellcheck, "--shell=sh", *scripts], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pwsh_hooks_parse() -> None:
    pwsh = find_tool(
        "pwsh",
        env_var="PWSH",
        how_to_install="the PowerShell hooks were not run here (install PowerShell 7; CI takes it from ../shared/bin)",
    )
    for script in _hook_scripts(".ps1"):
        command = (
            "$errors = $null; "
            f"[System.Management.Automation.Language.Parser]::ParseFile('{script}', [ref]$null, [ref]$errors) | Out-Null; "
            "$errors | ForEach-Object { $_.ToString() }; exit $errors.Count"
        )
        result = subprocess.run(
            [pwsh, "-NoProfile", "-Command", command], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{script.name}: {result.stdout}{result.stderr}"


# ---- postdeploy: the ordering solution ---------------------------------------------------------


def test_first_deploy_enables_event_subscriptions_and_provisions_once(hook: Callable[..., Run]) -> None:
    run = hook("postdeploy", {})
    assert run.returncode == 0, run.stderr
    assert run.state["env"]["ENABLE_EVENT_SUBSCRIPTION"] == "true"
    provisions = [c for c in run.calls("azd") if c[0] == "provision"]
    assert provisions == [["provision", "--no-prompt"]]
    # The flag is set before the provision that reads it.
    calls = run.calls("azd")
    assert calls.index(["env", "set", "ENABLE_EVENT_SUBSCRIPTION", "true"]) < calls.index(
        ["provision", "--no-prompt"]
    )


@pytest.mark.parametrize("value", ["true", "True", "TRUE"])
def test_later_deploys_do_not_provision_again(hook: Callable[..., Run], value: str) -> None:
    run = hook("postdeploy", {"ENABLE_EVENT_SUBSCRIPTION": value})
    assert run.returncode == 0, run.stderr
    assert run.calls("azd") == [["env", "get-value", "ENABLE_EVENT_SUBSCRIPTION"]]
    assert "already enabled" in run.stdout


def test_a_provision_that_fails_once_is_retried(hook: Callable[..., Run]) -> None:
    run = hook("postdeploy", {"ENABLE_EVENT_SUBSCRIPTION": "false"}, failing_provisions=1)
    assert run.returncode == 0, run.stderr
    assert run.state["provisions"] == 2
    assert run.state["env"]["ENABLE_EVENT_SUBSCRIPTION"] == "true"


def test_when_every_attempt_fails_the_environment_stays_retryable(hook: Callable[..., Run]) -> None:
    run = hook("postdeploy", {}, failing_provisions=5, extra_env={"AML_OBS_PROVISION_ATTEMPTS": "2"})
    assert run.returncode != 0
    assert run.state["provisions"] == 2
    # false again, so the next `azd up` provisions without the subscription and this hook retries.
    assert run.state["env"]["ENABLE_EVENT_SUBSCRIPTION"] == "false"
    assert "azd up" in run.stderr


# ---- preprovision: workspace ids --------------------------------------------------------------


def test_well_formed_workspace_ids_are_accepted(hook: Callable[..., Run]) -> None:
    run = hook("preprovision", {"AML_WORKSPACE_IDS": f" {WS_A} ,{WS_B},"})
    assert run.returncode == 0, run.stderr
    assert f"Observing workspace: {WS_A}" in run.stdout and f"Observing workspace: {WS_B}" in run.stdout


def test_empty_workspace_ids_mean_the_demo_workspace(hook: Callable[..., Run]) -> None:
    for env in ({}, {"AML_WORKSPACE_IDS": ""}, {"AML_WORKSPACE_IDS": " , "}):
        run = hook("preprovision", env)
        assert run.returncode == 0, run.stderr
        assert "demo workspace" in run.stdout


@pytest.mark.parametrize(
    "bad",
    [
        "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/ml-rg",
        "ws-a",
        "/subscriptions/not-a-guid/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
        "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/ml-rg/providers/Microsoft.Storage/storageAccounts/st",
    ],
)
def test_a_malformed_workspace_id_stops_provisioning_and_is_named(hook: Callable[..., Run], bad: str) -> None:
    run = hook("preprovision", {"AML_WORKSPACE_IDS": f"{WS_A},{bad}"})
    assert run.returncode != 0
    assert f"'{bad}'" in run.stderr


def test_preprovision_reattaches_after_an_interrupted_down(hook: Callable[..., Run]) -> None:
    run = hook("preprovision", {"AML_OBS_DETACH": "true", "AML_WORKSPACE_IDS": WS_A})
    assert run.returncode == 0, run.stderr
    assert run.state["env"]["AML_OBS_DETACH"] == "false"


def test_preprovision_keeps_the_detach_of_predown(hook: Callable[..., Run]) -> None:
    run = hook(
        "preprovision",
        {"AML_OBS_DETACH": "true", "AML_WORKSPACE_IDS": WS_A},
        extra_env={"AML_OBS_IN_PREDOWN": "1"},
    )
    assert run.returncode == 0, run.stderr
    assert run.state["env"]["AML_OBS_DETACH"] == "true"


# ---- predown / postdown: azd down stays inside rg-<env> ---------------------------------------

EXTERNAL = {
    "AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS": f"{WS_A}/providers/Microsoft.Authorization/roleAssignments/aaaa,{WS_B}/providers/Microsoft.Authorization/roleAssignments/bbbb",
    "AML_OBS_READER_ROLE_DEFINITION_IDS": "/subscriptions/11111111-1111-1111-1111-111111111111/providers/Microsoft.Authorization/roleDefinitions/r1,/subscriptions/22222222-2222-2222-2222-222222222222/providers/Microsoft.Authorization/roleDefinitions/r2",
    "AML_OBS_FOREIGN_RESOURCE_GROUP_IDS": "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg-dev",
}


def test_predown_detaches_observed_workspaces_before_down(hook: Callable[..., Run]) -> None:
    run = hook("predown", {"AML_WORKSPACE_IDS": f"{WS_A},{WS_B}", **EXTERNAL})
    assert run.returncode == 0, run.stderr
    env = run.state["env"]
    assert env["AML_OBS_DETACH"] == "true"
    provisions = [c for c in run.state["calls"] if c["args"][:1] == ["provision"]]
    assert len(provisions) == 1 and provisions[0]["in_predown"] == "1"
    # Kept under names azd does not clear when `down` invalidates the outputs.
    assert env["AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS"] == EXTERNAL["AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS"]
    assert env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == EXTERNAL["AML_OBS_READER_ROLE_DEFINITION_IDS"]
    assert env["AML_OBS_CLEANUP_RESOURCE_GROUP_IDS"] == EXTERNAL["AML_OBS_FOREIGN_RESOURCE_GROUP_IDS"]
    assert not run.calls("az"), "nothing is deleted before the user confirms azd down"


def test_predown_detaches_when_the_ids_come_from_the_process_environment(hook: Callable[..., Run]) -> None:
    # CI sets AML_WORKSPACE_IDS as a workflow variable, not in the azd environment file.
    run = hook("predown", {}, extra_env={"AML_WORKSPACE_IDS": WS_A})
    assert run.returncode == 0, run.stderr
    assert run.state["env"]["AML_OBS_DETACH"] == "true" and run.state["provisions"] == 1


def test_predown_with_only_the_demo_workspace_does_not_provision(hook: Callable[..., Run]) -> None:
    run = hook(
        "predown",
        {
            "AML_OBS_READER_ROLE_DEFINITION_IDS": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/r"
        },
    )
    assert run.returncode == 0, run.stderr
    assert run.state["provisions"] == 0
    assert run.state["env"]["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"].endswith("/roleDefinitions/r")


def test_predown_fails_down_when_the_detach_cannot_be_deployed(hook: Callable[..., Run]) -> None:
    run = hook("predown", {"AML_WORKSPACE_IDS": WS_A}, failing_provisions=1)
    assert run.returncode != 0


def _cleanup_env() -> dict[str, str]:
    return {
        "AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS": EXTERNAL["AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS"],
        "AML_OBS_CLEANUP_ROLE_DEFINITION_IDS": EXTERNAL["AML_OBS_READER_ROLE_DEFINITION_IDS"],
        "AML_OBS_CLEANUP_RESOURCE_GROUP_IDS": EXTERNAL["AML_OBS_FOREIGN_RESOURCE_GROUP_IDS"],
        "ENABLE_EVENT_SUBSCRIPTION": "true",
        "AML_OBS_DETACH": "true",
    }


def test_postdown_removes_what_lives_outside_the_environment_and_resets(hook: Callable[..., Run]) -> None:
    run = hook("postdown", _cleanup_env())
    assert run.returncode == 0, run.stderr
    az = run.calls("az")
    assignment_deletes = [c for c in az if c[:3] == ["role", "assignment", "delete"]]
    definition_deletes = [c for c in az if c[:3] == ["role", "definition", "delete"]]
    group_deletes = [c for c in az if c[:2] == ["group", "delete"]]
    assert [c[c.index("--ids") + 1] for c in assignment_deletes] == EXTERNAL[
        "AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS"
    ].split(",")
    assert [(c[c.index("--name") + 1], c[c.index("--scope") + 1]) for c in definition_deletes] == [
        ("r1", "/subscriptions/11111111-1111-1111-1111-111111111111"),
        ("r2", "/subscriptions/22222222-2222-2222-2222-222222222222"),
    ]
    assert [(c[c.index("--subscription") + 1], c[c.index("--name") + 1]) for c in group_deletes] == [
        ("22222222-2222-2222-2222-222222222222", "rg-dev")
    ]
    # A role definition cannot be deleted while assigned: assignments go first.
    assert az.index(assignment_deletes[-1]) < az.index(definition_deletes[0])
    env = run.state["env"]
    assert env["ENABLE_EVENT_SUBSCRIPTION"] == "false" and env["AML_OBS_DETACH"] == "false"
    assert env["AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS"] == ""


def test_postdown_without_az_prints_the_commands_and_still_resets(hook: Callable[..., Run]) -> None:
    run = hook("postdown", _cleanup_env(), with_az=False)
    assert run.returncode == 0, run.stderr
    assert "az role assignment delete --ids " + WS_A in run.stderr
    assert (
        "az role definition delete --name r2 --scope /subscriptions/22222222-2222-2222-2222-222222222222"
        in run.stderr
    )
    assert (
        "az group delete --yes --subscription 22222222-2222-2222-2222-222222222222 --name rg-dev"
        in run.stderr
    )
    assert run.state["env"]["ENABLE_EVENT_SUBSCRIPTION"] == "false"
    # The ids stay, so a later run with az installed can still clean up.
    assert (
        run.state["env"]["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"]
        == EXTERNAL["AML_OBS_READER_ROLE_DEFINITION_IDS"]
    )


def test_postdown_with_nothing_outside_only_resets(hook: Callable[..., Run]) -> None:
    run = hook("postdown", {"ENABLE_EVENT_SUBSCRIPTION": "true"})
    assert run.returncode == 0, run.stderr
    assert not run.calls("az")
    assert run.state["env"]["ENABLE_EVENT_SUBSCRIPTION"] == "false"


def test_hooks_do_not_depend_on_the_callers_environment() -> None:
    # The fixture runs hooks with a PATH of only the fakes and a handful of tools; this guards that
    # the scripts do not call anything else (bash, sed, awk, jq...) that a minimal sh host lacks.
    for script in _hook_scripts(".sh"):
        text = script.read_text()
        assert text.startswith("#!/bin/sh\n"), script.name
        for tool in ("bash", "jq", "sed ", "awk ", "python"):
            assert tool not in text, f"{script.name} uses {tool.strip()}"
    assert os.access(SCRIPTS / "postdeploy.sh", os.X_OK)
