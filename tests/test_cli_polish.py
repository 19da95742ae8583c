"""The command line as a user meets it: help without Python types, `mem replay` failing fast
without a server, `mem candles list` over a real QuestDB, input files checked before any server,
`mem questdb status` reading the running server's own ports (typer's CliRunner: a subprocess
would test nothing more here)."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from mem_cli import interrupt
from mem_cli.help_style import label
from mem_cli.main import app
from mem_cli.reach import split_address, unreachable
from mem_core.questdb.local import free_port
from mem_core.questdb.store import wait_for_wal, write_candles
from mem_core.settings import QuestDBSettings

runner = CliRunner()
PYTHON_TYPE = re.compile(r"<(bool|str|int|float|Path|list\[[^\]]*\]|datetime)>")


def _commands(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subs = getattr(command, "commands", None)  # a group (typer's groups are not click.Group)
    if subs:
        out = [path]
        for name, sub in subs.items():
            out += _commands(sub, (*path, name))
        return out
    return [path]


def test_no_help_text_shows_a_python_type() -> None:
    paths = _commands(typer.main.get_command(app))
    assert ("candles", "list") in paths and ("serve",) in paths and len(paths) > 10
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (path, result.output)
        assert not PYTHON_TYPE.search(result.output), (path, PYTHON_TYPE.search(result.output))
    main_help = runner.invoke(app, ["main", "--help"], env={"COLUMNS": "200"}).output
    synthetic = next(line for line in main_help.splitlines() if "--synthetic " in line)
    assert "BOOLEAN" not in synthetic and "<" not in synthetic  # a flag takes no value
    assert re.search(r"--csv\s+PATH", main_help) and re.search(r"--days\s+INTEGER", main_help)


def test_type_labels() -> None:
    assert label("<list[Path]>") == "PATH"
    assert label("<float>") == "NUMBER"
    assert label("<str>") == "TEXT"
    assert label("<grpc|go>") == "[grpc|go]"


def test_replay_without_a_server_fails_within_two_seconds_and_says_how_to_start_one() -> None:
    port = free_port()
    started = time.monotonic()
    result = runner.invoke(
        app, ["replay", "--start", "2025-06-01", "--end", "2025-06-02", "--server", f"127.0.0.1:{port}"]
    )
    took = time.monotonic() - started
    assert result.exit_code == 1
    assert took < 2.0, took
    assert f"nothing listens at 127.0.0.1:{port}" in result.output
    assert "`mem serve`" in result.output and "Traceback" not in result.output


def test_reach_parses_addresses_and_finds_a_listener() -> None:
    assert split_address("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert split_address("[::1]:7") == ("::1", 7)
    assert split_address("unix:///tmp/mem.sock") is None
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert unreachable(f"127.0.0.1:{listener.getsockname()[1]}") is None


def test_ingest_csv_checks_the_files_before_any_server(tmp_path: Path) -> None:
    env = {"MEM_QUESTDB_PG_PORT": str(free_port()), "MEM_QUESTDB_HTTP_PORT": str(free_port())}  # nothing there
    missing = tmp_path / "missing.csv"
    result = runner.invoke(app, ["ingest", "csv", str(missing)], env=env)
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {missing}: no such file"
    result = runner.invoke(app, ["ingest", "csv", str(tmp_path)], env=env)
    assert result.output.strip() == f"error: {tmp_path}: not a file"
    present = tmp_path / "BTCUSDT-5m.csv"
    present.write_text("open_time,open,high,low,close,volume\n")
    result = runner.invoke(app, ["ingest", "csv", str(present)], env=env)
    assert result.exit_code == 1 and "QuestDB" in result.output  # only then is the server asked


def _frame(symbol: str, start: str, rows: int) -> pd.DataFrame:
    ts = pd.date_range(start, periods=rows, freq="5min", tz="UTC")
    return pd.DataFrame(
        {"ts": ts, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0, "symbol": symbol}
    )


def _env(settings: QuestDBSettings) -> dict[str, str]:
    return {"MEM_QUESTDB_PG_PORT": str(settings.pg_port), "MEM_QUESTDB_HTTP_PORT": str(settings.http_port)}


def test_candles_list_shows_each_symbols_range_and_count(fresh_questdb: QuestDBSettings) -> None:
    env = _env(fresh_questdb)
    empty = runner.invoke(app, ["candles", "list"], env=env)
    assert empty.exit_code == 0 and "holds no candles" in empty.output
    write_candles(fresh_questdb, _frame("AAAUSDT", "2026-01-01", 288))
    write_candles(fresh_questdb, _frame("BBBUSDT", "2026-02-01 10:00", 12))
    wait_for_wal(fresh_questdb)
    table = runner.invoke(app, ["candles", "list"], env=env)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:2] == ["symbol", "first"]
    assert lines[1].split()[:6] == ["AAAUSDT", "2026-01-01", "00:00", "2026-01-01", "23:55", "288"]
    assert lines[2].split()[:6] == ["BBBUSDT", "2026-02-01", "10:00", "2026-02-01", "10:55", "12"]
    rows = [json.loads(line) for line in runner.invoke(app, ["candles", "list", "--json"], env=env).output.splitlines()]
    assert rows[1] == {
        "symbol": "BBBUSDT",
        "first": "2026-02-01T10:00:00+00:00",
        "last": "2026-02-01T10:55:00+00:00",
        "candles": 12,
    }
    # the symbols are bound parameters: a quote in a name is a name, not SQL
    one = runner.invoke(app, ["candles", "list", "--json", "--symbols", "bbbusdt,X'); DROP TABLE candles; --"], env=env)
    assert [json.loads(line)["symbol"] for line in one.output.splitlines()] == ["BBBUSDT"]
    assert len(runner.invoke(app, ["candles", "list", "--json"], env=env).output.splitlines()) == 2


def test_candles_list_without_questdb_is_one_line() -> None:
    result = runner.invoke(app, ["candles", "list"], env={"MEM_QUESTDB_PG_PORT": str(free_port())})
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: cannot reach QuestDB")


def test_questdb_status_reads_the_running_servers_own_ports(
    questdb: QuestDBSettings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # the session's QuestDB runs from a folder of its own; make it this MEM_HOME's local QuestDB
    roots = {
        conf.parent.parent.resolve()
        for conf in tmp_path_factory.getbasetemp().glob("questdb*/conf/server.conf")
        if f"pg.net.bind.to=127.0.0.1:{questdb.pg_port}" in conf.read_text()
    }
    assert len(roots) == 1
    (tmp_path / ".mem").mkdir()
    (tmp_path / ".mem" / "questdb").symlink_to(roots.pop())
    other_pg, other_http = free_port(), free_port()
    env = {"MEM_HOME": str(tmp_path), "MEM_QUESTDB_PG_PORT": str(other_pg), "MEM_QUESTDB_HTTP_PORT": str(other_http)}
    result = runner.invoke(app, ["questdb", "status"], env=env)
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["running"] and status["queryable"]
    assert (status["pg_port"], status["http_port"]) == (questdb.pg_port, questdb.http_port)
    assert status["env_ports"] == {"http_port": other_http, "pg_port": other_pg}


def test_ctrl_c_before_a_command_handles_it_is_one_line_and_other_errors_keep_their_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The excepthook `mem` installs: whether a real Ctrl-C lands while the libraries load
    (test_cli_interrupt) depends on timing, so both of its branches are checked here."""
    from mem_cli.main import _interrupted_quietly

    _interrupted_quietly(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert capsys.readouterr().err == "mem: interrupted\n"
    try:
        raise ValueError("boom")
    except ValueError as exc:
        _interrupted_quietly(ValueError, exc, exc.__traceback__)
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: boom" in err


def test_a_deferred_ctrl_c_is_a_request_then_a_second_one_interrupts_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    """``mem serve``'s start (real SIGINTs to this process): the first Ctrl-C only sets the flag
    and says so, the second raises; the handler before is back after. ``install`` leaves signals
    alone off the main thread, where Python refuses them."""
    before = signal.getsignal(signal.SIGINT)
    interrupt.requested.clear()
    try:
        with interrupt.deferred("stopping once started"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs in this thread, between bytecodes
            assert interrupt.requested.is_set()
            assert capfd.readouterr().err == "stopping once started\n"
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
        assert signal.getsignal(signal.SIGINT) is before
        failures: list[BaseException] = []
        thread = threading.Thread(target=lambda: _record(interrupt.install, failures))
        thread.start()
        thread.join()
        assert failures == [] and signal.getsignal(signal.SIGINT) is before
    finally:
        interrupt.requested.clear()
        signal.signal(signal.SIGINT, before)


def _record(call: Callable[[], None], failures: list[BaseException]) -> None:
    try:
        call()
    except BaseException as exc:
        failures.append(exc)
