"""Settings.from_env: defaults, endpoint rules (http only for loopback), storage variants and the
messages users see when a setting is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amlobs.settings import (
    DEFAULT_ARM_ENDPOINT,
    Settings,
    SettingsError,
    StorageSettings,
    is_loopback_host,
    validate_endpoint,
)

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def error_for(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    return str(caught.value)


def test_defaults_with_an_empty_environment() -> None:
    assert Settings.from_env({}) == Settings(
        appinsights_connection_string=None,
        appinsights_authentication_string=None,
        azure_client_id=None,
        storage=None,
        arm_endpoint="https://management.azure.com",
        api_endpoint=None,
        http_max_attempts=4,
        http_timeout_seconds=10.0,
        max_retry_after_seconds=30.0,
    )
    assert DEFAULT_ARM_ENDPOINT == "https://management.azure.com"


def test_blank_values_are_unset() -> None:
    env = {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "  ",
        "AZURE_CLIENT_ID": "",
        "AML_OBS_ARM_ENDPOINT": " ",
        "AML_OBS_API_ENDPOINT": "",
        "AML_OBS_HTTP_MAX_ATTEMPTS": " ",
        "AML_OBS_HTTP_TIMEOUT_SECONDS": "",
        "AzureWebJobsStorage": " ",
    }
    assert Settings.from_env(env) == Settings.from_env({})


def test_azure_values_are_read_and_trimmed() -> None:
    env = {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": " InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=https://eastus-8.in.applicationinsights.azure.com/ ",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId=11111111-2222-3333-4444-555555555555",
        "AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555\n",
        "AML_OBS_ARM_ENDPOINT": "https://management.usgovcloudapi.net/",
        "AML_OBS_API_ENDPOINT": "https://eastus.api.azureml.ms/",
        "AML_OBS_HTTP_MAX_ATTEMPTS": "6",
        "AML_OBS_HTTP_TIMEOUT_SECONDS": "2.5",
        "AML_OBS_MAX_RETRY_AFTER_SECONDS": "120",
    }
    loaded = Settings.from_env(env)
    assert loaded.appinsights_connection_string is not None
    assert loaded.appinsights_connection_string.startswith("InstrumentationKey=")
    assert loaded.appinsights_connection_string.endswith("azure.com/")
    assert (
        loaded.appinsights_authentication_string
        == "Authorization=AAD;ClientId=11111111-2222-3333-4444-555555555555"
    )
    assert loaded.azure_client_id == "11111111-2222-3333-4444-555555555555"
    assert loaded.arm_endpoint == "https://management.usgovcloudapi.net"  # no trailing slash
    assert loaded.api_endpoint == "https://eastus.api.azureml.ms"
    assert (loaded.http_max_attempts, loaded.http_timeout_seconds, loaded.max_retry_after_seconds) == (
        6,
        2.5,
        120.0,
    )


def test_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AML_OBS_API_ENDPOINT", "http://127.0.0.1:8123")
    monkeypatch.setenv("AML_OBS_HTTP_MAX_ATTEMPTS", "2")
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    loaded = Settings.from_env()
    assert (loaded.api_endpoint, loaded.http_max_attempts) == ("http://127.0.0.1:8123", 2)


# --- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1", "http://127.0.0.1"),
        ("http://127.1.2.3:9", "http://127.1.2.3:9"),
        ("http://localhost:10000", "http://localhost:10000"),
        ("http://LOCALHOST:10000/", "http://LOCALHOST:10000"),
        ("http://[::1]:9000/", "http://[::1]:9000"),
        ("HTTP://127.0.0.1:1", "HTTP://127.0.0.1:1"),
        ("https://management.azure.com", "https://management.azure.com"),
        ("https://10.0.0.1:443/", "https://10.0.0.1:443"),  # https to a private address is fine
    ],
)
@pytest.mark.parametrize("name", ["AML_OBS_ARM_ENDPOINT", "AML_OBS_API_ENDPOINT"])
def test_accepted_endpoints(name: str, url: str, expected: str) -> None:
    loaded = Settings.from_env({name: url})
    assert getattr(loaded, "arm_endpoint" if name == "AML_OBS_ARM_ENDPOINT" else "api_endpoint") == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1",
        "http://10.0.0.1:8080/",
        "http://example.com",
        "http://management.azure.com",
        "http://127.0.0.1.example.com",  # a name, not the loopback address
        "http://localhost.example.com",
        "http://[::2]:80",
        "http://0.0.0.0:80",
        "ftp://127.0.0.1",
        "management.azure.com",
        "//management.azure.com",
        "https://",
        "https://:443",
        "http://[::1",  # unparsable
        "http://127.0.0.1:99999",
        "https://management.azure.com:https",
        "not a url",
    ],
)
@pytest.mark.parametrize("name", ["AML_OBS_ARM_ENDPOINT", "AML_OBS_API_ENDPOINT"])
def test_refused_endpoints_name_the_setting(name: str, url: str) -> None:
    message = error_for({name: url})
    assert name in message
    assert repr(url) in message


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("localhost", True),
        ("LocalHost", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("example.com", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback_host(host: str | None, expected: bool) -> None:
    assert is_loopback_host(host) is expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_validate_endpoint_accepts_or_names_the_setting(url: str) -> None:
    try:
        result = validate_endpoint("AML_OBS_API_ENDPOINT", url)
    except SettingsError as error:
        assert "AML_OBS_API_ENDPOINT" in str(error)
        return
    assert result.lower().startswith(("https://", "http://"))
    assert not result.endswith("/")


# --- storage -----------------------------------------------------------------------------------


def test_no_storage_setting_means_storage_off() -> None:
    assert Settings.from_env({}).storage is None
    assert StorageSettings.from_env({}) is None


def test_connection_string_is_used_as_given() -> None:
    storage = Settings.from_env({"AzureWebJobsStorage": f"  {AZURITE}  "}).storage
    assert storage == StorageSettings(connection_string=AZURITE)


def test_connection_string_wins_over_identity_based_settings() -> None:
    storage = StorageSettings.from_env(
        {"AzureWebJobsStorage": AZURITE, "AzureWebJobsStorage__accountName": "stamlobs"}
    )
    assert storage == StorageSettings(connection_string=AZURITE)


def test_development_storage_shortcut_is_refused_with_a_hint() -> None:
    message = error_for({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert "AzureWebJobsStorage" in message and "Azurite" in message


ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LW5vdC10by1iZS1sb2dnZWQ="


@pytest.mark.parametrize(
    "connection_string",
    [
        # Every endpoint derived from the account name, over plain http.
        f"DefaultEndpointsProtocol=http;AccountName=stamlobs;AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net",
        # Azurite's blob endpoint, but the table endpoint derived (http://devstoreaccount1.table...).
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};"
        "EndpointSuffix=core.windows.net;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1",
        # An explicit plain-http endpoint on another machine.
        f"AccountName=x;AccountKey={ACCOUNT_KEY};BlobEndpoint=https://x.blob.core.windows.net;"
        "TableEndpoint=http://10.0.0.5:10002/x",
    ],
    ids=["default-protocol-http", "derived-table-endpoint", "explicit-remote-http"],
)
def test_storage_connection_string_with_http_to_a_non_loopback_host_is_refused(
    connection_string: str,
) -> None:
    # The same rule as every other endpoint setting: http:// only for loopback (Azurite).
    message = error_for({"AzureWebJobsStorage": connection_string})
    assert "AzureWebJobsStorage" in message
    assert "loopback" in message
    assert ACCOUNT_KEY not in message  # the message is logged: it must not carry the account key


def test_account_name_gives_the_public_cloud_service_uris() -> None:
    storage = StorageSettings.from_env(
        {"AzureWebJobsStorage__accountName": "stamlobs", "AzureWebJobsStorage__clientId": " 1234 "}
    )
    assert storage == StorageSettings(
        blob_service_uri="https://stamlobs.blob.core.windows.net",
        table_service_uri="https://stamlobs.table.core.windows.net",
        client_id="1234",
    )


def test_account_name_with_one_explicit_uri_keeps_it() -> None:
    storage = StorageSettings.from_env(
        {
            "AzureWebJobsStorage__accountName": "stamlobs",
            "AzureWebJobsStorage__blobServiceUri": "https://stamlobs.blob.core.usgovcloudapi.net/",
        }
    )
    assert storage is not None
    assert storage.blob_service_uri == "https://stamlobs.blob.core.usgovcloudapi.net"
    assert storage.table_service_uri == "https://stamlobs.table.core.windows.net"
    assert storage.connection_string is None


def test_both_service_uris() -> None:
    storage = Settings.from_env(
        {
            "AzureWebJobsStorage__blobServiceUri": "http://127.0.0.1:10000/devstoreaccount1/",
            "AzureWebJobsStorage__tableServiceUri": "http://127.0.0.1:10002/devstoreaccount1",
        }
    ).storage
    assert storage == StorageSettings(
        blob_service_uri="http://127.0.0.1:10000/devstoreaccount1",
        table_service_uri="http://127.0.0.1:10002/devstoreaccount1",
    )


@pytest.mark.parametrize(
    "present",
    [
        {"AzureWebJobsStorage__blobServiceUri": "https://stamlobs.blob.core.windows.net"},
        {"AzureWebJobsStorage__tableServiceUri": "https://stamlobs.table.core.windows.net"},
    ],
)
def test_one_service_uri_without_the_other_is_refused(present: dict[str, str]) -> None:
    message = error_for(present)
    assert "AzureWebJobsStorage__blobServiceUri" in message
    assert "AzureWebJobsStorage__tableServiceUri" in message


def test_plain_http_storage_uri_off_loopback_is_refused() -> None:
    message = error_for(
        {
            "AzureWebJobsStorage__blobServiceUri": "http://10.0.0.1:10000/devstoreaccount1",
            "AzureWebJobsStorage__tableServiceUri": "https://stamlobs.table.core.windows.net",
        }
    )
    assert "AzureWebJobsStorage__blobServiceUri" in message


# --- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["0", "11", "-1", "2.5", "four", "1e1", "²", "٣٣"])
def test_bad_attempt_count_is_refused_with_its_name(raw: str) -> None:
    message = error_for({"AML_OBS_HTTP_MAX_ATTEMPTS": raw})
    assert "AML_OBS_HTTP_MAX_ATTEMPTS" in message
    assert repr(raw) in message


@pytest.mark.parametrize("raw", ["1", "10", " 3 "])
def test_attempt_count_bounds(raw: str) -> None:
    assert Settings.from_env({"AML_OBS_HTTP_MAX_ATTEMPTS": raw}).http_max_attempts == int(raw)


@pytest.mark.parametrize("raw", ["0", "-5", "abc", "nan", "inf", "-inf", "1e400", "10s"])
@pytest.mark.parametrize("name", ["AML_OBS_HTTP_TIMEOUT_SECONDS", "AML_OBS_MAX_RETRY_AFTER_SECONDS"])
def test_bad_seconds_are_refused_with_their_name(name: str, raw: str) -> None:
    message = error_for({name: raw})
    assert name in message
    assert repr(raw) in message


@pytest.mark.parametrize("raw", ["0.25", "5", "1e1"])
def test_fractional_seconds(raw: str) -> None:
    assert Settings.from_env({"AML_OBS_HTTP_TIMEOUT_SECONDS": raw}).http_timeout_seconds == float(raw)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(
        ["AML_OBS_HTTP_MAX_ATTEMPTS", "AML_OBS_HTTP_TIMEOUT_SECONDS", "AML_OBS_MAX_RETRY_AFTER_SECONDS"]
    ),
    raw=st.text(max_size=12),
)
def test_any_number_setting_is_loaded_or_refused_by_name(name: str, raw: str) -> None:
    try:
        loaded = Settings.from_env({name: raw})
    except SettingsError as error:
        assert name in str(error)
        return
    values = (loaded.http_max_attempts, loaded.http_timeout_seconds, loaded.max_retry_after_seconds)
    assert 1 <= loaded.http_max_attempts <= 10
    assert all(0 < value < float("inf") for value in values)


# ---- Key Vault references the Functions host could not resolve ----------------------------------
# infra/modules/functionapp.bicep sets APPLICATIONINSIGHTS_CONNECTION_STRING to
# '@Microsoft.KeyVault(SecretUri=<secret uri>)'; when the host cannot resolve a reference at start
# the app sees that literal (https://learn.microsoft.com/azure/app-service/app-service-key-vault-references).

SECRET_URI = "https://kv-abc123.vault.azure.net/secrets/appinsights-connection-string/0123456789abcdef"


@pytest.mark.parametrize(
    "reference",
    [
        f"@Microsoft.KeyVault(SecretUri={SECRET_URI})",
        "@Microsoft.KeyVault(SecretUri=https://kv-abc123.vault.azure.net/secrets/appinsights-connection-string/)",
        "@Microsoft.KeyVault(VaultName=kv-abc123;SecretName=appinsights-connection-string)",
        "  @microsoft.keyvault(VaultName=kv-abc123; SecretName=appinsights-connection-string; SecretVersion=01)  ",
    ],
)
def test_an_unresolved_key_vault_reference_is_named_with_its_cause(reference: str) -> None:
    message = error_for({"APPLICATIONINSIGHTS_CONNECTION_STRING": reference})
    assert message.startswith("APPLICATIONINSIGHTS_CONNECTION_STRING is a Key Vault reference")
    assert "secret 'appinsights-connection-string' of vault 'kv-abc123'" in message
    assert "Key Vault Secrets User" in message and "restart the app" in message
    assert "Environment variables (Configuration) blade" in message
    # Not the generic complaint every event used to get.
    assert "InstrumentationKey" not in message
    # The vault and secret are named; the reference itself (its URI, its version) is not repeated.
    assert "vault.azure.net" not in message and "0123456789abcdef" not in message and "01)" not in message


@pytest.mark.parametrize(
    "name",
    [
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AZURE_CLIENT_ID",
        "AzureWebJobsStorage",
        "AML_OBS_ARM_ENDPOINT",
        "AML_OBS_API_ENDPOINT",
    ],
)
def test_every_setting_read_as_a_string_is_checked_for_an_unresolved_reference(name: str) -> None:
    message = error_for({name: f"@Microsoft.KeyVault(SecretUri={SECRET_URI})"})
    assert message.startswith(f"{name} is a Key Vault reference")


@pytest.mark.parametrize(
    "reference",
    [
        "@Microsoft.KeyVault(",
        "@Microsoft.KeyVault(SecretUri=not a uri)",
        "@Microsoft.KeyVault(SecretUri=https://[::1/secrets/x)",
        "@Microsoft.KeyVault(VaultName=kv-abc123)",
    ],
)
def test_a_malformed_reference_is_still_named(reference: str) -> None:
    message = error_for({"APPLICATIONINSIGHTS_CONNECTION_STRING": reference})
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING is a Key Vault reference" in message
    assert "a malformed reference" in message


def test_a_resolved_value_that_mentions_key_vault_is_left_alone() -> None:
    loaded = Settings.from_env(
        {"AZURE_CLIENT_ID": "11111111-2222-3333-4444-555555555555", "UNRELATED": "@Microsoft.KeyVault(x)"}
    )
    assert loaded.azure_client_id == "11111111-2222-3333-4444-555555555555"


# --- the test-only loopback setting ------------------------------------------------------------

FAKE_IDENTITY = {"IDENTITY_ENDPOINT": "http://127.0.0.1:41741/msi/token", "IDENTITY_HEADER": "x"}


def test_loopback_is_off_unless_the_test_setting_says_so() -> None:
    assert Settings.from_env({}).allow_loopback is False
    for off in ("", "false", "0", " FALSE "):
        assert Settings.from_env({"AML_OBS_TEST_ALLOW_LOOPBACK": off}).allow_loopback is False
    for on in ("true", "1", "True"):
        assert Settings.from_env({"AML_OBS_TEST_ALLOW_LOOPBACK": on}).allow_loopback is True
    assert "AML_OBS_TEST_ALLOW_LOOPBACK must be true or false, got 'yes'" in error_for(
        {"AML_OBS_TEST_ALLOW_LOOPBACK": "yes"}
    )


def test_the_suite_runs_with_loopback_on_beside_its_identity_fake() -> None:
    # The tests' configuration: the identity fake (a local URL, as App Service's own is) and the setting.
    assert Settings.from_env({**FAKE_IDENTITY, "AML_OBS_TEST_ALLOW_LOOPBACK": "true"}).allow_loopback


@pytest.mark.parametrize("marker", ["WEBSITE_SITE_NAME", "WEBSITE_INSTANCE_ID"])
def test_the_loopback_setting_is_refused_on_an_azure_host(marker: str) -> None:
    env = {**FAKE_IDENTITY, marker: "func-amlobs-x", "AML_OBS_TEST_ALLOW_LOOPBACK": "true"}
    message = error_for(env)
    assert "AML_OBS_TEST_ALLOW_LOOPBACK is for the test suite's loopback fakes only" in message
    assert f"({marker} set with a managed identity endpoint)" in message
    # Without the setting the same host starts normally.
    assert Settings.from_env({**FAKE_IDENTITY, marker: "func-amlobs-x"}).allow_loopback is False
