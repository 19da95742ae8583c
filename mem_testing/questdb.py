"""A throwaway QuestDB for tests and benchmarks: the server jar started on free loopback ports in a
folder of the caller's, and the candles table dropped between tests."""

from __future__ import annotations

from pathlib import Path

import psycopg

from mem_core.questdb.local import LocalQuestDB, default_jar, free_port
from mem_core.settings import QuestDBSettings


def local_questdb(root: Path) -> LocalQuestDB:
    """A QuestDB (not yet started) keeping its data under ``root``, on two free ports."""
    return LocalQuestDB(root=root, http_port=free_port(), pg_port=free_port(), jar=default_jar())


def drop_candles(settings: QuestDBSettings) -> None:
    """Drop the candles table, so what follows starts from nothing."""
    with psycopg.connect(**settings.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS candles")
