// Grants the Function App's identity the custom AML reader role on one observed workspace.
// Deployed at the workspace's resource group (any subscription) so the assignment's scope is the
// workspace itself.

@description('Name of the observed Azure Machine Learning workspace.')
param workspaceName string

@description('Object id of the Function App\'s user-assigned identity.')
param principalId string

@description('Full resource id of the custom AML reader role (aml-reader-role.bicep) in this subscription.')
param amlReaderRoleDefinitionId string

@description('Name of the role assignment (a GUID of the workspace, the environment and the identity, computed by main.bicep so that teardown can find it).')
param assignmentGuid string

resource workspace 'Microsoft.MachineLearningServices/workspaces@2026-05-01' existing = {
  name: workspaceName
}

resource amlReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: assignmentGuid
  scope: workspace
  properties: {
    roleDefinitionId: amlReaderRoleDefinitionId
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'AML run observability: read workspace, experiments and runs'
  }
}

@description('Resource id of the role assignment.')
output roleAssignmentId string = amlReader.id
