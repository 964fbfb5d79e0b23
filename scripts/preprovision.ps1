#!/usr/bin/env pwsh
# azd preprovision hook (Windows): see preprovision.sh, which this script mirrors step for step.
# Rejects a malformed AML_WORKSPACE_IDS and re-attaches the workspaces if an `azd down` was
# cancelled after its predown hook.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

function Write-Stderr([string]$Message) { [Console]::Error.WriteLine($Message) }
# Native commands run with 'Continue': under 'Stop', Windows PowerShell 5.1 (azd's fallback when
# pwsh is missing) turns a redirected stderr line into a terminating error.
function Get-AzdValue([string]$Name) {
    $ErrorActionPreference = 'Continue'
    $out = & azd env get-value $Name 2>$null
    if ($LASTEXITCODE -ne 0) { return $null }
    return (@($out) -join '').Trim()
}

$detach = Get-AzdValue 'AML_OBS_DETACH'
if ($detach -eq 'true' -and $env:AML_OBS_IN_PREDOWN -ne '1') {
    Write-Host "AML_OBS_DETACH was left on by an interrupted 'azd down': observing the workspaces again."
    & azd env set 'AML_OBS_DETACH=false'
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}

# CI passes it as a process variable rather than an azd env value: accept either.
$ids = Get-AzdValue 'AML_WORKSPACE_IDS'
if ($null -eq $ids) { $ids = "$env:AML_WORKSPACE_IDS" }
$entries = @($ids.Split(',') | ForEach-Object { $_.Replace(' ', '') } | Where-Object { $_ })
if ($entries.Count -eq 0) {
    Write-Host 'AML_WORKSPACE_IDS is empty: a demo workspace will be created and observed.'
    exit 0
}

$pattern = '^/subscriptions/[0-9A-Fa-f-]{36}/resourceGroups/[-A-Za-z0-9._()]+/providers/Microsoft\.MachineLearningServices/workspaces/[-A-Za-z0-9_]+$'
$bad = $false
foreach ($id in $entries) {
    if ($id -imatch $pattern) {
        Write-Host "Observing workspace: $id"
    } else {
        Write-Stderr "AML_WORKSPACE_IDS entry is not an AML workspace resource id: '$id'"
        $bad = $true
    }
}
if ($bad) {
    Write-Stderr 'Expected /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.MachineLearningServices/workspaces/<name>, comma-separated.'
    exit 1
}
