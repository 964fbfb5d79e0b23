// What-if of `azd up` observing two workspaces: one in the deployment subscription (no topic yet: this
// environment creates it) and one in another subscription whose system topic already exists in a
// resource group there. The existing topic is adopted, so no rg-<env> is created in that subscription.
using '../main.bicep'

param environmentName = 'aml-obs-prod'
param location = 'eastus'
param amlWorkspaceIds = join(
  [
    '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod'
    '/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg-ml-research/providers/Microsoft.MachineLearningServices/workspaces/mlw-research'
  ],
  ','
)
param adoptedSystemTopics = '/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg-ml-research/providers/Microsoft.MachineLearningServices/workspaces/mlw-research|/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg-research-shared/providers/Microsoft.EventGrid/systemTopics/research-aml-events|0d9c8b7a-6f5e-4d3c-9b2a-1f0e9d8c7b6a'
param enableEventSubscription = true
