"""The memory store's identity: created once, kept in the store, distinct per store."""

from __future__ import annotations

from pathlib import Path

import pytest

from mem_memory import MemoryStore


@pytest.mark.parametrize("reopen", [False, True])
def test_the_store_id_is_created_once_and_kept(tmp_path: Path, reopen: bool) -> None:
    a = MemoryStore.open(tmp_path / "a.db")
    b = MemoryStore.open(tmp_path / "b.db")
    ids = (a.store_id, b.store_id)
    a.close()
    b.close()
    assert ids[0] and ids[1] and ids[0] != ids[1]
    if reopen:
        with MemoryStore.open(tmp_path / "a.db") as again:
            assert again.store_id == ids[0]
