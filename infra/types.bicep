// Types shared by main.bicep and the modules (imported with `import { ... } from`).

@export()
@description('Tags applied to a resource: string values only, as Resource Manager stores them.')
type resourceTags = {
  @description('Any tag name and its value.')
  *: string
}

@export()
@description('An Event Grid event type of Azure Machine Learning that the function accepts (amlobs.events.SUPPORTED_EVENT_TYPES).')
type amlEventType =
  | 'Microsoft.MachineLearningServices.RunStatusChanged'
  | 'Microsoft.MachineLearningServices.RunCompleted'

@export()
@description('An AML run status (amlobs.events.KNOWN_STATUSES).')
type amlRunStatus =
  | 'NotStarted'
  | 'Queued'
  | 'Preparing'
  | 'Provisioning'
  | 'Starting'
  | 'Running'
  | 'Finalizing'
  | 'CancelRequested'
  | 'Completed'
  | 'Failed'
  | 'Canceled'
  | 'NotResponding'
  | 'Paused'
  | 'Unknown'

@export()
@description('A system topic whose deliveries to this environment are watched, and this environment\'s event subscription on it.')
type eventSource = {
  @description('Resource id of the system topic (created by this environment or adopted).')
  topicId: string

  @description('Name of this environment\'s event subscription on the topic.')
  eventSubscriptionName: string
}
