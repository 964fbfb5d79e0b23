// What-if of `azd up` in an empty subscription, as it ends: AML_WORKSPACE_IDS unset, so a demo
// workspace is created in rg-<env> and observed; the postdeploy hook has turned the event
// subscription on. Snapshot: demo.snapshot.json (regenerate: python -m tests.bicep_snapshots).
using '../main.bicep'

param environmentName = 'aml-obs-demo'
param location = 'eastus'
param enableEventSubscription = true
// Failure messages to a Slack incoming webhook (a placeholder URL): the secret, its role and the Key
// Vault reference appear; the URL itself appears only as the secret's value, in no output.
param notifyWebhookUrl = 'https://hooks.slack.com/services/T00000000/B00000000/scenarioPlaceholderOnly'
param notifyStatuses = 'Failed,Canceled'
