// Custom role with only the AML read actions the function needs (DESIGN.md): read the workspace
// (discovery URL), its experiments, its runs, its compute resources (the VM size and priority of a
// cluster, for the estimated cost of a run), its schedules (the reconciler's missed/late judgements)
// and the workspace's Azure Monitor metrics (per-run GPU/CPU use, docs/resource-use.md). One definition
// per observed workspace, assignable only in that workspace's resource group, so it cannot be reused
// more broadly.
targetScope = 'subscription'

@description('Role definition name (a GUID, deterministic per environment and workspace).')
param roleGuid string

@description('Display name of the role; custom role names are unique per tenant, so it names the environment and workspace.')
param roleName string

@description('Resource id of the resource group the role may be assigned in (the workspace\'s).')
param assignableScope string

@description('The only actions of the role: read the workspace (its discovery URL), its experiments, its runs, its compute resources (GET .../computes/{name}: a cluster\'s VM size and priority price a run), its schedules (the reconciler judges each fire time) and its platform metrics (GET .../providers/Microsoft.Insights/metrics: "Microsoft.Insights/Metrics/Read: Read metrics", Azure resource provider operations, Microsoft.Insights).')
var amlReadActions = [
  'Microsoft.MachineLearningServices/workspaces/read'
  'Microsoft.MachineLearningServices/workspaces/experiments/read'
  'Microsoft.MachineLearningServices/workspaces/experiments/runs/read'
  'Microsoft.MachineLearningServices/workspaces/computes/read'
  'Microsoft.MachineLearningServices/workspaces/schedules/read'
  'Microsoft.Insights/metrics/read'
]

resource readerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: roleGuid
  properties: {
    roleName: roleName
    description: 'Read AML workspace, experiment, run and compute metadata and the workspace metrics for run-status observability (azd template).'
    type: 'CustomRole'
    permissions: [
      {
        actions: amlReadActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      assignableScope
    ]
  }
}

@description('Full resource id of the role definition, for role assignments in this subscription.')
output roleDefinitionId string = readerRole.id
