// Event Grid system topic of one observed AML workspace, with its own system-assigned identity
// (the identity that writes dead letters). Lives in this environment's resource group of the
// workspace's subscription, never in the workspace's own group, so `azd down` cannot reach it.

import { resourceTags } from '../types.bicep'

@description('Name of the system topic.')
param name string

@description('Tags applied to the topic.')
param tags resourceTags

@description('Resource id of the observed workspace (the event source).')
param workspaceId string

@description('Azure region of the observed workspace: a system topic lives in its source\'s region. A parameter because a resource\'s location must be known when the deployment starts, which an existing resource\'s location is not (BCP120).')
param location string

@description('Resource id of the Log Analytics workspace that receives the topic\'s delivery-failure log.')
param logAnalyticsWorkspaceId string

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  // A system topic's region is its source's region.
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: workspaceId
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

// DeliveryFailures is the resource log category of a system topic: one entry per failed delivery
// attempt, with its reason (MicrosoftDocs/azure-docs articles/event-grid/monitor-push-reference.md).
// Only on a topic this environment creates: an adopted topic's logging is its owner's.
// The newest diagnosticSettings API is a preview; the only stable one (2016-09-01) cannot name a
// Log Analytics workspace. See tests/test_infra.py ALLOWED_SUPPRESSIONS.
#disable-next-line use-recent-api-versions
resource deliveryFailureDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'delivery-failures-to-log-analytics'
  scope: topic
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'DeliveryFailures'
        enabled: true
      }
    ]
  }
}

@description('Resource id of the system topic.')
output id string = topic.id

@description('Name of the system topic.')
output name string = topic.name

@description('Object id of the topic\'s system-assigned identity.')
output principalId string = topic.identity.principalId
