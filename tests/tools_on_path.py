"""Where the suite finds the external tools it runs for real (the Bicep CLI, PowerShell, shellcheck).

A user's machine may lack them: the test then skips and says how to get the tool. CI must not
silently skip: `.ci/run` sets ``AMLOBS_REQUIRE_TOOLS=1`` and a missing tool fails the test instead.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_TOOLS_ENV = "AMLOBS_REQUIRE_TOOLS"


def tools_required() -> bool:
    return os.environ.get(REQUIRE_TOOLS_ENV, "").strip().lower() in ("1", "true", "yes")


def find_tool(name: str, *, env_var: str | None = None, how_to_install: str) -> str:
    """Path of ``name`` from PATH, else from ``$env_var``; skip (or fail in CI) when neither has it."""
    found = shutil.which(name)
    if found is None and env_var:
        candidate = os.environ.get(env_var, "").strip()
        if candidate and (resolved := shutil.which(candidate)):
            found = resolved
    if found is not None:
        return found
    where = f"not on PATH{f' and ${env_var} is not set' if env_var else ''}"
    message = f"{name} {where}: {how_to_install}"
    if tools_required():
        pytest.fail(f"{message} ({REQUIRE_TOOLS_ENV} is set: a missing tool is a failure)", pytrace=False)
    pytest.skip(message)
