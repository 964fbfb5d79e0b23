"""azd's JSON schema of azure.yaml, pinned to one commit of Azure/azure-dev, and where the suite finds it.

The schema is azd's own (schemas/v1.0/azure.yaml.json of Azure/azure-dev, MIT License, Copyright
Microsoft Corporation), pinned here by commit and SHA-256: the version below is the one last changed
by 48865ed5ca1601e0d003198dcc04f1255f187094 ("feat(foundry): support infrastructure provisioning
layers", 2026-08-10) and still current at ae35809f496491989273d0edefdeb70f245f399b (2026-08-21).
It is not copied into this repository: it is data of azd's repository, fetched once and checked.

Found, in this order:
1. ``$AMLOBS_AZD_SCHEMA`` (a file);
2. ``schemas/azd/azure.yaml.json`` under ``$SHARED_DIR`` (default ``../shared``, this project's own
   CI keeps one there);
3. the cache ``${XDG_CACHE_HOME:-~/.cache}/amlobs/azd-schema/<commit>/azure.yaml.json``, which
   ``python -m tests.azd_schema --fetch`` (run by scripts/test.sh when 1 and 2 have none) fills from
   the pinned commit, refusing a file whose SHA-256 is not the pinned one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

COMMIT = "48865ed5ca1601e0d003198dcc04f1255f187094"
SHA256 = "ff8d40d0d84c4b5ab1a934e61553c8ce985a05da63e63c59f6abcd58ab73b998"
SOURCE_URL = f"https://raw.githubusercontent.com/Azure/azure-dev/{COMMIT}/schemas/v1.0/azure.yaml.json"
# The schema's own $id: the prefix its $refs to the extension schemas start with.
REF_PREFIX = "https://raw.githubusercontent.com/Azure/azure-dev/main/"

HOW_TO_GET = (
    "run `sh scripts/test.sh` once with GitHub reachable (it fetches azd's schema at the pinned commit, "
    "`python -m tests.azd_schema --fetch`), or set $AMLOBS_AZD_SCHEMA to a copy of "
    f"Azure/azure-dev@{COMMIT[:12]}'s schemas/v1.0/azure.yaml.json"
)


def cache_file(environ: Mapping[str, str] = os.environ) -> Path:
    cache = environ.get("XDG_CACHE_HOME", "").strip() or str(
        Path(environ.get("HOME") or Path.home()) / ".cache"
    )
    return Path(cache) / "amlobs" / "azd-schema" / COMMIT / "azure.yaml.json"


def candidates(environ: Mapping[str, str] = os.environ) -> list[Path]:
    shared = Path(environ.get("SHARED_DIR", "").strip() or ROOT.parent / "shared")
    configured = environ.get("AMLOBS_AZD_SCHEMA", "").strip()
    return [
        *([Path(configured)] if configured else []),
        shared / "schemas" / "azd" / "azure.yaml.json",
        cache_file(environ),
    ]


def locate(environ: Mapping[str, str] = os.environ) -> Path | None:
    return next((path for path in candidates(environ) if path.is_file()), None)


def load(path: Path) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def fetch(environ: Mapping[str, str] = os.environ, *, timeout: float = 30.0) -> Path:
    """Download the pinned schema into the cache; a body of another SHA-256 is refused."""
    target = cache_file(environ)
    with urllib.request.urlopen(SOURCE_URL, timeout=timeout) as response:
        body: bytes = response.read()
    digest = hashlib.sha256(body).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{SOURCE_URL} has SHA-256 {digest}, not the pinned {SHA256}: not stored")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(body)
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.azd_schema", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fetch", action="store_true", help="download the pinned schema when none is found")
    args = parser.parse_args(argv)
    found = locate()
    if found is None and args.fetch:
        try:
            found = fetch()
        except (OSError, ValueError) as error:
            print(f"    could not fetch azd's schema: {error}", file=sys.stderr)
            print(f"    the azure.yaml schema test will say so; to fix: {HOW_TO_GET}", file=sys.stderr)
            return 1
    if found is None:
        print(f"    no azd schema found ({', '.join(map(str, candidates()))}): {HOW_TO_GET}", file=sys.stderr)
        return 1
    print(f"    azd's azure.yaml schema: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
