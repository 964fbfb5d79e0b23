#!/usr/bin/env sh
# The chaos benchmark (not part of the test suite): Event Grid delivery simulator + faults. See README
# "Reliability". Usage: bench/chaos.sh [--keys N] [--seed N] [--only none|10%|20%|20%-b|20%-dl ...]
set -eu
root=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
if [ ! -x .venv/bin/python ]; then
  echo "bench: .venv is missing: run scripts/test.sh first (it creates it)" >&2
  exit 1
fi
exec .venv/bin/python bench/chaos.py "$@"
