// Storage for the Functions host, the deployment package, the dedupe table, rejected events and
// Event Grid dead letters. Shared keys are off: every caller authenticates with Entra ID.

import { resourceTags } from '../types.bicep'

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the account.')
param location string

@description('Tags applied to the account.')
param tags resourceTags

@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Blob container where the function writes events it rejects.')
param rejectedEventsContainerName string

@description('Blob container where Event Grid dead-letters events it could not deliver.')
param deadLetterContainerName string

@description('Table the function uses to skip events it already recorded.')
param processedEventsTableName string

@description('Days a deleted blob can be restored; covers an accidental delete of dead letters before replay.')
@minValue(1)
@maxValue(365)
param blobSoftDeleteDays int = 7

@description('Days a deleted container can be restored: deleting deadletter-events or rejected-events by mistake would otherwise lose every event in it.')
@minValue(1)
@maxValue(365)
param containerSoftDeleteDays int = 7

@description('Resource id of the Log Analytics workspace the blob and table services send their read, write and delete logs to (the audit trail of dead letters, rejected events and the dedupe table).')
param logAnalyticsWorkspaceId string

resource account 'Microsoft.Storage/storageAccounts@2026-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Flex Consumption without VNet integration and Event Grid dead-lettering both reach the
      // account over its public endpoint; Entra ID authorisation is the control, not the network.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2026-04-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: blobSoftDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: containerSoftDeleteDays
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2026-04-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource rejectedEventsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2026-04-01' = {
  parent: blobService
  name: rejectedEventsContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2026-04-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2026-04-01' = {
  parent: account
  name: 'default'
}

// Storage resource logs are per service (blob, table), not per account.
@description('The resource log categories of a storage service (learn.microsoft.com/azure/storage/blobs/monitor-blob-storage-reference, "Resource logs"): every read, write and delete.')
var storageLogCategories = [
  'StorageRead'
  'StorageWrite'
  'StorageDelete'
]

// The newest diagnosticSettings API is a preview; the only stable one (2016-09-01) cannot name a
// Log Analytics workspace. See tests/test_infra.py ALLOWED_SUPPRESSIONS.
#disable-next-line use-recent-api-versions
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      for category in storageLogCategories: {
        category: category
        enabled: true
      }
    ]
  }
}

// The newest diagnosticSettings API is a preview; the only stable one (2016-09-01) cannot name a
// Log Analytics workspace. See tests/test_infra.py ALLOWED_SUPPRESSIONS.
#disable-next-line use-recent-api-versions
resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      for category in storageLogCategories: {
        category: category
        enabled: true
      }
    ]
  }
}

resource processedEventsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2026-04-01' = {
  parent: tableService
  name: processedEventsTableName
}

@description('Name of the storage account.')
output name string = account.name

@description('Resource id of the storage account.')
output id string = account.id

@description('Blob endpoint, from the account itself so sovereign clouds get their own suffix.')
output blobEndpoint string = account.properties.primaryEndpoints.blob

@description('Queue endpoint of the account.')
output queueEndpoint string = account.properties.primaryEndpoints.queue

@description('Table endpoint of the account.')
output tableEndpoint string = account.properties.primaryEndpoints.table

@description('Name of the deployment package container.')
output deploymentContainerName string = deploymentContainer.name

@description('Name of the rejected-events container.')
output rejectedEventsContainerName string = rejectedEventsContainer.name

@description('Name of the dead-letter container.')
output deadLetterContainerName string = deadLetterContainer.name

@description('Name of the dedupe table.')
output processedEventsTableName string = processedEventsTable.name
