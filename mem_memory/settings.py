"""The memory's only reader of the environment: the encryption key (MEM_MEMORY_KEY), the keys of
a rotation in progress (MEM_MEMORY_KEY_PREVIOUS) and the environment its writer child starts with.

The memory imports no other package of ours, so it keeps its own reader; the store's path is
the caller's business (``mem_core.settings.memory_db_path``).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

from mem_memory.crypto import KEY_ENV, PREVIOUS_KEYS_ENV, decode_key


def key_from_env(env: Mapping[str, str] | None = None) -> bytes | None:
    """The key from MEM_MEMORY_KEY (base64 of 32 bytes), or None when unset or empty.

    Raises ``MalformedMemoryKey`` (never showing the value) when it is not valid base64 or not
    32 bytes long. Read when the store is opened, never at import time.
    """
    raw = (os.environ if env is None else env).get(KEY_ENV, "")
    raw = raw.strip()
    if not raw:
        return None
    return decode_key(raw, KEY_ENV)


def previous_keys_from_env(env: Mapping[str, str] | None = None) -> tuple[bytes, ...]:
    """The keys of MEM_MEMORY_KEY_PREVIOUS (comma- or space-separated base64), empty when unset:
    the old key of a rotation, accepted for reading records not yet re-encrypted. Malformed
    entries raise ``MalformedMemoryKey`` naming their position, never their value."""
    raw = (os.environ if env is None else env).get(PREVIOUS_KEYS_ENV, "")
    parts = [p for p in re.split(r"[,\s]+", raw.strip()) if p]
    return tuple(decode_key(p, f"{PREVIOUS_KEYS_ENV} entry {i + 1}") for i, p in enumerate(parts))


def writer_child_environment(package_root: str) -> dict[str, str]:
    """This process's environment for the writer child, without the key (the child never needs
    it) and with ``package_root`` first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, PREVIOUS_KEYS_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return env
