"""How every command opens the store: with the keys of the environment, as `mem serve` does.

``MEM_MEMORY_KEY`` is the store's key (the new key while a rotation is unfinished) and
``MEM_MEMORY_KEY_PREVIOUS`` the old key(s) of a rotation, so a half-rotated store opens for
`mem memory verify`, the Dagster assets and sensors, and the server alike.
"""

from __future__ import annotations

import os
from typing import Any

from mem_memory.settings import key_from_env, previous_keys_from_env
from mem_memory.store import MemoryStore


def open_with_env_keys(path: str | os.PathLike[str], **options: Any) -> MemoryStore:
    """``MemoryStore.open(path, MEM_MEMORY_KEY, previous_keys=MEM_MEMORY_KEY_PREVIOUS, **options)``."""
    return MemoryStore.open(path, key_from_env(), previous_keys=previous_keys_from_env(), **options)
