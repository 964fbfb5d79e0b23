"""Suite-wide guards: no traffic leaves 127.0.0.1, and the exporter's side channels are off."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from amlobs.settings import AZURE_HOST_VARIABLES, TEST_LOOPBACK_SETTING
from tests.quiet_exporter import QUIET_EXPORTER_ENV

# Fixtures of the loopback fakes live beside them; each module owns one fake.
pytest_plugins = [
    "tests.fakes.aml_api",
    "tests.fakes.ingestion",
    "tests.fakes.azurite",
]

# Set before any azure.monitor / opentelemetry import so no detector or background channel starts.
os.environ.update(QUIET_EXPORTER_ENV)
for _inherited in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID"):
    os.environ.pop(_inherited, None)
# Every fake listens on loopback: the test-only setting lets the app send them the token (amlobs.settings;
# the fakes' own env() sets it too, for the worker processes the suite starts). Refused on an Azure host.
os.environ[TEST_LOOPBACK_SETTING] = "true"
for _azure_host in AZURE_HOST_VARIABLES:
    os.environ.pop(_azure_host, None)


class NonLoopbackConnection(AssertionError):
    pass


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
    else:
        return True  # AF_UNIX paths and the like never leave the machine
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name that would need DNS: not loopback by construction


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
ATTEMPTED_NON_LOOPBACK: list[Any] = []


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        ATTEMPTED_NON_LOOPBACK.append(address)
        raise NonLoopbackConnection(f"test tried to connect to {address!r}: only 127.0.0.1 is allowed")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
        ATTEMPTED_NON_LOOPBACK.append(address)
        raise NonLoopbackConnection(f"test tried to connect to {address!r}: only 127.0.0.1 is allowed")
    return _real_connect_ex(self, address)


_real_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    # A DNS look-up of a real name would already send a packet to the resolver.
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None and not _is_loopback((name, 0)):
        ATTEMPTED_NON_LOOPBACK.append((name, "dns"))
        raise NonLoopbackConnection(f"test tried to resolve {name!r}: only 127.0.0.1 is allowed")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _guarded_getaddrinfo
socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True, scope="session")
def _no_traffic_outside_loopback() -> Iterator[None]:
    yield
    assert not ATTEMPTED_NON_LOOPBACK, (
        f"connections outside loopback were attempted: {ATTEMPTED_NON_LOOPBACK}"
    )
