"""Azurite (the real Azure Storage emulator, Blob + Table) on 127.0.0.1 for the whole test session.

Azurite binds port 0 and reports the ports the OS gave it, so there is no window in which another
process can take a port we picked; a restartable (persistent) emulator gets fixed ports below the
ephemeral range instead, so that it can bind them again after a restart. ``start_azurite()`` is a plain context manager (the benchmark
uses it without pytest); the ``azurite`` and ``storage_env`` fixtures wrap it.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO_ROOT / "tests" / "tools" / "node_modules" / ".bin" / "azurite"

# Azurite's well-known development account: published in Microsoft's docs, not a secret.
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

_LISTENING = re.compile(r"Azurite (Blob|Table|Queue) service is successfully listening at (http\S+)")
START_TIMEOUT_SECONDS = 30.0
RESTART_ATTEMPTS = 5


class AzuriteNotInstalled(RuntimeError):
    pass


class AzuriteFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class StoredBlob:
    name: str
    content: bytes
    metadata: dict[str, str]
    content_type: str | None


@dataclass
class Azurite:
    """A running Azurite: endpoints, connection string and helpers to inspect or clear the account."""

    process: subprocess.Popen[bytes]
    blob_endpoint: str
    table_endpoint: str
    log_path: Path
    tls_cert: Path | None = None
    command: list[str] = field(default_factory=list)
    workdir: Path | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.blob_endpoint.split(':')[0]};AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={self.blob_endpoint};TableEndpoint={self.table_endpoint};"
        )

    @property
    def blob_port(self) -> int:
        return int(self.blob_endpoint.split(":")[2].split("/")[0])

    @property
    def table_port(self) -> int:
        return int(self.table_endpoint.split(":")[2].split("/")[0])

    def client_options(self) -> dict[str, Any]:
        """SDK client keyword arguments to reach this instance (trust its self-signed certificate)."""
        return {"connection_verify": str(self.tls_cert)} if self.tls_cert else {}

    def blob_service(self) -> Any:
        if "blob" not in self._clients:
            from azure.storage.blob import BlobServiceClient

            self._clients["blob"] = BlobServiceClient.from_connection_string(
                self.connection_string, **self.client_options()
            )
        return self._clients["blob"]

    def table_service(self) -> Any:
        if "table" not in self._clients:
            from azure.data.tables import TableServiceClient

            self._clients["table"] = TableServiceClient.from_connection_string(
                self.connection_string, **self.client_options()
            )
        return self._clients["table"]

    # -- inspection ---------------------------------------------------------------------------

    def containers(self) -> list[str]:
        return sorted(c.name for c in self.blob_service().list_containers())

    def tables(self) -> list[str]:
        return sorted(t.name for t in self.table_service().list_tables())

    def list_blobs(self, container: str) -> list[StoredBlob]:
        """Every blob of ``container`` with content and metadata (empty if the container is missing)."""
        from azure.core.exceptions import ResourceNotFoundError

        client = self.blob_service().get_container_client(container)
        blobs: list[StoredBlob] = []
        try:
            for item in client.list_blobs(include=["metadata"]):
                content = client.download_blob(item.name).readall()
                blobs.append(
                    StoredBlob(
                        name=item.name,
                        content=content,
                        metadata=dict(item.metadata or {}),
                        content_type=item.content_settings.content_type,
                    )
                )
        except ResourceNotFoundError:
            return []
        return sorted(blobs, key=lambda b: b.name)

    def list_entities(self, table: str) -> list[dict[str, Any]]:
        """Every entity of ``table`` (empty if the table is missing)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return [dict(e) for e in self.table_service().get_table_client(table).list_entities()]
        except ResourceNotFoundError:
            return []

    # -- reset --------------------------------------------------------------------------------

    def clear(self) -> None:
        """Empty every container and table, keeping them (stores cache that they exist)."""
        service = self.blob_service()
        for container in service.list_containers():
            client = service.get_container_client(container.name)
            names = [b.name for b in client.list_blobs()]
            for name in names:
                client.delete_blob(name)
        tables = self.table_service()
        for table in tables.list_tables():
            client = tables.get_table_client(table.name)
            for entity in client.list_entities(select=["PartitionKey", "RowKey"]):
                client.delete_entity(entity["PartitionKey"], entity["RowKey"])

    def delete_all(self) -> None:
        """Remove every container and table: an account as fresh as a new deployment's."""
        service = self.blob_service()
        for container in service.list_containers():
            service.delete_container(container.name)
        tables = self.table_service()
        for table in tables.list_tables():
            tables.delete_table(table.name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- outages (the chaos simulator) ------------------------------------------------------------

    def pause(self) -> None:
        """Freeze the emulator (SIGSTOP): connections hang, as behind a stalled network."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def restart(self) -> None:
        """Stop the emulator gracefully and start it again on the same ports (start it with
        ``persistent=True`` to keep the data: in-memory data does not survive).

        Returns only once the blob *and* the table service listen again: Azurite logs each service
        separately, and a service that failed to bind (its port taken meanwhile) must not pass for a
        restarted emulator, or every later call to it is refused."""
        if not self.command or self.workdir is None:
            raise AzuriteFailed("this Azurite was not started by start_azurite(): cannot restart it")
        _stop(self.process)
        ports = {"--blobPort": self.blob_port, "--tablePort": self.table_port}
        command = [
            str(ports.get(self.command[index - 1], arg)) if index else arg
            for index, arg in enumerate(self.command)
        ]
        # A queue port of 0 is fine: nothing uses the queue service.
        text = ""
        for _attempt in range(RESTART_ATTEMPTS):
            marker = len(self.log())
            self.process = _spawn(command, self.workdir, self.log_path)
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                text = self.log()[marker:]
                listening = {service.lower() for service, _url in _LISTENING.findall(text)}
                if {"blob", "table"} <= listening:
                    return
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
            _stop(self.process)
            time.sleep(1.0)
        raise AzuriteFailed(
            f"Azurite did not listen again after a restart ({RESTART_ATTEMPTS} tries):\n{text}"
        )


def _wait_for_endpoints(process: subprocess.Popen[bytes], log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        found = {service.lower(): url.rstrip("/") for service, url in _LISTENING.findall(text)}
        if "blob" in found and "table" in found:
            return found
        if process.poll() is not None:
            raise AzuriteFailed(f"Azurite exited with code {process.returncode} before listening:\n{text}")
        time.sleep(0.05)
    raise AzuriteFailed(f"Azurite did not report its ports within {START_TIMEOUT_SECONDS:.0f} s:\n{text}")


def _ports_outside_ephemeral_range(count: int) -> list[int]:
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    ports: list[int] = []
    while len(ports) < count:
        candidate = rng.randrange(max(1024, low - 12000), low)
        if candidate in ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        ports.append(candidate)
    return ports


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    # Our own process group (start_new_session): the node process and anything it spawned.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def missing_azurite_message() -> str | None:
    if not AZURITE_BIN.exists():
        return (
            f"Azurite is not installed ({AZURITE_BIN} is missing): run scripts/test.sh, which installs it "
            "with `npm ci` in tests/tools"
        )
    if shutil.which("node") is None:
        return "Azurite needs Node.js (`node` is not on PATH): install Node.js 18+ and run scripts/test.sh"
    return None


def _spawn(command: list[str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def start_azurite(
    *, tls: tuple[Path, Path] | None = None, oauth: bool = False, persistent: bool = False
) -> Iterator[Azurite]:
    """Run Azurite (Blob + Table on 127.0.0.1) for the duration of the ``with`` block.

    ``tls`` = (certificate PEM, key PEM) serves https; ``oauth`` (needs ``tls``) also accepts
    bearer tokens, checking their issuer, audience and lifetime (Azurite's "basic" OAuth level).
    ``persistent`` keeps the data on disk instead of in memory, so that :meth:`Azurite.restart`
    finds it again (the chaos simulator restarts storage mid-run).
    """
    if oauth and tls is None:
        raise ValueError("Azurite accepts bearer tokens only over https: pass tls=(cert, key)")
    problem = missing_azurite_message()
    if problem:
        raise AzuriteNotInstalled(problem)
    workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
    log_path = workdir / "azurite.log"
    # A restartable emulator gets ports below the kernel's ephemeral range: while it is down, an
    # outgoing connection of any process on the machine could otherwise take its port as a source
    # port, and the restarted service could not bind it again. Otherwise the OS picks (port 0).
    blob_port, table_port = _ports_outside_ephemeral_range(2) if persistent else (0, 0)
    storage = (
        ["--location", str(workdir / "data")]
        if persistent
        else ["--inMemoryPersistence", "--extentMemoryLimit", "256"]
    )
    command = [
        str(AZURITE_BIN),
        *storage,
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
        *("--blobHost", "127.0.0.1", "--blobPort", str(blob_port)),
        *("--tableHost", "127.0.0.1", "--tablePort", str(table_port)),
        # The azurite binary always starts the queue service too; give it a port of its own.
        *("--queueHost", "127.0.0.1", "--queuePort", "0"),
    ]
    if tls is not None:
        command += ["--cert", str(tls[0]), "--key", str(tls[1])]
    if oauth:
        command += ["--oauth", "basic"]
    if persistent:
        (workdir / "data").mkdir()
    process = _spawn(command, workdir, log_path)
    running: Azurite | None = None
    try:
        endpoints = _wait_for_endpoints(process, log_path)
        running = Azurite(
            process=process,
            blob_endpoint=f"{endpoints['blob']}/{DEV_ACCOUNT}",
            table_endpoint=f"{endpoints['table']}/{DEV_ACCOUNT}",
            log_path=log_path,
            tls_cert=tls[0] if tls else None,
            command=command,
            workdir=workdir,
        )
        yield running
    finally:
        _stop(running.process if running is not None else process)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    problem = missing_azurite_message()
    if problem:
        pytest.fail(problem, pytrace=False)
    with start_azurite() as running:
        yield running


@pytest.fixture
def storage_env(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[Azurite]:
    """``AzureWebJobsStorage`` = the Azurite connection string, over empty containers and tables."""
    for name in list(os.environ):
        if name.startswith("AzureWebJobsStorage__"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    azurite.clear()
    yield azurite
