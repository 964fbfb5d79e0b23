#!/bin/sh
# azd postdown hook: remove what this environment created outside its resource group (kept by the
# predown hook), then reset the switches so the next `azd up` starts from scratch.
set -eu

value() { azd env get-value "$1" 2>/dev/null || true; }
words() { printf '%s' "$1" | tr ',' ' '; }
subscription_of() { printf '%s' "$1" | cut -d/ -f3; }

assignments=$(value AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS)
roles=$(value AML_OBS_CLEANUP_ROLE_DEFINITION_IDS)
groups=$(value AML_OBS_CLEANUP_RESOURCE_GROUP_IDS)

azd env set ENABLE_EVENT_SUBSCRIPTION false
azd env set AML_OBS_DETACH false

if [ -z "$(printf '%s' "$assignments$roles$groups" | tr -d ' ,')" ]; then
  exit 0
fi

if ! command -v az >/dev/null 2>&1; then
  echo "The Azure CLI (az) is not installed; remove these by hand:" >&2
  for id in $(words "$assignments"); do echo "  az role assignment delete --ids $id" >&2; done
  for id in $(words "$roles"); do
    echo "  az role definition delete --name ${id##*/} --scope /subscriptions/$(subscription_of "$id")" >&2
  done
  for id in $(words "$groups"); do
    echo "  az group delete --yes --subscription $(subscription_of "$id") --name ${id##*/}" >&2
  done
  exit 0
fi

failed=0
# Assignments first: a role definition cannot be deleted while it is assigned.
for id in $(words "$assignments"); do
  echo "Removing role assignment $id"
  az role assignment delete --ids "$id" --only-show-errors || failed=1
done
for id in $(words "$roles"); do
  echo "Removing role definition $id"
  az role definition delete --name "${id##*/}" --scope "/subscriptions/$(subscription_of "$id")" \
    --only-show-errors || failed=1
done
for id in $(words "$groups"); do
  echo "Removing resource group $id"
  az group delete --yes --no-wait --subscription "$(subscription_of "$id")" --name "${id##*/}" \
    --only-show-errors || failed=1
done

if [ "$failed" -ne 0 ]; then
  echo "Some resources outside the environment's resource group could not be removed (see above);" >&2
  echo "their ids stay in AML_OBS_CLEANUP_* of this azd environment." >&2
  exit 1
fi
azd env set AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS ""
azd env set AML_OBS_CLEANUP_ROLE_DEFINITION_IDS ""
azd env set AML_OBS_CLEANUP_RESOURCE_GROUP_IDS ""
