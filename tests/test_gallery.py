"""What the azd template gallery expects of a repository, and that the front door's links lead somewhere.

The gallery's checker (microsoft/template-validation-action, src/rules.json) looks for LICENSE,
SECURITY.md, CONTRIBUTING.md, CODE_OF_CONDUCT.md, an issue template, azure.yaml and the README
sections `## Features`, `## Getting Started`, `## Guidance`, `## Resources`; its definition of done
(Azure-Samples/azd-template-artifacts, docs/development-guidelines/definition-of-done.md) adds a dev
container that installs azd.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of every ATX heading outside fenced code blocks."""
    headings, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"(#{1,6}) (.+)", line)):
            headings.append((len(match.group(1)), match.group(2).strip()))
    return headings


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for _, text in _headings(markdown):
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_the_repository_has_what_the_gallery_checks_for() -> None:
    for name in ("LICENSE", "SECURITY.md", "CONTRIBUTING.md", "CODE_OF_CONDUCT.md", "azure.yaml"):
        assert (ROOT / name).is_file(), name
    assert list((ROOT / ".github" / "ISSUE_TEMPLATE").glob("*.md"))


def test_the_license_is_mit_for_the_projects_contributors() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} AML run observability contributors$", text, re.MULTILINE)
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_security_policy_asks_for_private_reports_and_does_not_claim_to_be_microsofts() -> None:
    text = (ROOT / "SECURITY.md").read_text()
    assert "do not report security vulnerabilities through public GitHub issues" in text
    assert "Report a vulnerability" in text  # GitHub's private vulnerability reporting
    assert "not a Microsoft product" in text
    # The Microsoft template's ownership claim must not have been carried over.
    assert "Microsoft takes the security of our software" not in text
    assert "Microsoft-owned repository" not in text


def _devcontainer() -> dict[str, Any]:
    loaded = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_dev_container_has_python_3_11_azd_the_azure_cli_with_bicep_pwsh_and_node() -> None:
    config = _devcontainer()
    assert re.fullmatch(r"mcr\.microsoft\.com/devcontainers/python:(\d+-)?3\.11(-\w+)?", config["image"])
    features = config["features"]
    # Feature ids as published: Azure/azure-dev ext/devcontainer/src/azd/README.md and devcontainers/features
    # src/{azure-cli,powershell,node}/devcontainer-feature.json (installBicep is azure-cli's option).
    assert "ghcr.io/azure/azure-dev/azd:latest" in features
    assert features["ghcr.io/devcontainers/features/azure-cli:1"]["installBicep"] is True
    assert "ghcr.io/devcontainers/features/powershell:1" in features
    assert features["ghcr.io/devcontainers/features/node:1"]["version"] == "20"
    # It ends ready to test: the README's test command prepares .venv and Azurite.
    assert "sh scripts/test.sh" in config["postCreateCommand"]


def test_readme_sections_follow_the_gallery_order() -> None:
    top = [text for level, text in _headings(README.read_text()) if level == 2]
    gallery = ["Features", "Getting Started", "Guidance", "Resources", "Contributing", "Security", "License"]
    assert [t for t in top if t in gallery] == gallery
    assert top[0] == "Features" and top[-3:] == ["Contributing", "Security", "License"]
    getting_started = _section(README.read_text(), "## Getting Started")
    assert [text for level, text in _headings(getting_started) if level == 3][:2] == [
        "Prerequisites",
        "Quickstart",
    ]


def _section(markdown: str, heading: str) -> str:
    start = markdown.index(f"\n{heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def test_prerequisites_name_every_tool_the_template_and_its_tests_use() -> None:
    prerequisites = _section(README.read_text(), "### Prerequisites")
    for tool in ("azd", "1.24.0", "Azure CLI", "Bicep", "PowerShell 7", "Python 3.11", "Node.js", "Owner"):
        assert tool in prerequisites, tool


@pytest.mark.parametrize(
    "document",
    [
        "README.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "docs/infra.md",
        "docs/dashboard.md",
        "docs/bench.md",
        "docs/try-it.md",
    ],
)
def test_relative_links_lead_to_files_and_headings_that_exist(document: str) -> None:
    path = ROOT / document
    text = path.read_text()
    for target in re.findall(r"\]\((?!https?://|mailto:)([^)\s]+)\)", text):
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{document}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked.read_text()), f"{document}: {target}"
