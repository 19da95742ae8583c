"""The memory's only reader of the environment: the encryption key (MEM_MEMORY_KEY) and the
environment its writer child starts with.

The memory imports no other package of ours, so it keeps its own reader; the store's path is
the caller's business (``mem_core.settings.memory_db_path``).
"""
from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from mem_memory.crypto import KEY_BYTES
from mem_memory.errors import MalformedMemoryKey

KEY_ENV = "MEM_MEMORY_KEY"


def key_from_env(env: Mapping[str, str] | None = None) -> bytes | None:
    """The key from MEM_MEMORY_KEY (base64 of 32 bytes), or None when unset or empty.

    Raises ``MalformedMemoryKey`` (never showing the value) when it is not valid base64 or not
    32 bytes long. Read when the store is opened, never at import time.
    """
    raw = (os.environ if env is None else env).get(KEY_ENV, "")
    raw = raw.strip()
    if not raw:
        return None
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMemoryKey(f"{KEY_ENV} is not valid base64 (expected base64 of {KEY_BYTES} bytes)") from None
    if len(key) != KEY_BYTES:
        raise MalformedMemoryKey(f"{KEY_ENV} decodes to {len(key)} bytes; expected {KEY_BYTES}") from None
    return key


def writer_child_environment(package_root: str) -> dict[str, str]:
    """This process's environment for the writer child, without the key (the child never needs
    it) and with ``package_root`` first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return env
