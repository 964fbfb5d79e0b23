#!/usr/bin/env pwsh
# azd preprovision hook (Windows): see preprovision.sh. Rejects a malformed AML_WORKSPACE_IDS and
# re-attaches the workspaces if an `azd down` was cancelled after its predown hook.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$detach = (& azd env get-value AML_OBS_DETACH 2>$null)
if ($LASTEXITCODE -eq 0 -and "$detach".Trim() -eq 'true' -and $env:AML_OBS_IN_PREDOWN -ne '1') {
    Write-Host "AML_OBS_DETACH was left on by an interrupted 'azd down': observing the workspaces again."
    & azd env set AML_OBS_DETACH false
}

$ids = (& azd env get-value AML_WORKSPACE_IDS 2>$null)
if ($LASTEXITCODE -ne 0) { $ids = "$env:AML_WORKSPACE_IDS" }
$entries = @("$ids".Split(',') | ForEach-Object { $_.Trim() } | Where-Object { $_ })
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
        Write-Warning "AML_WORKSPACE_IDS entry is not an AML workspace resource id: '$id'"
        $bad = $true
    }
}
if ($bad) {
    Write-Error 'Expected /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.MachineLearningServices/workspaces/<name>, comma-separated.' -ErrorAction Continue
    exit 1
}
