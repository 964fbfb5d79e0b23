#!/bin/sh
# azd preprovision hook: reject a malformed AML_WORKSPACE_IDS before a deployment starts, with a
# message that names the bad entry (a typo would otherwise fail minutes into the deployment),
# re-attach the observed workspaces if a previous `azd down` was cancelled after its predown hook,
# and find the Event Grid system topic each observed workspace may already have, to adopt it:
# Event Grid allows one system topic per source, so creating a second one would fail the deployment.
set -eu

lower() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]'; }

detach=$(azd env get-value AML_OBS_DETACH 2>/dev/null || true)
if [ "$(printf '%s' "$detach" | tr '[:upper:]' '[:lower:]')" = "true" ] && [ "${AML_OBS_IN_PREDOWN:-}" != "1" ]; then
  echo "AML_OBS_DETACH was left on by an interrupted 'azd down': observing the workspaces again."
  azd env set AML_OBS_DETACH=false
fi

# CI passes it as a process variable rather than an azd env value: accept either.
ids=$(azd env get-value AML_WORKSPACE_IDS 2>/dev/null || printf '%s' "${AML_WORKSPACE_IDS:-}")
if [ -z "$(printf '%s' "$ids" | tr -d ' ,')" ]; then
  echo "AML_WORKSPACE_IDS is empty: a demo workspace will be created and observed."
  exit 0
fi

pattern='^/subscriptions/[0-9A-Fa-f-]{36}/resourceGroups/[-A-Za-z0-9._()]+/providers/Microsoft\.MachineLearningServices/workspaces/[-A-Za-z0-9_]+$'
bad=0
old_ifs=$IFS
IFS=','
for id in $ids; do
  id=$(printf '%s' "$id" | tr -d ' ')
  [ -z "$id" ] && continue
  if printf '%s\n' "$id" | grep -Eiq "$pattern"; then
    echo "Observing workspace: $id"
  else
    echo "AML_WORKSPACE_IDS entry is not an AML workspace resource id: '$id'" >&2
    bad=1
  fi
done
IFS=$old_ifs

if [ "$bad" -ne 0 ]; then
  echo "Expected /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.MachineLearningServices/workspaces/<name>, comma-separated." >&2
  exit 1
fi

# ---- existing system topics (docs/infra.md, "An existing system topic") ----
if [ "${AML_OBS_IN_PREDOWN:-}" = "1" ]; then
  # The detach provision describes what is deployed: the topics adopted at the last provision.
  exit 0
fi
if ! command -v az >/dev/null 2>&1; then
  echo "The Azure CLI (az) is not installed: it is needed to find the Event Grid system topic an observed workspace may already have (Event Grid allows one per workspace, and this deployment would fail creating a second). Install az, sign in (az login) and run 'azd provision' again." >&2
  exit 1
fi

env_name=$(azd env get-value AZURE_ENV_NAME 2>/dev/null || printf '%s' "${AZURE_ENV_NAME:-}")
# This environment's own topics live in rg-<env> of the workspace's subscription (infra/main.bicep).
own_group=$(lower "rg-$env_name")
tab=$(printf '\t')
adopted='' failed=0

# find_topic WORKSPACE_ID: appends "<workspace id>|<topic id>|<topic identity>" to $adopted when the
# workspace has a system topic that is not this environment's own; sets failed=1 on an error, named.
# `az eventgrid system-topic list` flattens the resource's properties (source, topicType) beside id
# and identity; -o tsv prints an absent value as None (knack's str() of it).
find_topic() {
  workspace=$1
  subscription=$(printf '%s' "$workspace" | cut -d/ -f3)
  if ! listing=$(az eventgrid system-topic list --subscription "$subscription" \
    --query '[].[id, source, identity.type, identity.principalId]' -o tsv --only-show-errors 2>&1); then
    printf '%s\n' "$listing" >&2
    echo "Could not list the Event Grid system topics of subscription $subscription to find the one of $workspace." >&2
    echo "The deployer needs to read them there (Microsoft.EventGrid/systemTopics/read, e.g. Reader on the subscription): Event Grid allows one system topic per workspace, and creating a second fails the deployment." >&2
    failed=1
    return 0
  fi
  while IFS=$tab read -r topic source identity principal; do
    if [ -z "$topic" ] || [ "$(lower "$source")" != "$(lower "$workspace")" ]; then
      continue
    fi
    if [ "$(lower "$(printf '%s' "$topic" | cut -d/ -f5)")" = "$own_group" ]; then
      echo "  its system topic is this environment's own: $topic"
      continue
    fi
    case $identity in
      *SystemAssigned*) ;;
      *)
        echo "The existing system topic of $workspace has no system-assigned managed identity: $topic" >&2
        echo "This environment dead-letters undeliverable events through the topic's identity (storage keys are off). Whoever may change that topic (Microsoft.EventGrid/systemTopics/write, e.g. its owner) can turn one on; it changes nothing for the topic's other subscriptions:" >&2
        echo "  az eventgrid system-topic update --identity systemassigned --subscription $(printf '%s' "$topic" | cut -d/ -f3) --resource-group $(printf '%s' "$topic" | cut -d/ -f5) --name ${topic##*/}" >&2
        echo "then run 'azd provision' again." >&2
        failed=1
        continue
        ;;
    esac
    echo "  adopting its existing system topic (only an event subscription of this environment is added to it): $topic"
    adopted="${adopted:+$adopted,}$workspace|$topic|$principal"
  done <<EOF
$listing
EOF
}

old_ifs=$IFS
IFS=','
for id in $ids; do
  id=$(printf '%s' "$id" | tr -d ' ')
  [ -z "$id" ] && continue
  IFS=$old_ifs
  echo "Looking for an existing Event Grid system topic of $id"
  find_topic "$id"
  IFS=','
done
IFS=$old_ifs

if [ "$failed" -ne 0 ]; then
  exit 1
fi
azd env set "AML_OBS_ADOPTED_SYSTEM_TOPICS=$adopted"
