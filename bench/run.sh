#!/usr/bin/env sh
# The benchmark (not part of the test suite): ours vs the 2020 sample's stack. See docs/bench.md.
# Usage: bench/run.sh [--rounds N] [--events N] [--first-runs N] [--skip-events] [--rebuild]
set -eu
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
if [ ! -x .venv/bin/python ]; then
  echo "bench: .venv is missing: run scripts/test.sh first (it creates it)" >&2
  exit 1
fi
exec .venv/bin/python bench/run.py "$@"
