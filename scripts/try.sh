#!/usr/bin/env sh
# Try it without Azure: one SDK v2 pipeline run through the real function (function_app) against the
# project's local stand-ins (AML fake, Azurite, ingestion sink); prints the records it produced and
# draws the trace and the dashboard from them. Nothing is sent anywhere but 127.0.0.1.
# Run `sh scripts/test.sh` once first (it creates .venv and installs Azurite).
# Usage: sh scripts/try.sh [--no-pictures] [--out DIR]   (details: docs/try-it.md)
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
python=${AMLOBS_PYTHON:-"$root/.venv/bin/python"}
if [ ! -x "$python" ]; then
  echo "try: $python not found: run 'sh scripts/test.sh' once first (it creates .venv and installs Azurite)" >&2
  exit 2
fi
exec "$python" "$root/scripts/try_it.py" "$@"
