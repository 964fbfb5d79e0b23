"""The README's machine-checkable claims stay true: the settings and their defaults, the paths it names,
the environment values of its troubleshooting table, the truncation lengths, the workspace limit, the
cost sum and the Bicep version."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

from amlobs.run_facts import error_facts, script
from amlobs.settings import Settings
from tests.tools_on_path import BICEP_VERSION, find_tool

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
INFRA_DOC = (ROOT / "docs" / "infra.md").read_text(encoding="utf-8")

# Resource Manager's limit on the resources of one template, copies included (Microsoft Learn,
# "Resolve errors for job size exceeded"; azure-resource-manager/templates/best-practices: 800 resources).
ARM_RESOURCES_PER_TEMPLATE = 800


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = re.search(r"^#{1,4} ", text[start + len(heading) :], re.M)
    return text[start : start + len(heading) + following.start()] if following else text[start:]


def _table_rows(section: str) -> list[list[str]]:
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]


def test_the_azd_env_values_and_defaults_are_the_templates() -> None:
    parameters = (ROOT / "infra" / "main.parameters.json").read_text()
    template_defaults = dict(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)=([^}]*)\}", parameters))
    rows = _table_rows(_section(README, "### Parameters (azd env values)"))
    documented = {row[0].strip("`"): row[1] for row in rows if re.fullmatch(r"`[A-Z_]+`", row[0])}
    assert documented, "the README's azd env table is gone"
    for name, default in documented.items():
        assert name in template_defaults, f"{name} is not an azd env value of infra/main.parameters.json"
        expected = template_defaults[name]
        said = "" if default in ("empty", "derived") else default.strip("`")
        assert said == expected, f"{name}: README says {default}, the template {expected!r}"


def test_the_app_settings_and_defaults_are_the_codes() -> None:
    defaults = Settings.from_env({})
    rows = _table_rows(_section(README, "## Settings"))
    checked = 0
    for row in rows:
        name = row[0].strip("`")
        said = re.search(r"default `?([^`,;( ]+)`?", row[1])
        if not name.startswith("AML_OBS_") or said is None:
            continue
        actual = getattr(defaults, name.removeprefix("AML_OBS_").lower())
        assert str(actual).removesuffix(".0") == said.group(1), (
            f"{name}: README {said.group(1)}, code {actual}"
        )
        checked += 1
    assert checked >= 8


def test_every_path_the_readme_names_exists() -> None:
    named = set(
        re.findall(r"`((?:amlobs|scripts|docs|infra|tests|bench|src|\.github|\.ci)/[\w./-]*\w)`", README)
    )
    named |= set(
        re.findall(r"\]\(((?:docs|infra|scripts|tests|bench|\.github|\.devcontainer)/[\w./-]+)", README)
    )
    assert len(named) > 20
    missing = sorted(p for p in named if not (ROOT / p).exists() and not (ROOT / "src" / p).exists())
    assert not missing, f"the README names paths that do not exist: {missing}"


def _read_by_the_project(name: str) -> bool:
    sources = [*(ROOT / "scripts").glob("*.*"), *(ROOT / "src").rglob("*.py"), ROOT / "infra" / "main.bicep"]
    prefix = name.removesuffix("*")
    return any(prefix in path.read_text(encoding="utf-8") for path in sources)


def test_the_troubleshooting_tables_env_values_are_the_ones_the_code_and_hooks_read() -> None:
    table = _section(README, "### Troubleshooting")
    names = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]*\*?)[`= ]", table))
    assert len(names) >= 5
    assert not [n for n in names if not _read_by_the_project(n)]
    for hook, name in re.findall(r"the (\w+) hook deletes each id of `([A-Z_]+)`", table):
        for suffix in (".sh", ".ps1"):
            assert name in (ROOT / "scripts" / f"{hook}{suffix}").read_text(), (
                f"{hook}{suffix} does not read {name}"
            )


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_truncation_lengths_are_the_codes() -> None:
    said = re.search(r"\| ([\d,]+) characters each, and `…` after a cut one \(([\d,]+) in all\) \|", README)
    assert said, "the README no longer gives the error message cut the way this test reads it"
    cut, total = said.groups()
    message = "x" * 10_000
    facts = error_facts({"error": {"code": "UserError", "message": message}})
    assert len(facts["error_message"]) == _number(total)
    assert facts["error_message"].startswith("x" * _number(cut)) and facts["error_message"].endswith("…")
    (at_most,) = re.findall(
        r"runDefinition\.script` \(else `command`, else run `scriptName`\); at most ([\d,]+) characters",
        README,
    )
    assert len(script({"script": message}, None) or "") == _number(at_most)


def test_the_workspace_limit_is_what_the_template_shape_gives() -> None:
    found = re.search(
        r"Up to about (\d+) workspaces per environment today\*\*.*?deploys (\d+) module deployments per workspace.*?"
        r"at most (\d+) resources in a template",
        README,
        re.S,
    )
    assert found, "the README no longer states the workspace limit the way this test reads it"
    stated, per_workspace, limit = map(int, found.groups())
    assert limit == ARM_RESOURCES_PER_TEMPLATE
    bicep = find_tool("bicep", env_var="BICEP", how_to_install="the README's workspace limit was not checked")
    built = subprocess.run(
        [bicep, "build", str(ROOT / "infra" / "main.bicep"), "--stdout"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    resources: dict[str, Any] = json.loads(built.stdout)["resources"]
    deployed = [r for r in resources.values() if not r.get("existing")]
    looped = [r for r in deployed if r.get("copy", {}).get("count") == "[length(variables('workspaces'))]"]
    assert len(looped) == per_workspace
    # One subscription (no other-subscription groups), every other resource of the main template once.
    fixed = len([r for r in deployed if "copy" not in r])
    assert abs((limit - fixed) // per_workspace - stated) <= stated // 10


def _dollars(cell: str) -> tuple[float, float]:
    amounts = [float(a) for a in re.findall(r"\$(\d+(?:\.\d+)?)", cell)]
    return (amounts[0], amounts[-1]) if amounts else (0.0, 0.0)


def test_the_cost_of_a_quiet_workspace_is_the_sum_of_its_breakdown() -> None:
    rows = _table_rows(_section(INFRA_DOC, "## Cost of a quiet workspace"))
    low = sum(_dollars(row[-1])[0] for row in rows)
    high = sum(_dollars(row[-1])[1] for row in rows)
    sum_said = re.search(r"\(the rows above: \$([\d.]+) – \$([\d.]+)\)", INFRA_DOC)
    assert sum_said, "docs/infra.md no longer states the breakdown's sum the way this test reads it"
    stated_low, stated_high = (float(x) for x in sum_said.groups())
    assert (round(low, 2), round(high, 2)) == (stated_low, stated_high)
    summary = f"**${math.floor(low)}–{math.ceil(high)} a month**"
    assert summary in INFRA_DOC and summary in README, summary
    rules = re.search(r"\| Log search alert rules \| (\d+) rules", INFRA_DOC)
    demo = json.loads((ROOT / "infra" / "scenarios" / "demo.snapshot.json").read_text())
    deployed_rules = [
        r for r in demo["predictedResources"] if r["type"] == "Microsoft.Insights/scheduledQueryRules"
    ]
    assert rules and int(rules.group(1)) == len(deployed_rules)
    assert f"the {len(deployed_rules)} log search alert rules dominate" in README


def test_the_bicep_version_named_is_the_one_the_snapshots_need() -> None:
    assert f"**{BICEP_VERSION} exactly**" in README
    assert f"`az bicep install --version v{BICEP_VERSION}`" in README
