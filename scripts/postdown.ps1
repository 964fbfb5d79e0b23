#!/usr/bin/env pwsh
# azd postdown hook (Windows): see postdown.sh. Removes what the environment created outside its
# resource group and resets the switches for the next `azd up`.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

function Get-AzdList([string]$Name) {
    $v = (& azd env get-value $Name 2>$null)
    if ($LASTEXITCODE -ne 0) { return @() }
    return @("$v".Split(',') | ForEach-Object { $_.Trim() } | Where-Object { $_ })
}
function Get-SubscriptionOf([string]$Id) { return $Id.Split('/')[2] }
function Get-LastSegment([string]$Id) { return $Id.Split('/')[-1] }

$assignments = Get-AzdList 'AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS'
$roles = Get-AzdList 'AML_OBS_CLEANUP_ROLE_DEFINITION_IDS'
$groups = Get-AzdList 'AML_OBS_CLEANUP_RESOURCE_GROUP_IDS'

& azd env set ENABLE_EVENT_SUBSCRIPTION false
& azd env set AML_OBS_DETACH false

if (($assignments.Count + $roles.Count + $groups.Count) -eq 0) { exit 0 }

if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Warning 'The Azure CLI (az) is not installed; remove these by hand:'
    foreach ($id in $assignments) { Write-Warning "  az role assignment delete --ids $id" }
    foreach ($id in $roles) { Write-Warning "  az role definition delete --name $(Get-LastSegment $id) --scope /subscriptions/$(Get-SubscriptionOf $id)" }
    foreach ($id in $groups) { Write-Warning "  az group delete --yes --subscription $(Get-SubscriptionOf $id) --name $(Get-LastSegment $id)" }
    exit 0
}

$failed = $false
# Assignments first: a role definition cannot be deleted while it is assigned.
foreach ($id in $assignments) {
    Write-Host "Removing role assignment $id"
    & az role assignment delete --ids $id --only-show-errors
    if ($LASTEXITCODE -ne 0) { $failed = $true }
}
foreach ($id in $roles) {
    Write-Host "Removing role definition $id"
    & az role definition delete --name (Get-LastSegment $id) --scope "/subscriptions/$(Get-SubscriptionOf $id)" --only-show-errors
    if ($LASTEXITCODE -ne 0) { $failed = $true }
}
foreach ($id in $groups) {
    Write-Host "Removing resource group $id"
    & az group delete --yes --no-wait --subscription (Get-SubscriptionOf $id) --name (Get-LastSegment $id) --only-show-errors
    if ($LASTEXITCODE -ne 0) { $failed = $true }
}

if ($failed) {
    Write-Error "Some resources outside the environment's resource group could not be removed (see above); their ids stay in AML_OBS_CLEANUP_* of this azd environment." -ErrorAction Continue
    exit 1
}
& azd env set AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS ''
& azd env set AML_OBS_CLEANUP_ROLE_DEFINITION_IDS ''
& azd env set AML_OBS_CLEANUP_RESOURCE_GROUP_IDS ''
