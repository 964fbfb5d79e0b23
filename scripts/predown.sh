#!/bin/sh
# azd predown hook: make `azd down` delete this environment and nothing else.
#
# `azd down` deletes resource groups chosen from the environment's last deployment. azd before 1.24.0
# takes every group that holds one of its resources, so an observed workspace's group (it holds the
# role assignment) would go too; later versions take only the groups the deployment created
# (Azure/azure-dev #7698). So when what is deployed reaches outside rg-<env>, this hook provisions
# once more with AML_OBS_DETACH=true: a deployment with nothing outside rg-<env> (it deletes
# nothing; it only changes what `down` looks at).
#
# What is deployed comes from the outputs azd stored at the last provision (AML_OBSERVED_WORKSPACE_IDS
# and the AML_OBS_* ids), not from AML_WORKSPACE_IDS: the user may have changed or cleared it since.
# The ids of what lives outside rg-<env> are kept under AML_OBS_CLEANUP_* (azd clears output values
# on `down`) for the postdown hook, added to whatever an earlier postdown could not remove.
set -eu

value() { azd env get-value "$1" 2>/dev/null || true; }
has() { azd env get-value "$1" >/dev/null 2>&1; }
lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

# union LIST...: the comma-separated union of the lists, in order, without blanks or repeats
# (resource ids compare case-insensitively; the first spelling is kept).
union() {
  result='' seen=','
  old_ifs=$IFS
  IFS=','
  for list in "$@"; do
    for id in $list; do
      id=$(printf '%s' "$id" | tr -d ' ')
      [ -n "$id" ] || continue
      key=$(lower "$id")
      case $seen in *",$key,"*) continue ;; esac
      seen="$seen$key,"
      result="${result:+$result,}$id"
    done
  done
  IFS=$old_ifs
  printf '%s' "$result"
}

keep_for_cleanup() {
  azd env set "AML_OBS_CLEANUP_$1=$(union "$(value "AML_OBS_CLEANUP_$1")" "$(value "$2")")"
}
keep_for_cleanup ROLE_ASSIGNMENT_IDS AML_OBS_EXTERNAL_ROLE_ASSIGNMENT_IDS
keep_for_cleanup ROLE_DEFINITION_IDS AML_OBS_READER_ROLE_DEFINITION_IDS
keep_for_cleanup RESOURCE_GROUP_IDS AML_OBS_FOREIGN_RESOURCE_GROUP_IDS
keep_for_cleanup EVENT_SUBSCRIPTION_IDS AML_OBS_ADOPTED_EVENT_SUBSCRIPTION_IDS

group=$(value AZURE_RESOURCE_GROUP)
if [ -z "$group" ]; then
  echo "Nothing of this environment is deployed (no AZURE_RESOURCE_GROUP): nothing to detach."
  exit 0
fi
subscription=$(value AZURE_SUBSCRIPTION_ID)

# A system topic this environment created is deleted with it. Another environment that adopted it
# (docs/infra.md, "An existing system topic"), or anyone else who subscribed to it, would then stop
# receiving events without a word: stop here and say so, unless told to go ahead.
topics=$(union "$(value AML_OBS_SYSTEM_TOPIC_IDS)")
shared=''
if [ -n "$topics" ] && command -v az >/dev/null 2>&1; then
  old_ifs=$IFS
  IFS=','
  for topic in $topics; do
    IFS=$old_ifs
    if names=$(az eventgrid system-topic event-subscription list --subscription "$(printf '%s' "$topic" | cut -d/ -f3)" \
      --resource-group "$(printf '%s' "$topic" | cut -d/ -f5)" --system-topic-name "${topic##*/}" \
      --query '[].name' -o tsv --only-show-errors 2>&1); then
      for name in $names; do
        [ "$(lower "$name")" = "aml-run-events" ] || shared="$shared  $topic: $name
"
      done
    else
      printf '%s\n' "$names" >&2
      echo "Could not list the event subscriptions of $topic: whether another environment still uses it was not checked." >&2
    fi
    IFS=','
  done
  IFS=$old_ifs
fi
if [ -n "$shared" ]; then
  echo "These system topics of this environment carry event subscriptions that are not its own (another environment that adopted the topic, or the workspace owner's):" >&2
  printf '%s' "$shared" >&2
  echo "'azd down' deletes the topics and those subscriptions with them: their events stop." >&2
  go_ahead=$(value AML_OBS_DELETE_SHARED_TOPICS)
  if [ "$(lower "${go_ahead:-${AML_OBS_DELETE_SHARED_TOPICS:-}}")" != "true" ]; then
    echo "Tear down the other environment first, or go ahead with 'azd env set AML_OBS_DELETE_SHARED_TOPICS=true' and 'azd down' again: an environment of this template that relied on the topic gets a topic of its own at its next 'azd provision'." >&2
    exit 1
  fi
  echo "AML_OBS_DELETE_SHARED_TOPICS is true: going ahead." >&2
fi

if has AML_OBSERVED_WORKSPACE_IDS; then
  deployed=$(union "$(value AML_OBSERVED_WORKSPACE_IDS)")
else
  # CI passes it as a process variable rather than an azd env value: accept either.
  configured=$(azd env get-value AML_WORKSPACE_IDS 2>/dev/null || printf '%s' "${AML_WORKSPACE_IDS:-}")
  deployed=$(union "$configured")
  echo "The deployed workspaces are not recorded in this environment (AML_OBSERVED_WORKSPACE_IDS): going by AML_WORKSPACE_IDS."
fi

outside=''
old_ifs=$IFS
IFS=','
for id in $deployed; do
  ws_subscription=$(printf '%s' "$id" | cut -d/ -f3)
  ws_group=$(printf '%s' "$id" | cut -d/ -f5)
  if [ "$(lower "$ws_subscription")" != "$(lower "$subscription")" ] || [ "$(lower "$ws_group")" != "$(lower "$group")" ]; then
    outside="${outside:+$outside,}$id"
  fi
done
IFS=$old_ifs
foreign=$(union "$(value AML_OBS_FOREIGN_RESOURCE_GROUP_IDS)")

if [ -z "$outside$foreign" ]; then
  echo "Only workspaces inside $group are observed: everything is in this environment's resource group."
  exit 0
fi

echo "Detaching the observed workspaces outside $group so that 'azd down' only deletes this environment's resource group:"
for id in $(printf '%s' "$outside" | tr ',' ' '); do echo "  $id"; done
azd env set AML_OBS_DETACH=true

# The detach provision deploys the workspaces that are deployed now. azd reads AML_WORKSPACE_IDS from
# the environment's .env first, then from the process environment (Azure/azure-dev
# cli/azd/pkg/environment/environment.go, Getenv): a value changed or cleared in .env since the last
# provision is swapped for the deployed one during the provision and put back afterwards.
if has AML_WORKSPACE_IDS; then
  configured=$(value AML_WORKSPACE_IDS)
  if [ "$(lower "$(union "$configured")")" != "$(lower "$deployed")" ]; then
    trap 'azd env set "AML_WORKSPACE_IDS=$configured"' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    azd env set "AML_WORKSPACE_IDS=$deployed"
  fi
fi
# AML_OBS_IN_PREDOWN marks the nested provision so the preprovision hook leaves AML_OBS_DETACH alone.
AML_WORKSPACE_IDS=$deployed AML_OBS_IN_PREDOWN=1 azd provision --no-prompt
