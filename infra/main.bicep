// AML run observability: everything `azd up` provisions. Subscription scope, because the observed
// workspaces may live in other resource groups and subscriptions. See docs/infra.md.
//
// Every name and id inside rg-<env> is computed here from deterministic inputs (parameters, the
// subscription, uniqueString) and handed to the modules, never taken from another module's outputs:
// what-if (`azd provision --preview`, `bicep snapshot`) can then predict every resource exactly.
targetScope = 'subscription'

import { amlEventType, amlRunStatus } from 'types.bicep'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group (rg-<env>) and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Azure region of the resource group and everything in it (must offer Flex Consumption).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Comma-separated resource ids of the AML workspaces to observe (azd env AML_WORKSPACE_IDS). Empty: a demo workspace is created and observed.')
param amlWorkspaceIds string = ''

@description('Deploy the Event Grid event subscriptions. Event Grid validates that the function exists, so the first provision runs with false and the postdeploy hook flips it (azd env ENABLE_EVENT_SUBSCRIPTION).')
param enableEventSubscription bool = false

@description('Leave out everything outside this environment\'s resource group (set by the predown hook so `azd down` only deletes rg-<env>; azd env AML_OBS_DETACH).')
param detachObservedWorkspaces bool = false

@description('Existing Event Grid system topics to adopt, found by the preprovision hook (azd env AML_OBS_ADOPTED_SYSTEM_TOPICS): comma-separated <workspace id>|<topic id>|<object id of the topic\'s system-assigned identity>. A workspace listed here gets only an event subscription of its own on that topic, never a topic: Event Grid allows one system topic per source. See docs/infra.md, "An existing system topic".')
param adoptedSystemTopics string = ''

@description('Comma-separated email addresses notified by the alert rules (azd env ALERT_EMAILS). Empty: alerts fire without notifications.')
param alertEmails string = ''

@description('A pipeline run alerts when its duration exceeds this percentage of its pipeline\'s recent p95 (azd env DURATION_REGRESSION_PERCENT).')
@minValue(100)
param durationRegressionPercent int = 150

@description('A finished pipeline run alerts when its estimated compute cost exceeds this percentage of its pipeline\'s recent p95 (azd env COST_REGRESSION_PERCENT).')
@minValue(100)
param costRegressionPercent int = 150

@description('A run alerts as an expensive idle GPU run when its estimated cost exceeds this amount, in whole units of the cost currency (azd env IDLE_GPU_ALERT_MIN_COST).')
@minValue(0)
param idleGpuAlertMinCost int = 1

@description('A run alerts as an expensive idle GPU run when its average GPU utilisation is below this percentage (azd env IDLE_GPU_ALERT_MAX_PERCENT).')
@minValue(1)
@maxValue(100)
param idleGpuAlertMaxPercent int = 30

@description('Currency of the estimated compute costs: one the Azure Retail Prices API supports (azd env COST_CURRENCY). Only USD prices are Microsoft\'s retail prices; the others are for reference.')
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

@description('How many days of run history the reconciler records on a workspace\'s first passes (azd env BACKFILL_DAYS; 0: from the deployment on). Runs that ended before the deployment are recorded with record_source backfill, which no alert reads.')
@minValue(0)
@maxValue(3650)
param backfillDays int = 0

@description('NCRONTAB (six fields, seconds first) of the reconciler\'s timer (azd env AML_OBS_RECONCILE_SCHEDULE; default every 5 minutes).')
param reconcileSchedule string = '0 */5 * * * *'

@description('Expected runs of pipelines triggered from outside AML (azd env AML_OBS_EXPECTED_RUNS): a JSON list of {name, experiment, cron, time_zone, grace_minutes}; docs/reconciler.md.')
param expectedRuns string = ''

@description('Azure Retail Prices API endpoint the cost estimates read list prices from (anonymous; azd env AML_OBS_PRICES_ENDPOINT). Override it where the public endpoint is not the right one (a sovereign cloud, a proxy).')
param retailPricesEndpoint string = 'https://prices.azure.com/api/retail/prices'

@description('Microsoft Teams Workflows or Slack incoming-webhook URL that gets one message per failed pipeline run (azd env AML_OBS_NOTIFY_WEBHOOK_URL). A secret: stored in Key Vault, read by the app through a Key Vault reference, never an output. Empty: no messages.')
@secure()
param notifyWebhookUrl string = ''

@description('Pipeline run statuses that send a message (azd env AML_OBS_NOTIFY_STATUSES).')
@allowed([
  'Failed'
  'Failed,Canceled'
])
param notifyStatuses string = 'Failed'

@description('Event types delivered to the function; the function accepts exactly these (amlobs.events.SUPPORTED_EVENT_TYPES).')
param includedEventTypes amlEventType[] = [
  'Microsoft.MachineLearningServices.RunStatusChanged'
  'Microsoft.MachineLearningServices.RunCompleted'
]

@description('Run statuses delivered to the function (RunStatusChanged events with any other status are filtered out by Event Grid).')
param runStatuses amlRunStatus[] = [
  'NotStarted'
  'Queued'
  'Preparing'
  'Provisioning'
  'Starting'
  'Running'
  'Finalizing'
  'CancelRequested'
  'Completed'
  'Failed'
  'Canceled'
  'NotResponding'
  'Paused'
  'Unknown'
]

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

@description('Name of the Key Vault; empty derives one. azd writes the output AZURE_KEY_VAULT_NAME back, so the name stays stable (see docs/infra.md on purge protection).')
param keyVaultName string = ''

@description('Resource name prefixes of the Azure Cloud Adoption Framework, as in the Azure-Samples azd templates.')
var abbrs = loadJsonContent('./abbreviations.json')

@description('Suffix that makes resource names unique per subscription, environment and region.')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

@description('Tags of every resource; azd finds the environment\'s resources by azd-env-name.')
var tags = {
  'azd-env-name': environmentName
}

@description('This environment\'s resource group; the same name is used in other subscriptions for their system topics.')
var resourceGroupName = '${abbrs.resourcesResourceGroups}${environmentName}'

@description('The function Event Grid delivers to; tests/test_infra.py checks it against src/function_app.py.')
var eventFunctionName = 'aml_run_events'

@description('azd service name of the function app (azure.yaml).')
var serviceName = 'processor'

// Names of everything in rg-<env>, and the ids built from them.
@description('Name of the user-assigned identity the Function App runs as.')
var identityName = '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'

@description('Name of the storage account of the Functions host, dedupe table, rejected events and dead letters.')
var storageAccountName = '${abbrs.storageStorageAccounts}${resourceToken}'

@description('Blob container of the Flex Consumption deployment package.')
var deploymentContainerName = 'app-package'

@description('Blob container where Event Grid dead-letters events it could not deliver.')
var deadLetterContainerName = 'deadletter-events'

@description('Blob container where the function writes the events it rejects (DESIGN.md: rejected-events).')
var rejectedEventsContainerName = 'rejected-events'

@description('Table the function uses to record each (workspace, run, status) once (DESIGN.md: processedevents).')
var processedEventsTableName = 'processedevents'

@description('Name of the Log Analytics workspace behind Application Insights.')
var logAnalyticsName = '${abbrs.operationalInsightsWorkspaces}${resourceToken}'

@description('Name of the Application Insights component.')
var applicationInsightsName = '${abbrs.insightsComponents}${resourceToken}'

@description('Name of the Key Vault holding the referenced settings.')
var vaultName = !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'

@description('Name of the secret holding the Application Insights connection string.')
var appInsightsConnectionStringSecretName = 'appinsights-connection-string'

@description('Name of the secret holding the notification webhook URL (only when one is given).')
var notifyWebhookSecretName = 'notify-webhook-url'

@description('Whether messages are sent: a webhook URL was given.')
var hasNotifyWebhook = !empty(notifyWebhookUrl)

@description('Name of the Function App.')
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'

@description('Resource id of the function identity: what the role assignments of rg-<env> are named after.')
var identityId = resourceId(
  subscription().subscriptionId,
  resourceGroupName,
  'Microsoft.ManagedIdentity/userAssignedIdentities',
  identityName
)

@description('Resource id of the storage account.')
var storageAccountId = resourceId(
  subscription().subscriptionId,
  resourceGroupName,
  'Microsoft.Storage/storageAccounts',
  storageAccountName
)

@description('Resource id of the Log Analytics workspace: where the diagnostic settings send audit and delivery-failure logs.')
var logAnalyticsId = resourceId(
  subscription().subscriptionId,
  resourceGroupName,
  'Microsoft.OperationalInsights/workspaces',
  logAnalyticsName
)

@description('Resource id of the Application Insights component.')
var applicationInsightsId = resourceId(
  subscription().subscriptionId,
  resourceGroupName,
  'Microsoft.Insights/components',
  applicationInsightsName
)

@description('Resource id of the function Event Grid delivers to.')
var eventFunctionId = resourceId(
  subscription().subscriptionId,
  resourceGroupName,
  'Microsoft.Web/sites/functions',
  functionAppName,
  eventFunctionName
)

@description('Every status the code knows (amlobs.events.KNOWN_STATUSES), the same list as the amlRunStatus type.')
var knownRunStatuses = [
  'NotStarted'
  'Queued'
  'Preparing'
  'Provisioning'
  'Starting'
  'Running'
  'Finalizing'
  'CancelRequested'
  'Completed'
  'Failed'
  'Canceled'
  'NotResponding'
  'Paused'
  'Unknown'
]

@description('The statuses not asked for. The subscription filter excludes these rather than including the ones asked for, so that RunCompleted events, which have no data.runStatus, still pass.')
var excludedRunStatuses = filter(knownRunStatuses, status => !contains(runStatuses, status))

@description('The workspace ids of AML_WORKSPACE_IDS, trimmed, without empty entries.')
var requestedWorkspaceIds = filter(map(split(amlWorkspaceIds, ','), id => trim(id)), id => !empty(id))

@description('No workspace given: create a demo workspace in rg-<env> and observe it.')
var deployDemoWorkspace = empty(requestedWorkspaceIds)

@description('Name of the demo workspace.')
var demoWorkspaceName = '${abbrs.machineLearningServicesWorkspaces}${resourceToken}'

@description('Resource id of the demo workspace.')
var demoWorkspaceId = resourceId(
  subscription().subscriptionId,
  resourceGroupName,
  'Microsoft.MachineLearningServices/workspaces',
  demoWorkspaceName
)

@description('The workspaces this environment observes (also while detached: the teardown outputs name them).')
var workspaceIds = deployDemoWorkspace ? [demoWorkspaceId] : requestedWorkspaceIds

@description('The adopted topics of AML_OBS_ADOPTED_SYSTEM_TOPICS, each with the workspace it is the topic of (lower case, to compare).')
var adoptedTopics = map(
  filter(map(split(adoptedSystemTopics, ','), entry => trim(entry)), entry => !empty(entry)),
  entry => {
    workspaceId: toLower(split(entry, '|')[0])
    topicId: split(entry, '|')[1]
    principalId: split(entry, '|')[2]
  }
)

@description('Name of this environment\'s event subscription on a topic it adopted: the topic may carry other subscriptions, another environment\'s among them, so the name carries the environment (3-64 letters, digits and hyphens).')
var adoptedEventSubscriptionName = take(
  'aml-run-events-${replace(replace(toLower(environmentName), '_', '-'), '.', '-')}-${take(uniqueString(subscription().id, environmentName), 6)}',
  64
)

@description('Each observed workspace with the names derived from its id, and the topic adopted for it, if any.')
var workspaceEntries = map(workspaceIds, id => {
  id: id
  subscriptionId: split(id, '/')[2]
  resourceGroup: split(id, '/')[4]
  name: last(split(id, '/'))
  roleGuid: readerRoleGuid(id, environmentName)
  // A system topic name takes letters, digits and hyphens.
  ownTopicName: take(
    '${abbrs.eventGridSystemTopics}${replace(replace(last(split(id, '/')), '_', '-'), '.', '-')}-${take(uniqueString(toLower(id)), 6)}',
    64
  )
  adoptedTopic: filter(adoptedTopics, topic => topic.workspaceId == toLower(id))
  // Deleted together with the identity when rg-<env> is deleted (the demo workspace).
  inEnvironmentGroup: toLower(split(id, '/')[2]) == toLower(subscription().subscriptionId) && toLower(split(id, '/')[4]) == toLower(resourceGroupName)
})

@description('Each observed workspace with the system topic its events come from: the adopted one, or the one this environment creates in rg-<env> of the workspace\'s subscription.')
var allWorkspaces = map(workspaceEntries, ws => {
  id: ws.id
  subscriptionId: ws.subscriptionId
  resourceGroup: ws.resourceGroup
  name: ws.name
  roleGuid: ws.roleGuid
  inEnvironmentGroup: ws.inEnvironmentGroup
  adopted: !empty(ws.adoptedTopic)
  topicId: empty(ws.adoptedTopic)
    ? resourceId(ws.subscriptionId, resourceGroupName, 'Microsoft.EventGrid/systemTopics', ws.ownTopicName)
    : ws.adoptedTopic[0].topicId
  topicSubscriptionId: empty(ws.adoptedTopic) ? ws.subscriptionId : split(ws.adoptedTopic[0].topicId, '/')[2]
  topicResourceGroup: empty(ws.adoptedTopic) ? resourceGroupName : split(ws.adoptedTopic[0].topicId, '/')[4]
  topicName: empty(ws.adoptedTopic) ? ws.ownTopicName : last(split(ws.adoptedTopic[0].topicId, '/'))
  topicPrincipalId: empty(ws.adoptedTopic) ? '' : ws.adoptedTopic[0].principalId
  eventSubscriptionName: empty(ws.adoptedTopic) ? 'aml-run-events' : adoptedEventSubscriptionName
})

@description('The workspaces deployed to: none while detached (the predown hook), so `azd down` only sees rg-<env>.')
var workspaces = detachObservedWorkspaces ? [] : allWorkspaces

@description('Subscriptions other than this one where this environment creates a system topic: those topics need a resource group there (a system topic lives in its source\'s subscription). A workspace whose topic is adopted needs none.')
var foreignSubscriptionIds = filter(
  union(map(filter(allWorkspaces, ws => !ws.adopted), ws => toLower(ws.subscriptionId)), []),
  sub => sub != toLower(subscription().subscriptionId)
)

@description('The foreign subscriptions deployed to: none while detached.')
var deployedForeignSubscriptionIds = detachObservedWorkspaces ? [] : foreignSubscriptionIds

@description('The addresses of ALERT_EMAILS, trimmed, without empty entries.')
var alertEmailReceivers = filter(map(split(alertEmails, ','), email => trim(email)), email => !empty(email))

@description('Name (GUID) of the custom reader role of one workspace: deterministic per workspace and environment.')
func readerRoleGuid(workspaceId string, environment string) string =>
  guid(toLower(workspaceId), environment, 'aml-run-reader-role')

@description('Resource id of the custom reader role of one workspace, in the workspace\'s subscription.')
func readerRoleDefinitionId(workspaceId string, environment string) string =>
  subscriptionResourceId(
    split(workspaceId, '/')[2],
    'Microsoft.Authorization/roleDefinitions',
    readerRoleGuid(workspaceId, environment)
  )

@description('Name (GUID) of the role assignment of the custom reader role on one workspace for one identity (see workspaceAccess).')
func workspaceAssignmentGuid(workspaceId string, environment string, identityKey string) string =>
  guid(toLower(workspaceId), environment, identityKey, 'aml-run-reader-assignment')

resource rg 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

module identity './modules/identity.bicep' = {
  scope: rg
  params: {
    name: identityName
    location: location
    tags: tags
  }
}

module storage './modules/storage.bicep' = {
  scope: rg
  params: {
    name: storageAccountName
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    deadLetterContainerName: deadLetterContainerName
    rejectedEventsContainerName: rejectedEventsContainerName
    processedEventsTableName: processedEventsTableName
    logAnalyticsWorkspaceId: logAnalyticsId
  }
  dependsOn: [
    monitoring
  ]
}

module monitoring './modules/monitoring.bicep' = {
  scope: rg
  params: {
    logAnalyticsName: logAnalyticsName
    applicationInsightsName: applicationInsightsName
    location: location
    tags: tags
  }
}

module keyVault './modules/keyvault.bicep' = {
  scope: rg
  params: {
    name: vaultName
    location: location
    tags: tags
    applicationInsightsName: applicationInsightsName
    appInsightsConnectionStringSecretName: appInsightsConnectionStringSecretName
    notifyWebhookUrl: notifyWebhookUrl
    notifyWebhookSecretName: notifyWebhookSecretName
    logAnalyticsWorkspaceId: logAnalyticsId
  }
  dependsOn: [
    monitoring
  ]
}

module rbac './modules/rbac.bicep' = {
  scope: rg
  params: {
    identityId: identityId
    principalId: identity.outputs.principalId
    storageAccountName: storageAccountName
    applicationInsightsName: applicationInsightsName
    keyVaultName: vaultName
    appInsightsConnectionStringSecretName: appInsightsConnectionStringSecretName
    notifyWebhookSecretName: notifyWebhookSecretName
    grantNotifyWebhookSecret: hasNotifyWebhook
  }
  dependsOn: [
    storage
    monitoring
    keyVault
  ]
}

module functionApp './modules/functionapp.bicep' = {
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    pythonVersion: pythonVersion
    identityId: identityId
    identityClientId: identity.outputs.clientId
    storageAccountName: storageAccountName
    deploymentContainerName: deploymentContainerName
    appInsightsConnectionStringSecretUri: keyVault.outputs.appInsightsConnectionStringSecretUri
    costCurrency: costCurrency
    retailPricesEndpoint: retailPricesEndpoint
    notifyWebhookSecretUri: hasNotifyWebhook ? keyVault.outputs.notifyWebhookSecretUri : ''
    notifyStatuses: notifyStatuses
    appInsightsId: applicationInsightsId
    observedWorkspaceIds: join(workspaceIds, ',')
    backfillDays: backfillDays
    reconcileSchedule: reconcileSchedule
    expectedRuns: expectedRuns
  }
  // The app's first start downloads the package and resolves the Key Vault reference with the
  // identity: its roles must exist first.
  dependsOn: [
    storage
    rbac
  ]
}

module demoWorkspace './modules/demo-workspace.bicep' = if (deployDemoWorkspace) {
  scope: rg
  params: {
    name: demoWorkspaceName
    storageAccountName: 'stml${resourceToken}'
    keyVaultName: 'kvml${resourceToken}'
    location: location
    tags: tags
    applicationInsightsId: applicationInsightsId
  }
  dependsOn: [
    monitoring
  ]
}

module foreignResourceGroups './modules/foreign-resource-group.bicep' = [
  for sub in deployedForeignSubscriptionIds: {
    scope: subscription(sub)
    params: {
      name: resourceGroupName
      location: location
      tags: tags
    }
  }
]

module readerRoles './modules/aml-reader-role.bicep' = [
  for ws in workspaces: {
    scope: subscription(ws.subscriptionId)
    params: {
      roleGuid: ws.roleGuid
      roleName: 'AML run observer (${environmentName}, ${ws.name}, ${take(uniqueString(toLower(ws.id)), 6)})'
      assignableScope: '/subscriptions/${ws.subscriptionId}/resourceGroups/${ws.resourceGroup}'
    }
    // A role definition's assignable scope must exist: the demo workspace's group is rg-<env>,
    // created by this deployment.
    dependsOn: [
      rg
    ]
  }
]

module workspaceAccess './modules/workspace-access.bicep' = [
  for ws in workspaces: {
    scope: resourceGroup(ws.subscriptionId, ws.resourceGroup)
    params: {
      workspaceName: ws.name
      principalId: identity.outputs.principalId
      amlReaderRoleDefinitionId: readerRoleDefinitionId(ws.id, environmentName)
      // Outside rg-<env> the principal is part of the name: an assignment left on a customer's
      // workspace for a deleted identity (a teardown that could not remove it) must not block the next
      // identity of this environment, since a role assignment's principal cannot change under the
      // same name (RoleAssignmentUpdateNotPermitted). Inside rg-<env> (the demo workspace) the
      // assignment is deleted with the identity, so the identity's resource id names it and what-if
      // predicts it. See docs/infra.md, "Names that what-if cannot predict".
      #disable-next-line what-if-short-circuiting
      assignmentGuid: workspaceAssignmentGuid(
        ws.id,
        environmentName,
        ws.inEnvironmentGroup ? identityId : identity.outputs.principalId
      )
    }
    dependsOn: [
      readerRoles
      demoWorkspace
    ]
  }
]

// Read-only references to the observed workspaces, for their regions: a system topic must be in its
// workspace's region, and a resource's location cannot be read from an existing resource inside the
// module that declares it (it must be known when that deployment starts), but a module parameter can.
resource observedWorkspaces 'Microsoft.MachineLearningServices/workspaces@2026-05-01' existing = [
  for ws in workspaces: {
    name: ws.name
    scope: resourceGroup(ws.subscriptionId, ws.resourceGroup)
  }
]

// A topic adopted from the workspace's owner or from another environment is only referenced: this
// environment adds its own event subscription to it and changes nothing else (docs/infra.md).
module systemTopics './modules/system-topic.bicep' = [
  for (ws, i) in workspaces: if (!ws.adopted) {
    scope: resourceGroup(ws.subscriptionId, resourceGroupName)
    params: {
      name: ws.topicName
      tags: tags
      workspaceId: ws.id
      // The demo workspace is created in this deployment, in `location`: no lookup of it is needed.
      location: deployDemoWorkspace ? location : observedWorkspaces[i].location
      logAnalyticsWorkspaceId: logAnalyticsId
    }
    dependsOn: [
      rg
      foreignResourceGroups
      demoWorkspace
      monitoring
    ]
  }
]

module deadLetterAccess './modules/deadletter-access.bicep' = [
  for (ws, i) in workspaces: {
    scope: rg
    params: {
      storageAccountName: storageAccountName
      deadLetterContainerName: deadLetterContainerName
      topicId: ws.topicId
      // An adopted topic's identity is the one the preprovision hook found on it.
      topicPrincipalId: ws.adopted ? ws.topicPrincipalId : systemTopics[i]!.outputs.principalId
      principalKey: ws.topicPrincipalId
    }
    dependsOn: [
      storage
    ]
  }
]

module eventSubscriptions './modules/event-subscription.bicep' = [
  for ws in workspaces: if (enableEventSubscription) {
    scope: resourceGroup(ws.topicSubscriptionId, ws.topicResourceGroup)
    params: {
      name: ws.eventSubscriptionName
      systemTopicName: ws.topicName
      functionResourceId: eventFunctionId
      includedEventTypes: includedEventTypes
      excludedRunStatuses: excludedRunStatuses
      deadLetterStorageAccountId: storageAccountId
      deadLetterContainerName: deadLetterContainerName
    }
    // Event Grid checks that the function exists; dead-lettering through the topic's identity needs
    // its role on the container first.
    dependsOn: [
      systemTopics
      functionApp
      deadLetterAccess
    ]
  }
]

module dashboard './modules/dashboard.bicep' = {
  scope: rg
  params: {
    name: 'AML pipeline runs (${environmentName})'
    location: location
    tags: tags
    appInsightsId: applicationInsightsId
  }
  dependsOn: [
    monitoring
  ]
}

module alerts './modules/alerts.bicep' = {
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    appInsightsId: applicationInsightsId
    alertEmailReceivers: alertEmailReceivers
    durationRegressionPercent: durationRegressionPercent
    costRegressionPercent: costRegressionPercent
    idleGpuAlertMinCost: idleGpuAlertMinCost
    idleGpuAlertMaxPercent: idleGpuAlertMaxPercent
    // Computed, not read from the topic modules' outputs: a module loop's outputs collected outside
    // it compile to a copyIndex() without a loop name, which Resource Manager rejects
    // (Azure/bicep#5101).
    eventSources: [
      for ws in workspaces: {
        topicId: ws.topicId
        eventSubscriptionName: ws.eventSubscriptionName
      }
    ]
  }
  dependsOn: [
    monitoring
    systemTopics
  ]
}

// Outputs become azd env values (no secrets: names and ids only).
@description('Region of rg-<env>.')
output AZURE_LOCATION string = location

@description('Tenant of the deployment.')
output AZURE_TENANT_ID string = tenant().tenantId

@description('Name of this environment\'s resource group.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('Name of the Function App (azd deploys the processor service to it).')
output AZURE_FUNCTION_APP_NAME string = functionAppName

@description('Default host name of the Function App.')
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName

@description('Client id of the function identity.')
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('Object (principal) id of the function identity.')
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('Name of the Application Insights component.')
output APPLICATIONINSIGHTS_NAME string = applicationInsightsName

@description('Name of the Key Vault; azd writes it back so the name stays stable.')
output AZURE_KEY_VAULT_NAME string = vaultName

@description('Name of the storage account.')
output AZURE_STORAGE_ACCOUNT_NAME string = storageAccountName

@description('Blob container of the dead letters (the replay command reads it).')
output AML_DEAD_LETTER_CONTAINER string = deadLetterContainerName

@description('Blob container of the rejected events.')
output AML_REJECTED_EVENTS_CONTAINER string = rejectedEventsContainerName

@description('Comma-separated resource ids of the observed workspaces.')
output AML_OBSERVED_WORKSPACE_IDS string = join(workspaceIds, ',')

@description('Name of the function Event Grid delivers to.')
output AML_EVENT_FUNCTION_NAME string = eventFunctionName

// The cost settings the Function App runs with, for scripts/amlobs.sh: replay and backfill records
// are costed as live ones.
@description('Currency of the estimated compute costs (the Function App\'s AML_OBS_COST_CURRENCY).')
output AML_OBS_COST_CURRENCY string = costCurrency

@description('Retail Prices API endpoint of the cost estimates (the Function App\'s AML_OBS_PRICES_ENDPOINT).')
output AML_OBS_PRICES_ENDPOINT string = retailPricesEndpoint

// What lives outside rg-<env>, for the teardown hooks (computed from the parameters, so it is known
// even when a detached provision leaves these out). Comma-separated resource ids.
@description('Comma-separated ids of the role assignments on the observed workspaces (the postdown hook deletes them).')
output AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS string = join(
  map(
    allWorkspaces,
    ws =>
      '${ws.id}/providers/Microsoft.Authorization/roleAssignments/${workspaceAssignmentGuid(ws.id, environmentName, ws.inEnvironmentGroup ? identityId : identity.outputs.principalId)}'
  ),
  ','
)

@description('Comma-separated full resource ids of the custom reader roles, one per observed workspace, each in its workspace\'s subscription (the postdown hook deletes them by these ids).')
output AML_OBS_READER_ROLE_DEFINITION_IDS string = join(
  map(workspaceIds, id => readerRoleDefinitionId(id, environmentName)),
  ','
)

@description('Comma-separated ids of this environment\'s event subscriptions on adopted system topics (the postdown hook deletes them; the topics and their other subscriptions stay).')
output AML_OBS_ADOPTED_EVENT_SUBSCRIPTION_IDS string = join(
  map(filter(allWorkspaces, ws => ws.adopted), ws => '${ws.topicId}/eventSubscriptions/${ws.eventSubscriptionName}'),
  ','
)

@description('Comma-separated ids of the system topics this environment created (the predown hook checks that no other environment still subscribes to one before `azd down` deletes it).')
output AML_OBS_SYSTEM_TOPIC_IDS string = join(map(filter(allWorkspaces, ws => !ws.adopted), ws => ws.topicId), ',')

@description('Comma-separated ids of the rg-<env> groups in other subscriptions (the postdown hook deletes them).')
output AML_OBS_FOREIGN_RESOURCE_GROUP_IDS string = join(
  map(foreignSubscriptionIds, sub => '/subscriptions/${sub}/resourceGroups/${resourceGroupName}'),
  ','
)
