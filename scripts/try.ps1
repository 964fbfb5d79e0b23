# Try it without Azure: one SDK v2 pipeline run through the real function (function_app) against the
# project's local stand-ins (AML fake, Azurite, ingestion sink); prints the records it produced and
# draws the trace and the dashboard from them. Nothing is sent anywhere but 127.0.0.1.
# Run `sh scripts/test.sh` once first (it creates .venv and installs Azurite).
# Usage: pwsh scripts/try.ps1 [--no-pictures] [--out DIR]   (details: docs/try-it.md)
$ErrorActionPreference = 'Stop'
$root = Split-Path -Parent $PSScriptRoot
$python = $env:AMLOBS_PYTHON
if (-not $python) {
    $python = if ($IsWindows) { Join-Path $root '.venv/Scripts/python.exe' } else { Join-Path $root '.venv/bin/python' }
}
if (-not (Test-Path -LiteralPath $python -PathType Leaf)) {
    [Console]::Error.WriteLine("try: $python not found: run 'sh scripts/test.sh' once first (it creates .venv and installs Azurite)")
    exit 2
}
& $python (Join-Path $root 'scripts/try_it.py') @args
exit $LASTEXITCODE
