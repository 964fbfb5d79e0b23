// Data-plane roles of the Function App's identity inside this resource group, each on the
// narrowest scope the runtime allows. tests/test_infra.py holds the allow-list of role ids.

@description('Resource id of the Function App\'s user-assigned identity: names the role assignments, so what-if predicts them.')
param identityId string

@description('Object id of the Function App\'s user-assigned identity: what the roles are granted to.')
param principalId string

@description('Name of the storage account used by the host, the dedupe table and rejected events.')
param storageAccountName string

@description('Name of the Application Insights component the function writes telemetry to.')
param applicationInsightsName string

@description('Name of the Key Vault holding the referenced settings.')
param keyVaultName string

@description('Name of the secret the function reads through a Key Vault reference.')
param appInsightsConnectionStringSecretName string

@description('Name of the notification webhook secret the function reads through a Key Vault reference.')
param notifyWebhookSecretName string = 'notify-webhook-url'

@description('Whether that secret exists (a webhook is configured): only then is it granted.')
param grantNotifyWebhookSecret bool = false

// Built-in role definition ids (the same in every Azure cloud).
@description('Storage Blob Data Owner.')
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
@description('Storage Queue Data Contributor.')
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
@description('Storage Table Data Contributor.')
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
@description('Monitoring Metrics Publisher.')
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
@description('Key Vault Secrets User.')
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource storageAccount 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2026-02-01' existing = {
  name: keyVaultName
}

resource connectionStringSecret 'Microsoft.KeyVault/vaults/secrets@2026-02-01' existing = {
  parent: vault
  name: appInsightsConnectionStringSecretName
}

resource notifyWebhookSecret 'Microsoft.KeyVault/vaults/secrets@2026-02-01' existing = if (grantNotifyWebhookSecret) {
  parent: vault
  name: notifyWebhookSecretName
}

// The Functions host keeps leases, keys and the deployment package in blobs across containers it
// names itself, so its blob role is account-wide (the documented requirement for identity-based
// AzureWebJobsStorage and Flex Consumption deployment storage).
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityId, storageBlobDataOwner)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage, deployment package and rejected-events blobs'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityId, storageQueueDataContributor)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host queues (identity-based AzureWebJobsStorage)'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityId, storageTableDataContributor)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Dedupe table processedevents'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Entra ID telemetry ingestion (local auth is disabled on the component)'
  }
}

// Scoped to the one secret, not the vault: the identity can read nothing else there.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(connectionStringSecret.id, identityId, keyVaultSecretsUser)
  scope: connectionStringSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Resolve the Key Vault reference of APPLICATIONINSIGHTS_CONNECTION_STRING'
  }
}

// The same for the webhook URL, when there is one: one role on one secret.
resource notifyWebhookSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantNotifyWebhookSecret) {
  name: guid(notifyWebhookSecret.id, identityId, keyVaultSecretsUser)
  scope: notifyWebhookSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Resolve the Key Vault reference of AML_OBS_NOTIFY_WEBHOOK_URL'
  }
}
