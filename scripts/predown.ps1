#!/usr/bin/env pwsh
# azd predown hook (Windows): see predown.sh. Provisions once with AML_OBS_DETACH=true so that
# `azd down` only deletes this environment's resource group, and keeps the ids of what lives outside
# it for the postdown hook.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

function Get-AzdValue([string]$Name) {
    $v = (& azd env get-value $Name 2>$null)
    if ($LASTEXITCODE -ne 0) { return '' }
    return "$v".Trim()
}

& azd env set AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS (Get-AzdValue 'AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS')
& azd env set AML_OBS_CLEANUP_ROLE_DEFINITION_IDS (Get-AzdValue 'AML_OBS_READER_ROLE_DEFINITION_IDS')
& azd env set AML_OBS_CLEANUP_RESOURCE_GROUP_IDS (Get-AzdValue 'AML_OBS_FOREIGN_RESOURCE_GROUP_IDS')

$ids = Get-AzdValue 'AML_WORKSPACE_IDS'
if (-not $ids) { $ids = "$env:AML_WORKSPACE_IDS" }
$ids = $ids -replace '[ ,]', ''
if (-not $ids) {
    Write-Host "Only the demo workspace is observed: everything is in this environment's resource group."
    exit 0
}

Write-Host "Detaching the observed workspaces so that 'azd down' only deletes this environment's resource group."
& azd env set AML_OBS_DETACH true
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
$env:AML_OBS_IN_PREDOWN = '1'
try {
    & azd provision --no-prompt
    exit $LASTEXITCODE
} finally {
    Remove-Item Env:AML_OBS_IN_PREDOWN -ErrorAction SilentlyContinue
}
