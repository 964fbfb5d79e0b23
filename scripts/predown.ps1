#!/usr/bin/env pwsh
# azd predown hook (Windows): see predown.sh, which this script mirrors step for step. Keeps the ids
# of what lives outside rg-<env> for the postdown hook and, when what is deployed (the outputs azd
# stored, not AML_WORKSPACE_IDS) reaches outside rg-<env>, provisions once with AML_OBS_DETACH=true
# so that `azd down` only deletes this environment's resource group.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

# Native commands run with 'Continue': under 'Stop', Windows PowerShell 5.1 (azd's fallback when
# pwsh is missing) turns a redirected stderr line into a terminating error.
function Test-AzdValue([string]$Name) {
    $ErrorActionPreference = 'Continue'
    & azd env get-value $Name *> $null
    return ($LASTEXITCODE -eq 0)
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
# Segment of a resource id, '' when the id is too short (strict mode refuses an index out of range).
function Get-Segment([string]$Id, [int]$Index) {
    $parts = $Id.Split('/')
    if ($Index -lt $parts.Count) { return $parts[$Index] }
    return ''
}
# The comma-separated union of the lists, in order, without blanks or repeats (resource ids compare
# case-insensitively; the first spelling is kept). A string, so nothing is unrolled on return.
function Join-Ids([string[]]$Lists) {
    $seen = New-Object 'System.Collections.Generic.HashSet[string]' ([StringComparer]::OrdinalIgnoreCase)
    $result = New-Object System.Collections.Generic.List[string]
    foreach ($list in $Lists) {
        foreach ($id in "$list".Split(',')) {
            $id = $id.Replace(' ', '')
            if ($id -and $seen.Add($id)) { $result.Add($id) }
        }
    }
    return ($result -join ',')
}

foreach ($pair in @(
        @('ROLE_ASSIGNMENT_IDS', 'AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS'),
        @('ROLE_DEFINITION_IDS', 'AML_OBS_READER_ROLE_DEFINITION_IDS'),
        @('RESOURCE_GROUP_IDS', 'AML_OBS_FOREIGN_RESOURCE_GROUP_IDS'),
        @('EVENT_SUBSCRIPTION_IDS', 'AML_OBS_ADOPTED_EVENT_SUBSCRIPTION_IDS'))) {
    $name = "AML_OBS_CLEANUP_$($pair[0])"
    Set-AzdValue $name (Join-Ids @((Get-AzdValue $name), (Get-AzdValue $pair[1])))
}

$group = Get-AzdValue 'AZURE_RESOURCE_GROUP'
if (-not $group) {
    Write-Host 'Nothing of this environment is deployed (no AZURE_RESOURCE_GROUP): nothing to detach.'
    exit 0
}
$subscription = Get-AzdValue 'AZURE_SUBSCRIPTION_ID'

# A system topic this environment created is deleted with it. Another environment that adopted it
# (docs/infra.md, "An existing system topic"), or anyone else who subscribed to it, would then stop
# receiving events without a word: stop here and say so, unless told to go ahead.
$topics = Join-Ids @(Get-AzdValue 'AML_OBS_SYSTEM_TOPIC_IDS')
$shared = New-Object System.Collections.Generic.List[string]
if ($topics -and (Get-Command az -CommandType Application -ErrorAction SilentlyContinue)) {
    foreach ($topic in $topics.Split(',')) {
        $ErrorActionPreference = 'Continue'
        $names = @(& az eventgrid system-topic event-subscription list --subscription (Get-Segment $topic 2) `
                --resource-group (Get-Segment $topic 4) --system-topic-name $topic.Split('/')[-1] `
                --query '[].name' -o tsv --only-show-errors 2>&1 | ForEach-Object { "$_" })
        $code = $LASTEXITCODE
        $ErrorActionPreference = 'Stop'
        if ($code -ne 0) {
            $names | ForEach-Object { [Console]::Error.WriteLine($_) }
            [Console]::Error.WriteLine("Could not list the event subscriptions of ${topic}: whether another environment still uses it was not checked.")
            continue
        }
        foreach ($name in $names) {
            if ($name -and $name -ine 'aml-run-events') { $shared.Add("  ${topic}: $name") }
        }
    }
}
if ($shared.Count -gt 0) {
    [Console]::Error.WriteLine("These system topics of this environment carry event subscriptions that are not its own (another environment that adopted the topic, or the workspace owner's):")
    foreach ($line in $shared) { [Console]::Error.WriteLine($line) }
    [Console]::Error.WriteLine("'azd down' deletes the topics and those subscriptions with them: their events stop.")
    $goAhead = Get-AzdValue 'AML_OBS_DELETE_SHARED_TOPICS'
    if (-not $goAhead) { $goAhead = "$env:AML_OBS_DELETE_SHARED_TOPICS" }
    if ($goAhead -ine 'true') {
        [Console]::Error.WriteLine("Tear down the other environment first, or go ahead with 'azd env set AML_OBS_DELETE_SHARED_TOPICS=true' and 'azd down' again: an environment of this template that relied on the topic gets a topic of its own at its next 'azd provision'.")
        exit 1
    }
    [Console]::Error.WriteLine('AML_OBS_DELETE_SHARED_TOPICS is true: going ahead.')
}

if (Test-AzdValue 'AML_OBSERVED_WORKSPACE_IDS') {
    $deployed = Join-Ids @(Get-AzdValue 'AML_OBSERVED_WORKSPACE_IDS')
} else {
    # CI passes it as a process variable rather than an azd env value: accept either.
    $configured = if (Test-AzdValue 'AML_WORKSPACE_IDS') { Get-AzdValue 'AML_WORKSPACE_IDS' } else { "$env:AML_WORKSPACE_IDS" }
    $deployed = Join-Ids @($configured)
    Write-Host 'The deployed workspaces are not recorded in this environment (AML_OBSERVED_WORKSPACE_IDS): going by AML_WORKSPACE_IDS.'
}

$outside = @(@($deployed.Split(',')) | Where-Object {
        $_ -and -not ((Get-Segment $_ 2) -eq $subscription -and (Get-Segment $_ 4) -eq $group)
    })
$foreign = Join-Ids @(Get-AzdValue 'AML_OBS_FOREIGN_RESOURCE_GROUP_IDS')

if ($outside.Count -eq 0 -and -not $foreign) {
    Write-Host "Only workspaces inside $group are observed: everything is in this environment's resource group."
    exit 0
}

Write-Host "Detaching the observed workspaces outside $group so that 'azd down' only deletes this environment's resource group:"
foreach ($id in $outside) { Write-Host "  $id" }
Set-AzdValue 'AML_OBS_DETACH' 'true'

# The detach provision deploys the workspaces that are deployed now. azd reads AML_WORKSPACE_IDS from
# the environment's .env first, then from the process environment (Azure/azure-dev
# cli/azd/pkg/environment/environment.go, Getenv): a value changed or cleared in .env since the last
# provision is swapped for the deployed one during the provision and put back afterwards.
$restore = $null
if (Test-AzdValue 'AML_WORKSPACE_IDS') {
    $configured = Get-AzdValue 'AML_WORKSPACE_IDS'
    if ((Join-Ids @($configured)) -ne $deployed) {
        $restore = $configured
        Set-AzdValue 'AML_WORKSPACE_IDS' $deployed
    }
}
$env:AML_WORKSPACE_IDS = $deployed
# Marks the nested provision so the preprovision hook leaves AML_OBS_DETACH alone.
$env:AML_OBS_IN_PREDOWN = '1'
try {
    & azd provision --no-prompt
    exit $LASTEXITCODE
} finally {
    Remove-Item Env:AML_OBS_IN_PREDOWN -ErrorAction SilentlyContinue
    if ($null -ne $restore) { Set-AzdValue 'AML_WORKSPACE_IDS' $restore }
}
