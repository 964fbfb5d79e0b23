// Lets one system topic's identity write dead letters, and nothing else: Storage Blob Data
// Contributor on the dead-letter container only.

@description('Name of the storage account holding the dead-letter container.')
param storageAccountName string

@description('Name of the dead-letter container.')
param deadLetterContainerName string

@description('Resource id of the system topic: names the role assignment, so what-if predicts it.')
param topicId string

@description('Also names the role assignment when not empty: the principal id of an adopted topic\'s identity. A role assignment\'s principal cannot change under the same name (RoleAssignmentUpdateNotPermitted), and the owner of an adopted topic may turn its identity off and on again, which makes a new principal; a topic this environment creates keeps its identity for its life.')
param principalKey string = ''

@description('Object id of the system topic\'s system-assigned identity: what the role is granted to.')
param topicPrincipalId string

@description('Storage Blob Data Contributor (built-in role, the same id in every cloud).')
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storageAccount 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2026-04-01' existing = {
  parent: storageAccount
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2026-04-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: empty(principalKey)
    ? guid(deadLetterContainer.id, topicId, storageBlobDataContributor)
    : guid(deadLetterContainer.id, topicId, principalKey, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Event Grid system topic writes undeliverable events to the dead-letter container'
  }
}
