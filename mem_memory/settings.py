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


#: The only variables the writer child inherits: what Python, SQLite and the locale need. Everything
#: else (MEM_MEMORY_KEY, MEM_SERVING_TOKEN, MEM_QUESTDB_PASSWORD, cloud credentials, ...) stays out:
#: the child needs no secret, so it is given none.
CHILD_ENV = (
    "PATH",
    "HOME",
    "TMPDIR",
    "SQLITE_TMPDIR",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "LD_LIBRARY_PATH",
)


def writer_child_environment(package_root: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The writer child's environment: ``CHILD_ENV`` from this process's environment, nothing
    else, with ``package_root`` first on PYTHONPATH."""
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in CHILD_ENV if k in environ}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environ.get("PYTHONPATH")]))
    return env
