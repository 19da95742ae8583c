"""A half-rotated store (a rekey started, records under both keys) can be checked and opened by
every command, as `mem serve` opens it: MEM_MEMORY_KEY (the new key) with
MEM_MEMORY_KEY_PREVIOUS (the old one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mem_memory import MemoryEngine, MemoryStore
from tests.memory._history import key_ids_in, populate
from tests.memory.helpers import b64, request

pytestmark = pytest.mark.sqlite_only  # the CLI on a file

ROOT = Path(__file__).resolve().parents[2]


def _half_rotated(db: Path) -> tuple[bytes, bytes, int]:
    old, new = os.urandom(32), os.urandom(32)
    populate(db, old, bulk=100)
    store = MemoryStore.open(db, new, previous_keys=(old,), rotate=True)  # what `rekey` does first
    try:
        MemoryEngine(store).enhance(request(symbol="S0"))  # new records go under the new key
        last = store.last_event_id()
    finally:
        store.close()
    assert len([k for k in key_ids_in(db) if k]) == 2  # records under both keys
    return old, new, last


def test_verify_reads_a_half_rotated_store_with_the_previous_key(tmp_path: Path) -> None:
    db = tmp_path / "memory" / "memory.db"
    old, new, last = _half_rotated(db)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_MEMORY_")}
    env |= {"MEM_MEMORY_KEY": b64(new), "MEM_MEMORY_KEY_PREVIOUS": b64(old)}
    done = subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "memory", "verify", "--memory-db", str(db)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{last} events checked, sound" in done.stdout


def test_every_opener_of_the_store_takes_the_previous_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "memory" / "memory.db"
    old, new, last = _half_rotated(db)
    monkeypatch.setenv("MEM_MEMORY_KEY", b64(new))
    monkeypatch.setenv("MEM_MEMORY_KEY_PREVIOUS", b64(old))
    from mem_memory import open_with_env_keys  # the one way every command opens the store

    store = open_with_env_keys(db)
    try:
        assert store.last_event_id() == last and len(list(store.iter_events())) == last
    finally:
        store.close()
    from mem_pipelines.resources import open_store  # what Dagster's assets and sensors open

    with open_store(db) as dagster_store:
        assert len(list(dagster_store.iter_events())) == last
