// The "AML pipeline runs" workbook: a shared Azure Monitor workbook over the Application Insights
// component that the event processor writes to. Its content is ../workbook.json, kept as a readable
// file so it can be edited in the portal's Advanced Editor and pasted back.

import { resourceTags } from '../types.bicep'

@description('Display name of the workbook in the portal.')
param name string

@description('Azure region of the workbook resource.')
param location string

@description('Tags applied to the workbook.')
param tags resourceTags

@description('Resource id of the Application Insights component that the workbook queries.')
param appInsightsId string

@description('The token workbook.json names its default resource with: the same file then works in any deployment.')
var appInsightsToken = '__APP_INSIGHTS_RESOURCE_ID__'

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's resource name must be a GUID; a stable one makes every deployment update the same workbook.
  name: guid(resourceGroup().id, appInsightsId, 'aml-pipeline-runs-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: name
    category: 'workbook'
    // The service stores sourceId in lower case (what-if showed the case change as a modification on
    // every deployment: Azure/arm-template-whatif#57); sending it so keeps what-if free of that noise.
    // The linter accepts an id only as a parameter or a resourceId()-family call and cannot see that
    // toLower() of one is still that id.
    #disable-next-line use-resource-id-functions
    sourceId: toLower(appInsightsId)
    serializedData: replace(loadTextContent('../workbook.json'), appInsightsToken, appInsightsId)
    version: '1.0'
  }
}

@description('Resource id of the workbook.')
output workbookId string = workbook.id

@description('Resource name (GUID) of the workbook.')
output workbookName string = workbook.name
