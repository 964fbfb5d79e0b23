// What-if of `azd up` (event subscription on) observing a workspace whose Event Grid system topic
// already exists in another resource group of the same subscription (made on the workspace's *Events*
// page, as the 2020 sample told people to): the preprovision hook found it and passed it in
// AML_OBS_ADOPTED_SYSTEM_TOPICS, so no topic is created; this environment's event subscription goes
// onto the existing topic, dead-lettering through the topic's own identity.
using '../main.bicep'

param environmentName = 'aml-obs-dev'
param location = 'eastus'
param amlWorkspaceIds = '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod'
param adoptedSystemTopics = '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod|/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-ml-events/providers/Microsoft.EventGrid/systemTopics/mlw-prod-0c4f1e2a-events|6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f'
param enableEventSubscription = true
