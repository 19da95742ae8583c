"""Shared fixtures: a real QuestDB on free loopback ports for the whole session.

There is no skip: a missing Java or QuestDB jar fails the run loudly (CI must not go green
without the database).
"""
from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from mem_pipelines.questdb.local import LocalQuestDB, default_jar, free_port
from mem_pipelines.settings import QuestDBSettings

SHARED_CANDLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "candles"


@pytest.fixture(scope="session")
def questdb(tmp_path_factory: pytest.TempPathFactory) -> QuestDBSettings:
    """A running QuestDB server started for this test session; stopped at the end."""
    server = LocalQuestDB(
        root=tmp_path_factory.mktemp("questdb"), http_port=free_port(), pg_port=free_port(), jar=default_jar()
    )
    settings = server.start()
    yield settings
    server.stop()


@pytest.fixture
def fresh_questdb(questdb: QuestDBSettings) -> QuestDBSettings:
    """The session QuestDB with the candles table dropped, so a test starts from nothing."""
    with psycopg.connect(**questdb.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS candles")
    return questdb


@pytest.fixture(scope="session")
def shared_candles() -> Path:
    """../shared/data/candles; required in CI, skipped only on a developer machine without it."""
    if not SHARED_CANDLES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared candles missing at {SHARED_CANDLES}")
        pytest.skip("shared candles not present")
    return SHARED_CANDLES
