// The event subscription that delivers one workspace's AML run events to the function.
// Event Grid checks that the function exists when this is created, which is why main.bicep only
// deploys it once the code is deployed (enableEventSubscription, set by the postdeploy hook).

import { amlEventType, amlRunStatus } from '../types.bicep'

@description('Name of the system topic (in this resource group): one this environment created, or an adopted one.')
param systemTopicName string

@description('Name of the event subscription: aml-run-events on a topic of this environment, a name with the environment in it on an adopted topic (3-64 letters, digits and hyphens).')
@minLength(3)
@maxLength(64)
param name string

@description('Resource id of the Event Grid-triggered function (Microsoft.Web/sites/functions, src/function_app.py).')
param functionResourceId string

@description('Event types delivered to the function.')
param includedEventTypes amlEventType[]

@description('Run statuses that are NOT delivered. Expressed as an exclusion because RunCompleted events carry no data.runStatus and Event Grid treats a missing key as a match only for StringNotIn.')
param excludedRunStatuses amlRunStatus[]

@description('Resource id of the storage account with the dead-letter container.')
param deadLetterStorageAccountId string

@description('Name of the dead-letter container.')
param deadLetterContainerName string

@description('Delivery attempts before an event is dead-lettered (1-30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes an event is retried before it is dead-lettered (1-1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource eventSubscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: name
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: functionResourceId
        // The Python trigger handles one event per invocation; dedupe and retries are per event.
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: includedEventTypes
      advancedFilters: empty(excludedRunStatuses)
        ? []
        : [
            {
              operatorType: 'StringNotIn'
              key: 'data.runStatus'
              values: excludedRunStatuses
            }
          ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

@description('Resource id of the event subscription.')
output id string = eventSubscription.id
