"""The `mem` CLI as a user runs it: questdb start/stop leaves nothing behind; ingest errors (bad rows, a bad
or missing symbol, a header without rows, a bad --days) are one line, exit code 1, nothing written; a
byte-order mark is not data. The refusals after the first run in process (``run_mem``): the process
itself is what the first, the good ingests and start/stop show."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from mem_core.questdb import store
from mem_core.questdb.local import free_port
from mem_core.settings import QuestDBSettings
from mem_testing.cli import run_mem

MEM = str(Path(sys.executable).with_name("mem"))


def run(args, env, timeout=120):
    return subprocess.run([MEM, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _env(tmp_path, http_port, pg_port):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_QUESTDB")}
    env.update(MEM_HOME=str(tmp_path), MEM_QUESTDB_HTTP_PORT=str(http_port), MEM_QUESTDB_PG_PORT=str(pg_port))
    return env


def _env_in_process(tmp_path, http_port, pg_port):
    """``_env``'s changes for ``run_mem`` (``None`` removes a variable)."""
    return {k: None for k in os.environ if k.startswith("MEM_QUESTDB")} | {
        k: v for k, v in _env(tmp_path, http_port, pg_port).items() if k.startswith(("MEM_HOME", "MEM_QUESTDB"))
    }


def test_start_ingest_stop_leaves_no_process(tmp_path):
    http_port, pg_port = free_port(), free_port()
    env = _env(tmp_path, http_port, pg_port)
    started = run(["questdb", "start"], env)
    assert started.returncode == 0, started.stderr
    pid = json.loads(run(["questdb", "status"], env).stdout)["pid"]
    try:
        ok = run(
            ["ingest", "synthetic", "--symbols", "BTCUSDT", "--days", "1", "--seed", "1", "--end", "2026-01-02"], env
        )
        assert ok.returncode == 0, ok.stderr
        assert "ingested 288 candles" in ok.stdout

        bad = tmp_path / "BTCUSDT-5m.csv"
        bad.write_text("open_time,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,-1\n")
        refused = run(["ingest", "csv", str(bad)], env)
        assert refused.returncode == 1
        assert (
            refused.stderr.strip()
            == f"error: {bad}:2: negative volume: open=1.0 high=2.0 low=0.5 close=1.5 volume=-1.0"
        )
        assert "Traceback" not in refused.stderr

        settings = QuestDBSettings(http_port=http_port, pg_port=pg_port)
        stored = {s: len(store.read_candles(settings, s)) for s in store.list_symbols(settings)}
        good = tmp_path / "XRPUSDT-5m.csv"
        good.write_text("open_time,open,high,low,close,volume\n1704067200000,1,2,0.5,1.5,1\n")
        unnamed = tmp_path / "candles.csv"
        unnamed.write_text(good.read_text())
        header_only = tmp_path / "ETHUSDT-5m.csv"
        header_only.write_text("open_time,open,high,low,close,volume\n")
        for args, message in [
            (["csv", str(header_only)], f"{header_only}: no candles (a header and no rows)"),
            *[
                (
                    ["synthetic", "--symbols", "SOLUSDT", f"--days={d}"],
                    f"--days {shown}: must be a finite number of days > 0",
                )
                for d, shown in (("0", "0.0"), ("-5", "-5.0"), ("nan", "nan"), ("inf", "inf"))
            ],
            (["csv", str(good), "--symbol", "BAD SYM"], "symbol 'BAD SYM': must be printable, without spaces"),
            (["csv", str(good), "--symbol", "BTC\nUSDT"], "symbol 'BTC\\nUSDT': must be printable, without spaces"),
            (
                ["csv", str(good), "--symbol", "X" * 10_000],
                "symbol 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX...': longer than 64 characters",
            ),
            (["csv", str(good), str(unnamed)], f"{unnamed}: cannot tell the symbol from the file name"),
            (
                ["synthetic", "--symbols", "SOLUSDT,BAD SYM", "--days", "1"],
                "symbol 'BAD SYM': must be printable, without spaces",
            ),
        ]:
            refused = run_mem("ingest", *args, env=_env_in_process(tmp_path, http_port, pg_port))
            assert refused.returncode == 1, (args[:3], refused.stdout)
            assert refused.stderr.count("\n") == 1 and refused.stderr.startswith(f"error: {message}"), refused.stderr
            assert refused.stdout == ""
        assert (
            {s: len(store.read_candles(settings, s)) for s in store.list_symbols(settings)}
            == stored
            == {"BTCUSDT": 288}
        )

        good.write_bytes(b"\xef\xbb\xbf" + good.read_bytes())  # a UTF-8 byte-order mark, as Excel writes one
        marked = run(["ingest", "csv", str(good)], env)
        assert marked.returncode == 0, marked.stderr
        assert len(store.read_candles(settings, "XRPUSDT")) == 1
    finally:
        stopped = run(["questdb", "stop"], env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]
    assert json.loads(run(["questdb", "status"], env).stdout)["running"] is False


def test_start_on_a_taken_port_says_so_and_ingest_points_to_start(tmp_path):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        env = _env(tmp_path, free_port(), taken)
        started = run(["questdb", "start"], env)
        assert started.returncode == 1
        assert f"port {taken}" in started.stderr and "already in use" in started.stderr
        assert "Traceback" not in started.stderr
    env = _env(tmp_path, free_port(), free_port())
    nothing = run(["ingest", "synthetic", "--days", "1"], env)
    assert nothing.returncode == 1
    assert "mem questdb start" in nothing.stderr and "Traceback" not in nothing.stderr
