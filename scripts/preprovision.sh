#!/bin/sh
# azd preprovision hook: reject a malformed AML_WORKSPACE_IDS before a deployment starts, with a
# message that names the bad entry (a typo would otherwise fail minutes into the deployment), and
# re-attach the observed workspaces if a previous `azd down` was cancelled after its predown hook.
set -eu

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
