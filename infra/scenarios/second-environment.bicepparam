// What-if of a second environment (staging) observing the workspace that environment aml-obs-dev
// already observes: the preprovision hook found dev's system topic in rg-aml-obs-dev and adopted it.
// Staging adds its own event subscription (named after the environment, beside dev's aml-run-events)
// and changes nothing else on dev's topic. See docs/infra.md for what happens when dev goes down first.
using '../main.bicep'

param environmentName = 'aml-obs-staging'
param location = 'eastus'
param amlWorkspaceIds = '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod'
param adoptedSystemTopics = '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod|/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-aml-obs-dev/providers/Microsoft.EventGrid/systemTopics/evgst-mlw-prod-xcvacq|2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091'
param enableEventSubscription = true
