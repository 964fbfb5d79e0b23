// Flex Consumption plan + Python Function App. Runs as the user-assigned identity for everything:
// host storage, the deployment package, Key Vault references, telemetry and the AML API.
// Flex Consumption takes the runtime and scale from functionAppConfig; the app settings it
// rejects (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE,
// WEBSITE_CONTENTSHARE, SCM_DO_BUILD_DURING_DEPLOYMENT, ...) are deliberately absent.

import { resourceTags } from '../types.bicep'

@description('Name of the Function App.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Tags applied to the plan and the app.')
param tags resourceTags

@description('azd service name from azure.yaml; azd finds the app to deploy by this tag.')
param serviceName string

// The Python versions Azure Functions supports on Flex Consumption, with their end of support
// (learn.microsoft.com/azure/azure-functions/supported-languages, Python: 3.11 October 2027, 3.12
// October 2028, 3.13 October 2029, 3.14 April 2029; 3.10's ended in October 2026, and 3.12 is the last
// on Linux Consumption, not on Flex). From 3.13 the worker is the azure-functions-runtime package
// (Azure/azure-functions-python-worker runtimes/v2), which binds a `str` trigger parameter through its
// generic binding exactly as the 3.11/3.12 worker does (azure_functions_runtime/functions.py).
@description('Python version of the Functions runtime (the test suite runs on 3.11, supported until October 2027).')
@allowed([
  '3.11'
  '3.12'
  '3.13'
  '3.14'
])
param pythonVersion string = '3.11'

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

// Flex Consumption accepts a maximum instance count from 40 to 1000 and defaults to 100
// (learn.microsoft.com/azure/azure-functions/flex-consumption-plan, "Considerations", and
// event-driven-scaling, "Limit scale-out"; a later revision of the latter gives 1 as the lowest,
// so 40 is accepted either way).
@description('Upper bound of on-demand instances (Flex Consumption: 40 to 1000, platform default 100). 40 keeps a burst of AML status events from fanning out into more parallel run-history calls than the AML API comfortably serves.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Name of the storage account (host storage and deployment package).')
param storageAccountName string

@description('Name of the blob container holding the deployment package.')
param deploymentContainerName string

@description('Versionless Key Vault URI of the Application Insights connection string secret.')
param appInsightsConnectionStringSecretUri string

@description('Currency of the estimated compute costs (AML_OBS_COST_CURRENCY): one the Azure Retail Prices API supports.')
@allowed([
  'USD'
  'AUD'
  'BRL'
  'CAD'
  'CHF'
  'CNY'
  'DKK'
  'EUR'
  'GBP'
  'INR'
  'JPY'
  'KRW'
  'NOK'
  'NZD'
  'RUB'
  'SEK'
  'TWD'
])
param costCurrency string = 'USD'

@description('Azure Retail Prices API endpoint of the cost estimates (AML_OBS_PRICES_ENDPOINT); anonymous, never sent a token.')
param retailPricesEndpoint string = 'https://prices.azure.com/api/retail/prices'

@description('Versionless Key Vault URI of the notification webhook secret; empty: no messages are sent.')
param notifyWebhookSecretUri string = ''

@description('Pipeline run statuses that send a message (AML_OBS_NOTIFY_STATUSES).')
@allowed([
  'Failed'
  'Failed,Canceled'
])
param notifyStatuses string = 'Failed'

@description('Resource id of the Application Insights component: the messages link the failed run\'s trace there (AML_OBS_APPINSIGHTS_RESOURCE_ID).')
param appInsightsId string

@description('Comma-separated resource ids of the observed workspaces (AML_OBS_WORKSPACE_IDS): the reconciler passes over these.')
param observedWorkspaceIds string

@description('Days of run history the reconciler records on a workspace\'s first passes (AML_OBS_BACKFILL_DAYS; 0: from now).')
@minValue(0)
@maxValue(3650)
param backfillDays int = 0

@description('NCRONTAB schedule of the reconciler timer (AML_OBS_RECONCILE_SCHEDULE), read by the Functions host.')
param reconcileSchedule string = '0 */5 * * * *'

@description('Declared expected runs of externally triggered pipelines (AML_OBS_EXPECTED_RUNS, a JSON list; empty: none).')
param expectedRuns string = ''

resource storageAccount 'Microsoft.Storage/storageAccounts@2026-04-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2025-03-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Event Grid and the Functions host hold no session: no ARR affinity cookie.
    clientAffinityEnabled: false
    // Event Grid's push delivery to the function authenticates with the webhook key Event Grid
    // itself fetches; a client certificate would have to be one Event Grid presents, and it has none.
    clientCertEnabled: false
    // Key Vault references resolve with the user-assigned identity, not a system identity (there is none).
    keyVaultReferenceIdentity: identityId
    // No ftpsState: Flex Consumption has no FTP, and Resource Manager rejects the property on Flex
    // sites (error 51021, "Site.SiteConfig.FtpsState ... for Flex Consumption sites is invalid").
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      remoteDebuggingEnabled: false
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageAccount.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

// azd deploys with Entra ID (the deployment package goes to blob storage through Resource Manager),
// so nothing needs the SCM or FTP basic-authentication publishing credentials: both off.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

// The names the code reads are listed in DESIGN.md "Settings". Every setting that carries a
// credential is a Key Vault reference; the rest are identifiers.
resource appSettings 'Microsoft.Web/sites/config@2025-03-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    AzureWebJobsStorage__blobServiceUri: storageAccount.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storageAccount.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storageAccount.properties.primaryEndpoints.table
    APPLICATIONINSIGHTS_CONNECTION_STRING: '@Microsoft.KeyVault(SecretUri=${appInsightsConnectionStringSecretUri})'
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
    AZURE_CLIENT_ID: identityClientId
    // The cloud's Resource Manager endpoint (sovereign clouds); amlobs.settings drops its trailing '/'.
    AML_OBS_ARM_ENDPOINT: environment().resourceManager
    // The estimated compute cost of each finished run: list prices in this currency, from this endpoint.
    AML_OBS_COST_CURRENCY: costCurrency
    AML_OBS_PRICES_ENDPOINT: retailPricesEndpoint
    // The failure messages (amlobs.notify): the webhook (a credential, so a Key Vault reference; empty,
    // which turns messages off, when none is configured), which statuses, where the trace link points.
    AML_OBS_NOTIFY_WEBHOOK_URL: empty(notifyWebhookSecretUri)
      ? ''
      : '@Microsoft.KeyVault(SecretUri=${notifyWebhookSecretUri})'
    AML_OBS_NOTIFY_STATUSES: notifyStatuses
    AML_OBS_APPINSIGHTS_RESOURCE_ID: appInsightsId
    // The reconciler (docs/reconciler.md): the deployed workspaces, its period, history depth, expectations.
    AML_OBS_WORKSPACE_IDS: observedWorkspaceIds
    AML_OBS_RECONCILE_SCHEDULE: reconcileSchedule
    AML_OBS_BACKFILL_DAYS: string(backfillDays)
    AML_OBS_EXPECTED_RUNS: expectedRuns
  }
}

@description('Name of the Function App.')
output name string = functionApp.name

@description('Resource id of the Function App.')
output id string = functionApp.id

@description('Default host name of the Function App.')
output defaultHostName string = functionApp.properties.defaultHostName
