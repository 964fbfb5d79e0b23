#!/bin/sh
# azd postdown hook: remove what this environment created outside its resource group (kept by the
# predown hook in AML_OBS_CLEANUP_*), then reset the switches so the next `azd up` starts from scratch.
#
# An id leaves AML_OBS_CLEANUP_* only once it is gone: a custom role definition is deleted by its
# full id and read back until Resource Manager answers 404. Whatever could not be removed stays
# there and the hook fails, naming it, so that `azd down` does not report a clean teardown that
# left role definitions or assignments behind; `azd hooks run postdown` (or `azd down`) retries.
set -eu

# Role definitions by full id (RoleDefinitions_Delete / RoleDefinitions_GetById, Azure/azure-rest-api-specs
# specification/authorization/.../stable/2022-04-01/authorization-RoleDefinitionsCalls.json). Not
# `az role definition delete --name --scope`: it looks the name up among the roles assignable at
# --scope and deletes nothing, successfully, when the role is assignable only below it.
api='api-version=2022-04-01'
attempts=${AML_OBS_VERIFY_ATTEMPTS:-6}
delay=${AML_OBS_RETRY_DELAY_SECONDS:-10}

value() { azd env get-value "$1" 2>/dev/null || true; }
words() { printf '%s' "$1" | tr ',' ' '; }
subscription_of() { printf '%s' "$1" | cut -d/ -f3; }
# The az arguments naming an event subscription of a system topic, from its id
# (/subscriptions/S/resourceGroups/G/providers/Microsoft.EventGrid/systemTopics/T/eventSubscriptions/N).
event_subscription_args() {
  printf -- '--subscription %s --resource-group %s --system-topic-name %s --name %s' \
    "$(subscription_of "$1")" "$(printf '%s' "$1" | cut -d/ -f5)" "$(printf '%s' "$1" | cut -d/ -f9)" "${1##*/}"
}

assignments=$(value AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS)
roles=$(value AML_OBS_CLEANUP_ROLE_DEFINITION_IDS)
groups=$(value AML_OBS_CLEANUP_RESOURCE_GROUP_IDS)
# This environment's event subscriptions on system topics it adopted: the topics stay.
event_subscriptions=$(value AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS)

azd env set ENABLE_EVENT_SUBSCRIPTION=false
azd env set AML_OBS_DETACH=false

if [ -z "$(printf '%s' "$assignments$roles$groups$event_subscriptions" | tr -d ' ,')" ]; then
  exit 0
fi

if ! command -v az >/dev/null 2>&1; then
  echo "The Azure CLI (az) is not installed, so what this environment created outside its resource group is still there. Remove it by hand:" >&2
  for id in $(words "$event_subscriptions"); do
    echo "  az eventgrid system-topic event-subscription delete --yes $(event_subscription_args "$id")" >&2
  done
  for id in $(words "$assignments"); do echo "  az role assignment delete --ids $id" >&2; done
  for id in $(words "$roles"); do echo "  az rest --method delete --url \"${id}?$api\"" >&2; done
  for id in $(words "$groups"); do
    echo "  az group delete --yes --subscription $(subscription_of "$id") --name ${id##*/}" >&2
  done
  echo "or install az, sign in (az login) and run 'azd hooks run postdown'. The ids stay in AML_OBS_CLEANUP_* of this azd environment." >&2
  exit 1
fi

# role_state ID: 0 when Resource Manager answers 404 for the role definition, 1 when it still
# answers it, 2 when the answer says neither (no permission, network): printed.
role_state() {
  if output=$(az rest --method get --url "${1}?$api" --only-show-errors 2>&1); then
    return 1
  fi
  # az rest fails with "Not Found(<response body>)"; the body's code is RoleDefinitionDoesNotExist.
  case $output in
    *RoleDefinitionDoesNotExist* | *"Not Found"*) return 0 ;;
  esac
  printf '%s\n' "$output" >&2
  return 2
}

left_assignments='' left_roles='' left_groups='' left_event_subscriptions=''

for id in $(words "$event_subscriptions"); do
  echo "Removing event subscription $id (the system topic stays)"
  # shellcheck disable=SC2046 # the arguments are ids without spaces, split on purpose
  if output=$(az eventgrid system-topic event-subscription delete --yes $(event_subscription_args "$id") \
    --only-show-errors 2>&1); then
    [ -z "$output" ] || printf '%s\n' "$output"
  else
    case $output in
      # The topic is gone (its owner deleted it, or the environment that made it went down): so is
      # the subscription.
      *ResourceNotFound*) echo "  already gone (its topic is gone)" ;;
      *)
        printf '%s\n' "$output" >&2
        left_event_subscriptions="${left_event_subscriptions:+$left_event_subscriptions,}$id"
        ;;
    esac
  fi
done

# Assignments first: a role definition cannot be deleted while it is assigned.
for id in $(words "$assignments"); do
  echo "Removing role assignment $id"
  # Deleting an assignment that no longer exists succeeds (RoleAssignments_DeleteById answers 204).
  az role assignment delete --ids "$id" --only-show-errors || left_assignments="${left_assignments:+$left_assignments,}$id"
done

for id in $(words "$roles"); do
  echo "Removing role definition $id"
  if ! az rest --method delete --url "${id}?$api" --only-show-errors >/dev/null; then
    left_roles="${left_roles:+$left_roles,}$id"
    continue
  fi
  # Role definitions replicate: a read right after the delete may still find it.
  attempt=1
  while :; do
    state=0
    role_state "$id" || state=$?
    if [ "$state" -eq 0 ] || [ "$attempt" -ge "$attempts" ]; then
      break
    fi
    attempt=$((attempt + 1))
    sleep "$delay"
  done
  if [ "$state" -eq 0 ]; then
    echo "  gone (Resource Manager answers 404)"
  else
    echo "Role definition $id is still there after ${attempts} checks." >&2
    left_roles="${left_roles:+$left_roles,}$id"
  fi
done

for id in $(words "$groups"); do
  echo "Removing resource group $id"
  if output=$(az group delete --yes --no-wait --subscription "$(subscription_of "$id")" --name "${id##*/}" \
    --only-show-errors 2>&1); then
    [ -z "$output" ] || printf '%s\n' "$output"
  else
    case $output in
      *ResourceGroupNotFound*) echo "  already gone" ;;
      *)
        printf '%s\n' "$output" >&2
        left_groups="${left_groups:+$left_groups,}$id"
        ;;
    esac
  fi
done

azd env set "AML_OBS_CLEANUP_ROLE_ASSIGNMENT_IDS=$left_assignments"
azd env set "AML_OBS_CLEANUP_ROLE_DEFINITION_IDS=$left_roles"
azd env set "AML_OBS_CLEANUP_RESOURCE_GROUP_IDS=$left_groups"
azd env set "AML_OBS_CLEANUP_EVENT_SUBSCRIPTION_IDS=$left_event_subscriptions"

if [ -n "$left_assignments$left_roles$left_groups$left_event_subscriptions" ]; then
  echo "Not removed (see the errors above):" >&2
  for id in $(words "$left_event_subscriptions") $(words "$left_assignments") $(words "$left_roles") $(words "$left_groups"); do
    echo "  $id" >&2
  done
  echo "Their ids stay in AML_OBS_CLEANUP_* of this azd environment. Role definitions and assignments need Owner or User Access Administrator on their subscription, an event subscription on an adopted topic needs write access to that topic (e.g. Contributor on it); once that is fixed, run 'azd hooks run postdown' (or 'azd down' again) to retry." >&2
  exit 1
fi
echo "Removed everything this environment created outside its resource group."
