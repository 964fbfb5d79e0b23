#!/usr/bin/env pwsh
# azd postdown hook (Windows): see postdown.sh, which this script mirrors step for step. Removes what
# the environment created outside its resource group, resets the switches for the next `azd up`, and
# keeps (and fails on) whatever could not be removed, so that a retry can remove it.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$api = 'api-version=2022-04-01'
$attempts = if ($env:AML_OBS_VERIFY_ATTEMPTS) { [int]$env:AML_OBS_VERIFY_ATTEMPTS } else { 6 }
$delay = if ($env:AML_OBS_RETRY_DELAY_SECONDS) { [int]$env:AML_OBS_RETRY_DELAY_SECONDS } else { 10 }

function Write-Stderr([string]$Message) { [Console]::Error.WriteLine($Message) }

# Native commands run with 'Continue': under 'Stop', Windows PowerShell 5.1 (azd's fallback when
# pwsh is missing) turns a redirected stderr line into a terminating error.
function Invoke-Cli([string]$Exe, [string[]]$Arguments) {
    $ErrorActionPreference = 'Continue'
    $lines = @(& $Exe @Arguments 2>&1 | ForEach-Object { "$_" })
    [pscustomobject]@{ Code = $LASTEXITCODE; Text = ($lines -join [Environment]::NewLine) }
}
function Get-AzdValue([string]$Name) {
    $ErrorActionPreference = 'Continue'
    $out = & azd env get-value $Name 2>$null
    if ($LASTEXITCODE -ne 0) { return '' }
    return (@($out) -join '').Trim()
}
# KEY=VALUE, one argument: an empty value survives every PowerShell's native argument passing.
function Set-AzdValue([string]$Name, [string]$Value) {
    & azd env set "$Name=$Value"
    if ($LASTEXITCODE -ne 0) { throw "Could not set $Name in the azd environment (exit code $LASTEXITCODE)" }
}
# Always an array, never $null or a bare string: callers wrap it in @() as well, because PowerShell
# unrolls what a function returns (an empty array comes back as $null, one element as a scalar).
function Split-Ids([string]$Text) {
    @($Text.Split(',') | ForEach-Object { $_.Replace(' ', '') } | Where-Object { $_ })
}
function Get-SubscriptionOf([string]$Id) {
    # '' for an id too short to hold one (strict mode refuses an index out of range).
    $parts = $Id.Split('/')
    if ($parts.Count -gt 2) { return $parts[2] }
    return ''
}
function Get-LastSegment([string]$Id) { $Id.Split('/')[-1] }
# The az arguments naming an event subscription of a system topic, from its id
# (/subscriptions/S/resourceGroups/G/providers/Microsoft.EventGrid/systemTopics/T/eventSubscriptions/N).
function Get-EventSubscriptionArgs([string]$Id) {
    $parts = $Id.Split('/')
    @('--subscription', $parts[2], '--resource-group', $parts[4], '--system-topic-name', $parts[8], '--name', $parts[-1])
}

$assignments = @(Split-Ids (Get-AzdValue 'AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS'))
$roles = @(Split-Ids (Get-AzdValue 'AML_OBS_CLEANUP_ROLE_DEFINITION_IDS'))
$groups = @(Split-Ids (Get-AzdValue 'AML_OBS_CLEANUP_RESOURCE_GROUP_IDS'))
# This environment's event subscriptions on system topics it adopted: the topics stay.
$eventSubscriptions = @(Split-Ids (Get-AzdValue 'AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS'))

Set-AzdValue 'ENABLE_EVENT_SUBSCRIPTION' 'false'
Set-AzdValue 'AML_OBS_DETACH' 'false'

if (($assignments.Count + $roles.Count + $groups.Count + $eventSubscriptions.Count) -eq 0) { exit 0 }

if (-not (Get-Command az -CommandType Application -ErrorAction SilentlyContinue)) {
    Write-Stderr 'The Azure CLI (az) is not installed, so what this environment created outside its resource group is still there. Remove it by hand:'
    foreach ($id in $eventSubscriptions) {
        Write-Stderr "  az eventgrid system-topic event-subscription delete --yes $((Get-EventSubscriptionArgs $id) -join ' ')"
    }
    foreach ($id in $assignments) { Write-Stderr "  az role assignment delete --ids $id" }
    foreach ($id in $roles) { Write-Stderr "  az rest --method delete --url `"${id}?$api`"" }
    foreach ($id in $groups) { Write-Stderr "  az group delete --yes --subscription $(Get-SubscriptionOf $id) --name $(Get-LastSegment $id)" }
    Write-Stderr "or install az, sign in (az login) and run 'azd hooks run postdown'. The ids stay in AML_OBS_CLEANUP_* of this azd environment."
    exit 1
}

# 0 when Resource Manager answers 404 for the role definition, 1 when it still answers it, 2 when
# the answer says neither (no permission, network): printed.
function Get-RoleState([string]$Id) {
    $r = Invoke-Cli az @('rest', '--method', 'get', '--url', "${Id}?$api", '--only-show-errors')
    if ($r.Code -eq 0) { return 1 }
    # az rest fails with "Not Found(<response body>)"; the body's code is RoleDefinitionDoesNotExist.
    if ($r.Text -match 'RoleDefinitionDoesNotExist|Not Found') { return 0 }
    Write-Stderr $r.Text
    return 2
}

$leftAssignments = New-Object System.Collections.Generic.List[string]
$leftRoles = New-Object System.Collections.Generic.List[string]
$leftGroups = New-Object System.Collections.Generic.List[string]
$leftEventSubscriptions = New-Object System.Collections.Generic.List[string]

foreach ($id in $eventSubscriptions) {
    Write-Host "Removing event subscription $id (the system topic stays)"
    $r = Invoke-Cli az (@('eventgrid', 'system-topic', 'event-subscription', 'delete', '--yes') + @(Get-EventSubscriptionArgs $id) + @('--only-show-errors'))
    if ($r.Code -eq 0) {
        if ($r.Text) { Write-Host $r.Text }
    } elseif ($r.Text -match 'ResourceNotFound') {
        # The topic is gone (its owner deleted it, or the environment that made it went down): so is
        # the subscription.
        Write-Host '  already gone (its topic is gone)'
    } else {
        Write-Stderr $r.Text
        $leftEventSubscriptions.Add($id)
    }
}

# Assignments first: a role definition cannot be deleted while it is assigned.
foreach ($id in $assignments) {
    Write-Host "Removing role assignment $id"
    # Deleting an assignment that no longer exists succeeds (RoleAssignments_DeleteById answers 204).
    $r = Invoke-Cli az @('role', 'assignment', 'delete', '--ids', $id, '--only-show-errors')
    if ($r.Code -ne 0) { Write-Stderr $r.Text; $leftAssignments.Add($id) }
}

foreach ($id in $roles) {
    Write-Host "Removing role definition $id"
    $r = Invoke-Cli az @('rest', '--method', 'delete', '--url', "${id}?$api", '--only-show-errors')
    if ($r.Code -ne 0) { Write-Stderr $r.Text; $leftRoles.Add($id); continue }
    # Role definitions replicate: a read right after the delete may still find it.
    for ($attempt = 1; ; $attempt++) {
        $state = Get-RoleState $id
        if ($state -eq 0 -or $attempt -ge $attempts) { break }
        Start-Sleep -Seconds $delay
    }
    if ($state -eq 0) {
        Write-Host '  gone (Resource Manager answers 404)'
    } else {
        Write-Stderr "Role definition $id is still there after $attempts checks."
        $leftRoles.Add($id)
    }
}

foreach ($id in $groups) {
    Write-Host "Removing resource group $id"
    $r = Invoke-Cli az @('group', 'delete', '--yes', '--no-wait', '--subscription', (Get-SubscriptionOf $id), '--name', (Get-LastSegment $id), '--only-show-errors')
    if ($r.Code -eq 0) {
        if ($r.Text) { Write-Host $r.Text }
    } elseif ($r.Text -match 'ResourceGroupNotFound') {
        Write-Host '  already gone'
    } else {
        Write-Stderr $r.Text
        $leftGroups.Add($id)
    }
}

Set-AzdValue 'AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS' ($leftAssignments -join ',')
Set-AzdValue 'AML_OBS_CLEANUP_ROLE_DEFINITION_IDS' ($leftRoles -join ',')
Set-AzdValue 'AML_OBS_CLEANUP_RESOURCE_GROUP_IDS' ($leftGroups -join ',')
Set-AzdValue 'AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS' ($leftEventSubscriptions -join ',')

$left = @($leftEventSubscriptions) + @($leftAssignments) + @($leftRoles) + @($leftGroups)
if ($left.Count -gt 0) {
    Write-Stderr 'Not removed (see the errors above):'
    foreach ($id in $left) { Write-Stderr "  $id" }
    Write-Stderr "Their ids stay in AML_OBS_CLEANUP_* of this azd environment. Role definitions and assignments need Owner or User Access Administrator on their subscription, an event subscription on an adopted topic needs write access to that topic (e.g. Contributor on it); once that is fixed, run 'azd hooks run postdown' (or 'azd down' again) to retry."
    exit 1
}
Write-Host 'Removed everything this environment created outside its resource group.'
