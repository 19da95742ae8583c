"""Runs MEM with one more, test-only migration step (imported by nothing; a subprocess of
test_migrations.py)::

    python -m tests.memory._migrate_worker online|offline PAUSE open DB
    python -m tests.memory._migrate_worker online|offline PAUSE mem memory ...

The step (revision ``head() + 1``) copies every event id into ``migrated_ids``, five per chunk, and
sleeps PAUSE seconds inside each chunk's transaction, where a test SIGKILLs it. ``open`` opens the
store and prints ``opened``; ``mem ...`` runs the CLI in this process (so it knows the step).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from mem_memory import MemoryStore, migrations

CHUNK = 5


def _step(pause: float) -> Any:
    def run(conn: Any, codec: Any) -> bool:
        conn.execute("CREATE TABLE IF NOT EXISTS migrated_ids (event_id BIGINT PRIMARY KEY)")
        last = conn.execute("SELECT coalesce(max(event_id), 0) FROM migrated_ids").fetchone()[0]
        rows = conn.execute(
            "SELECT event_id FROM events WHERE event_id > ? ORDER BY event_id LIMIT ?", (int(last), CHUNK)
        ).fetchall()
        for (event_id,) in rows:
            conn.execute("INSERT INTO migrated_ids VALUES (?)", (int(event_id),))
        time.sleep(pause)
        return len(rows) < CHUNK

    return run


def main(argv: list[str]) -> None:
    mode, pause, command, *rest = argv
    migrations.STEPS.append(
        migrations.Step(migrations.head() + 1, "test: copy event ids", mode == "online", _step(float(pause)))
    )
    if command == "open":
        MemoryStore.open(rest[0]).close()
        print("opened", flush=True)
    else:
        from mem_cli.main import app

        app(rest, prog_name="mem")


if __name__ == "__main__":
    main(sys.argv[1:])
