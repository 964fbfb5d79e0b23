// What-if of `azd up` in an empty subscription, as it ends: AML_WORKSPACE_IDS unset, so a demo
// workspace is created in rg-<env> and observed; the postdeploy hook has turned the event
// subscription on. Snapshot: demo.snapshot.json (regenerate: python -m tests.bicep_snapshots).
using '../main.bicep'

param environmentName = 'aml-obs-demo'
param location = 'eastus'
param enableEventSubscription = true
