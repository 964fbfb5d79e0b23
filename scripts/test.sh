#!/usr/bin/env sh
# The one test command (README): installs what the tests need, then lint, type check and the suite.
# Usage: scripts/test.sh [pytest args...]
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$python" -m venv .venv
fi
echo "==> installing Python dependencies"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# Checkov (tests/test_checkov.py) in a virtualenv of its own: its pinned dependencies conflict with
# the suite's.
if [ ! -x .venv-checkov/bin/python ]; then
  echo "==> creating .venv-checkov"
  "$python" -m venv .venv-checkov
fi
echo "==> installing Checkov (.venv-checkov)"
.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt

echo "==> installing Azurite (npm)"
(cd tests/tools && npm ci --silent --no-audit --no-fund)

if ! command -v shellcheck >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing shellcheck (apt)"
    (apt-get install -y -qq shellcheck >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq shellcheck >/dev/null; })
  else
    echo "shellcheck is not installed and apt-get is not usable: the hook-script lint test will say so" >&2
  fi
fi

echo "==> ruff (lint + format check)"
.venv/bin/ruff check src tests bench scripts
.venv/bin/ruff format --check src tests bench scripts
echo "==> mypy --strict src"
.venv/bin/mypy
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
