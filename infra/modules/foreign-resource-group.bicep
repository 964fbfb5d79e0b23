// A resource group of this environment in another subscription, holding the Event Grid system
// topics of the workspaces there (a system topic must live in its source's subscription).
// It carries the same name as the main resource group so that `azd down`, which looks resource
// groups up by name in the environment's subscription, never resolves it to a group it does not own.
targetScope = 'subscription'

import { resourceTags } from '../types.bicep'

@description('Name of the resource group.')
param name string

@description('Azure region of the resource group (metadata only).')
param location string

@description('Tags applied to the resource group.')
param tags resourceTags

resource group 'Microsoft.Resources/resourceGroups@2025-04-01' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the resource group.')
output id string = group.id
