"""Where the memory lives on disk is private whatever the umask: directories 0700, files 0600;
and the writer child, which needs no secret, is given none."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mem_memory import MemoryEngine, MemoryStore
from mem_memory.writer import WriterProcess

from .helpers import outcome, request

pytestmark = pytest.mark.sqlite_only  # SQLite's files: the writer process, caps, backups, modes


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask (000), as a careless service unit may set."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_memory_and_export_directories_are_0700_under_umask_000(tmp_path: Path, open_umask: None) -> None:
    db = tmp_path / "home" / ".mem" / "memory" / "memory.db"
    store = MemoryStore.open(db)
    try:
        engine = MemoryEngine(store)
        d = engine.enhance(request())
        engine.record_outcome(outcome(d, 0.01))
        for folder in (tmp_path / "home", tmp_path / "home" / ".mem", tmp_path / "home" / ".mem" / "memory"):
            assert _mode(folder) == 0o700, folder
        for f in db.parent.iterdir():
            assert _mode(f) == 0o600, f
        exports = tmp_path / "out" / "exports"
        paths = engine.export_all(exports)
        assert _mode(tmp_path / "out") == _mode(exports) == 0o700
        assert paths and all(_mode(p) == 0o600 for p in paths.values())
    finally:
        store.close()
    shared = tmp_path / "shared"  # an existing folder the operator chose keeps its mode
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    MemoryStore.open(shared / "m.db").close()
    assert _mode(shared) == 0o755


def test_the_writer_child_inherits_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "MEM_MEMORY_KEY": "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=",
        "MEM_SERVING_TOKEN": "serving-token-value",
        "MEM_QUESTDB_PASSWORD": "questdb-password-value",
        "AWS_SECRET_ACCESS_KEY": "cloud-secret-value",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    db = tmp_path / "memory.db"
    MemoryStore.open(db).close()
    writer = WriterProcess(db)
    writer.start()
    try:
        environ = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{writer.pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
    finally:
        writer.stop()
    for name, value in secrets.items():
        assert name.encode() not in environ and not any(value.encode() in v for v in environ.values()), name
    assert environ[b"PATH"] == os.environ["PATH"].encode()
