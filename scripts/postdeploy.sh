#!/bin/sh
# azd postdeploy hook: turn the Event Grid event subscriptions on once the function exists.
#
# Event Grid validates the function endpoint when a subscription is created, but `azd up`
# provisions before it deploys. So the first provision runs with ENABLE_EVENT_SUBSCRIPTION=false;
# after the code is deployed this hook sets it to true and provisions again. When it is already
# true (every later `azd up`), the hook does nothing: re-running `azd up` is idempotent.
set -eu

attempts=${AML_OBS_PROVISION_ATTEMPTS:-3}
delay=${AML_OBS_RETRY_DELAY_SECONDS:-30}

current=$(azd env get-value ENABLE_EVENT_SUBSCRIPTION 2>/dev/null || true)
current=$(printf '%s' "$current" | tr '[:upper:]' '[:lower:]')
if [ "$current" = "true" ]; then
  echo "Event Grid subscriptions are already enabled: nothing to do."
  exit 0
fi

echo "Enabling the Event Grid subscriptions now that the function is deployed."
azd env set ENABLE_EVENT_SUBSCRIPTION=true

attempt=1
while :; do
  # The function list of a freshly deployed Flex Consumption app can lag the deployment by a few
  # seconds; Event Grid's validation fails until it is there, so a failed provision is retried.
  if azd provision --no-prompt; then
    echo "Event Grid subscriptions enabled: AML run events now reach the function."
    exit 0
  fi
  if [ "$attempt" -ge "$attempts" ]; then
    break
  fi
  attempt=$((attempt + 1))
  echo "Provisioning the event subscriptions failed; retrying in ${delay}s (attempt ${attempt}/${attempts})." >&2
  sleep "$delay"
done

# Leave the environment as it was so the next `azd up` goes through this hook again.
azd env set ENABLE_EVENT_SUBSCRIPTION=false
echo "Could not create the Event Grid subscriptions after ${attempts} attempts; run 'azd up' again." >&2
exit 1
