// AML run observability: everything `azd up` provisions. Subscription scope, because the observed
// workspaces may live in other resource groups and subscriptions. See docs/infra.md.
targetScope = 'subscription'

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

@description('Comma-separated email addresses notified by the alert rules (azd env ALERT_EMAILS). Empty: alerts fire without notifications.')
param alertEmails string = ''

@description('A pipeline run alerts when its duration exceeds this percentage of its pipeline\'s recent p95 (azd env DURATION_REGRESSION_PERCENT).')
@minValue(100)
param durationRegressionPercent int = 150

@description('Event types delivered to the function; the function accepts exactly these (amlobs.events.SUPPORTED_EVENT_TYPES).')
@allowed([
  'Microsoft.MachineLearningServices.RunStatusChanged'
  'Microsoft.MachineLearningServices.RunCompleted'
])
param includedEventTypes array = [
  'Microsoft.MachineLearningServices.RunStatusChanged'
  'Microsoft.MachineLearningServices.RunCompleted'
]

@description('Run statuses delivered to the function (RunStatusChanged events with any other status are filtered out by Event Grid).')
@allowed([
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
])
param runStatuses array = [
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

@description('Python version of the Functions runtime (the test suite runs on 3.11).')
@allowed([
  '3.10'
  '3.11'
  '3.12'
])
param pythonVersion string = '3.11'

@description('Name of the Key Vault; empty derives one. azd writes the output AZURE_KEY_VAULT_NAME back, so the name stays stable (see docs/infra.md on purge protection).')
param keyVaultName string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var resourceGroupName = '${abbrs.resourcesResourceGroups}${environmentName}'

// The function Event Grid delivers to; tests/test_infra.py checks it against src/function_app.py.
var eventFunctionName = 'aml_run_events'
var serviceName = 'processor'

// Every status the code knows (amlobs.events.KNOWN_STATUSES). The subscription filter excludes
// the ones not asked for, rather than including the ones asked for, so that RunCompleted events,
// which have no data.runStatus, still pass.
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
var excludedRunStatuses = filter(knownRunStatuses, status => !contains(runStatuses, status))

var requestedWorkspaceIds = filter(map(split(amlWorkspaceIds, ','), id => trim(id)), id => !empty(id))
var deployDemoWorkspace = empty(requestedWorkspaceIds)
var demoWorkspaceName = '${abbrs.machineLearningServicesWorkspaces}${resourceToken}'
var demoWorkspaceId = '${subscription().id}/resourceGroups/${resourceGroupName}/providers/Microsoft.MachineLearningServices/workspaces/${demoWorkspaceName}'
var workspaceIds = deployDemoWorkspace ? [demoWorkspaceId] : requestedWorkspaceIds
var observedWorkspaceIds = detachObservedWorkspaces ? [] : workspaceIds

var workspaces = [
  for id in observedWorkspaceIds: {
    id: id
    subscriptionId: split(id, '/')[2]
    resourceGroup: split(id, '/')[4]
    name: last(split(id, '/'))
    roleGuid: guid(toLower(id), environmentName, 'aml-run-reader-role')
    topicName: take('${abbrs.eventGridSystemTopics}${replace(last(split(id, '/')), '_', '-')}-${take(uniqueString(toLower(id)), 6)}', 64)
  }
]

// Subscriptions other than this one that hold observed workspaces: their system topics need a
// resource group there (a system topic lives in its source's subscription).
var foreignSubscriptionIds = filter(
  union(map(observedWorkspaceIds, id => toLower(split(id, '/')[2])), []),
  sub => sub != toLower(subscription().subscriptionId)
)

var alertEmailReceivers = filter(map(split(alertEmails, ','), email => trim(email)), email => !empty(email))

resource rg 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: resourceGroupName
  location: location
  tags: tags
}

module identity './modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

module storage './modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package'
  }
}

module monitoring './modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

module keyVault './modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module rbac './modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    appInsightsConnectionStringSecretName: keyVault.outputs.appInsightsConnectionStringSecretName
  }
}

module functionApp './modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: '${abbrs.webSitesFunctions}${resourceToken}'
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    pythonVersion: pythonVersion
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionStringSecretUri: keyVault.outputs.appInsightsConnectionStringSecretUri
  }
  // The app's first start downloads the package and resolves the Key Vault reference with the
  // identity: its roles must exist first.
  dependsOn: [
    rbac
  ]
}

module demoWorkspace './modules/demo-workspace.bicep' = if (deployDemoWorkspace) {
  name: 'demo-workspace'
  scope: rg
  params: {
    name: demoWorkspaceName
    storageAccountName: 'stml${resourceToken}'
    keyVaultName: 'kvml${resourceToken}'
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module foreignResourceGroups './modules/foreign-resource-group.bicep' = [
  for sub in foreignSubscriptionIds: {
    name: 'aml-obs-${resourceToken}-rg-${sub}'
    scope: subscription(sub)
    params: {
      name: resourceGroupName
      location: location
      tags: tags
    }
  }
]

module readerRoles './modules/aml-reader-role.bicep' = [
  for (ws, i) in workspaces: {
    name: 'aml-obs-${resourceToken}-role-${i}'
    scope: subscription(ws.subscriptionId)
    params: {
      roleGuid: ws.roleGuid
      roleName: 'AML run observer (${environmentName}, ${ws.name}, ${take(uniqueString(toLower(ws.id)), 6)})'
      assignableScope: '/subscriptions/${ws.subscriptionId}/resourceGroups/${ws.resourceGroup}'
    }
  }
]

module workspaceAccess './modules/workspace-access.bicep' = [
  for (ws, i) in workspaces: {
    name: 'aml-obs-${resourceToken}-access-${i}'
    scope: resourceGroup(ws.subscriptionId, ws.resourceGroup)
    params: {
      workspaceName: ws.name
      principalId: identity.outputs.principalId
      amlReaderRoleDefinitionId: readerRoles[i].outputs.roleDefinitionId
      // The principal is part of the name: an assignment left behind for a deleted identity (a
      // teardown that could not remove it) must not block the next environment's identity, since a
      // role assignment's principal cannot be changed under the same name.
      assignmentGuid: guid(toLower(ws.id), environmentName, identity.outputs.principalId, 'aml-run-reader-assignment')
    }
    dependsOn: [
      demoWorkspace
    ]
  }
]

// Read-only references to the observed workspaces, for their regions: a system topic must be in its
// workspace's region, and a resource's location cannot be read from an existing resource inside the
// module that declares it (it must be known when that deployment starts), but a module parameter can.
resource observedWorkspaces 'Microsoft.MachineLearningServices/workspaces@2025-06-01' existing = [
  for ws in workspaces: {
    name: ws.name
    scope: resourceGroup(ws.subscriptionId, ws.resourceGroup)
  }
]

module systemTopics './modules/system-topic.bicep' = [
  for (ws, i) in workspaces: {
    name: 'aml-obs-${resourceToken}-topic-${i}'
    scope: resourceGroup(ws.subscriptionId, resourceGroupName)
    params: {
      name: ws.topicName
      tags: tags
      workspaceId: ws.id
      // The demo workspace is created in this deployment, in `location`: no lookup of it is needed.
      location: deployDemoWorkspace ? location : observedWorkspaces[i].location
    }
    dependsOn: [
      rg
      foreignResourceGroups
      demoWorkspace
    ]
  }
]

module deadLetterAccess './modules/deadletter-access.bicep' = [
  for (ws, i) in workspaces: {
    name: 'aml-obs-${resourceToken}-deadletter-${i}'
    scope: rg
    params: {
      storageAccountName: storage.outputs.name
      deadLetterContainerName: storage.outputs.deadLetterContainerName
      topicPrincipalId: systemTopics[i].outputs.principalId
    }
  }
]

module eventSubscriptions './modules/event-subscription.bicep' = [
  for (ws, i) in workspaces: if (enableEventSubscription) {
    name: 'aml-obs-${resourceToken}-subscription-${i}'
    scope: resourceGroup(ws.subscriptionId, resourceGroupName)
    params: {
      systemTopicName: systemTopics[i].outputs.name
      functionAppId: functionApp.outputs.id
      functionName: eventFunctionName
      includedEventTypes: includedEventTypes
      excludedRunStatuses: excludedRunStatuses
      deadLetterStorageAccountId: storage.outputs.id
      deadLetterContainerName: storage.outputs.deadLetterContainerName
    }
    // Dead-lettering through the topic's identity needs its role on the container first.
    dependsOn: [
      deadLetterAccess
    ]
  }
]

module dashboard './modules/dashboard.bicep' = {
  name: 'dashboard'
  scope: rg
  params: {
    name: 'AML pipeline runs (${environmentName})'
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.applicationInsightsId
  }
}

module alerts './modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    appInsightsId: monitoring.outputs.applicationInsightsId
    alertEmailReceivers: alertEmailReceivers
    durationRegressionPercent: durationRegressionPercent
    systemTopicIds: [for (ws, i) in workspaces: systemTopics[i].outputs.id]
  }
}

// Outputs become azd env values (no secrets: names and ids only).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AML_DEAD_LETTER_CONTAINER string = storage.outputs.deadLetterContainerName
output AML_REJECTED_EVENTS_CONTAINER string = storage.outputs.rejectedEventsContainerName
output AML_OBSERVED_WORKSPACE_IDS string = join(workspaceIds, ',')
output AML_EVENT_FUNCTION_NAME string = eventFunctionName
// What lives outside rg-<env>, for the predown hook (deterministic, so it is known even when a
// detached provision leaves these out). Comma-separated resource ids.
output AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS string = join(
  map(
    workspaceIds,
    id =>
      '${id}/providers/Microsoft.Authorization/roleAssignments/${guid(toLower(id), environmentName, identity.outputs.principalId, 'aml-run-reader-assignment')}'
  ),
  ','
)
output AML_OBS_READER_ROLE_DEFINITION_IDS string = join(
  map(workspaceIds, id => '/subscriptions/${split(id, '/')[2]}/providers/Microsoft.Authorization/roleDefinitions/${guid(toLower(id), environmentName, 'aml-run-reader-role')}'),
  ','
)
output AML_OBS_FOREIGN_RESOURCE_GROUP_IDS string = join(
  map(
    filter(
      union(map(workspaceIds, id => toLower(split(id, '/')[2])), []),
      sub => sub != toLower(subscription().subscriptionId)
    ),
    sub => '/subscriptions/${sub}/resourceGroups/${resourceGroupName}'
  ),
  ','
)
