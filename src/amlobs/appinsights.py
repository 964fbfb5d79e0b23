"""Application Insights settings: the connection string and the Entra ID authentication string.

Parsed without any SDK import, so malformed settings fail at start-up, not on the first event. The
ingestion endpoint receives a bearer token (Entra ID ingestion): it is held to the same URL rules as
every other endpoint that gets a token (:func:`amlobs.trust.check_token_url`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .settings import SettingsError, validate_endpoint
from .trust import UntrustedUrl, check_token_url

CONNECTION_STRING_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING_SETTING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
DEFAULT_INGESTION_ENDPOINT = "https://dc.services.visualstudio.com"

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _pairs(name: str, value: str) -> dict[str, str]:
    """``Key=Value;Key=Value`` → lower-cased keys. Empty segments (a trailing ``;``) are ignored."""
    pairs: dict[str, str] = {}
    for segment in value.split(";"):
        if not segment.strip():
            continue
        key, sep, val = segment.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"{name} must be Key=Value pairs separated by ';', got segment {segment!r}")
        pairs[key.strip().lower()] = val.strip()
    return pairs


@dataclass(frozen=True)
class IngestionTarget:
    instrumentation_key: str
    ingestion_endpoint: str
    # The connection string handed to the exporter: same meaning, normalised so that its stricter
    # parser accepts it (no empty segments, lower-case key).
    connection_string: str


def parse_connection_string(value: str) -> IngestionTarget:
    pairs = _pairs(CONNECTION_STRING_SETTING, value)
    ikey = pairs.get("instrumentationkey", "")
    if not _GUID.match(ikey):
        raise SettingsError(f"{CONNECTION_STRING_SETTING} must contain InstrumentationKey=<GUID>")
    authorization = pairs.get("authorization")
    if authorization is not None and authorization.lower() != "ikey":
        raise SettingsError(f"{CONNECTION_STRING_SETTING}: Authorization must be ikey when present")
    if any("=" in v for v in pairs.values()):
        raise SettingsError(f"{CONNECTION_STRING_SETTING}: a value contains '=': check the string's quoting")
    endpoint = pairs.get("ingestionendpoint")
    if not endpoint and pairs.get("endpointsuffix"):
        location = f"{pairs['location']}." if pairs.get("location") else ""
        endpoint = f"https://{location}dc.{pairs['endpointsuffix']}"
    endpoint = validate_endpoint(
        f"{CONNECTION_STRING_SETTING} IngestionEndpoint", endpoint or DEFAULT_INGESTION_ENDPOINT
    )
    try:
        # The ingestion endpoint is the operator's configuration, trusted as written (loopback included,
        # for local runs against a fake): docs/security.md.
        check_token_url(endpoint, allow_loopback=True)
    except UntrustedUrl as exc:
        raise SettingsError(f"{CONNECTION_STRING_SETTING} IngestionEndpoint: {exc}") from None
    normalised = {**pairs, "instrumentationkey": ikey.lower()}
    return IngestionTarget(
        instrumentation_key=ikey.lower(),
        ingestion_endpoint=endpoint,
        connection_string=";".join(f"{k}={v}" for k, v in normalised.items()),
    )


@dataclass(frozen=True)
class EntraIngestion:
    """``Authorization=AAD[;ClientId=<guid>]``: ingestion with an Entra ID token instead of the ikey."""

    client_id: str | None


def parse_authentication_string(value: str) -> EntraIngestion:
    pairs = _pairs(AUTHENTICATION_STRING_SETTING, value)
    unknown = sorted(set(pairs) - {"authorization", "clientid"})
    if pairs.get("authorization", "").upper() != "AAD" or unknown:
        raise SettingsError(
            f"{AUTHENTICATION_STRING_SETTING} must be 'Authorization=AAD' or "
            f"'Authorization=AAD;ClientId=<client id>'"
            + (f" (unknown keys: {', '.join(unknown)})" if unknown else "")
        )
    client_id = pairs.get("clientid")
    if client_id is not None and not _GUID.match(client_id):
        raise SettingsError(f"{AUTHENTICATION_STRING_SETTING}: ClientId must be a GUID, got {client_id!r}")
    return EntraIngestion(client_id=client_id)
