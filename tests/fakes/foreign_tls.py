"""A loopback HTTPS server posing as a foreign host, with its own throwaway certificate authority.

For the token-safety tests: every DNS name the client resolves (``evil.test``, ``westus.api.azureml.ms``,
an IDNA name...) is answered with 127.0.0.1 and this server's port (:func:`resolve_all_names_here`), and
its certificate, signed by a CA minted for the test, covers those names. So the HTTP stack really
connects, completes TLS and would send whatever the client decides to send; the server records every
request with its ``Authorization`` header. Nothing leaves 127.0.0.1: the resolver only ever returns
loopback addresses, under the suite's socket guard.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The names the tests make the client go to (SNI and certificate check use them as written, after
# IDNA encoding for non-ASCII names).
CERT_NAMES = (
    "evil.test",
    "westus.api.azureml.ms",
    "*.api.azureml.ms",
    "localhost",
    "prices.azure.com",
    "management.azure.com",
    # The host forms of docs/security.md: private link, the sovereign clouds' API hosts, and hosts
    # under Azure ML's domains that run customer code (compute instances, online endpoints).
    "*.workspace.eastus.api.azureml.ms",
    "*.api.ml.azure.us",
    "*.api.ml.azure.cn",
    "*.eastus.instances.azureml.ms",
    "*.eastus.inference.ml.azure.com",
    "*.usgovvirginia.inference.ml.azure.us",
)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    host: str | None
    authorization: str | None


Responder = Callable[[str, str], tuple[int, Mapping[str, str], Any]]


def _ok(method: str, path: str) -> tuple[int, Mapping[str, str], Any]:
    if "discovery" in path:
        return 200, {}, {"api": "https://westus.api.azureml.ms"}
    return 200, {}, {"runId": "x", "status": "Completed"}


@dataclass
class ForeignServer:
    port: int
    ca_path: Path
    requests: list[SeenRequest] = field(default_factory=list)
    responder: Responder = _ok
    # When set (``http://127.0.0.1:<port>``), every request is relayed there as received (method, path,
    # headers, body) and its answer relayed back: a loopback fake answering under a real host name.
    upstream: str | None = None

    @property
    def tokens(self) -> list[str]:
        return [r.authorization for r in self.requests if r.authorization]


def mint_certificates(directory: Path, names: tuple[str, ...] = CERT_NAMES) -> tuple[Path, Path, Path]:
    """A CA (certificate) and a server certificate + key for ``names``, signed by it: (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amlobs test CA (throwaway)")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


@contextmanager
def start_foreign_server(directory: Path) -> Iterator[ForeignServer]:
    ca_path, cert_path, key_path = mint_certificates(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    state = ForeignServer(0, ca_path)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = self.rfile.read(length) if length else b""
            state.requests.append(
                SeenRequest(
                    self.command, self.path, self.headers.get("Host"), self.headers.get("Authorization")
                )
            )
            if state.upstream is not None:
                self._relay(state.upstream, payload)
                return
            status, headers, body = state.responder(self.command, self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _relay(self, upstream: str, payload: bytes) -> None:
            parts = urlsplit(upstream)
            connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
            try:
                skip = {"host", "connection", "content-length"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                connection.request(self.command, self.path, body=payload or None, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in (
                        "content-length",
                        "connection",
                        "transfer-encoding",
                        "date",
                        "server",
                    ):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            finally:
                connection.close()

        def do_GET(self) -> None:
            self._handle()

        def do_POST(self) -> None:
            self._handle()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def resolve_all_names_here(port: int) -> Iterator[list[str]]:
    """Answer every name lookup but loopback ones with 127.0.0.1:``port``; yields the names looked up."""
    looked_up: list[str] = []
    original = socket.getaddrinfo

    def resolve(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in (None, "localhost") or (isinstance(name, str) and name.startswith("127.")):
            return original(host, service, *args, **kwargs)
        looked_up.append(str(name))
        return original("127.0.0.1", port, *args, **kwargs)

    socket.getaddrinfo = resolve
    try:
        yield looked_up
    finally:
        socket.getaddrinfo = original
