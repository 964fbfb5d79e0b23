// Key Vault (RBAC authorisation, soft delete, purge protection) and the secrets the Function App
// reads through Key Vault references. Bicep writes the secret through ARM, so nobody needs a
// data-plane role on the vault to deploy it.

import { resourceTags } from '../types.bicep'

@description('Name of the vault (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the vault.')
param location string

@description('Tags applied to the vault.')
param tags resourceTags

@description('Name of the Application Insights component whose connection string the vault holds.')
param applicationInsightsName string

@description('Days a deleted vault or secret stays recoverable (7-90). With purge protection the vault name stays taken for this long after azd down.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 7

@description('Name of the secret holding the Application Insights connection string.')
param appInsightsConnectionStringSecretName string = 'appinsights-connection-string'

@description('Teams Workflows or Slack webhook URL of the failure messages; empty: no secret is written.')
@secure()
param notifyWebhookUrl string = ''

@description('Name of the secret holding the webhook URL (written only when a URL is given).')
param notifyWebhookSecretName string = 'notify-webhook-url'

@description('Resource id of the Log Analytics workspace that receives the vault\'s audit log (every secret read, the Functions host\'s included).')
param logAnalyticsWorkspaceId string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2026-02-01' = {
  name: name
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
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Flex Consumption resolves Key Vault references from outside any VNet here; RBAC on the one
      // secret is the control.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// AuditEvent is Key Vault's one resource log category: every authenticated data-plane and
// management request (learn.microsoft.com/azure/key-vault/general/monitor-key-vault-reference).
// The newest diagnosticSettings API is a preview; the only stable one (2016-09-01) cannot name a
// Log Analytics workspace. See tests/test_infra.py ALLOWED_SUPPRESSIONS.
#disable-next-line use-recent-api-versions
resource auditDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

resource appInsightsConnectionString 'Microsoft.KeyVault/vaults/secrets@2026-02-01' = {
  parent: vault
  name: appInsightsConnectionStringSecretName
  properties: {
    // The connection string names the ingestion endpoint and component; with local auth disabled it
    // grants nothing on its own, but DESIGN.md keeps every referenced setting in the vault.
    value: applicationInsights.properties.ConnectionString
    contentType: 'text/plain'
  }
}

// Anyone holding the URL can post to the channel: it is a credential, so it lives here and only here.
resource notifyWebhook 'Microsoft.KeyVault/vaults/secrets@2026-02-01' = if (!empty(notifyWebhookUrl)) {
  parent: vault
  name: notifyWebhookSecretName
  properties: {
    value: notifyWebhookUrl
    contentType: 'text/plain'
  }
}

@description('Name of the vault.')
output name string = vault.name

@description('Resource id of the vault.')
output id string = vault.id

@description('Name of the App Insights connection string secret.')
output appInsightsConnectionStringSecretName string = appInsightsConnectionString.name

@description('Versionless URI of the secret: the Key Vault reference follows rotations.')
output appInsightsConnectionStringSecretUri string = appInsightsConnectionString.properties.secretUri

// Computed from the vault and the name, not read from the (conditional) secret: it stays a known value
// in what-if, and no output depends on the secure URL.
@description('Versionless URI the webhook URL secret has when it exists: the URI, never the URL.')
output notifyWebhookSecretUri string = '${vault.properties.vaultUri}secrets/${notifyWebhookSecretName}'
