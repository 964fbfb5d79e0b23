#!/bin/sh
# azd predown hook: make `azd down` delete this environment and nothing else.
#
# `azd down` deletes every resource group that holds a resource of the environment's last
# deployment. The role assignment on an observed workspace lives in that workspace's resource
# group, so before `down` this hook provisions once more with AML_OBS_DETACH=true: a deployment
# with nothing outside rg-<env> (it deletes nothing; it only changes what `down` looks at).
# It also keeps the ids of what lives outside rg-<env> (azd clears output values on `down`) for the
# postdown hook, which removes them once the environment is gone.
set -eu

value() { azd env get-value "$1" 2>/dev/null || true; }

azd env set AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS "$(value AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS)"
azd env set AML_OBS_CLEANUP_ROLE_DEFINITION_IDS "$(value AML_OBS_READER_ROLE_DEFINITION_IDS)"
azd env set AML_OBS_CLEANUP_RESOURCE_GROUP_IDS "$(value AML_OBS_FOREIGN_RESOURCE_GROUP_IDS)"

# CI passes it as a process variable rather than an azd env value: accept either.
ids=$(azd env get-value AML_WORKSPACE_IDS 2>/dev/null || printf '%s' "${AML_WORKSPACE_IDS:-}")
if [ -z "$(printf '%s' "$ids" | tr -d ' ,')" ]; then
  echo "Only the demo workspace is observed: everything is in this environment's resource group."
  exit 0
fi

echo "Detaching the observed workspaces so that 'azd down' only deletes this environment's resource group."
azd env set AML_OBS_DETACH true
# Marks the nested provision so the preprovision hook leaves AML_OBS_DETACH alone.
AML_OBS_IN_PREDOWN=1 azd provision --no-prompt
