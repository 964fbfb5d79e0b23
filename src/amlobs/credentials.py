"""The process's one Entra ID credential: managed identity in Azure, the developer's login locally.

``DefaultAzureCredential`` is deliberately not used: outside Azure it probes the instance metadata
service (169.254.169.254) and walks half a dozen sources before reaching the Azure CLI, which costs
seconds on a cold start and sends traffic nobody asked for. Here the choice is made from the
environment once:

* ``IDENTITY_ENDPOINT`` set (App Service / Functions, including Flex Consumption): the managed
  identity endpoint of the host, with ``AZURE_CLIENT_ID`` selecting the user-assigned identity.
  Nothing else is tried, so a broken identity fails loudly instead of silently using another one.
* otherwise (a developer's machine, the ``replay`` command): ``az login``, then ``azd auth login``.

azure-identity is imported inside :func:`build_credential` only, so ``import amlobs.credentials`` is
cheap for the Functions host's indexing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

IDENTITY_ENDPOINT = "IDENTITY_ENDPOINT"
IDENTITY_HEADER = "IDENTITY_HEADER"


def uses_managed_identity(env: Mapping[str, str] | None = None) -> bool:
    """True when the host exposes the App Service managed identity endpoint."""
    env = os.environ if env is None else env
    return bool(env.get(IDENTITY_ENDPOINT, "").strip())


def build_credential(settings: Settings, env: Mapping[str, str] | None = None) -> TokenCredential:
    """The credential for every Azure call of this process (build it once and share it).

    ``env`` is only consulted to choose the source; the managed identity client itself reads
    ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` from ``os.environ`` when it asks for a token.
    """
    if uses_managed_identity(env):
        from azure.identity import ManagedIdentityCredential

        # client_id=None means the system-assigned identity; the template deploys a
        # user-assigned one and sets AZURE_CLIENT_ID, so tokens come from that identity.
        return ManagedIdentityCredential(client_id=settings.azure_client_id)

    from azure.identity import AzureCliCredential, AzureDeveloperCliCredential, ChainedTokenCredential

    # Both only run a local CLI; neither touches the network until that CLI does, and both
    # report "unavailable" quickly when the tool is not installed or not logged in.
    return ChainedTokenCredential(AzureCliCredential(), AzureDeveloperCliCredential())
