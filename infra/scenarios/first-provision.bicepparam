// What-if of the first provision of `azd up` observing one existing workspace, in another resource
// group of the deployment subscription: ENABLE_EVENT_SUBSCRIPTION is still unset, so no event
// subscription yet (Event Grid would reject it before the function code is deployed).
using '../main.bicep'

param environmentName = 'aml-obs-dev'
param location = 'eastus'
param amlWorkspaceIds = '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod'
