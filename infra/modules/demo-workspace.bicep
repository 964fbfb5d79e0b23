// A small AML workspace for environments that observe no existing workspace, so `azd up` works in
// an empty subscription. Its storage keeps shared keys off and the workspace reaches its system
// datastores with its identity; its key vault is RBAC with purge protection like the product's own.

import { resourceTags } from '../types.bicep'

@description('Name of the workspace.')
param name string

@description('Name of the workspace\'s storage account.')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Name of the workspace\'s key vault.')
@minLength(3)
@maxLength(24)
param keyVaultName string

@description('Azure region of the workspace and its dependencies.')
param location string

@description('Tags applied to every resource.')
param tags resourceTags

@description('Resource id of the Application Insights component the workspace is linked to.')
param applicationInsightsId string

resource storage 'Microsoft.Storage/storageAccounts@2026-04-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // The demo workspace reaches its storage over the public endpoint with its identity, as the
      // product's storage account does; trusted Azure services pass.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource vault 'Microsoft.KeyVault/vaults@2026-02-01' = {
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2026-05-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Basic'
    tier: 'Basic'
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    friendlyName: 'AML run observability demo'
    description: 'Demo workspace created by the AML run observability template because AML_WORKSPACE_IDS was empty.'
    storageAccount: storage.id
    keyVault: vault.id
    applicationInsights: applicationInsightsId
    // Identity-based access to the system datastores, required once the storage account refuses
    // shared keys. Microsoft's how-to writes the value `identity`
    // (learn.microsoft.com/azure/machine-learning/how-to-disable-local-auth-storage); the REST
    // spec's enum value is `Identity` (Azure/azure-rest-api-specs, machinelearningservices
    // workspaceRP.json, SystemDatastoresAuthMode: AccessKey | Identity | UserDelegationSAS), and that
    // exact value is what is sent.
    systemDatastoresAuthMode: 'Identity'
    publicNetworkAccess: 'Enabled'
    v1LegacyMode: false
  }
}

@description('Resource id of the demo workspace.')
output id string = workspace.id

@description('Name of the demo workspace.')
output name string = workspace.name
