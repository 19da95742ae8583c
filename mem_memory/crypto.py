"""Payload encoding: JSON, and AES-GCM when a key is given.

The 32-byte key (env MEM_MEMORY_KEY, base64, read by ``mem_memory.settings``) is split with
HKDF into an encryption key and a tagging key; neither the key nor anything derived from it is
kept in a printable attribute, and ``repr`` says only whether encryption is on. Each payload is
``nonce (12 random bytes) || ciphertext+tag`` with the event kind as associated data, so a
payload moved to another kind does not authenticate. Lookup columns that would reveal content
(symbol, strategy name, parameter version) hold a keyed HMAC tag instead of the text when
encrypted.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mem_memory.errors import CorruptRecord, MalformedMemoryKey

KEY_BYTES = 32
_KEY_CHECK_PLAINTEXT = b"mem-memory key check v1"


def new_key() -> str:
    """A fresh key, base64 (for MEM_MEMORY_KEY)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"mem-memory", info=info).derive(key)


class Codec:
    """Turns records into stored bytes and back; encrypting when built with a key."""

    __slots__ = ("_aead", "_tag_key")

    def __init__(self, key: bytes | None) -> None:
        if key is not None and (not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES):
            raise MalformedMemoryKey(f"the memory key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(_derive(bytes(key), b"payload")) if key is not None else None
        self._tag_key = _derive(bytes(key), b"lookup-tag") if key is not None else None

    @property
    def encrypted(self) -> bool:
        return self._aead is not None

    def __repr__(self) -> str:
        return f"Codec(encrypted={self.encrypted})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickle key material
        raise TypeError("Codec holds key material and cannot be pickled")

    def encode(self, kind: str, record: Mapping[str, Any]) -> bytes:
        data = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
        if self._aead is None:
            return data
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, kind.encode())

    def decode(self, kind: str, blob: bytes) -> dict[str, Any]:
        if self._aead is not None:
            try:
                blob = self._aead.decrypt(blob[:12], blob[12:], kind.encode())
            except InvalidTag:
                raise CorruptRecord(f"a stored {kind} record does not authenticate with this key") from None
        try:
            return json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CorruptRecord(f"a stored {kind} record is not valid JSON") from None

    def tag(self, text: str) -> str:
        """The lookup value of ``text``: itself without a key, a keyed HMAC tag with one."""
        if self._tag_key is None:
            return text
        return hmac.new(self._tag_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def key_check(self) -> bytes:
        assert self._aead is not None
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, _KEY_CHECK_PLAINTEXT, b"key-check")

    def verify(self, check: bytes) -> bool:
        assert self._aead is not None
        try:
            return self._aead.decrypt(check[:12], check[12:], b"key-check") == _KEY_CHECK_PLAINTEXT
        except InvalidTag:
            return False
