#!/usr/bin/env sh
# Telemetry volume per pipeline run, before and after the pipeline traces (not part of the test suite).
# Usage: bench/traces.sh [--pipelines N] [--steps N] [--before COMMIT]. See docs/bench.md.
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
cd "$root"
if [ ! -x .venv/bin/python ]; then
  echo "bench: .venv is missing: run scripts/test.sh first (it creates it)" >&2
  exit 1
fi
exec .venv/bin/python bench/traces.py "$@"
