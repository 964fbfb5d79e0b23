#!/usr/bin/env sh
# Run the command-line entry point (python -m amlobs replay|backfill ...) against this azd
# environment's deployment, signed in as you (az login): the Function App's settings, with your
# identity in place of the app's managed identity. Usage: scripts/amlobs.sh backfill --workspace ID --since 7d
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
python=${AMLOBS_PYTHON:-"$root/.venv/bin/python"}

value() { azd env get-value "$1" 2>/dev/null || true; }
group=$(value AZURE_RESOURCE_GROUP)
insights=$(value APPLICATIONINSIGHTS_NAME)
storage=$(value AZURE_STORAGE_ACCOUNT_NAME)
if [ -z "$group" ] || [ -z "$insights" ] || [ -z "$storage" ]; then
  echo "amlobs: AZURE_RESOURCE_GROUP, APPLICATIONINSIGHTS_NAME and AZURE_STORAGE_ACCOUNT_NAME are not in the azd environment: run 'azd up' first" >&2
  exit 2
fi
# The deployment's cost settings (main.bicep outputs them as the Function App has them), so replay
# and backfill records are costed in the same currency from the same price list as live ones.
currency=$(value AML_OBS_COST_CURRENCY)
prices=$(value AML_OBS_PRICES_ENDPOINT)
if [ -z "$currency" ] || [ -z "$prices" ]; then
  echo "amlobs: AML_OBS_COST_CURRENCY and AML_OBS_PRICES_ENDPOINT are not in the azd environment (a deployment older than these outputs): run 'azd provision' once" >&2
  exit 2
fi
if [ ! -x "$python" ]; then
  echo "amlobs: $python not found: run 'sh scripts/test.sh' once (it creates .venv) or set AMLOBS_PYTHON" >&2
  exit 2
fi

# The connection string is not a secret (the component refuses it without an Entra token) but it is
# kept in Key Vault for the app; read it from the component itself, which needs only Reader.
connection=$(az resource show --resource-group "$group" --name "$insights" \
  --resource-type Microsoft.Insights/components --query properties.ConnectionString --output tsv)
if [ -z "$connection" ]; then
  echo "amlobs: could not read the connection string of $insights (az login? Reader on $group?)" >&2
  exit 2
fi

APPLICATIONINSIGHTS_CONNECTION_STRING=$connection
APPLICATIONINSIGHTS_AUTHENTICATION_STRING='Authorization=AAD'
AzureWebJobsStorage__accountName=$storage
AML_OBS_COST_CURRENCY=$currency
AML_OBS_PRICES_ENDPOINT=$prices
export APPLICATIONINSIGHTS_CONNECTION_STRING APPLICATIONINSIGHTS_AUTHENTICATION_STRING AzureWebJobsStorage__accountName
export AML_OBS_COST_CURRENCY AML_OBS_PRICES_ENDPOINT
# Your az login, not a managed identity left over in the shell.
unset AZURE_CLIENT_ID IDENTITY_ENDPOINT IDENTITY_HEADER AzureWebJobsStorage
PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH
exec "$python" -m amlobs "$@"
