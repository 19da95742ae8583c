"""Serving credentials that rotate without a restart: the bearer-token set and the TLS pair
(docs/serving.md, docs/security.md). A file that fails its checks on a reload is refused with a
log line and the credentials in force stay: a bad edit never locks clients out. Logs name
fingerprints, never a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from mem_serving.settings import ServingSettings

log = logging.getLogger(__name__)


class CredentialError(ValueError):
    """A token file or certificate pair failed its checks; at start the server does not start,
    on a reload the credentials in force stay."""


def fingerprint(secret: str | bytes) -> str:
    data = secret.encode() if isinstance(secret, str) else secret
    return hashlib.sha256(data).hexdigest()[:12]


class TokenSet:
    """The bearer tokens accepted now; ``replace`` swaps the whole set atomically."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.replace(tokens)

    def replace(self, tokens: Iterable[str]) -> None:
        """``tokens``: never empty (``parse_tokens`` refuses a file without one)."""
        self._expected = tuple(t.encode() for t in tokens)

    def accepts(self, given: bytes) -> bool:
        """Whether ``given`` (the authorization header: the scheme ``Bearer`` in any case, as RFC
        7235 has it, one or more spaces, the token) names a current token; every token is
        compared, in constant time, whatever matches first."""
        scheme, _, rest = given.partition(b" ")
        token = rest.lstrip(b" ")
        matches = [hmac.compare_digest(token, expected) for expected in self._expected]  # all of them
        return scheme.lower() == b"bearer" and any(matches)

    def fingerprints(self) -> list[str]:
        return [fingerprint(e) for e in self._expected]


def parse_tokens(text: str) -> tuple[str, ...]:
    """Tokens of a token file: one per line, blank lines and ``#`` comments ignored; printable
    ASCII without spaces (what fits an HTTP header). Errors name the line, never the token."""
    tokens: list[str] = []
    for n, line in enumerate(text.splitlines(), 1):
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        if not t.isascii() or not t.isprintable() or any(c.isspace() for c in t):
            raise CredentialError(f"line {n} of the token file is not a token (printable ASCII without spaces)")
        if t not in tokens:
            tokens.append(t)
    if not tokens:
        raise CredentialError("the token file holds no token")
    return tuple(tokens)


def _private_text(path: Path, what: str, strict: bool = True) -> bytes:
    """The file's bytes; one open to group or others is refused (``strict``) or logged."""
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            if strict:
                raise CredentialError(f"the {what} {path} is readable by group or others; chmod 600 it")
            log.warning("the %s %s is readable by group or others; chmod 600 it", what, path)
        return path.read_bytes()
    except OSError as exc:
        raise CredentialError(f"cannot read the {what} {path}: {exc.strerror}") from None


def read_token_file(path: Path) -> tuple[str, ...]:
    try:
        return parse_tokens(_private_text(path, "token file").decode())
    except UnicodeDecodeError:
        raise CredentialError(f"the token file {path} is not text") from None


#: What a call without a current token is told (UNAUTHENTICATED).
UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token"


class CertificatePair:
    """The TLS certificate chain and key, re-read on ``reload``; the server asks for a change on
    every new handshake (``_fetch``)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert_path, self.key_path = cert, key
        self._lock = threading.Lock()
        self._pending: Any = None
        key_pem, cert_pem, self.fingerprint, self.not_after = self._load(at_start=True)
        self._current = (key_pem, cert_pem)
        self._initial = grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)])

    def _load(self, at_start: bool = False) -> tuple[bytes, bytes, str, datetime]:
        """Read and check the pair. A key open to others and an expired certificate are logged at
        start (as the server always did) and refused on a reload."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        try:
            cert_pem = self.cert_path.read_bytes()
            cert = x509.load_pem_x509_certificate(cert_pem)
        except OSError as exc:
            raise CredentialError(
                f"MEM_SERVING_TLS_CERT names {self.cert_path}, which cannot be read ({exc.strerror})"
            ) from None
        except ValueError:
            raise CredentialError(
                f"MEM_SERVING_TLS_CERT names {self.cert_path}, which is not a PEM certificate"
            ) from None
        key_pem = _private_text(self.key_path, "TLS key", strict=not at_start)
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise CredentialError(
                f"MEM_SERVING_TLS_KEY names {self.key_path}, which is not an unencrypted PEM private key"
            ) from None
        if key.public_key() != cert.public_key():
            raise CredentialError(f"the TLS key {self.key_path} does not belong to the certificate {self.cert_path}")
        not_after = cert.not_valid_after_utc
        if not_after <= datetime.now(UTC):
            message = f"the certificate {self.cert_path} expired on {not_after:%Y-%m-%d %H:%M} UTC"
            if not at_start:
                raise CredentialError(message)
            log.warning("%s", message)
        return key_pem, cert_pem, cert.fingerprint(hashes.SHA256()).hex()[:16], not_after

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(self._initial, self._fetch, require_client_authentication=False)

    def _fetch(self) -> Any:
        """Called by gRPC before each handshake: the new configuration once after a reload,
        else None (no change)."""
        with self._lock:
            pending, self._pending = self._pending, None
        return pending

    def reload(self) -> bool:
        """Read the files again; True when the pair changed (served from the next handshake)."""
        key_pem, cert_pem, fp, not_after = self._load()
        if (key_pem, cert_pem) == self._current:
            return False
        with self._lock:
            self._pending = grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)])
            self._current = (key_pem, cert_pem)
            self.fingerprint, self.not_after = fp, not_after
        return True


class ServingCredentials:
    """The server's token set and certificate pair, their reload, and the file watcher."""

    def __init__(self, settings: ServingSettings) -> None:
        self.token_file = settings.token_file
        if settings.token_file is not None:
            self.tokens: TokenSet | None = TokenSet(read_token_file(settings.token_file))
        elif settings.token:
            self.tokens = TokenSet([settings.token])
        else:
            self.tokens = None
        self.tls = (
            CertificatePair(settings.tls_cert, settings.tls_key) if settings.tls_cert and settings.tls_key else None
        )
        self.poll_s = settings.credentials_poll_s
        self._watched = [p for p in (settings.token_file, settings.tls_cert, settings.tls_key) if p is not None]
        self._reload_lock = threading.Lock()
        self._stamps = self._stat()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stat(self) -> dict[Path, tuple[int, int, int] | None]:
        out: dict[Path, tuple[int, int, int] | None] = {}
        for p in self._watched:
            try:
                st = p.stat()
                out[p] = (st.st_ino, st.st_size, st.st_mtime_ns)
            except OSError:
                out[p] = None
        return out

    def reload(self, reason: str) -> dict[str, Any]:
        """Re-read the token file and the certificate pair; what fails its checks is refused and
        logged, the rest applies. Returns what is in force (fingerprints, never secrets)."""
        with self._reload_lock:
            self._stamps = self._stat()
            changed: list[str] = []
            if self.token_file is not None and self.tokens is not None:
                try:
                    before = self.tokens.fingerprints()
                    self.tokens.replace(read_token_file(self.token_file))
                    if self.tokens.fingerprints() != before:
                        changed.append("tokens")
                except CredentialError as exc:
                    log.error("token reload (%s) refused, the tokens in force stay: %s", reason, exc)
            if self.tls is not None:
                try:
                    if self.tls.reload():
                        changed.append("certificate")
                except CredentialError as exc:
                    log.error("certificate reload (%s) refused, the certificate in force stays: %s", reason, exc)
            state = self.describe()
            log.info(
                "serving credentials reloaded (%s): %s changed; %s",
                reason,
                ", ".join(changed) or "nothing",
                _summary(state),
            )
            return {**state, "changed": changed}

    def describe(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens.fingerprints() if self.tokens is not None else [],
            "certificate": self.tls.fingerprint if self.tls is not None else None,
            "certificate_not_after": self.tls.not_after.isoformat() if self.tls is not None else None,
        }

    def start_watching(self) -> None:
        """Poll the watched files every ``poll_s`` seconds (no thread when 0 or nothing to watch)."""
        if self.poll_s <= 0 or not self._watched or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="mem-credentials-watch", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self._stat() != self._stamps:
                try:
                    self.reload("file changed")
                except Exception:  # the watcher must outlive any surprise; the error is logged
                    log.exception("credential reload failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _summary(state: dict[str, Any]) -> str:
    parts = []
    if state["tokens"]:
        parts.append(f"{len(state['tokens'])} token(s) {', '.join(state['tokens'])}")
    if state["certificate"]:
        parts.append(f"certificate {state['certificate']} valid until {state['certificate_not_after']}")
    return "; ".join(parts) or "no credentials"
