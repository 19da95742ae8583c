"""Helpers for the credential-rotation tests and bench/bench_security.py: certificates made with
``cryptography`` (a CA each, a leaf for localhost), atomic 0600 writes, and a client thread that
calls GetParameters without pause and counts every outcome."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from mem_serving.api import MemServiceStub, pb


@dataclass(frozen=True)
class Authority:
    cert_pem: bytes
    key: object  # an EC private key


def make_ca(name: str) -> Authority:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert.public_bytes(serialization.Encoding.PEM), key)


def issue(ca: Authority, host: str = "localhost") -> tuple[bytes, bytes]:
    """A server certificate for ``host`` signed by ``ca``: (certificate PEM, key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.load_pem_x509_certificate(ca.cert_pem).subject
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem


def cert_fingerprint(cert_pem: bytes) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()[:16]


def write_private(path: Path, data: bytes | str) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``data`` (as an operator's deploy
    tool would: write beside, rename over)."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.new")
    with os.fdopen(os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600), "wb") as f:
        f.write(raw)
    os.replace(tmp, path)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def call_once(address: str, roots: bytes, token: str | None, timeout: float = 5.0) -> grpc.StatusCode:
    """One GetParameters on a new TLS connection (a fresh handshake); its status code."""
    with grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots)) as channel:
        try:
            MemServiceStub(channel).GetParameters(pb.GetParametersRequest(), timeout=timeout, metadata=_auth(token))
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            return exc.code()


def _auth(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


@dataclass
class Caller:
    """A client calling GetParameters back to back with one token, on one long-lived channel or
    on a new connection (a new TLS handshake) per call, until ``stop``."""

    address: str
    roots: bytes
    token: str
    fresh: bool = False
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Caller:
        self._thread = threading.Thread(
            target=self._run, name=f"caller-{self.token}-{'fresh' if self.fresh else 'kept'}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        channel = (
            None
            if self.fresh
            else grpc.secure_channel(self.address, grpc.ssl_channel_credentials(root_certificates=self.roots))
        )
        try:
            while not self._stop.is_set():
                if channel is None:
                    code = call_once(self.address, self.roots, self.token)
                else:
                    try:
                        MemServiceStub(channel).GetParameters(
                            pb.GetParametersRequest(), timeout=5, metadata=_auth(self.token)
                        )
                        code = grpc.StatusCode.OK
                    except grpc.RpcError as exc:
                        code = exc.code()
                if code == grpc.StatusCode.OK:
                    self.ok += 1
                else:
                    self.failures.append(code.name)
        finally:
            if channel is not None:
                channel.close()

    def stop(self) -> Caller:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self

    @property
    def calls(self) -> int:
        return self.ok + len(self.failures)
