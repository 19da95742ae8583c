"""Payload encoding: JSON, and AES-GCM when a key is given.

The 32-byte key (env MEM_MEMORY_KEY, base64, read by ``mem_memory.settings``) is split with HKDF into an encryption key and a
tagging key; neither the key nor anything derived from it is kept in a printable attribute, and
``repr`` says only whether encryption is on. Each payload is ``b"\\xffMK1" || key id (8 bytes) ||
nonce (12 random bytes) || ciphertext+tag`` with the event kind as associated data, so a payload
moved to another kind does not authenticate. The key id (a third HKDF output, shown as 16 hex
digits) names the key a record is encrypted with without revealing it, so a store can hold records
under two keys while ``mem memory rekey`` rotates them. Payloads written before key ids existed
are ``nonce || ciphertext+tag`` and belong to the store's key. Lookup columns that would reveal
content (symbol, strategy name, parameter version) hold a keyed HMAC tag instead of the text when
encrypted, under the store's key (``use_store_key``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mem_memory.errors import CorruptRecord, MalformedMemoryKey, MissingMemoryKey
from mem_memory.serial import Record, json_values

KEY_ENV = "MEM_MEMORY_KEY"
#: Earlier keys still accepted for reading (comma-separated base64): a rotation's old key.
PREVIOUS_KEYS_ENV = "MEM_MEMORY_KEY_PREVIOUS"
KEY_BYTES = 32
KEY_ID_BYTES = 8
_KEY_CHECK_PLAINTEXT = b"mem-memory key check v1"
_HEADER = b"\xffMK1"
_PREFIX = len(_HEADER) + KEY_ID_BYTES  # header + key id, then nonce || ciphertext
_NONCE = 12
#: Symbols whose lookup tags a codec remembers (they recur at every candle close); then it starts over.
_SYMBOL_TAGS = 16384


def decode_key(raw: str, name: str) -> bytes:
    """The 32 key bytes of base64 ``raw``; ``MalformedMemoryKey`` names ``name``, never the value."""
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMemoryKey(f"{name} is not valid base64 (expected base64 of {KEY_BYTES} bytes)") from None
    if len(key) != KEY_BYTES:
        raise MalformedMemoryKey(f"{name} decodes to {len(key)} bytes; expected {KEY_BYTES}") from None
    return key


def new_key() -> str:
    """A fresh key, base64 (for MEM_MEMORY_KEY)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _derive(key: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"mem-memory", info=info).derive(key)


def key_id(key: bytes) -> str:
    """The public name of ``key``: 16 hex digits of an HKDF output of its own, from which neither
    the key nor its encryption or tagging keys can be computed."""
    return _derive(bytes(key), b"key-id", KEY_ID_BYTES).hex()


class Codec:
    """Turns records into stored bytes and back; encrypting when built with a key.

    ``key`` encrypts what is written; ``previous`` keys only decrypt (records not yet rotated).
    Lookup tags and unlabelled payloads use the store's key, ``key`` until ``use_store_key``.
    """

    __slots__ = ("_aeads", "_store", "_symbol_tags", "_tag_keys", "_write")

    def __init__(self, key: bytes | None, previous: Sequence[bytes] = ()) -> None:
        if key is None and previous:
            raise MalformedMemoryKey(f"{PREVIOUS_KEYS_ENV} is set but {KEY_ENV} is not")
        self._aeads: dict[bytes, AESGCM] = {}
        self._tag_keys: dict[bytes, bytes] = {}
        self._write: bytes | None = None
        for k in ([key] if key is not None else []) + list(previous):
            if not isinstance(k, (bytes, bytearray)) or len(k) != KEY_BYTES:
                raise MalformedMemoryKey(f"the memory key must be {KEY_BYTES} bytes")
            kid = bytes.fromhex(key_id(bytes(k)))
            self._aeads.setdefault(kid, AESGCM(_derive(bytes(k), b"payload")))
            self._tag_keys.setdefault(kid, _derive(bytes(k), b"lookup-tag"))
            if self._write is None:
                self._write = kid
        self._store = self._write
        self._symbol_tags: dict[str, str] = {}

    @property
    def encrypted(self) -> bool:
        return self._write is not None

    @property
    def key_id(self) -> str | None:
        """The id of the key new records are encrypted with (None without a key)."""
        return None if self._write is None else self._write.hex()

    @property
    def store_key_id(self) -> str | None:
        """The id of the key lookup tags and unlabelled payloads use."""
        return None if self._store is None else self._store.hex()

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every key held, the writing key first."""
        return tuple(k.hex() for k in self._aeads)

    def holds(self, kid: str) -> bool:
        return _raw_id(kid) in self._aeads

    def use_store_key(self, kid: str) -> None:
        """Tag lookups and read unlabelled payloads with the held key ``kid`` (the store's)."""
        raw = _raw_id(kid)
        if raw not in self._aeads:
            raise MissingMemoryKey(f"no key with id {kid} was given")
        self._store = raw
        self._symbol_tags.clear()

    def __repr__(self) -> str:
        return f"Codec(encrypted={self.encrypted})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickle key material
        raise TypeError("Codec holds key material and cannot be pickled")

    def encode(self, kind: str, record: Mapping[str, Any]) -> bytes:
        """``record`` as compact JSON (sealed with the writing key). A decision, whose numbers its
        record checked finite, is written by orjson (a fifteenth of the time; the same values
        decoded, non-ASCII as UTF-8 rather than escapes); a value orjson refuses, and every
        other kind, by ``json`` as before (NaN refused)."""
        data = _json(kind, record)
        return data if self._write is None else self._seal(kind, data)

    def encode_many(self, kind: str, records: Sequence[Record]) -> list[bytes]:
        """``encode(kind, r.to_dict())`` of each record, the same JSON (before sealing) in a
        fraction of the time for decisions: orjson writes ``json_values`` (no dict copies, no
        time text) and the nonces come from one read of the OS's randomness."""
        out: list[bytes] = []
        if kind == "decision":
            dumps, values = orjson.dumps, json_values
            for r in records:
                try:
                    out.append(dumps(values(r)))
                except orjson.JSONEncodeError:  # what orjson refuses in one form it refuses in the other
                    out.append(_json(kind, r.to_dict()))
        else:
            out = [_json(kind, r.to_dict()) for r in records]
        write = self._write
        if write is None:
            return out
        encrypt, aad, head = self._aeads[write].encrypt, kind.encode(), _HEADER + write
        nonces = os.urandom(_NONCE * len(out))
        sealed = []
        for i, data in enumerate(out):
            nonce = nonces[i * _NONCE : (i + 1) * _NONCE]
            sealed.append(head + nonce + encrypt(nonce, data, aad))
        return sealed

    def _seal(self, kind: str, data: bytes) -> bytes:
        assert self._write is not None
        nonce = os.urandom(_NONCE)
        return _HEADER + self._write + nonce + self._aeads[self._write].encrypt(nonce, data, kind.encode())

    def decode(self, kind: str, blob: bytes) -> dict[str, Any]:
        if self._write is not None:
            blob = self._open(kind, blob)
        try:
            return json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CorruptRecord(f"a stored {kind} record is not valid JSON") from None

    def _open(self, kind: str, blob: bytes) -> bytes:
        aad = kind.encode()
        named = payload_key_id(blob)
        if named is not None:
            aead = self._aeads.get(bytes.fromhex(named))
            if aead is not None:
                try:
                    return aead.decrypt(blob[_PREFIX : _PREFIX + _NONCE], blob[_PREFIX + _NONCE :], aad)
                except InvalidTag:
                    pass  # an unlabelled payload whose nonce happens to start like a header, or tampering
        assert self._store is not None
        try:
            return self._aeads[self._store].decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except InvalidTag:
            if named is not None and bytes.fromhex(named) not in self._aeads:
                raise CorruptRecord(f"a stored {kind} record names key {named}, which was not given") from None
            raise CorruptRecord(f"a stored {kind} record does not authenticate with this key") from None

    def record_key_id(self, blob: bytes) -> str | None:
        """The id of the key a stored payload is encrypted with (the store's key for an
        unlabelled one; None for a clear store)."""
        if self._write is None:
            return None
        return payload_key_id(blob) or self.store_key_id

    def reseal(self, kind: str, blob: bytes) -> bytes:
        """``blob`` decrypted with whichever held key it names and encrypted again with the
        writing key; the plaintext is carried over byte for byte."""
        return self._seal(kind, self._open(kind, blob))

    def tag(self, text: str, kid: str | None = None) -> str:
        """The lookup value of ``text``: itself without a key, a keyed HMAC tag with one (under
        the store's key, or the held key ``kid``)."""
        if self._store is None:
            return text
        tag_key = self._tag_keys[self._store if kid is None else _raw_id(kid)]
        return hmac.new(tag_key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def symbol_tags(self, symbols: Sequence[str]) -> list[str]:
        """``tag`` of each symbol, remembered for the next batch (at most ``_SYMBOL_TAGS`` symbols)."""
        if self._store is None:
            return list(symbols)
        known, out = self._symbol_tags, []
        for symbol in symbols:
            t = known.get(symbol)
            if t is None:
                if len(known) >= _SYMBOL_TAGS:
                    known.clear()
                t = known[symbol] = self.tag(symbol)
            out.append(t)
        return out

    def key_check(self, kid: str | None = None) -> bytes:
        """A key-check record for the writing key (or the held key ``kid``)."""
        raw = self._write if kid is None else _raw_id(kid)
        assert raw is not None
        nonce = os.urandom(_NONCE)
        return nonce + self._aeads[raw].encrypt(nonce, _KEY_CHECK_PLAINTEXT, b"key-check")

    def verify(self, check: bytes, kid: str | None = None) -> bool:
        """Whether ``check`` is the key-check record of the store's key (or the held key ``kid``)."""
        raw = self._store if kid is None else _raw_id(kid)
        aead = self._aeads.get(raw) if raw is not None else None
        if aead is None:
            return False
        try:
            return aead.decrypt(check[:_NONCE], check[_NONCE:], b"key-check") == _KEY_CHECK_PLAINTEXT
        except InvalidTag:
            return False


def _json(kind: str, record: Mapping[str, Any]) -> bytes:
    """The JSON of ``Codec.encode``, before sealing."""
    if kind == "decision":
        try:
            return orjson.dumps(record)
        except orjson.JSONEncodeError:  # numpy scalars, lone surrogates, big ints: json's rules
            pass
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()


def payload_key_id(blob: bytes) -> str | None:
    """The key id a payload's header names, or None for an unlabelled (or clear) payload."""
    if len(blob) > _PREFIX + _NONCE and blob[: len(_HEADER)] == _HEADER:
        return bytes(blob[len(_HEADER) : _PREFIX]).hex()
    return None


def payload_prefix(kid: str) -> bytes:
    """The first bytes of every payload encrypted with the key ``kid``."""
    return _HEADER + _raw_id(kid)


def _raw_id(kid: str) -> bytes:
    try:
        raw = bytes.fromhex(kid)
    except ValueError:
        raw = b""
    if len(raw) != KEY_ID_BYTES:
        raise MissingMemoryKey(f"{kid!r} is not a key id")
    return raw
