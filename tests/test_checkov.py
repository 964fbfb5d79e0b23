"""Checkov, the IaC security scanner, on every resource the template deploys, with every finding fixed
or explained in one place.

Checkov's Bicep parser does not read this template (`import ... from` and `@export()` are beyond it),
and the compiled ARM template is languageVersion 2.0 with every resource inside nested deployments,
where Checkov's ARM framework sees none. So it scans the resources Resource Manager's own template
engine predicts (`bicep snapshot`, the committed infra/scenarios/*.snapshot.json), each scenario
written as a flat ARM template: the same types, API versions and properties the deployment sends.

Every failed check must be listed, with its resource type and reason, in the exceptions table of
docs/infra.md ("Security baseline: the exceptions"); a finding not listed fails the suite, and so
does a listed exception nothing needs any more. Checkov comes from requirements-checkov.txt, in its own
.venv-checkov (scripts/test.sh).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest

from tests import bicep_snapshots as snapshots
from tests.tools_on_path import tools_required

ROOT = snapshots.ROOT
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
DOCS = ROOT / "docs" / "infra.md"
# At least this share of the predicted resources must be parsed by the scanner.
MIN_SEEN = 0.90
_ROW = re.compile(r"^\|\s*`(CKV2?_AZURE_\d+)`\s*\|\s*`([^`]+)`\s*\|\s*(.+?)\s*\|$")


def exceptions() -> dict[tuple[str, str], str]:
    """(check id, resource type) -> reason, from the exceptions table of docs/infra.md."""
    found = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if match := _ROW.match(line.strip()):
            check, resource_type, reason = match.groups()
            for one_type in resource_type.split(", "):
                found[(check, one_type)] = reason
    return found


def flat_template(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The predicted resources as one flat ARM template (no nested deployments)."""
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [{k: v for k, v in r.items() if k != "id"} for r in snapshot["predictedResources"]],
    }


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not CHECKOV.exists():
        message = (
            f"{CHECKOV} not found: run `sh scripts/test.sh` once (it installs Checkov into .venv-checkov)"
        )
        if tools_required():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    directory = tmp_path_factory.mktemp("checkov")
    predicted = 0
    for param_file in snapshots.scenario_files():
        snapshot = snapshots.load_snapshot(snapshots.snapshot_file(param_file))
        predicted += len(snapshot["predictedResources"])
        name = param_file.name.removesuffix(".bicepparam")
        (directory / f"{name}.json").write_text(json.dumps(flat_template(snapshot), indent=1))
    # --skip-download: no guidelines or policies from Prisma Cloud. The proxy variables point at a
    # closed loopback port, so anything Checkov would still try to fetch fails here, never leaves.
    dead_end = "http://127.0.0.1:9"
    env = {**os.environ, "HTTPS_PROXY": dead_end, "HTTP_PROXY": dead_end, "NO_PROXY": ""}
    completed = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(directory),
            "--framework",
            "arm",
            "-o",
            "json",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=env,
    )
    # 0: nothing failed, 1: checks failed; anything else is Checkov itself failing.
    assert completed.returncode in (0, 1), completed.stdout[-2000:] + completed.stderr[-2000:]
    report: dict[str, Any] = json.loads(completed.stdout)
    report["predicted"] = predicted
    return report


def _resource_type(resource: str) -> str:
    """`Microsoft.Storage/storageAccounts` of Checkov's `<type>.<name>` (the namespace has a dot)."""
    namespace, rest = resource.split("/", 1)
    return f"{namespace}/{rest.split('.', 1)[0]}"


def _failures(scan: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (check["check_id"], _resource_type(check["resource"])) for check in scan["results"]["failed_checks"]
    }


def test_checkov_sees_at_least_90_percent_of_the_predicted_resources(scan: dict[str, Any]) -> None:
    summary = scan["summary"]
    assert summary["parsing_errors"] == 0
    seen = summary["resource_count"] / scan["predicted"]
    assert seen >= MIN_SEEN, f"Checkov parsed {summary['resource_count']} of {scan['predicted']} resources"
    assert summary["passed"] > 0


def test_every_finding_is_fixed_or_explained_in_the_exceptions_table(scan: dict[str, Any]) -> None:
    unexplained = sorted(_failures(scan) - set(exceptions()))
    assert not unexplained, (
        "Checkov findings without a reason in docs/infra.md (fix them, or add a row to the exceptions "
        f"table with the reason): {unexplained}"
    )


def test_every_exception_is_still_needed(scan: dict[str, Any]) -> None:
    stale = sorted(set(exceptions()) - _failures(scan))
    assert not stale, f"exceptions in docs/infra.md that no finding needs any more: {stale}"


def test_the_exceptions_table_is_there_and_gives_reasons() -> None:
    table = exceptions()
    assert len(table) >= 10
    assert all(len(reason) > 20 for reason in table.values())
