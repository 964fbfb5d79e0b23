"""Process settings, read once from the environment (app settings in Azure)."""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
# The Azure Retail Prices API (anonymous): https://learn.microsoft.com/rest/api/cost-management/retail-prices/azure-retail-prices
DEFAULT_PRICES_ENDPOINT = "https://prices.azure.com/api/retail/prices"
DEFAULT_COST_CURRENCY = "USD"
# The currencies the Retail Prices API documents for currencyCode (the 2021 page's "Supported currencies",
# mirrored in tongwu-msft/azure-rest-api-specs docs-ref-conceptual/cost-management/retail-prices/
# azure-retail-prices.md). Only USD prices are Microsoft's retail prices; the others are for reference.
SUPPORTED_COST_CURRENCIES: tuple[str, ...] = (
    "USD", "AUD", "BRL", "CAD", "CHF", "CNY", "DKK", "EUR", "GBP", "INR", "JPY", "KRW", "NOK", "NZD", "RUB",
    "SEK", "TWD",
)  # fmt: skip
STORAGE_SETTING = "AzureWebJobsStorage"
# Settings that hold a string the app uses as is (each may be a Key Vault reference in Azure).
_STRING_SETTINGS = (
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AZURE_CLIENT_ID",
    "AML_OBS_ARM_ENDPOINT",
    "AML_OBS_API_ENDPOINT",
    "AML_OBS_COST_CURRENCY",
    "AML_OBS_PRICES_ENDPOINT",
)


# Test-only: lets the Resource Manager token go to loopback hosts (any port, plain http), where the
# suite's fakes listen. The template never sets it, and it is refused on an Azure host.
TEST_LOOPBACK_SETTING = "AML_OBS_TEST_ALLOW_LOOPBACK"
# Read-only variables App Service (Azure Functions included) sets on every instance: "Environment
# variables and app settings in Azure App Service" (https://learn.microsoft.com/azure/app-service/
# reference-app-settings: WEBSITE_SITE_NAME "Read-only. App name.", WEBSITE_INSTANCE_ID the instance's id).
# The managed identity endpoint cannot tell Azure from the tests on its own: App Service's is a local URL
# ("the URL to the local token service"), and the suite's identity fake is one too.
AZURE_HOST_VARIABLES = ("WEBSITE_SITE_NAME", "WEBSITE_INSTANCE_ID")


class SettingsError(ValueError):
    """A setting is present but unusable; the message names the setting."""


def _test_loopback(env: Mapping[str, str]) -> bool:
    raw = env.get(TEST_LOOPBACK_SETTING, "").strip().lower()
    if raw in ("", "0", "false"):
        return False
    if raw not in ("1", "true"):
        raise SettingsError(f"{TEST_LOOPBACK_SETTING} must be true or false, got {raw!r}")
    azure = [name for name in AZURE_HOST_VARIABLES if env.get(name, "").strip()]
    if azure:
        identity = " with a managed identity endpoint" if env.get("IDENTITY_ENDPOINT", "").strip() else ""
        raise SettingsError(
            f"{TEST_LOOPBACK_SETTING} is for the test suite's loopback fakes only, and this process runs on "
            f"an Azure host ({', '.join(azure)} set{identity}): remove the setting"
        )
    return True


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_endpoint(name: str, url: str) -> str:
    """Return ``url`` without a trailing slash; plain http is only allowed for loopback hosts."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number or out of range)
    except ValueError:  # "http://[::1", ":99999": the message must still name the setting
        raise SettingsError(f"{name} is not a valid URL: {url!r}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise SettingsError(f"{name} must be an absolute https:// URL, got {url!r}")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise SettingsError(f"{name} may use http:// only for a loopback host, got {url!r}")
    return url.strip().rstrip("/")


# In Azure a setting may be a Key Vault reference, replaced by the secret when the Functions host
# starts; one the host could not resolve reaches the app as the literal "@Microsoft.KeyVault(...)"
# (https://learn.microsoft.com/azure/app-service/app-service-key-vault-references).
_KEY_VAULT_REFERENCE = "@microsoft.keyvault("


def _lenient_pairs(text: str) -> dict[str, str]:
    """``Key=Value;Key=Value`` → lower-cased keys; a segment without ``=`` is skipped, not an error
    (the callers only look for what they need, and must never quote the string back: it may hold a key)."""
    pairs: dict[str, str] = {}
    for segment in text.split(";"):
        key, sep, value = segment.partition("=")
        if sep:
            pairs[key.strip().lower()] = value.strip()
    return pairs


def _reject_unresolved_key_vault_reference(name: str, value: str) -> None:
    """Name the setting, the vault and the secret (not the reference itself) and the likely cause."""
    if not value.strip().lower().startswith(_KEY_VAULT_REFERENCE):
        return
    params = _lenient_pairs(value.strip()[len(_KEY_VAULT_REFERENCE) :].removesuffix(")"))
    vault, secret = params.get("vaultname", ""), params.get("secretname", "")
    if "secreturi" in params:  # https://<vault>.vault.azure.net/secrets/<name>[/<version>]
        try:
            uri = urlsplit(params["secreturi"])
            vault, path = (uri.hostname or "").split(".")[0], uri.path.split("/")
        except ValueError:
            path = []
        secret = path[2] if len(path) > 2 and path[1].lower() == "secrets" else ""
    where = f"secret {secret!r} of vault {vault!r}" if vault and secret else "a malformed reference"
    raise SettingsError(
        f"{name} is a Key Vault reference the Functions host could not resolve ({where}): the app got "
        "the reference instead of the secret. Usually the app's identity lacks the Key Vault Secrets User "
        "role on the vault, or got it after the app started. The Function App's Environment variables "
        "(Configuration) blade shows the reference's status; fix the cause, then restart the app."
    )


def _check_connection_string_endpoints(connection_string: str) -> None:
    """http:// only for loopback hosts here too. Messages never quote the string: it holds the key."""
    pairs = _lenient_pairs(connection_string)
    # What the storage SDKs derive for a service without an explicit endpoint: the protocol is used
    # only together with EndpointSuffix (else https), and the host is <account>.<service>.<suffix>.
    derived_http = pairs.get("defaultendpointsprotocol", "").lower() == "http" and bool(
        pairs.get("endpointsuffix")
    )
    for service in ("Blob", "Table"):
        endpoint = pairs.get(f"{service.lower()}endpoint")
        if endpoint:
            validate_endpoint(f"{STORAGE_SETTING} {service}Endpoint", endpoint)
        elif derived_http:
            raise SettingsError(
                f"{STORAGE_SETTING}: DefaultEndpointsProtocol=http would reach the {service.lower()} "
                f"service over plain http; http:// is allowed only for a loopback {service}Endpoint"
            )


@dataclass(frozen=True)
class StorageSettings:
    """Where dedupe state and rejected events live.

    Either a connection string (Azurite, local development) or identity-based service URIs
    (``AzureWebJobsStorage__accountName`` / ``__blobServiceUri`` / ``__tableServiceUri``).
    """

    connection_string: str | None = None
    blob_service_uri: str | None = None
    table_service_uri: str | None = None
    client_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StorageSettings | None:
        connection_string = env.get(STORAGE_SETTING, "").strip()
        if connection_string:
            if connection_string.lower() == "usedevelopmentstorage=true":
                raise SettingsError(
                    f"{STORAGE_SETTING}=UseDevelopmentStorage=true is not supported: "
                    "give Azurite's full connection string"
                )
            _check_connection_string_endpoints(connection_string)
            return cls(connection_string=connection_string)
        account = env.get(f"{STORAGE_SETTING}__accountName", "").strip()
        blob_uri = env.get(f"{STORAGE_SETTING}__blobServiceUri", "").strip()
        table_uri = env.get(f"{STORAGE_SETTING}__tableServiceUri", "").strip()
        if account:
            blob_uri = blob_uri or f"https://{account}.blob.core.windows.net"
            table_uri = table_uri or f"https://{account}.table.core.windows.net"
        if not blob_uri and not table_uri:
            return None
        if not (blob_uri and table_uri):
            raise SettingsError(
                f"{STORAGE_SETTING}__blobServiceUri and {STORAGE_SETTING}__tableServiceUri "
                "must both be set (or set __accountName)"
            )
        return cls(
            blob_service_uri=validate_endpoint(f"{STORAGE_SETTING}__blobServiceUri", blob_uri),
            table_service_uri=validate_endpoint(f"{STORAGE_SETTING}__tableServiceUri", table_uri),
            client_id=env.get(f"{STORAGE_SETTING}__clientId", "").strip() or None,
        )


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:  # float() also accepts "nan" and "inf"
        raise SettingsError(f"{name} must be a positive number, got {raw!r}")
    return value


def _cost_currency(env: Mapping[str, str]) -> str:
    raw = env.get("AML_OBS_COST_CURRENCY", "").strip()
    currency = raw.upper() or DEFAULT_COST_CURRENCY
    if currency not in SUPPORTED_COST_CURRENCIES:
        raise SettingsError(
            f"AML_OBS_COST_CURRENCY must be one of the Retail Prices API's currencies "
            f"({', '.join(SUPPORTED_COST_CURRENCIES)}), got {raw!r}"
        )
    return currency


@dataclass(frozen=True)
class Settings:
    appinsights_connection_string: str | None
    appinsights_authentication_string: str | None
    azure_client_id: str | None
    storage: StorageSettings | None
    arm_endpoint: str = DEFAULT_ARM_ENDPOINT
    api_endpoint: str | None = None
    # Bounded retries inside one invocation; after that Event Grid's own retry policy takes over.
    http_max_attempts: int = 4
    http_timeout_seconds: float = 10.0
    # A Retry-After longer than this fails the invocation at once: Event Grid's backoff is cheaper
    # than a Function instance sleeping.
    max_retry_after_seconds: float = 30.0
    # The estimated compute cost (amlobs.cost_estimator): prices in this currency from this endpoint, and
    # at most this long spent on the compute and price lookups of one record (then it goes out without
    # estimate).
    cost_currency: str = DEFAULT_COST_CURRENCY
    prices_endpoint: str = DEFAULT_PRICES_ENDPOINT
    cost_timeout_seconds: float = 5.0
    # How long a (run, status) claim holds without progress: an invocation that dies blocks its run
    # status this long before a redelivery takes it over (amlobs/storage/claims.py).
    claim_lease_seconds: float = 60.0
    # A run history 404 for an event younger than this (by the event's own time) is retried, not
    # taken as the run's deletion (amlobs/not_found).
    run_not_found_grace_minutes: float = 15.0
    # TEST_LOOPBACK_SETTING: loopback endpoints may receive the Resource Manager token (the test fakes).
    allow_loopback: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        for name in (*_STRING_SETTINGS, STORAGE_SETTING):
            _reject_unresolved_key_vault_reference(name, env.get(name, ""))
        api = env.get("AML_OBS_API_ENDPOINT", "").strip()
        attempts_raw = env.get("AML_OBS_HTTP_MAX_ATTEMPTS", "").strip() or "4"
        # isascii: str.isdigit() also accepts "²", which int() then refuses with a bare ValueError.
        if not (attempts_raw.isascii() and attempts_raw.isdigit()) or not 1 <= int(attempts_raw) <= 10:
            raise SettingsError(f"AML_OBS_HTTP_MAX_ATTEMPTS must be 1..10, got {attempts_raw!r}")
        return cls(
            appinsights_connection_string=env.get("APPLICATIONINSIGHTS_CONNECTION_STRING", "").strip()
            or None,
            appinsights_authentication_string=env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "").strip()
            or None,
            azure_client_id=env.get("AZURE_CLIENT_ID", "").strip() or None,
            storage=StorageSettings.from_env(env),
            arm_endpoint=validate_endpoint(
                "AML_OBS_ARM_ENDPOINT",
                env.get("AML_OBS_ARM_ENDPOINT", "").strip() or DEFAULT_ARM_ENDPOINT,
            ),
            api_endpoint=validate_endpoint("AML_OBS_API_ENDPOINT", api) if api else None,
            http_max_attempts=int(attempts_raw),
            http_timeout_seconds=_positive_float(env, "AML_OBS_HTTP_TIMEOUT_SECONDS", 10.0),
            max_retry_after_seconds=_positive_float(env, "AML_OBS_MAX_RETRY_AFTER_SECONDS", 30.0),
            cost_currency=_cost_currency(env),
            prices_endpoint=validate_endpoint(
                "AML_OBS_PRICES_ENDPOINT",
                env.get("AML_OBS_PRICES_ENDPOINT", "").strip() or DEFAULT_PRICES_ENDPOINT,
            ),
            cost_timeout_seconds=_positive_float(env, "AML_OBS_COST_TIMEOUT_SECONDS", 5.0),
            claim_lease_seconds=_positive_float(env, "AML_OBS_CLAIM_LEASE_SECONDS", 60.0),
            run_not_found_grace_minutes=_positive_float(env, "AML_OBS_RUN_NOT_FOUND_GRACE_MINUTES", 15.0),
            allow_loopback=_test_loopback(env),
        )
