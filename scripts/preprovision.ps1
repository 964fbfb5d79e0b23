#!/usr/bin/env pwsh
# azd preprovision hook (Windows): see preprovision.sh, which this script mirrors step for step.
# Rejects a malformed AML_WORKSPACE_IDS, re-attaches the workspaces if an `azd down` was cancelled
# after its predown hook, and finds the existing Event Grid system topic of each workspace to adopt.
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

# ---- existing system topics (docs/infra.md, "An existing system topic") ----
if ($env:AML_OBS_IN_PREDOWN -eq '1') {
    # The detach provision describes what is deployed: the topics adopted at the last provision.
    exit 0
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Stderr "The Azure CLI (az) is not installed: it is needed to find the Event Grid system topic an observed workspace may already have (Event Grid allows one per workspace, and this deployment would fail creating a second). Install az, sign in (az login) and run 'azd provision' again."
    exit 1
}

$envName = Get-AzdValue 'AZURE_ENV_NAME'
if ($null -eq $envName) { $envName = "$env:AZURE_ENV_NAME" }
# This environment's own topics live in rg-<env> of the workspace's subscription (infra/main.bicep).
$ownGroup = "rg-$envName"
$script:adopted = @()
$script:failed = $false

# Find-Topic: adds "<workspace id>|<topic id>|<topic identity>" to $script:adopted when the workspace
# has a system topic that is not this environment's own; sets $script:failed on an error, named.
# `az eventgrid system-topic list` flattens the resource's properties (source, topicType) beside id
# and identity; -o tsv prints an absent value as None (knack's str() of it).
function Find-Topic([string]$Workspace) {
    $subscription = $Workspace.Split('/')[2]
    $ErrorActionPreference = 'Continue'
    $listing = & az eventgrid system-topic list --subscription $subscription `
        --query '[].[id, source, identity.type, identity.principalId]' -o tsv --only-show-errors 2>&1
    if ($LASTEXITCODE -ne 0) {
        @($listing) | ForEach-Object { Write-Stderr "$_" }
        Write-Stderr "Could not list the Event Grid system topics of subscription $subscription to find the one of $Workspace."
        Write-Stderr 'The deployer needs to read them there (Microsoft.EventGrid/systemTopics/read, e.g. Reader on the subscription): Event Grid allows one system topic per workspace, and creating a second fails the deployment.'
        $script:failed = $true
        return
    }
    foreach ($line in @($listing)) {
        $fields = "$line".Split("`t")
        $topic = $fields[0]
        $source = if ($fields.Count -gt 1) { $fields[1] } else { '' }
        $identity = if ($fields.Count -gt 2) { $fields[2] } else { '' }
        $principal = if ($fields.Count -gt 3) { $fields[3] } else { '' }
        if (-not $topic -or $source -ine $Workspace) { continue }
        $parts = $topic.Split('/')
        if ($parts[4] -ieq $ownGroup) {
            Write-Host "  its system topic is this environment's own: $topic"
            continue
        }
        if ($identity -notlike '*SystemAssigned*') {
            Write-Stderr "The existing system topic of $Workspace has no system-assigned managed identity: $topic"
            Write-Stderr "This environment dead-letters undeliverable events through the topic's identity (storage keys are off). Whoever may change that topic (Microsoft.EventGrid/systemTopics/write, e.g. its owner) can turn one on; it changes nothing for the topic's other subscriptions:"
            Write-Stderr "  az eventgrid system-topic update --identity systemassigned --subscription $($parts[2]) --resource-group $($parts[4]) --name $($parts[-1])"
            Write-Stderr "then run 'azd provision' again."
            $script:failed = $true
            continue
        }
        Write-Host "  adopting its existing system topic (only an event subscription of this environment is added to it): $topic"
        $script:adopted += "$Workspace|$topic|$principal"
    }
}

foreach ($id in $entries) {
    Write-Host "Looking for an existing Event Grid system topic of $id"
    Find-Topic $id
}
if ($script:failed) { exit 1 }
& azd env set "AML_OBS_ADOPTED_SYSTEM_TOPICS=$($script:adopted -join ',')"
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
