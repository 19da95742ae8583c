"""The project's own local QuestDB: start, query, stop, and a clear refusal on a taken port."""

from __future__ import annotations

import socket

import psycopg
import pytest

from mem_core.questdb.local import LocalQuestDB, QuestDBError, default_jar, free_port


def test_start_query_stop_leaves_no_process(tmp_path):
    server = LocalQuestDB(root=tmp_path / "qdb", http_port=free_port(), pg_port=free_port(), jar=default_jar())
    settings = server.start()
    pid = server.pid()
    assert pid is not None
    with psycopg.connect(**settings.pg_conninfo()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert server.status()["queryable"] is True
    assert server.start() == settings  # idempotent
    assert server.stop() is True
    assert server.pid() is None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)
    assert server.stop() is False


def test_start_on_taken_port_says_so(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        server = LocalQuestDB(root=tmp_path / "qdb", http_port=free_port(), pg_port=taken, jar=default_jar())
        with pytest.raises(QuestDBError, match=f"port {taken}.*already in use"):
            server.start()
        assert server.pid() is None
