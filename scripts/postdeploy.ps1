#!/usr/bin/env pwsh
# azd postdeploy hook (Windows): see postdeploy.sh, which this script mirrors step for step. Turns
# the Event Grid event subscriptions on once the function exists, by setting
# ENABLE_EVENT_SUBSCRIPTION=true and provisioning again.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

function Write-Stderr([string]$Message) { [Console]::Error.WriteLine($Message) }
# Native commands run with 'Continue': under 'Stop', Windows PowerShell 5.1 (azd's fallback when
# pwsh is missing) turns a redirected stderr line into a terminating error.
function Get-AzdValue([string]$Name) {
    $ErrorActionPreference = 'Continue'
    $out = & azd env get-value $Name 2>$null
    if ($LASTEXITCODE -ne 0) { return '' }
    return (@($out) -join '').Trim()
}

$attempts = if ($env:AML_OBS_PROVISION_ATTEMPTS) { [int]$env:AML_OBS_PROVISION_ATTEMPTS } else { 3 }
$delay = if ($env:AML_OBS_RETRY_DELAY_SECONDS) { [int]$env:AML_OBS_RETRY_DELAY_SECONDS } else { 30 }

if ((Get-AzdValue 'ENABLE_EVENT_SUBSCRIPTION').ToLowerInvariant() -eq 'true') {
    Write-Host 'Event Grid subscriptions are already enabled: nothing to do.'
    exit 0
}

Write-Host 'Enabling the Event Grid subscriptions now that the function is deployed.'
& azd env set 'ENABLE_EVENT_SUBSCRIPTION=true'
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }

for ($attempt = 1; $attempt -le $attempts; $attempt++) {
    # The function list of a freshly deployed Flex Consumption app can lag the deployment by a few
    # seconds; Event Grid's validation fails until it is there, so a failed provision is retried.
    & azd provision --no-prompt
    if ($LASTEXITCODE -eq 0) {
        Write-Host 'Event Grid subscriptions enabled: AML run events now reach the function.'
        exit 0
    }
    if ($attempt -lt $attempts) {
        Write-Stderr "Provisioning the event subscriptions failed; retrying in ${delay}s (attempt $($attempt + 1)/$attempts)."
        Start-Sleep -Seconds $delay
    }
}

# Leave the environment as it was so the next `azd up` goes through this hook again.
& azd env set 'ENABLE_EVENT_SUBSCRIPTION=false'
Write-Stderr "Could not create the Event Grid subscriptions after $attempts attempts; run 'azd up' again."
exit 1
