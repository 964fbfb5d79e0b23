#!/usr/bin/env pwsh
# azd postdeploy hook (Windows): see postdeploy.sh. Turns the Event Grid event subscriptions on once
# the function exists, by setting ENABLE_EVENT_SUBSCRIPTION=true and provisioning again.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$attempts = if ($env:AML_OBS_PROVISION_ATTEMPTS) { [int]$env:AML_OBS_PROVISION_ATTEMPTS } else { 3 }
$delay = if ($env:AML_OBS_RETRY_DELAY_SECONDS) { [int]$env:AML_OBS_RETRY_DELAY_SECONDS } else { 30 }

$current = (& azd env get-value ENABLE_EVENT_SUBSCRIPTION 2>$null)
if ($LASTEXITCODE -ne 0) { $current = '' }
if ("$current".Trim().ToLowerInvariant() -eq 'true') {
    Write-Host 'Event Grid subscriptions are already enabled: nothing to do.'
    exit 0
}

Write-Host 'Enabling the Event Grid subscriptions now that the function is deployed.'
& azd env set ENABLE_EVENT_SUBSCRIPTION true
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }

for ($attempt = 1; $attempt -le $attempts; $attempt++) {
    # A freshly deployed Flex Consumption app can list its functions a few seconds late.
    & azd provision --no-prompt
    if ($LASTEXITCODE -eq 0) {
        Write-Host 'Event Grid subscriptions enabled: AML run events now reach the function.'
        exit 0
    }
    if ($attempt -lt $attempts) {
        Write-Warning "Provisioning the event subscriptions failed; retrying in ${delay}s (attempt $($attempt + 1)/$attempts)."
        Start-Sleep -Seconds $delay
    }
}

& azd env set ENABLE_EVENT_SUBSCRIPTION false
Write-Error "Could not create the Event Grid subscriptions after $attempts attempts; run 'azd up' again." -ErrorAction Continue
exit 1
