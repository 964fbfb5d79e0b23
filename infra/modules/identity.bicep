// The one identity the Function App runs as. User-assigned so that its role assignments exist
// before the app does (no window where the app starts without access) and survive app re-creation.

import { resourceTags } from '../types.bicep'

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags resourceTags

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output id string = identity.id

@description('Name of the identity.')
output name string = identity.name

@description('Client (application) id: what DefaultAzureCredential and the Functions host are told to use.')
output clientId string = identity.properties.clientId

@description('Object id of the service principal: what role assignments grant to.')
output principalId string = identity.properties.principalId
