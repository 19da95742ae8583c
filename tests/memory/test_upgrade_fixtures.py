"""Stores written by earlier releases open with this code and lose nothing.

Every ``tests/fixtures/memory/<release>/`` holds stores that release wrote with its own code
(``write_fixture.py``, run from its checkout; docs/memory.md "Upgrades"): SQLite files and
``pg_dump`` files, plain and encrypted (the key: ``TEST_KEY.b64``, a test key), and a manifest of
counts and per-record content hashes. Each store is opened here (migrated to this code's
revision), passes ``mem memory verify``, and returns every decision, outcome, parameter version
and strategy exactly as the release read them. A new release's fixture joins the run by being
committed there: nothing in this file names a release.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mem_memory import MemoryEngine, MemoryStore, audit, migrations
from mem_testing.cli import run_mem
from tests.memory._schema_check import assert_declared_schema
from tests.memory.helpers import raw_connect
from tests.memory.helpers import request as signal_request

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "memory"
CASES = [
    (release.name, name)
    for release in sorted(p for p in FIXTURES.iterdir() if (p / "manifest.json").is_file())
    for name in sorted(json.loads((release / "manifest.json").read_text())["stores"])
]


def _writer() -> Any:
    spec = importlib.util.spec_from_file_location("write_fixture", FIXTURES / "write_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _place(release: Path, name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """The fixture as a live store: a copy of the SQLite file, or the dump loaded into a fresh
    database of the session's cluster."""
    if name.endswith(".db"):
        db = tmp_path / "memory" / "memory.db"
        db.parent.mkdir(mode=0o700)
        shutil.copyfile(release / name, db)
        db.chmod(0o600)
        return db
    cluster = request.getfixturevalue("postgres")
    url: str = cluster.create_db("fixture")
    request.addfinalizer(lambda: cluster.drop_db(url))
    subprocess.run(
        [str(cluster.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(release / name)],
        check=True,
        capture_output=True,
        text=True,
    )
    return url


def _verify(db: Path | str, key: bytes | None) -> subprocess.CompletedProcess[str]:
    """``mem memory verify`` in this process (typer's runner), with only ``key`` in the environment."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MEM_MEMORY_")}
    if key is not None:
        env["MEM_MEMORY_KEY"] = base64.b64encode(key).decode()
    return run_mem("memory", "verify", "--memory-db", str(db), env=env)


@pytest.mark.parametrize(("release", "name"), CASES, ids=[f"{r}/{n}" for r, n in CASES])
def test_a_release_fixture_opens_verifies_and_returns_every_record(
    release: str, name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    folder = FIXTURES / release
    expected = json.loads((folder / "manifest.json").read_text())["stores"][name]
    key = base64.b64decode((folder / "TEST_KEY.b64").read_text()) if name.startswith("encrypted") else None
    db = _place(folder, name, tmp_path, request)

    writer = _writer()
    got = writer.manifest(_restricted(writer.snapshot(db, key), expected))
    assert got["counts"] == expected["counts"]
    for kind in ("decisions", "outcomes", "parameters", "strategies"):
        assert got[kind]["count"] == expected[kind]["count"] > 0, kind
        assert got[kind]["hashes"] == expected[kind]["hashes"], kind

    verified = _verify(db, key)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    conn = raw_connect(db)
    try:
        assert conn.execute("SELECT v FROM meta WHERE k = 'format'").fetchone()[0] in (
            str(migrations.head()),
            str(migrations.head()).encode(),
        )
        assert audit.entries(conn) and audit.verify_chain(conn) is None
    finally:
        conn.close()
    backend = "sqlite" if name.endswith(".db") else "postgresql"
    assert_declared_schema(db, backend, strict_keys=backend == "postgresql")
    with MemoryStore.open(db, key) as store:  # and it keeps working: one more decision
        MemoryEngine(store).enhance(signal_request(symbol="BTCUSDT"))
        assert store.counts()["decisions"] == expected["counts"]["decisions"] + 1


def _restricted(snap: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """``snap`` with each record cut to the fields the release wrote (a field added since is not
    a difference; a field lost is)."""
    out = dict(snap)
    for kind in ("decisions", "outcomes", "parameters", "strategies"):
        fields = expected[kind]["fields"]
        out[kind] = {k: {f: r[f] for f in fields if f in r} for k, r in snap[kind].items()}
    return out


def test_the_check_sees_a_record_changed_where_verify_cannot(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A changed word in a clear decision passes ``mem memory verify`` (the record still builds and
    is filed right); the manifest comparison above is what catches it."""
    release, name = next((r, n) for r, n in CASES if n == "plain.db")
    folder = FIXTURES / release
    expected = json.loads((folder / "manifest.json").read_text())["stores"][name]
    db = _place(folder, name, tmp_path, request)
    conn = sqlite3.connect(db)
    event_id, payload = conn.execute("SELECT event_id, payload FROM events WHERE kind = 'decision' LIMIT 1").fetchone()
    record = json.loads(payload)
    record["reasoning"] += " (edited)"
    conn.execute("UPDATE events SET payload = ? WHERE event_id = ?", (json.dumps(record).encode(), event_id))
    conn.commit()
    conn.close()
    verified = _verify(db, None)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    writer = _writer()
    got = writer.manifest(_restricted(writer.snapshot(db, None), expected))
    changed = [k for k, h in expected["decisions"]["hashes"].items() if got["decisions"]["hashes"].get(k) != h]
    assert changed == [record["decision_id"]]
