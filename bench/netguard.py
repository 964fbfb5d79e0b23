"""Loopback-only guard for the benchmark's child processes (stdlib only: it runs in every venv).

Installed before anything else is imported, in every probe alike, so that a library that tries to
reach the internet at import or run time fails loudly (and is reported) instead of sending traffic.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

ATTEMPTS: list[str] = []


class NonLoopbackConnection(OSError):
    pass


def _is_loopback(host: object) -> bool:
    if host in ("", "localhost"):
        return True
    if not isinstance(host, str):
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def install() -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def _check(sock: socket.socket, address: Any) -> None:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple)
        if inet and not _is_loopback(address[0]):
            ATTEMPTS.append(f"connect {address[0]}:{address[1]}")
            raise NonLoopbackConnection(f"benchmark refused a connection to {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        _check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_loopback(name):
            ATTEMPTS.append(f"resolve {name}")
            raise NonLoopbackConnection(f"benchmark refused to resolve {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
