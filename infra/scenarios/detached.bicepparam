// What-if of the provision the predown hook runs before `azd down` (AML_OBS_DETACH=true) for the
// three-subscription environment: everything outside rg-<env> is left out of the deployment, so that
// `azd down` deletes rg-<env> and nothing else.
using '../main.bicep'

param environmentName = 'aml-obs-prod'
param location = 'eastus'
param amlWorkspaceIds = join(
  [
    '/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-ml-prod/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod'
    '/subscriptions/33333333-3333-3333-3333-333333333333/resourceGroups/rg-ml-research/providers/Microsoft.MachineLearningServices/workspaces/mlw-research'
    '/subscriptions/44444444-4444-4444-4444-444444444444/resourceGroups/rg-ml-vision/providers/Microsoft.MachineLearningServices/workspaces/mlw-vision'
  ],
  ','
)
param alertEmails = 'mlops@example.com, oncall@example.com'
param enableEventSubscription = true
param detachObservedWorkspaces = true
