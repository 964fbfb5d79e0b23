"""azure.yaml and the azd hook scripts, each hook run under sh and under pwsh with the same assertions.

The hooks are the real scripts run by /bin/sh and by PowerShell 7 the way azd runs them; only `azd`
and `az` are stand-ins (tests/fakes/azure_cli.py: executables on PATH that keep an azd environment
and a little of Azure in a JSON file and log their calls), because no Azure is reachable here.
What is checked is what `azd up` / `azd down` rely on: the event subscriptions get switched on
exactly once after the first deploy, a failed attempt leaves the environment retryable, a bad
AML_WORKSPACE_IDS stops provisioning, `azd down` is preceded by a detach decided from what is
deployed, and followed by the removal (verified) of everything outside the environment's resource
group, keeping whatever could not be removed for a retry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

from tests import azd_schema
from tests.fakes import azure_cli
from tests.tools_on_path import find_tool, missing

ROOT = Path(__file__).resolve().parents[1]
AZURE_YAML = ROOT / "azure.yaml"
SCRIPTS = ROOT / "scripts"
SHELLS = ("sh", "pwsh")
API = "api-version=2022-04-01"

SUB_A = "11111111-1111-1111-1111-111111111111"
SUB_B = "22222222-2222-2222-2222-222222222222"
ENV_GROUP = "rg-dev"
WS_A = (
    f"/subscriptions/{SUB_A}/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ws-a"
)
WS_B = f"/subscriptions/{SUB_B}/resourceGroups/Team_RG.(x)/providers/Microsoft.MachineLearningServices/workspaces/ws_b"
DEMO = f"/subscriptions/{SUB_A}/resourceGroups/{ENV_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/mlw-abc"


def assignment_of(workspace: str, name: str) -> str:
    return f"{workspace}/providers/Microsoft.Authorization/roleAssignments/{name}"


def role_in(subscription: str, name: str) -> str:
    return f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{name}"


ASSIGNMENT_A, ASSIGNMENT_B = assignment_of(WS_A, "aaaa"), assignment_of(WS_B, "bbbb")
ROLE_A, ROLE_B = role_in(SUB_A, "r1"), role_in(SUB_B, "r2")
FOREIGN_GROUP = f"/subscriptions/{SUB_B}/resourceGroups/{ENV_GROUP}"

# The outputs azd stored after provisioning an environment that observes WS_A and WS_B
# (infra/main.bicep: AML_OBSERVED_WORKSPACE_IDS and the AML_OBS_* ids of what lives outside rg-<env>).
DEPLOYED = {
    "AZURE_SUBSCRIPTION_ID": SUB_A,
    "AZURE_RESOURCE_GROUP": ENV_GROUP,
    "AML_OBSERVED_WORKSPACE_IDS": f"{WS_A},{WS_B}",
    "AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS": f"{ASSIGNMENT_A},{ASSIGNMENT_B}",
    "AML_OBS_READER_ROLE_DEFINITION_IDS": f"{ROLE_A},{ROLE_B}",
    "AML_OBS_FOREIGN_RESOURCE_GROUP_IDS": FOREIGN_GROUP,
}
DEMO_ASSIGNMENT, DEMO_ROLE = assignment_of(DEMO, "dddd"), role_in(SUB_A, "rdemo")
DEPLOYED_DEMO = {
    "AZURE_SUBSCRIPTION_ID": SUB_A,
    "AZURE_RESOURCE_GROUP": ENV_GROUP,
    "AML_OBSERVED_WORKSPACE_IDS": DEMO,
    "AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS": DEMO_ASSIGNMENT,
    "AML_OBS_READER_ROLE_DEFINITION_IDS": DEMO_ROLE,
    "AML_OBS_FOREIGN_RESOURCE_GROUP_IDS": "",
}
CLEANUP_KEYS = (
    "AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS",
    "AML_OBS_CLEANUP_ROLE_DEFINITION_IDS",
    "AML_OBS_CLEANUP_RESOURCE_GROUP_IDS",
)


@dataclass
class Run:
    shell: str
    returncode: int
    stdout: str
    stderr: str
    state: dict[str, Any]

    @property
    def env(self) -> dict[str, str]:
        return self.state["env"]  # type: ignore[no-any-return]

    @property
    def azure(self) -> dict[str, list[Any]]:
        return self.state["azure"]  # type: ignore[no-any-return]

    def calls(self, cli: str) -> list[list[str]]:
        return [c["args"] for c in self.state["calls"] if c["cli"] == cli]

    def env_sets(self) -> list[tuple[str, str]]:
        """Every `azd env set`, as (key, value), whichever of azd's two spellings was used."""
        pairs = []
        for args in self.calls("azd"):
            if args[:2] != ["env", "set"]:
                continue
            values = args[2:]
            if len(values) == 2 and "=" not in values[0]:
                pairs.append((values[0], values[1]))
            else:
                pairs.extend(tuple(v.split("=", 1)) for v in values)  # type: ignore[misc]
        return pairs

    @property
    def provisions(self) -> list[dict[str, str | None]]:
        """What each `azd provision` read for the template's parameters."""
        return self.state["provision_inputs"]  # type: ignore[no-any-return]


# The shared pwsh (../shared/bin/pwsh) is a sh launcher that unpacks PowerShell once into a cache
# under $XDG_CACHE_HOME (else $HOME/.cache) and needs `dirname` to find itself. The hook still sees
# only the fakes and these few tools on PATH; HOME points into the test's own folder.
_CACHE_HOME = os.environ.get("XDG_CACHE_HOME") or str(Path(os.environ.get("HOME", "/tmp")) / ".cache")
HOOK_TOOLS = ("tr", "cut", "grep", "sleep", "cat")
PWSH_LAUNCHER_TOOLS = ("dirname",)


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
    """Run scripts/<name>.sh with /bin/sh, or scripts/<name>.ps1 with pwsh, as azd does, with the
    fake azd (and az unless with_az=False) first on PATH. ``state`` continues from an earlier run."""
    shell: str = request.param

    def run(
        name: str,
        env: dict[str, str] | None = None,
        *,
        failing_provisions: int = 0,
        with_az: bool = True,
        extra_env: dict[str, str] | None = None,
        azure: dict[str, list[Any]] | None = None,
        faults: dict[str, list[str]] | None = None,
        state: dict[str, Any] | None = None,
    ) -> Run:
        command = _shell_command(shell, SCRIPTS / f"{name}.{'sh' if shell == 'sh' else 'ps1'}")
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        for cli in ("azd", "az"):
            (bin_dir / cli).unlink(missing_ok=True)
            if cli == "az" and not with_az:
                continue
            azure_cli.write_executable(bin_dir, cli)
        # Only the tools the hooks use, so a real az installed on this machine cannot leak in.
        tools = tmp_path / f"tools-{shell}"
        tools.mkdir(exist_ok=True)
        for tool in HOOK_TOOLS + (PWSH_LAUNCHER_TOOLS if shell == "pwsh" else ()):
            link = tools / tool
            if not link.exists():
                real = shutil.which(tool)
                assert real, f"{tool} is needed to run the hooks"
                link.symlink_to(real)
        if state is None:
            state = azure_cli.new_state(
                env, failing_provisions=failing_provisions, azure=azure, faults=faults
            )
        else:
            assert env is None and azure is None, "a continued run starts from the earlier state"
            if faults is not None:
                state["faults"] = azure_cli.new_state(faults=faults)["faults"]
        state_path = tmp_path / "state.json"
        state_path.write_text(json.dumps(state))
        process_env = {
            "PATH": f"{bin_dir}:{tools}",
            azure_cli.STATE_ENV: str(state_path),
            "AML_OBS_RETRY_DELAY_SECONDS": "0",
            **(
                {
                    "HOME": str(tmp_path),
                    "XDG_CACHE_HOME": _CACHE_HOME,
                    "POWERSHELL_TELEMETRY_OPTOUT": "1",
                    "POWERSHELL_UPDATECHECK": "Off",
                }
                if shell == "pwsh"
                else {}
            ),
            **(extra_env or {}),
        }
        result = subprocess.run(
            command, env=process_env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        return Run(shell, result.returncode, result.stdout, result.stderr, json.loads(state_path.read_text()))

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
        # Both shells behave alike in azd too: the same options on both sides.
        assert {k: v for k, v in posix.items() if k not in ("shell", "run")} == {
            k: v for k, v in windows.items() if k not in ("shell", "run")
        }, event


def test_hooks_that_provision_show_their_output_during_up_and_down() -> None:
    # A nested provision takes minutes and retries: in azd's 8-line preview (or hidden, in azd
    # 1.25+'s graph-driven `azd up`) it looks like a hang. interactive binds the console
    # (Azure/azure-dev cli/azd/pkg/ext/hooks_runner.go, configureExecContext).
    hooks = _hooks()
    for event in ("postdeploy", "predown"):
        assert hooks[event]["posix"]["interactive"] is True, event
        assert hooks[event]["windows"]["interactive"] is True, event


def test_azd_up_runs_deploy_as_its_own_step() -> None:
    # A custom `workflows.up` makes azd run package, provision and deploy as sub-commands (azd
    # 1.24's default workflow, cli/azd/cmd/up.go), so postdeploy runs after deploy's progress table
    # is done instead of inside azd 1.25+'s single up graph, which hides hook output until the end.
    steps = _azure_yaml()["workflows"]["up"]["steps"]
    assert [step["azd"] for step in steps] == ["package --all", "provision", "deploy --all"]


def test_azure_yaml_requires_the_azd_the_hooks_were_checked_against() -> None:
    required = _azure_yaml()["requiredVersions"]["azd"]
    assert re.fullmatch(r">= 1\.24\.0", required), required


def _azd_schema_errors(document: Any) -> list[str]:
    """azure.yaml ``document`` checked against azd's schema (tests/azd_schema.py) by jsonschema, offline."""
    path = azd_schema.locate()
    if path is None:
        missing(f"azure.yaml was not checked against azd's schema: {azd_schema.HOW_TO_GET}")

    def refuse(uri: str) -> Resource:
        # The extension schemas (AI hosts) are referenced by URL; this template uses none of them.
        raise NoSuchResource(ref=uri)

    validator = Draft201909Validator(azd_schema.load(path), registry=Registry(retrieve=refuse))
    return [
        f"/{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


def test_azure_yaml_matches_the_azd_schema() -> None:
    assert _azd_schema_errors(_azure_yaml()) == []


@pytest.mark.parametrize(
    ("mistake", "where"),
    [
        (lambda doc: doc["hooks"].update(postprovison=doc["hooks"]["postdown"]), "/hooks"),
        (lambda doc: doc["pipeline"].update(variables="AML_WORKSPACE_IDS"), "/pipeline/variables"),
        (lambda doc: doc.update(name="AML Run Observability"), "/name"),
    ],
    ids=["misspelt-hook", "variables-not-a-list", "name-not-azd-form"],
)
def test_the_azd_schema_check_catches_a_broken_azure_yaml(mistake: Callable[[Any], None], where: str) -> None:
    document = _azure_yaml()
    mistake(document)
    errors = _azd_schema_errors(document)
    assert errors and all(error.startswith(where) for error in errors), errors


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
    shellcheck = find_tool("shellcheck", how_to_install="the sh hooks were not linted")
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


def test_hooks_do_not_depend_on_the_callers_environment() -> None:
    # The fixture runs hooks with a PATH of only the fakes and a handful of tools; this guards that
    # the scripts do not call anything else (bash, sed, awk, jq...) that a minimal sh host lacks.
    for script in _hook_scripts(".sh"):
        text = script.read_text()
        assert text.startswith("#!/bin/sh\n"), script.name
        for tool in ("bash", "jq", "sed ", "awk ", "python"):
            assert tool not in text, f"{script.name} uses {tool.strip()}"
    assert os.access(SCRIPTS / "postdeploy.sh", os.X_OK)
    # The PowerShell hooks stop on any error and refuse unset variables and out-of-range indexes.
    for script in _hook_scripts(".ps1"):
        text = script.read_text()
        assert "$ErrorActionPreference = 'Stop'" in text and "Set-StrictMode -Version Latest" in text, (
            script.name
        )


def test_every_azd_env_set_passes_one_key_equals_value_argument() -> None:
    # `azd env set KEY ''` loses its empty argument in Windows PowerShell 5.1 (azd's fallback when
    # pwsh is missing, cli/azd/pkg/tools/powershell/powershell.go), and azd then fails on "KEY".
    # KEY=VALUE (azd 1.17.1+) is one argument in every shell.
    for script in [*_hook_scripts(".sh"), *_hook_scripts(".ps1")]:
        for line in script.read_text().splitlines():
            if "azd env set" in line:
                assert re.search(r"azd env set ['\"]?[A-Za-z_$][\w${}]*=", line), f"{script.name}: {line}"


# ---- postdeploy: the ordering solution ---------------------------------------------------------


def test_first_deploy_enables_event_subscriptions_and_provisions_once(hook: Callable[..., Run]) -> None:
    run = hook("postdeploy", {})
    assert run.returncode == 0, run.stderr
    assert run.env["ENABLE_EVENT_SUBSCRIPTION"] == "true"
    assert [c for c in run.calls("azd") if c[0] == "provision"] == [["provision", "--no-prompt"]]
    # The flag is set before the provision that reads it.
    assert [p["ENABLE_EVENT_SUBSCRIPTION"] for p in run.provisions] == ["true"]
    assert "AML run events now reach the function" in run.stdout


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
    assert run.env["ENABLE_EVENT_SUBSCRIPTION"] == "true"
    assert "retrying" in run.stderr and "(attempt 2/3)" in run.stderr


def test_when_every_attempt_fails_the_environment_stays_retryable(hook: Callable[..., Run]) -> None:
    run = hook("postdeploy", {}, failing_provisions=5, extra_env={"AML_OBS_PROVISION_ATTEMPTS": "2"})
    assert run.returncode != 0
    assert run.state["provisions"] == 2
    # false again, so the next `azd up` provisions without the subscription and this hook retries.
    assert run.env["ENABLE_EVENT_SUBSCRIPTION"] == "false"
    assert "after 2 attempts; run 'azd up' again" in run.stderr


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
        f"/subscriptions/{SUB_A}/resourceGroups/ml-rg",
        "ws-a",
        "/subscriptions/not-a-guid/resourceGroups/ml-rg/providers/Microsoft.MachineLearningServices/workspaces/ws",
        f"/subscriptions/{SUB_A}/resourceGroups/ml-rg/providers/Microsoft.Storage/storageAccounts/st",
    ],
)
def test_a_malformed_workspace_id_stops_provisioning_and_is_named(hook: Callable[..., Run], bad: str) -> None:
    run = hook("preprovision", {"AML_WORKSPACE_IDS": f"{WS_A},{bad}"})
    assert run.returncode != 0
    assert f"'{bad}'" in run.stderr
    assert "comma-separated" in run.stderr


def test_workspace_ids_from_the_process_environment_are_checked_too(hook: Callable[..., Run]) -> None:
    # CI sets AML_WORKSPACE_IDS as a workflow variable, not in the azd environment file.
    run = hook("preprovision", {}, extra_env={"AML_WORKSPACE_IDS": "ws-a"})
    assert run.returncode != 0
    assert "'ws-a'" in run.stderr


@pytest.mark.parametrize("value", ["true", "True"])
def test_preprovision_reattaches_after_an_interrupted_down(hook: Callable[..., Run], value: str) -> None:
    run = hook("preprovision", {"AML_OBS_DETACH": value, "AML_WORKSPACE_IDS": WS_A})
    assert run.returncode == 0, run.stderr
    assert run.env["AML_OBS_DETACH"] == "false"
    assert "interrupted 'azd down'" in run.stdout


def test_preprovision_keeps_the_detach_of_predown(hook: Callable[..., Run]) -> None:
    run = hook(
        "preprovision",
        {"AML_OBS_DETACH": "true", "AML_WORKSPACE_IDS": WS_A},
        extra_env={"AML_OBS_IN_PREDOWN": "1"},
    )
    assert run.returncode == 0, run.stderr
    assert run.env["AML_OBS_DETACH"] == "true"
    assert ("AML_OBS_DETACH", "false") not in run.env_sets()


# ---- predown: `azd down` stays inside rg-<env> --------------------------------------------------


def _detached_once(run: Run, workspaces: str) -> None:
    """One provision, nested in predown, with the detach on and the given workspaces as parameter."""
    assert run.returncode == 0, run.stderr
    assert run.provisions == [
        {
            "AML_WORKSPACE_IDS": workspaces,
            "AML_OBS_DETACH": "true",
            "ENABLE_EVENT_SUBSCRIPTION": None,
            "AML_OBS_ADOPTED_SYSTEM_TOPICS": None,
        }
    ]
    provisions = [c for c in run.state["calls"] if c["args"][:1] == ["provision"]]
    assert [c["in_predown"] for c in provisions] == ["1"]
    assert not run.calls("az"), "nothing is deleted before the user confirms azd down"


def test_predown_detaches_the_deployed_workspaces_before_down(hook: Callable[..., Run]) -> None:
    run = hook("predown", {"AML_WORKSPACE_IDS": f"{WS_A},{WS_B}", **DEPLOYED})
    _detached_once(run, f"{WS_A},{WS_B}")
    assert run.env["AML_OBS_DETACH"] == "true"
    assert WS_A in run.stdout and WS_B in run.stdout
    # Kept under names azd does not clear when `down` invalidates the outputs.
    assert run.env["AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS"] == DEPLOYED["AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS"]
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == DEPLOYED["AML_OBS_READER_ROLE_DEFINITION_IDS"]
    assert run.env["AML_OBS_CLEANUP_RESOURCE_GROUP_IDS"] == DEPLOYED["AML_OBS_FOREIGN_RESOURCE_GROUP_IDS"]


def test_predown_detaches_what_is_deployed_after_the_user_cleared_the_workspace_ids(
    hook: Callable[..., Run],
) -> None:
    # The case: AML_WORKSPACE_IDS emptied after `azd up`; the last deployment still reaches
    # into ml-rg. The detach provision must deploy the deployed workspaces (an empty value would
    # create a demo workspace instead), and the user's value comes back afterwards.
    run = hook("predown", {"AML_WORKSPACE_IDS": "", **DEPLOYED})
    _detached_once(run, f"{WS_A},{WS_B}")
    assert run.env["AML_WORKSPACE_IDS"] == ""


def test_predown_detaches_the_deployed_workspace_not_the_newly_configured_one(
    hook: Callable[..., Run],
) -> None:
    deployed_a = {**DEPLOYED, "AML_OBSERVED_WORKSPACE_IDS": WS_A, "AML_OBS_FOREIGN_RESOURCE_GROUP_IDS": ""}
    run = hook("predown", {"AML_WORKSPACE_IDS": WS_B, **deployed_a})
    _detached_once(run, WS_A)
    assert run.env["AML_WORKSPACE_IDS"] == WS_B
    assert WS_B not in run.stdout


def test_predown_passes_the_deployed_workspaces_to_ci_through_the_process(hook: Callable[..., Run]) -> None:
    # CI sets AML_WORKSPACE_IDS as a workflow variable, not in the azd environment file; azd reads
    # the process environment when .env lacks the key, and .env is left without it.
    run = hook("predown", dict(DEPLOYED), extra_env={"AML_WORKSPACE_IDS": WS_B})
    _detached_once(run, f"{WS_A},{WS_B}")
    assert "AML_WORKSPACE_IDS" not in run.env


def test_predown_with_only_the_demo_workspace_deployed_does_not_provision(hook: Callable[..., Run]) -> None:
    # Even though AML_WORKSPACE_IDS now names an outside workspace: it is not deployed yet. The
    # resource group's name compares case-insensitively, as Azure does.
    demo = {**DEPLOYED_DEMO, "AZURE_RESOURCE_GROUP": ENV_GROUP.upper()}
    run = hook("predown", {"AML_WORKSPACE_IDS": WS_A, **demo})
    assert run.returncode == 0, run.stderr
    assert run.state["provisions"] == 0
    assert "everything is in this environment's resource group" in run.stdout
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == DEMO_ROLE
    assert run.env["AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS"] == DEMO_ASSIGNMENT
    assert run.env["AML_OBS_CLEANUP_RESOURCE_GROUP_IDS"] == ""
    assert "AML_OBS_DETACH" not in run.env


def test_predown_detaches_a_workspace_in_a_group_of_the_same_name_in_another_subscription(
    hook: Callable[..., Run],
) -> None:
    other = f"/subscriptions/{SUB_B}/resourceGroups/{ENV_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/ws-c"
    run = hook("predown", {**DEPLOYED_DEMO, "AML_OBSERVED_WORKSPACE_IDS": other})
    _detached_once(run, other)


def test_predown_with_nothing_deployed_does_not_provision(hook: Callable[..., Run]) -> None:
    # No outputs at all (never provisioned, or already down): a provision would create everything.
    run = hook("predown", {"AML_WORKSPACE_IDS": WS_A})
    assert run.returncode == 0, run.stderr
    assert run.state["provisions"] == 0
    assert "Nothing of this environment is deployed" in run.stdout


def test_predown_of_an_environment_without_recorded_workspaces_goes_by_the_setting(
    hook: Callable[..., Run],
) -> None:
    # Provisioned before AML_OBSERVED_WORKSPACE_IDS existed: the configured ids are all there is.
    env = {"AZURE_SUBSCRIPTION_ID": SUB_A, "AZURE_RESOURCE_GROUP": ENV_GROUP}
    run = hook("predown", env, extra_env={"AML_WORKSPACE_IDS": WS_A})
    _detached_once(run, WS_A)
    assert "not recorded" in run.stdout


def test_predown_fails_down_when_the_detach_cannot_be_deployed(hook: Callable[..., Run]) -> None:
    run = hook("predown", {"AML_WORKSPACE_IDS": "", **DEPLOYED}, failing_provisions=1)
    assert run.returncode != 0
    assert run.state["provisions"] == 1
    # The user's setting comes back even so; AML_OBS_DETACH stays on for preprovision to undo.
    assert run.env["AML_WORKSPACE_IDS"] == ""
    assert run.env["AML_OBS_DETACH"] == "true"


def test_predown_keeps_what_an_earlier_postdown_could_not_remove(hook: Callable[..., Run]) -> None:
    leftover = role_in(SUB_B, "old")
    env = {
        **DEPLOYED,
        "AML_WORKSPACE_IDS": f"{WS_A},{WS_B}",
        "AML_OBS_CLEANUP_ROLE_DEFINITION_IDS": f"{leftover},{ROLE_A.upper()}",
    }
    run = hook("predown", env)
    assert run.returncode == 0, run.stderr
    # Union, first spelling kept, no repeats (resource ids compare case-insensitively).
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == f"{leftover},{ROLE_A.upper()},{ROLE_B}"


def test_predown_after_a_completed_down_keeps_the_leftovers(hook: Callable[..., Run]) -> None:
    # `azd down` clears the outputs; running it again must not forget what is still to remove.
    run = hook("predown", {"AML_OBS_CLEANUP_ROLE_DEFINITION_IDS": ROLE_A})
    assert run.returncode == 0, run.stderr
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == ROLE_A
    assert run.state["provisions"] == 0


# ---- postdown: removal outside rg-<env>, verified ----------------------------------------------


def _cleanup_env(**overrides: str) -> dict[str, str]:
    return {
        "AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS": DEPLOYED["AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS"],
        "AML_OBS_CLEANUP_ROLE_DEFINITION_IDS": DEPLOYED["AML_OBS_READER_ROLE_DEFINITION_IDS"],
        "AML_OBS_CLEANUP_RESOURCE_GROUP_IDS": DEPLOYED["AML_OBS_FOREIGN_RESOURCE_GROUP_IDS"],
        "ENABLE_EVENT_SUBSCRIPTION": "true",
        "AML_OBS_DETACH": "true",
        **overrides,
    }


def _all_outside() -> dict[str, list[str]]:
    return {
        "roleAssignments": [ASSIGNMENT_A, ASSIGNMENT_B],
        "roleDefinitions": [ROLE_A, ROLE_B],
        "resourceGroups": [FOREIGN_GROUP],
    }


def _reset(run: Run) -> None:
    assert run.env["ENABLE_EVENT_SUBSCRIPTION"] == "false" and run.env["AML_OBS_DETACH"] == "false"


def test_postdown_removes_what_lives_outside_the_environment_and_resets(hook: Callable[..., Run]) -> None:
    run = hook("postdown", _cleanup_env(), azure=_all_outside())
    assert run.returncode == 0, run.stderr
    assert run.azure == {
        "roleAssignments": [],
        "roleDefinitions": [],
        "resourceGroups": [],
        "systemTopics": [],
        "eventSubscriptions": [],
    }
    az = run.calls("az")
    assignment_deletes = [c for c in az if c[:3] == ["role", "assignment", "delete"]]
    assert [c[c.index("--ids") + 1] for c in assignment_deletes] == [ASSIGNMENT_A, ASSIGNMENT_B]
    # Each role definition deleted by its full id, then read back until Resource Manager answers 404.
    rest = [(c[c.index("--method") + 1], c[c.index("--url") + 1]) for c in az if c[:1] == ["rest"]]
    assert rest == [
        ("delete", f"{ROLE_A}?{API}"),
        ("get", f"{ROLE_A}?{API}"),
        ("delete", f"{ROLE_B}?{API}"),
        ("get", f"{ROLE_B}?{API}"),
    ]
    group_deletes = [c for c in az if c[:2] == ["group", "delete"]]
    assert [(c[c.index("--subscription") + 1], c[c.index("--name") + 1]) for c in group_deletes] == [
        (SUB_B, ENV_GROUP)
    ]
    # A role definition cannot be deleted while assigned: assignments go first.
    assert az.index(assignment_deletes[-1]) < az.index(next(c for c in az if c[:1] == ["rest"]))
    assert not [c for c in az if c[:1] == ["eventgrid"]], "no topic was adopted"
    _reset(run)
    assert all(run.env[key] == "" for key in CLEANUP_KEYS)
    assert "Removed everything" in run.stdout


def test_postdown_removes_the_single_role_of_the_demo_path(hook: Callable[..., Run]) -> None:
    # One id per list: PowerShell hands a one-element array back from a function as a bare string.
    env = _cleanup_env(
        AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS=DEMO_ASSIGNMENT,
        AML_OBS_CLEANUP_ROLE_DEFINITION_IDS=DEMO_ROLE,
        AML_OBS_CLEANUP_RESOURCE_GROUP_IDS="",
    )
    run = hook("postdown", env, azure={"roleAssignments": [DEMO_ASSIGNMENT], "roleDefinitions": [DEMO_ROLE]})
    assert run.returncode == 0, run.stderr
    assert run.azure["roleDefinitions"] == [] and run.azure["roleAssignments"] == []
    assert all(run.env[key] == "" for key in CLEANUP_KEYS)


def test_a_role_that_is_still_there_after_its_delete_stays_for_a_retry(hook: Callable[..., Run]) -> None:
    # The silent leak of `az role definition delete --scope <subscription>`: a delete that reports
    # success while the definition stays. It is read back, found, and kept.
    run = hook(
        "postdown",
        _cleanup_env(),
        azure=_all_outside(),
        faults={"role_delete_ignored": [ROLE_B]},
        extra_env={"AML_OBS_VERIFY_ATTEMPTS": "3"},
    )
    assert run.returncode != 0
    assert run.azure["roleDefinitions"] == [ROLE_B]
    gets = [c for c in run.calls("az") if c[:3] == ["rest", "--method", "get"] and ROLE_B in c[4]]
    assert len(gets) == 3
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == ROLE_B
    # What was removed is no longer listed; the switches are reset all the same.
    assert run.env["AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS"] == ""
    assert run.env["AML_OBS_CLEANUP_RESOURCE_GROUP_IDS"] == ""
    _reset(run)
    assert f"Role definition {ROLE_B} is still there after 3 checks" in run.stderr
    assert "azd hooks run postdown" in run.stderr


def test_a_role_that_cannot_be_deleted_is_reported_and_kept(hook: Callable[..., Run]) -> None:
    run = hook("postdown", _cleanup_env(), azure=_all_outside(), faults={"role_delete": [ROLE_A]})
    assert run.returncode != 0
    assert run.azure["roleDefinitions"] == [ROLE_A]
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == ROLE_A
    assert "AuthorizationFailed" in run.stderr and f"  {ROLE_A}" in run.stderr
    assert "Owner or User Access Administrator" in run.stderr


def test_a_role_whose_absence_cannot_be_checked_is_kept(hook: Callable[..., Run]) -> None:
    run = hook(
        "postdown",
        _cleanup_env(),
        azure=_all_outside(),
        faults={"role_get": [ROLE_A]},
        extra_env={"AML_OBS_VERIFY_ATTEMPTS": "2"},
    )
    assert run.returncode != 0
    # Deleted, but not confirmed gone: kept, so the retry confirms it (a delete of a missing role succeeds).
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == ROLE_A
    assert "roleDefinitions/read" in run.stderr


def test_a_retry_removes_what_the_first_postdown_left(hook: Callable[..., Run]) -> None:
    first = hook("postdown", _cleanup_env(), azure=_all_outside(), faults={"role_delete": [ROLE_B]})
    assert first.returncode != 0
    retry = hook("postdown", state=first.state, faults={})
    assert retry.returncode == 0, retry.stderr
    assert retry.azure["roleDefinitions"] == []
    assert all(retry.env[key] == "" for key in CLEANUP_KEYS)
    # Only the leftover is touched the second time.
    second_calls = retry.state["calls"][len(first.state["calls"]) :]
    assert [c["args"][:3] for c in second_calls if c["cli"] == "az"] == [
        ["rest", "--method", "delete"],
        ["rest", "--method", "get"],
    ]


def test_what_is_already_gone_counts_as_removed(hook: Callable[..., Run]) -> None:
    # Nothing exists any more (removed by hand, or by an earlier run that was interrupted).
    run = hook("postdown", _cleanup_env())
    assert run.returncode == 0, run.stderr
    assert all(run.env[key] == "" for key in CLEANUP_KEYS)
    assert "already gone" in run.stdout


def test_a_group_that_cannot_be_deleted_is_kept(hook: Callable[..., Run]) -> None:
    run = hook("postdown", _cleanup_env(), azure=_all_outside(), faults={"group_delete": [FOREIGN_GROUP]})
    assert run.returncode != 0
    assert run.env["AML_OBS_CLEANUP_RESOURCE_GROUP_IDS"] == FOREIGN_GROUP
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == ""
    assert f"  {FOREIGN_GROUP}" in run.stderr


def test_postdown_without_az_prints_the_commands_keeps_the_ids_and_fails(hook: Callable[..., Run]) -> None:
    run = hook("postdown", _cleanup_env(), with_az=False)
    assert run.returncode != 0
    assert f"az role assignment delete --ids {ASSIGNMENT_A}" in run.stderr
    assert f'az rest --method delete --url "{ROLE_B}?{API}"' in run.stderr
    assert f"az group delete --yes --subscription {SUB_B} --name {ENV_GROUP}" in run.stderr
    assert "azd hooks run postdown" in run.stderr
    _reset(run)
    # The ids stay, so a later run with az installed can still clean up.
    assert run.env["AML_OBS_CLEANUP_ROLE_DEFINITION_IDS"] == DEPLOYED["AML_OBS_READER_ROLE_DEFINITION_IDS"]


def test_postdown_with_nothing_outside_only_resets(hook: Callable[..., Run]) -> None:
    run = hook("postdown", {"ENABLE_EVENT_SUBSCRIPTION": "true"})
    assert run.returncode == 0, run.stderr
    assert not run.calls("az")
    assert run.env["ENABLE_EVENT_SUBSCRIPTION"] == "false"


# ---- predown, azd down, postdown ---------------------------------------------------------------


def _azd_down(state: dict[str, Any]) -> None:
    """What `azd down` does between the hooks: delete rg-<env> (the demo workspace's role assignment
    with it) and drop every template output from .env (Azure/azure-dev bicep_provider.go Destroy,
    InvalidatedEnvKeys)."""
    for key in [*DEPLOYED_DEMO, *DEPLOYED]:
        state["env"].pop(key, None)
    state["azure"]["roleAssignments"] = [
        a for a in state["azure"]["roleAssignments"] if f"/resourcegroups/{ENV_GROUP}/" not in a.lower()
    ]


def test_azd_down_of_the_demo_environment_removes_its_custom_role(hook: Callable[..., Run]) -> None:
    before = hook(
        "predown",
        {**DEPLOYED_DEMO, "ENABLE_EVENT_SUBSCRIPTION": "true"},
        azure={"roleAssignments": [DEMO_ASSIGNMENT], "roleDefinitions": [DEMO_ROLE]},
    )
    assert before.returncode == 0, before.stderr
    _azd_down(before.state)
    after = hook("postdown", state=before.state)
    assert after.returncode == 0, after.stderr
    assert after.azure["roleDefinitions"] == []
    assert all(after.env[key] == "" for key in CLEANUP_KEYS)
    assert after.env["ENABLE_EVENT_SUBSCRIPTION"] == "false"


# ---- an existing system topic: adopted, never duplicated, left in place ------------------------

TOPIC_QUERY = azure_cli.TOPIC_QUERY
# The workspace's topic made on its *Events* page, in another group of its subscription; one in
# another subscription (WS_B's); and this environment's own one (rg-dev).
OWNERS_TOPIC_A = (
    f"/subscriptions/{SUB_A}/resourceGroups/ml-events/providers/Microsoft.EventGrid/systemTopics/ws-a-events"
)
OWNERS_TOPIC_B = (
    f"/subscriptions/{SUB_B}/resourceGroups/shared-rg/providers/Microsoft.EventGrid/systemTopics/ws-b-topic"
)
OWN_TOPIC_A = f"/subscriptions/{SUB_A}/resourceGroups/{ENV_GROUP}/providers/Microsoft.EventGrid/systemTopics/evgst-ws-a-abcdef"
PRINCIPAL_A, PRINCIPAL_B = "aaaaaaaa-0000-4000-8000-00000000000a", "bbbbbbbb-0000-4000-8000-00000000000b"
ENV = {"AZURE_ENV_NAME": "dev"}


def topic(topic_id: str, source: str, principal: str | None = None) -> dict[str, Any]:
    identity = {"type": "SystemAssigned", "principalId": principal} if principal else None
    return {"id": topic_id, "source": source, "identity": identity}


def _topic_lists(run: Run) -> list[str]:
    """The subscriptions whose system topics the hook listed, each with the one query the fake answers."""
    lists = [c for c in run.calls("az") if c[:3] == ["eventgrid", "system-topic", "list"]]
    for c in lists:
        assert c[c.index("--query") + 1] == TOPIC_QUERY and c[c.index("-o") + 1] == "tsv"
    return [c[c.index("--subscription") + 1] for c in lists]


def test_preprovision_adopts_the_topic_each_workspace_already_has(hook: Callable[..., Run]) -> None:
    # The source compares case-insensitively: Azure keeps the casing the topic was created with.
    azure = {
        "systemTopics": [
            topic(OWNERS_TOPIC_A, WS_A.upper(), PRINCIPAL_A),
            topic(OWNERS_TOPIC_B, WS_B, PRINCIPAL_B),
            topic(f"{OWNERS_TOPIC_A}-other", WS_A.replace("ws-a", "ws-z"), PRINCIPAL_A),
        ]
    }
    run = hook("preprovision", {**ENV, "AML_WORKSPACE_IDS": f"{WS_A},{WS_B}"}, azure=azure)
    assert run.returncode == 0, run.stderr
    assert _topic_lists(run) == [SUB_A, SUB_B]
    assert run.env["AML_OBS_ADOPTED_SYSTEM_TOPICS"] == (
        f"{WS_A}|{OWNERS_TOPIC_A}|{PRINCIPAL_A},{WS_B}|{OWNERS_TOPIC_B}|{PRINCIPAL_B}"
    )
    assert (
        f"adopting its existing system topic (only an event subscription of this environment is added to it): {OWNERS_TOPIC_A}"
        in run.stdout
    )
    # Nothing is changed on the topics.
    assert run.azure["systemTopics"] == azure["systemTopics"]
    assert [c[:3] for c in run.calls("az")] == [["eventgrid", "system-topic", "list"]] * 2


def test_preprovision_with_no_existing_topic_adopts_nothing(hook: Callable[..., Run]) -> None:
    run = hook(
        "preprovision",
        {**ENV, "AML_WORKSPACE_IDS": WS_A, "AML_OBS_ADOPTED_SYSTEM_TOPICS": f"{WS_A}|{OWNERS_TOPIC_A}|x"},
    )
    assert run.returncode == 0, run.stderr
    assert _topic_lists(run) == [SUB_A]
    # A topic adopted earlier and gone since (its environment went down) is no longer passed on:
    # the next deployment creates one of its own.
    assert run.env["AML_OBS_ADOPTED_SYSTEM_TOPICS"] == ""


def test_preprovision_does_not_adopt_the_environments_own_topic(hook: Callable[..., Run]) -> None:
    run = hook(
        "preprovision",
        {**ENV, "AML_WORKSPACE_IDS": WS_A},
        azure={"systemTopics": [topic(OWN_TOPIC_A.replace(ENV_GROUP, ENV_GROUP.upper()), WS_A, PRINCIPAL_A)]},
    )
    assert run.returncode == 0, run.stderr
    assert run.env["AML_OBS_ADOPTED_SYSTEM_TOPICS"] == ""
    assert "this environment's own" in run.stdout


def test_preprovision_without_read_permission_stops_and_says_what_is_needed(hook: Callable[..., Run]) -> None:
    run = hook(
        "preprovision",
        {**ENV, "AML_WORKSPACE_IDS": f"{WS_A},{WS_B}"},
        azure={"systemTopics": [topic(OWNERS_TOPIC_A, WS_A, PRINCIPAL_A)]},
        faults={"topic_list": [SUB_B]},
    )
    assert run.returncode != 0
    assert "AuthorizationFailed" in run.stderr
    assert (
        f"Could not list the Event Grid system topics of subscription {SUB_B} to find the one of {WS_B}"
        in run.stderr
    )
    assert "Microsoft.EventGrid/systemTopics/read" in run.stderr
    assert "AML_OBS_ADOPTED_SYSTEM_TOPICS" not in run.env


# A topic without identity: no identity at all, or the "None" type the service answers after the
# identity was turned off (Azure/azure-cli recordings/test_system_topic_identity.yaml).
@pytest.mark.parametrize(
    "identity", [None, {"type": "None", "principalId": None}], ids=["absent", "type-none"]
)
def test_preprovision_names_the_fix_for_a_topic_without_identity(
    hook: Callable[..., Run], identity: dict[str, Any] | None
) -> None:
    run = hook(
        "preprovision",
        {**ENV, "AML_WORKSPACE_IDS": WS_A},
        azure={"systemTopics": [{**topic(OWNERS_TOPIC_A, WS_A), "identity": identity}]},
    )
    assert run.returncode != 0
    assert f"has no system-assigned managed identity: {OWNERS_TOPIC_A}" in run.stderr
    assert (
        f"az eventgrid system-topic update --identity systemassigned --subscription {SUB_A} "
        "--resource-group ml-events --name ws-a-events"
    ) in run.stderr
    assert "AML_OBS_ADOPTED_SYSTEM_TOPICS" not in run.env


def test_preprovision_without_az_stops_when_workspaces_are_given(hook: Callable[..., Run]) -> None:
    run = hook("preprovision", {**ENV, "AML_WORKSPACE_IDS": WS_A}, with_az=False)
    assert run.returncode != 0
    assert "The Azure CLI (az) is not installed" in run.stderr
    demo = hook("preprovision", dict(ENV), with_az=False)
    assert demo.returncode == 0, demo.stderr


def test_the_detach_provision_keeps_the_topics_adopted_at_the_last_provision(
    hook: Callable[..., Run],
) -> None:
    adopted = f"{WS_A}|{OWNERS_TOPIC_A}|{PRINCIPAL_A}"
    run = hook(
        "preprovision",
        {
            **ENV,
            "AML_WORKSPACE_IDS": WS_A,
            "AML_OBS_DETACH": "true",
            "AML_OBS_ADOPTED_SYSTEM_TOPICS": adopted,
        },
        extra_env={"AML_OBS_IN_PREDOWN": "1"},
        faults={"topic_list": [SUB_A]},
    )
    assert run.returncode == 0, run.stderr
    assert not run.calls("az")
    assert run.env["AML_OBS_ADOPTED_SYSTEM_TOPICS"] == adopted


OUR_SUBSCRIPTION = f"{OWNERS_TOPIC_A}/eventSubscriptions/aml-run-events-dev-x1y2z3"
OWNERS_SUBSCRIPTION = f"{OWNERS_TOPIC_A}/eventSubscriptions/to-logic-app"


def test_predown_keeps_the_event_subscriptions_on_adopted_topics_for_postdown(
    hook: Callable[..., Run],
) -> None:
    env = {**DEPLOYED, "AML_WORKSPACE_IDS": WS_A, "AML_OBS_ADOPTED_EVENT_SUBSCRIPTION_IDS": OUR_SUBSCRIPTION}
    run = hook("predown", env)
    assert run.returncode == 0, run.stderr
    assert run.env["AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS"] == OUR_SUBSCRIPTION
    assert run.state["provisions"] == 1


def test_postdown_removes_only_our_subscription_from_an_adopted_topic(hook: Callable[..., Run]) -> None:
    azure = {
        "systemTopics": [topic(OWNERS_TOPIC_A, WS_A, PRINCIPAL_A)],
        "eventSubscriptions": [OWNERS_SUBSCRIPTION, OUR_SUBSCRIPTION],
    }
    run = hook("postdown", {"AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS": OUR_SUBSCRIPTION}, azure=azure)
    assert run.returncode == 0, run.stderr
    assert run.azure["systemTopics"] == azure["systemTopics"]
    assert run.azure["eventSubscriptions"] == [OWNERS_SUBSCRIPTION]
    (delete,) = [
        c for c in run.calls("az") if c[:4] == ["eventgrid", "system-topic", "event-subscription", "delete"]
    ]
    assert "--yes" in delete
    assert run.env["AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS"] == ""
    _reset(run)


def test_postdown_counts_a_subscription_whose_topic_is_gone_as_removed(hook: Callable[..., Run]) -> None:
    run = hook("postdown", {"AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS": OUR_SUBSCRIPTION})
    assert run.returncode == 0, run.stderr
    assert "already gone (its topic is gone)" in run.stdout
    assert run.env["AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS"] == ""


def test_postdown_keeps_a_subscription_it_could_not_remove(hook: Callable[..., Run]) -> None:
    azure = {
        "systemTopics": [topic(OWNERS_TOPIC_A, WS_A, PRINCIPAL_A)],
        "eventSubscriptions": [OUR_SUBSCRIPTION],
    }
    run = hook(
        "postdown",
        {"AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS": OUR_SUBSCRIPTION},
        azure=azure,
        faults={"event_subscription_delete": [OUR_SUBSCRIPTION]},
    )
    assert run.returncode != 0
    assert run.azure["eventSubscriptions"] == [OUR_SUBSCRIPTION]
    assert run.env["AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS"] == OUR_SUBSCRIPTION
    assert f"  {OUR_SUBSCRIPTION}" in run.stderr and "write access to that topic" in run.stderr


def test_postdown_without_az_prints_the_event_subscription_delete(hook: Callable[..., Run]) -> None:
    run = hook("postdown", {"AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS": OUR_SUBSCRIPTION}, with_az=False)
    assert run.returncode != 0
    assert (
        "az eventgrid system-topic event-subscription delete --yes --subscription "
        f"{SUB_A} --resource-group ml-events --system-topic-name ws-a-events --name aml-run-events-dev-x1y2z3"
    ) in run.stderr
    assert run.env["AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS"] == OUR_SUBSCRIPTION


# Two environments on one workspace: dev created the topic, staging adopted it.
DEV_TOPIC = OWN_TOPIC_A
DEV_SUBSCRIPTION = f"{DEV_TOPIC}/eventSubscriptions/aml-run-events"
STAGING_SUBSCRIPTION = f"{DEV_TOPIC}/eventSubscriptions/aml-run-events-staging-q1w2e3"
DEV_DEPLOYED = {**DEPLOYED, "AML_WORKSPACE_IDS": WS_A, "AML_OBS_SYSTEM_TOPIC_IDS": DEV_TOPIC}


def _two_environments() -> dict[str, list[Any]]:
    return {
        "systemTopics": [topic(DEV_TOPIC, WS_A, PRINCIPAL_A)],
        "eventSubscriptions": [DEV_SUBSCRIPTION, STAGING_SUBSCRIPTION],
    }


def test_a_second_environment_adopts_the_first_ones_topic_and_tears_down_alone(
    hook: Callable[..., Run],
) -> None:
    staging = {"AZURE_ENV_NAME": "staging", "AML_WORKSPACE_IDS": WS_A}
    up = hook("preprovision", staging, azure={"systemTopics": [topic(DEV_TOPIC, WS_A, PRINCIPAL_A)]})
    assert up.returncode == 0, up.stderr
    assert up.env["AML_OBS_ADOPTED_SYSTEM_TOPICS"] == f"{WS_A}|{DEV_TOPIC}|{PRINCIPAL_A}"
    # After provisioning, staging's outputs name its subscription on dev's topic; dev's topic and
    # subscription exist. Staging goes down: predown, then postdown.
    up.state["env"].update(
        {
            **DEPLOYED,
            "AZURE_RESOURCE_GROUP": "rg-staging",
            "AML_OBS_ADOPTED_EVENT_SUBSCRIPTION_IDS": STAGING_SUBSCRIPTION,
        }
    )
    up.state["azure"] = {**up.state["azure"], **_two_environments()}
    down = hook("predown", state=up.state)
    assert down.returncode == 0, down.stderr
    _azd_down(down.state)
    after = hook("postdown", state=down.state)
    assert after.returncode == 0, after.stderr
    assert after.azure["systemTopics"] == [topic(DEV_TOPIC, WS_A, PRINCIPAL_A)]
    assert after.azure["eventSubscriptions"] == [DEV_SUBSCRIPTION]


def test_the_first_environment_does_not_go_down_under_the_second_one(hook: Callable[..., Run]) -> None:
    run = hook("predown", dict(DEV_DEPLOYED), azure=_two_environments())
    assert run.returncode != 0
    assert f"  {DEV_TOPIC}: aml-run-events-staging-q1w2e3" in run.stderr
    assert "AML_OBS_DELETE_SHARED_TOPICS=true" in run.stderr
    assert run.state["provisions"] == 0
    assert "AML_OBS_DETACH" not in run.env
    listed = [
        c for c in run.calls("az") if c[:4] == ["eventgrid", "system-topic", "event-subscription", "list"]
    ]
    assert [c[c.index("--system-topic-name") + 1] for c in listed] == ["evgst-ws-a-abcdef"]
    assert [c for c in run.calls("az") if "delete" in c] == []


def test_the_first_environment_goes_down_when_told_to(hook: Callable[..., Run]) -> None:
    run = hook("predown", {**DEV_DEPLOYED, "AML_OBS_DELETE_SHARED_TOPICS": "true"}, azure=_two_environments())
    assert run.returncode == 0, run.stderr
    assert "going ahead" in run.stderr
    assert run.state["provisions"] == 1


def test_the_first_environment_alone_on_its_topic_goes_down(hook: Callable[..., Run]) -> None:
    azure = {"systemTopics": [topic(DEV_TOPIC, WS_A, PRINCIPAL_A)], "eventSubscriptions": [DEV_SUBSCRIPTION]}
    run = hook("predown", dict(DEV_DEPLOYED), azure=azure)
    assert run.returncode == 0, run.stderr
    assert run.state["provisions"] == 1


def test_predown_goes_on_when_the_topic_cannot_be_checked(hook: Callable[..., Run]) -> None:
    run = hook(
        "predown",
        dict(DEV_DEPLOYED),
        azure=_two_environments(),
        faults={"event_subscription_list": [DEV_TOPIC]},
    )
    assert run.returncode == 0, run.stderr
    assert f"Could not list the event subscriptions of {DEV_TOPIC}" in run.stderr
