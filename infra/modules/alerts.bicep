// Alert rules over the processor's telemetry (Application Insights) and over the Event Grid system
// topics' delivery metrics, plus the action group that notifies people. Every log query here may only
// use the telemetry names of DESIGN.md: tests/test_dashboard_queries.py checks them against the code.

import { eventSource, resourceTags } from '../types.bicep'

@description('Azure region of the log search alert rules (the region of the Application Insights component).')
param location string

@description('Tags applied to every resource of this module.')
param tags resourceTags

@description('Suffix that keeps resource names unique (azd resourceToken).')
param resourceToken string

@description('Resource id of the Application Insights component the log search alerts query.')
param appInsightsId string

@description('Email addresses notified when an alert fires. Empty: no action group is created and the rules fire without notifying anyone (they still show under Monitor > Alerts).')
param alertEmailReceivers string[]

@description('A completed pipeline run alerts when its wall time exceeds this percentage of its own pipeline\'s recent p95 (150 = 1.5 x p95).')
@minValue(100)
param durationRegressionPercent int = 150

@description('A finished pipeline run alerts when its estimated compute cost exceeds this percentage of its own pipeline\'s recent p95 (150 = 1.5 x p95).')
@minValue(100)
param costRegressionPercent int = 150

@description('A run alerts as an expensive idle GPU run when its estimated compute cost exceeds this amount, in whole units of the cost currency.')
@minValue(0)
param idleGpuAlertMinCost int = 1

@description('A run alerts as an expensive idle GPU run when its average GPU utilisation (AmlRunResourceUse) is below this percentage.')
@minValue(1)
@maxValue(100)
param idleGpuAlertMaxPercent int = 30

@description('The Event Grid system topics whose dead-lettered deliveries to this environment alert (one metric alert per topic, on this environment\'s event subscription only).')
param eventSources eventSource[]

@description('Completed runs of a pipeline needed in the last two days before its p95 is trusted as a baseline.')
@minValue(1)
param durationBaselineMinRuns int = 5

@description('Failed invocations of the event function within 15 minutes that make the processor count as unhealthy.')
@minValue(1)
param processorFailureThreshold int = 5

@description('Whether an action group is created: only when someone is to be notified.')
var hasReceivers = !empty(alertEmailReceivers)

@description('Name of the action group.')
var actionGroupName = 'ag-amlobs-${resourceToken}'

@description('Id of the action group, by name rather than through the (conditional) symbol, which may be null; the rules depend on it explicitly.')
var actionGroupResourceId = resourceId('Microsoft.Insights/actionGroups', actionGroupName)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (hasReceivers) {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'amlobs'
    enabled: true
    emailReceivers: [
      for (email, i) in alertEmailReceivers: {
        name: 'email-${i}'
        emailAddress: email
        useCommonAlertSchema: true
      }
    ]
  }
}

@description('The action groups every log search alert notifies: none without receivers.')
var actionGroupIds = hasReceivers ? [actionGroupResourceId] : []

@description('Every value of a dimension. Every rule splits by run (or reason) and resolves by itself: each failed or slow pipeline run raises exactly one alert even though consecutive evaluation windows overlap (they do, so that telemetry ingested a few minutes late is still seen).')
var allValues = ['*']

// The run rules judge the time a status changed (status_time), not the time its record was sent
// (timestamp, which the rule's window filters on): a record that arrives later than the window after its
// status changed - history from `backfill`, a dead-letter `replay`, a long Event Grid retry - never fires.
// It still shows in the workbook, at its own time. `let window` must equal the rule's windowSize
// (tests/test_dashboard_queries.py checks it).
@description('Log query of the pipeline-failed rule: one row per failed top-level pipeline run, with its failing step, the error chain, links to the run and the step in Azure ML studio, and its trace\'s operation id.')
var pipelineFailedQuery = '''
let window = 15m;
customEvents
| where name == 'AmlRunStatusChanged'
| extend subscription = tostring(customDimensions.subscriptions), resource_group = tostring(customDimensions.resourceGroup),
    workspace = tostring(customDimensions.amlWorkSpace), run_id = tostring(customDimensions.run_id),
    status = tostring(customDimensions.status), copy_rank = iff(isempty(tostring(customDimensions.enrichment_error)), 1, 0)
// a run status's copies: the one with run history's details wins (a partial record completed later),
// before anything is judged on those details (a partial copy knows no parent run)
| summarize arg_max(copy_rank, *) by subscription, resource_group, workspace, run_id, status
| extend run_type = tostring(customDimensions.run_type), status = tostring(customDimensions.status),
    record_source = tostring(customDimensions.record_source), parent_run_id = tostring(customDimensions.parent_run_id)
// a top-level pipeline run: a nested sub-pipeline that fails makes its pipeline fail, which alerts once
| where run_type =~ 'azureml.PipelineRun' and isempty(parent_run_id) and status == 'Failed'
    and record_source !in ('backfill', 'replay')
| extend status_time = coalesce(todatetime(customDimensions.status_time), timestamp)
| where status_time > ago(window)
| extend run_id = tostring(customDimensions.run_id), pipeline = tostring(customDimensions.experimentName),
    workspace = tostring(customDimensions.amlWorkSpace), error_code = tostring(customDimensions.error_code),
    subscription = tostring(customDimensions.subscriptions), resource_group = tostring(customDimensions.resourceGroup)
// each run once, however often its record was sent
| summarize arg_max(status_time, pipeline, error_code) by subscription, resource_group, workspace, run_id
| join kind=leftouter (customEvents // why: the root cause on the run's summary, sent with the record
    | where name == 'AmlPipelineRunSummary'
    | extend workspace = tostring(customDimensions.amlWorkSpace), run_id = tostring(customDimensions.run_id),
        failing_step = coalesce(tostring(customDimensions.root_cause_step_path),
            tostring(customDimensions.root_cause_step_name), tostring(customDimensions.root_cause_note)),
        root_cause_error = coalesce(tostring(customDimensions.root_cause_error_code_chain),
            tostring(customDimensions.root_cause_error_code)),
        root_cause_message = tostring(customDimensions.root_cause_error_message),
        failing_step_url = tostring(customDimensions.root_cause_step_studio_url),
        failing_step_logs_url = tostring(customDimensions.root_cause_step_logs_url),
        trace_operation_id = tostring(customDimensions.trace_operation_id)
    | summarize arg_max(timestamp, failing_step, root_cause_error, root_cause_message, failing_step_url,
        failing_step_logs_url, trace_operation_id) by workspace, run_id) on workspace, run_id
| extend studio_url = strcat('https://ml.azure.com/runs/', run_id, '?wsid=/subscriptions/', subscription,
    '/resourcegroups/', resource_group, '/providers/Microsoft.MachineLearningServices/workspaces/', workspace)
| project timestamp = status_time, workspace, pipeline, run_id, error_code, studio_url, failing_step,
    root_cause_error, root_cause_message, failing_step_url, failing_step_logs_url, trace_operation_id
'''

// A log search alert reads at most two days of data, so "recent p95" is the p95 of the pipeline's
// completed runs that finished (status_time) in the last two days, excluding the runs being judged;
// history arriving now from `backfill` counts in the baseline only if it finished in those two days.
@description('Log query of the duration-regression rule, before its placeholders are replaced.')
var durationRegressionQueryTemplate = '''
let factor = __REGRESSION_PERCENT__ / 100.0;
let min_baseline_runs = __MIN_BASELINE_RUNS__;
let window = 2d;
let recent = 30m;
let completed = customEvents
| where name == 'AmlPipelineRunSummary'
| extend run_id = tostring(customDimensions.run_id), status = tostring(customDimensions.status),
    pipeline = tostring(customDimensions.experimentName), workspace = tostring(customDimensions.amlWorkSpace),
    subscription = tostring(customDimensions.subscriptions), resource_group = tostring(customDimensions.resourceGroup),
    wall_time_ms = tolong(customDimensions.wall_time_ms), record_source = tostring(customDimensions.record_source),
    status_time = coalesce(todatetime(customDimensions.status_time), timestamp)
| extend copy_rank = iff(isempty(tostring(customDimensions.summary_error)), 1, 0)
// a pipeline run's summaries: one with its steps listed wins (a partial summary completed later)
| summarize arg_max(copy_rank, *) by subscription, resource_group, workspace, run_id, status
| where status == 'Completed' and isnotnull(wall_time_ms) and status_time > ago(window)
// each run once, however often its summary was sent
| summarize arg_max(status_time, pipeline, wall_time_ms, record_source) by subscription, resource_group, workspace, run_id;
let baseline = completed
| where status_time <= ago(recent)
| summarize baseline_runs = count(), p95_ms = percentile(wall_time_ms, 95) by workspace, pipeline
| where baseline_runs >= min_baseline_runs;
completed
| where status_time > ago(recent) and record_source !in ('backfill', 'replay')
| join kind=inner baseline on workspace, pipeline
| where wall_time_ms > p95_ms * factor
| project timestamp = status_time, workspace, pipeline, run_id, wall_time_s = wall_time_ms / 1000,
    baseline_p95_s = p95_ms / 1000, baseline_runs
'''
@description('Log query of the duration-regression rule with its factor and baseline size.')
var durationRegressionQuery = replace(
  replace(durationRegressionQueryTemplate, '__REGRESSION_PERCENT__', string(durationRegressionPercent)),
  '__MIN_BASELINE_RUNS__',
  string(durationBaselineMinRuns)
)

// The same shape for cost: the baseline is the p95 estimated cost of the pipeline's completed runs that
// finished in the last two days (in the same currency); a run that finished in the last 30 minutes,
// recorded live, completed or not, fires when it cost more than the factor times that. A summary whose steps
// were not all estimated has no estimated_cost (only estimated_cost_lower_bound): it is neither judged nor a baseline.
@description('Log query of the cost-regression rule, before its placeholders are replaced.')
var costRegressionQueryTemplate = '''
let factor = __COST_PERCENT__ / 100.0;
let min_baseline_runs = __MIN_BASELINE_RUNS__;
let window = 2d;
let recent = 30m;
let finished = customEvents
| where name == 'AmlPipelineRunSummary'
| extend run_id = tostring(customDimensions.run_id), status = tostring(customDimensions.status),
    pipeline = tostring(customDimensions.experimentName), workspace = tostring(customDimensions.amlWorkSpace),
    subscription = tostring(customDimensions.subscriptions), resource_group = tostring(customDimensions.resourceGroup),
    estimated_cost = todouble(customDimensions.estimated_cost), currency = tostring(customDimensions.cost_currency),
    record_source = tostring(customDimensions.record_source),
    status_time = coalesce(todatetime(customDimensions.status_time), timestamp)
| extend copy_rank = iff(isempty(tostring(customDimensions.summary_error)), 1, 0)
// a pipeline run's summaries: one with its steps listed wins (a partial summary completed later)
| summarize arg_max(copy_rank, *) by subscription, resource_group, workspace, run_id, status
| where isnotnull(estimated_cost) and status_time > ago(window)
// each run once, however often its summary was sent
| summarize arg_max(status_time, pipeline, status, estimated_cost, currency, record_source) by subscription, resource_group, workspace, run_id;
let baseline = finished
| where status == 'Completed' and status_time <= ago(recent)
| summarize baseline_runs = count(), p95_cost = percentile(estimated_cost, 95) by workspace, pipeline, currency
| where baseline_runs >= min_baseline_runs;
finished
| where status_time > ago(recent) and record_source !in ('backfill', 'replay')
| join kind=inner baseline on workspace, pipeline, currency
| where estimated_cost > p95_cost * factor
| project timestamp = status_time, workspace, pipeline, run_id, status, estimated_cost = round(estimated_cost, 4),
    currency, baseline_p95_cost = round(p95_cost, 4), baseline_runs
'''
@description('Log query of the cost-regression rule with its factor and baseline size.')
var costRegressionQuery = replace(
  replace(costRegressionQueryTemplate, '__COST_PERCENT__', string(costRegressionPercent)),
  '__MIN_BASELINE_RUNS__',
  string(durationBaselineMinRuns)
)

// An expensive run that left its GPUs mostly idle. The resource-use event is sent once per run, after the
// fact (docs/resource-use.md): the rule judges events that arrived in its window (twice its frequency, so
// an event ingested late is still seen; the alert is stateful per run, so it notifies once).
@description('Log query of the idle-GPU rule, before its placeholders are replaced.')
var idleGpuQueryTemplate = '''
let min_cost = __MIN_COST__;
let max_gpu_percent = __MAX_GPU_PERCENT__;
customEvents
| where name == 'AmlRunResourceUse'
| extend run_id = tostring(customDimensions.run_id), workspace = tostring(customDimensions.amlWorkSpace),
    subscription = tostring(customDimensions.subscriptions), resource_group = tostring(customDimensions.resourceGroup),
    pipeline = tostring(customDimensions.experimentName), step = tostring(customDimensions.step_name),
    target = tostring(customDimensions.compute_name), currency = tostring(customDimensions.cost_currency),
    estimated_cost = todouble(customDimensions.estimated_cost), gpu = todouble(customDimensions.gpu_utilization_avg),
    idle = todouble(customDimensions.idle_gpu_cost)
| where isnotnull(gpu) and estimated_cost > min_cost and gpu < max_gpu_percent
// each run once, however often its event was sent (an ingestion retry)
| summarize arg_max(timestamp, pipeline, step, target, estimated_cost, currency, gpu, idle) by subscription, resource_group, workspace, run_id
| project timestamp, workspace, pipeline, run_id, step, target, estimated_cost = round(estimated_cost, 4), currency,
    gpu_utilization_avg = round(gpu, 1), idle_gpu_cost = round(idle, 4)
'''
@description('Log query of the idle-GPU rule with its cost and utilisation thresholds.')
var idleGpuQuery = replace(
  replace(idleGpuQueryTemplate, '__MIN_COST__', string(idleGpuAlertMinCost)),
  '__MAX_GPU_PERCENT__',
  string(idleGpuAlertMaxPercent)
)

@description('Log query of the processor-failures rule: failed invocations of the event function.')
var processorFailuresQuery = '''
requests
| where operation_Name == 'aml_run_events'
| where tostring(success) =~ 'false'
| project timestamp, resultCode, operation_Id
'''

@description('Log query of the events-rejected rule: events the processor stored as rejected.')
var eventsRejectedQuery = '''
customEvents
| where name == 'AmlEventRejected'
| extend reason = tostring(customDimensions.reason)
| project timestamp, reason
'''

// A schedule's judgement is sent once (claimed per workspace, schedule and fire time) when the reconciler
// makes it, so the rule reads the time it was sent; fire times before the reconciler first saw a
// workspace are never judged, so history never fires it.
@description('Log query of the schedule-missed-or-late rule: one row per fire time of an AML schedule or a declared expectation that had no job past the grace period, or whose job started late.')
var scheduleMissedOrLateQuery = '''
let window = 15m;
customEvents
| where name in ('AmlScheduleMissed', 'AmlScheduleLate')
| where timestamp > ago(window)
| extend record_source = tostring(customDimensions.record_source)
| where record_source !in ('backfill', 'replay')
| extend workspace = tostring(customDimensions.amlWorkSpace), schedule = tostring(customDimensions.schedule_name),
    schedule_kind = tostring(customDimensions.schedule_kind), expected_time = tostring(customDimensions.expected_time),
    outcome = iff(name == 'AmlScheduleMissed', 'missed', 'late'), lateness_ms = tolong(customDimensions.lateness_ms),
    run_id = tostring(customDimensions.run_id)
// each fire time once, however often its event was sent
| summarize arg_min(timestamp, lateness_ms, run_id) by workspace, schedule, schedule_kind, expected_time, outcome
| project timestamp, workspace, schedule, schedule_kind, expected_time, outcome, lateness_ms, run_id
'''

@description('The log search alert rules. Adding a rule is one entry here: key (names the rule), displayName, description, severity (0-4), evaluationFrequency and windowSize (ISO 8601), query, dimensions (string columns of the query to split by), operator and threshold on the row count.')
var logRules = [
  {
    key: 'pipeline-failed'
    displayName: 'AML pipeline run failed'
    description: 'A pipeline run reached status Failed. One alert per failed run; open studio_url for the run in Azure ML studio, or the workbook\'s Failures panel for the failed steps.'
    severity: 2
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    query: pipelineFailedQuery
    dimensions: [
      { name: 'workspace', operator: 'Include', values: allValues }
      { name: 'pipeline', operator: 'Include', values: allValues }
      { name: 'run_id', operator: 'Include', values: allValues }
      { name: 'studio_url', operator: 'Include', values: allValues }
    ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    key: 'pipeline-duration-regression'
    displayName: 'AML pipeline run much slower than usual'
    description: 'A completed pipeline run took longer than ${durationRegressionPercent}% of the p95 wall time of the same pipeline (experiment) over the last two days (at least ${durationBaselineMinRuns} earlier completed runs).'
    severity: 3
    evaluationFrequency: 'PT15M'
    // The whole two days are one window: the query computes the baseline itself.
    windowSize: 'P2D'
    query: durationRegressionQuery
    dimensions: [
      { name: 'workspace', operator: 'Include', values: allValues }
      { name: 'pipeline', operator: 'Include', values: allValues }
      { name: 'run_id', operator: 'Include', values: allValues }
    ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    key: 'pipeline-cost-regression'
    displayName: 'AML pipeline run cost more than usual'
    description: 'A finished pipeline run\'s estimated compute cost (retail list prices) exceeded ${costRegressionPercent}% of the p95 estimated cost of the same pipeline (experiment) over the last two days (at least ${durationBaselineMinRuns} earlier completed runs).'
    severity: 3
    evaluationFrequency: 'PT15M'
    // The whole two days are one window: the query computes the baseline itself.
    windowSize: 'P2D'
    query: costRegressionQuery
    dimensions: [
      { name: 'workspace', operator: 'Include', values: allValues }
      { name: 'pipeline', operator: 'Include', values: allValues }
      { name: 'run_id', operator: 'Include', values: allValues }
    ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    key: 'schedule-missed-or-late'
    displayName: 'AML scheduled pipeline missed or late'
    description: 'A fire time of an AML schedule, or of a declared expectation (AML_OBS_EXPECTED_RUNS), had no job within the grace period (missed), or its job started after it (late). One alert per fire time; the workbook\'s Schedules section lists them.'
    severity: 2
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    query: scheduleMissedOrLateQuery
    dimensions: [
      { name: 'workspace', operator: 'Include', values: allValues }
      { name: 'schedule', operator: 'Include', values: allValues }
      { name: 'expected_time', operator: 'Include', values: allValues }
      { name: 'outcome', operator: 'Include', values: allValues }
    ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    key: 'expensive-idle-gpu-run'
    displayName: 'AML run expensive with idle GPUs'
    description: 'A finished run on a GPU compute cluster had an estimated cost above ${idleGpuAlertMinCost} (cost currency) and an average GPU utilisation below ${idleGpuAlertMaxPercent}% (from the workspace\'s Azure Monitor metrics, read at least 15 minutes after it ended). idle_gpu_cost is what the idle share cost; the workbook\'s Efficiency section lists the runs and their busiest and least busy nodes.'
    severity: 3
    evaluationFrequency: 'PT15M'
    windowSize: 'PT30M'
    query: idleGpuQuery
    dimensions: [
      { name: 'workspace', operator: 'Include', values: allValues }
      { name: 'pipeline', operator: 'Include', values: allValues }
      { name: 'run_id', operator: 'Include', values: allValues }
    ]
    operator: 'GreaterThan'
    threshold: 0
  }
  {
    key: 'processor-failures'
    displayName: 'AML run event processor failing'
    description: 'The aml_run_events function failed ${processorFailureThreshold} or more times in 15 minutes. Event Grid retries, then dead-letters: look at the function\'s exceptions and traces in Application Insights.'
    severity: 1
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    query: processorFailuresQuery
    dimensions: []
    operator: 'GreaterThanOrEqual'
    threshold: processorFailureThreshold
  }
  {
    key: 'events-rejected'
    displayName: 'AML run events rejected'
    description: 'The processor rejected events (malformed, unsupported type, or not from a workspace). They are kept in the rejected-events blob container with the reason; fix the cause, then re-drive them with the replay command.'
    severity: 2
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    query: eventsRejectedQuery
    dimensions: [
      { name: 'reason', operator: 'Include', values: allValues }
    ]
    operator: 'GreaterThan'
    threshold: 0
  }
]

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2026-03-01' = [
  for rule in logRules: {
    name: 'amlobs-${rule.key}-${resourceToken}'
    location: location
    tags: tags
    kind: 'LogAlert'
    dependsOn: [
      actionGroup
    ]
    // The rule runs its query as its own identity (granted Reader below), not as whoever last deployed it.
    identity: {
      type: 'SystemAssigned'
    }
    properties: {
      displayName: rule.displayName
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [
        appInsightsId
      ]
      evaluationFrequency: rule.evaluationFrequency
      windowSize: rule.windowSize
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            dimensions: rule.dimensions
            operator: rule.operator
            threshold: rule.threshold
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      // The component is created in the same deployment: its query endpoint may not answer validation yet.
      // tests/test_dashboard_queries.py parses and binds these queries instead.
      skipQueryValidation: true
      actions: {
        actionGroups: actionGroupIds
      }
    }
  }
]

// Reader on the component is what a log search alert's identity needs to query it (resource-context
// access: the Log Analytics workspace allows resource permissions).
resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: last(split(appInsightsId, '/'))
}

@description('Reader (built-in role): what a log search alert\'s identity needs to run its query on the component.')
var readerRoleId = subscriptionResourceId(
  'Microsoft.Authorization/roleDefinitions',
  'acdd72a7-3385-48ef-bd42-f606fba81ae7'
)

resource logAlertReaders 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (rule, i) in logRules: {
    name: guid(appInsightsId, 'amlobs-${rule.key}-${resourceToken}', readerRoleId)
    scope: appInsights
    properties: {
      roleDefinitionId: readerRoleId
      principalId: logAlerts[i].identity.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Event Grid system topics are not among the resource types one metric alert may watch together, so
// there is one rule per topic.
resource deadLetterAlerts 'Microsoft.Insights/metricAlerts@2026-01-01' = [
  for source in eventSources: {
    name: 'amlobs-deadlettered-${uniqueString(source.topicId)}-${resourceToken}'
    location: 'global'
    tags: tags
    dependsOn: [
      actionGroup
    ]
    properties: {
      description: 'Event Grid dead-lettered AML run events of system topic ${last(split(source.topicId, '/'))}: they were not recorded. They are in the dead-letter blob container; re-drive them with the replay command once the processor is healthy.'
      severity: 1
      enabled: true
      scopes: [
        source.topicId
      ]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT15M'
      targetResourceType: 'Microsoft.EventGrid/systemTopics'
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            criterionType: 'StaticThresholdCriterion'
            name: 'DeadLetteredEvents'
            metricNamespace: 'Microsoft.EventGrid/systemTopics'
            metricName: 'DeadLetteredCount'
            // Only this environment's subscription: an adopted topic may carry others', whose dead
            // letters are not ours (DeadLetteredCount has the EventSubscriptionName dimension,
            // MicrosoftDocs/azure-docs articles/event-grid/monitor-push-reference.md).
            dimensions: [
              {
                name: 'EventSubscriptionName'
                operator: 'Include'
                values: [
                  source.eventSubscriptionName
                ]
              }
            ]
            timeAggregation: 'Total'
            operator: 'GreaterThan'
            threshold: 0
          }
        ]
      }
      autoMitigate: true
      actions: hasReceivers
        ? [
            {
              actionGroupId: actionGroupResourceId
            }
          ]
        : []
    }
  }
]

@description('Resource id of the action group, empty when no email receiver was given.')
output actionGroupId string = hasReceivers ? actionGroupResourceId : ''

@description('Names of the log search alert rules.')
output logAlertNames string[] = [for i in range(0, length(logRules)): logAlerts[i].name]

@description('Names of the dead-letter metric alert rules, one per system topic.')
output deadLetterAlertNames string[] = [for i in range(0, length(eventSources)): deadLetterAlerts[i].name]
