"""The audit trail of credential use: starting with a key, a refused key, a rekey, a backup and a
restore are rows naming the key id, the time and the command, never a key; `mem memory audit`
lists them without a key and notices an edited row."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mem_memory import MemoryStore, WrongMemoryKey, audit, key_id
from tests.memory._history import populate
from tests.memory.helpers import b64, raw_connect

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEM_MEMORY_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "mem_cli.main", "memory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=300,
        check=False,
    )


def _trail(db: Path) -> list[audit.AuditEntry]:
    conn = raw_connect(db)
    try:
        return audit.entries(conn)
    finally:
        conn.close()


@pytest.mark.sqlite_only  # file backups and restores
def test_key_use_rekey_backup_and_restore_are_audited_without_secrets(tmp_path: Path, db: Path) -> None:
    old, new, wrong = os.urandom(32), os.urandom(32), os.urandom(32)
    started = datetime.now(UTC)
    populate(db, old, bulk=50)
    MemoryStore.open(db, old, command="mem serve").close()
    MemoryStore.open(db, old, command="mem serve").close()  # once per process, key and command
    with pytest.raises(WrongMemoryKey):
        MemoryStore.open(db, wrong, command="mem serve")
    backed = _cli("backup", str(tmp_path / "backups"), "--memory-db", str(db), env={})  # no key needed
    assert backed.returncode == 0, backed.stderr
    rekeyed = _cli(
        "rekey", "--memory-db", str(db), env={"MEM_MEMORY_KEY": b64(new), "MEM_MEMORY_KEY_PREVIOUS": b64(old)}
    )
    assert rekeyed.returncode == 0, rekeyed.stderr
    restored_db = tmp_path / "restored.db"
    restored = _cli(
        "restore", json.loads(backed.stdout)["path"], "--memory-db", str(restored_db), env={"MEM_MEMORY_KEY": b64(old)}
    )
    assert restored.returncode == 0, restored.stderr

    rows = [(e.action, e.key_id, e.command) for e in _trail(db)]
    assert rows.count(("open", key_id(old), "mem serve")) == 1
    assert ("open.refused", key_id(wrong), "mem serve") in rows
    assert ("backup", key_id(old), "mem memory backup") in rows
    assert ("rekey.start", key_id(new), "mem memory rekey") in rows
    assert ("rekey.finish", key_id(new), "mem memory rekey") in rows
    assert [a for a, _, _ in rows if a != "open"] == ["open.refused", "backup", "rekey.start", "rekey.finish"]
    entries = {e.action: e for e in _trail(db)}
    assert (
        entries["rekey.finish"].detail["from_key_id"] == key_id(old)
        and entries["rekey.finish"].detail["resealed"] > 100
    )
    assert entries["backup"].detail["last_event_id"] > 0 and entries["backup"].pid != os.getpid()
    for e in entries.values():
        assert started - timedelta(seconds=1) <= datetime.fromisoformat(e.at) <= datetime.now(UTC)
    restore_row = [e for e in _trail(restored_db) if e.action == "restore"]
    assert (
        len(restore_row) == 1
        and restore_row[0].key_id == key_id(old)
        and restore_row[0].command == "mem memory restore"
    )
    assert restore_row[0].detail["source"] == Path(json.loads(backed.stdout)["path"]).name

    listed = _cli("audit", "--json", "--limit", "100", "--memory-db", str(db), env={})  # read-only, no key
    assert listed.returncode == 0, listed.stderr
    listed_rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["action"] for r in listed_rows] == [a for a, _, _ in rows]
    only = _cli("audit", "--action", "backup", "--memory-db", str(db), env={})
    assert only.returncode == 0 and len(only.stdout.splitlines()) == 1 and "mem memory backup" in only.stdout

    secrets = [
        k
        for key in (old, new, wrong)
        for k in (key, b64(key).encode(), key.hex().encode(), base64.urlsafe_b64encode(key).rstrip(b"="))
    ]
    outputs = [backed, rekeyed, restored, listed, only]
    for path in [p for p in tmp_path.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert not any(s in data for s in secrets), path
    for out in outputs:
        text = (out.stdout + out.stderr).encode()
        assert not any(s in text for s in secrets)


def test_the_audit_chain_shows_an_edited_row(db: Path, key: bytes) -> None:
    MemoryStore.open(db, key, command="first").close()
    MemoryStore.open(db, key, command="second").close()
    conn = raw_connect(db)
    try:
        assert audit.verify_chain(conn) is None
        conn.execute("UPDATE audit SET command = 'someone else' WHERE audit_id = 1")
        conn.commit()
        assert audit.verify_chain(conn) == 1
    finally:
        conn.close()
    listed = _cli("audit", "--memory-db", str(db), env={})
    assert listed.returncode == 1 and "broken at entry 1" in listed.stderr
    assert "someone else" in listed.stdout  # still listed, so the operator sees what changed


def test_command_words_never_carry_data() -> None:
    from mem_memory.lock import program_words

    assert program_words(["/venv/bin/mem", "memory", "rekey", "--batch", "10"]) == "mem memory rekey"
    assert program_words(["worker.py", "write", "/tmp/x.db", "BTCUSDT"]) == "worker.py write"
    assert program_words(["python", "-m", "mem_cli.main", "serve", "--port", "0"]) == "python -m mem_cli.main serve"
    assert program_words(["python", "-c", "import secret; run('s3cret')"]) == "python"
