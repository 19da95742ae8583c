"""The landing folder: Binance kline files (CSV, gzip, zip) dropped there are ingested by the run the
sensor requests, exactly once each (a rewritten file again), bad ones quarantined with their reason;
and ``mem ingest csv`` reads the exchange's zip archives too.

Real parts: the test QuestDB, a real Dagster instance for the sensor ticks and runs, real candles."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from mem_core.questdb.store import read_candles
from mem_core.settings import QuestDBSettings
from mem_pipelines.ingest.defs import ingest_defs
from mem_pipelines.ingest.landing import (
    LandedFile,
    decode_cursor,
    encode_cursor,
    plan,
    scan,
)
from mem_pipelines.ingest.landing_assets import LandingResource
from mem_pipelines.resources import QuestDBResource
from mem_pipelines.settings import LandingSettings

SYMBOLS = ("BTCUSDT", "ETHUSDT")
PRICES = ["open", "high", "low", "close", "volume"]
MEM = str(Path(sys.executable).with_name("mem"))
DAY = 288  # 5-minute candles


def _real(shared_candles: Path, symbol: str, rows: int) -> pd.DataFrame:
    raw = pd.read_csv(shared_candles / f"{symbol}-5m.csv.gz", nrows=rows)
    frame = pd.DataFrame({"ts": pd.to_datetime(raw["open_time"], unit="ms", utc=True).astype("datetime64[us, UTC]")})
    for col in PRICES:
        frame[col] = raw[col].astype("float64")
    return frame


def _dump_text(frame: pd.DataFrame) -> str:
    """The exchange's 12-column kline dump (no header, epoch ms) of ``frame``."""
    lines = []
    for row in frame.itertuples(index=False):
        open_ms = int(row.ts.value // 1_000_000)
        lines.append(
            f"{open_ms},{row.open!r},{row.high!r},{row.low!r},{row.close!r},{row.volume!r},{open_ms + 299_999},"
            f"{row.close * row.volume!r},100,{row.volume / 2!r},{row.close * row.volume / 2!r},0"
        )
    return "\n".join(lines) + "\n"


def _zip(path: Path, frame: pd.DataFrame) -> Path:
    """A zip holding one CSV named like the archive, as data.binance.vision publishes them."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(path.name.removesuffix(".zip") + ".csv", _dump_text(frame))
    path.write_bytes(buf.getvalue())
    return path


def _settled(*paths: Path) -> None:
    past = time.time() - 3600
    for p in paths:
        os.utime(p, (past, past))


def _stored(settings: QuestDBSettings, symbol: str) -> pd.DataFrame:
    return read_candles(settings, symbol)[["ts", *PRICES]]


# ---- the plan, pure ----------------------------------------------------------------------------


def test_plan_takes_new_and_rewritten_files_once_and_waits_for_settling() -> None:
    now = 10_000 * 10**9
    old = now - 60 * 10**9
    files = [
        LandedFile("BTCUSDT-5m-2025-01-01.zip", 100, old),
        LandedFile("BTCUSDT-5m-2025-01-02.zip", 120, old),
        LandedFile("ETHUSDT-5m-2025-01-01.csv.gz", 90, now - 10**9),  # still being copied
        LandedFile("SOLUSDT-5m-2025-01-01.zip", 80, old),  # not a partition
        LandedFile("BTC_USDT.csv", 10, old),  # no symbol in the name
    ]
    step = plan(files, {"BTCUSDT-5m-2025-01-01.zip": [100, old], "GONE-5m.csv": [1, 1]}, now, 5.0, SYMBOLS)
    assert {s: [f.name for f in fs] for s, fs in step.batches.items()} == {"BTCUSDT": ["BTCUSDT-5m-2025-01-02.zip"]}
    assert [f.name for f in step.waiting] == ["ETHUSDT-5m-2025-01-01.csv.gz"]
    assert [(f.name, r.split(" ")[0]) for f, r in step.refused] == [
        ("SOLUSDT-5m-2025-01-01.zip", "SOLUSDT"),
        ("BTC_USDT.csv", "cannot"),
    ]
    # the cursor keeps what was handed to runs and still exists; the deleted file is forgotten
    assert step.cursor == {"BTCUSDT-5m-2025-01-01.zip": [100, old], "BTCUSDT-5m-2025-01-02.zip": [120, old]}
    assert decode_cursor(encode_cursor(step.cursor)) == step.cursor

    rewritten = [LandedFile("BTCUSDT-5m-2025-01-01.zip", 101, old + 5)]
    again = plan(rewritten, step.cursor, now, 5.0, SYMBOLS)
    assert [f.name for f in again.batches["BTCUSDT"]] == ["BTCUSDT-5m-2025-01-01.zip"]


def test_scan_lists_kline_files_only(tmp_path: Path) -> None:
    for name in (
        "BTCUSDT-5m.csv",
        "BTCUSDT-5m.csv.gz",
        "BTCUSDT-5m-2025-01.zip",
        ".BTCUSDT-5m.csv",
        "notes.txt",
        "x.zip.CHECKSUM",
    ):
        (tmp_path / name).write_text("x")
    (tmp_path / "quarantine").mkdir()
    (tmp_path / "quarantine" / "ETHUSDT-5m.csv").write_text("x")
    assert [f.name for f in scan(tmp_path)] == ["BTCUSDT-5m-2025-01.zip", "BTCUSDT-5m.csv", "BTCUSDT-5m.csv.gz"]


def test_landing_settings_from_env(tmp_path: Path) -> None:
    s = LandingSettings.from_env({"MEM_HOME": str(tmp_path)})
    assert (
        s.folder == (tmp_path / ".mem" / "landing").resolve()
        and s.quarantine == s.folder / "quarantine"
        and s.settle_s == 10.0
    )
    s = LandingSettings.from_env({"MEM_LANDING_DIR": str(tmp_path / "drop"), "MEM_LANDING_SETTLE_S": "2"})
    assert (s.folder, s.settle_s) == ((tmp_path / "drop").resolve(), 2.0)


# ---- the sensor and its runs -----------------------------------------------------------------


def _defs(questdb: QuestDBSettings, landing: LandingResource) -> dg.Definitions:
    return dg.Definitions.merge(
        ingest_defs(SYMBOLS),
        dg.Definitions(resources={"questdb": QuestDBResource.from_settings(questdb), "landing": landing}),
    )


def _tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None, landing: LandingResource
) -> dg.SensorResult:
    sensor = defs.get_sensor_def("landing_sensor")
    result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"landing": landing}))
    assert isinstance(result, dg.SensorResult)
    return result


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def("landing_job").execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        run_config=request.run_config,
        tags=request.tags,
        raise_on_error=False,
    )


def test_dropped_files_are_ingested_by_the_sensors_run_once_and_bad_ones_quarantined(
    fresh_questdb: QuestDBSettings, shared_candles: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "landing"
    folder.mkdir()
    landing = LandingResource(
        folder=str(folder), settle_s=600.0
    )  # files written below are "still changing" until _settled
    defs = _defs(fresh_questdb, landing)
    btc = _real(shared_candles, "BTCUSDT", 2 * DAY)
    good = _zip(folder / "BTCUSDT-5m-2025-01-01.zip", btc.iloc[:DAY])
    btc_lines = _dump_text(btc.iloc[DAY:]).splitlines()
    btc_lines[7] += ",extra"  # a malformed row: 13 fields
    bad_btc = folder / "BTCUSDT-5m-2025-01-02.csv"
    bad_btc.write_text("\n".join(btc_lines) + "\n")
    eth = _real(shared_candles, "ETHUSDT", DAY)
    bad_eth = folder / "ETHUSDT-5m-2025-01-01.csv"
    eth_lines = _dump_text(eth).splitlines()
    fields = eth_lines[3].split(",")
    fields[2] = "abc"  # the high of line 4
    eth_lines[3] = ",".join(fields)
    bad_eth.write_text("\n".join(eth_lines) + "\n")
    (folder / "SOLUSDT-5m-2025-01-01.zip").write_bytes(good.read_bytes())

    with dg.instance_for_test() as instance:
        waiting = _tick(defs, instance, None, landing)  # just written: still settling
        assert not waiting.run_requests and "4 file(s) still changing" in waiting.skip_reason.skip_message
        _settled(good, bad_btc, bad_eth, folder / "SOLUSDT-5m-2025-01-01.zip")

        first = _tick(defs, instance, waiting.cursor, landing)
        by_symbol = {r.partition_key: r for r in first.run_requests}
        assert sorted(by_symbol) == ["BTCUSDT", "ETHUSDT"]
        assert by_symbol["BTCUSDT"].run_config == {
            "ops": {"kline_files": {"config": {"files": [good.name, bad_btc.name]}}}
        }
        # a symbol that is no partition goes to quarantine at once, with its reason
        sol_reason = (folder / "quarantine" / "SOLUSDT-5m-2025-01-01.zip.reason.txt").read_text()
        assert sol_reason.startswith("SOLUSDT is not one of the candles partitions") and sol_reason.count("\n") == 1
        assert not (folder / "SOLUSDT-5m-2025-01-01.zip").exists()

        btc_run = _run(defs, instance, by_symbol["BTCUSDT"])
        assert btc_run.success
        pd.testing.assert_frame_equal(_stored(fresh_questdb, "BTCUSDT"), btc.iloc[:DAY].reset_index(drop=True))
        kline_meta = btc_run.asset_materializations_for_node("kline_files")[0].metadata
        assert kline_meta["rows"].value == DAY and list(kline_meta["files"].value) == [good.name]
        candles_mats = [m for m in btc_run.get_asset_materialization_events() if m.asset_key == dg.AssetKey("candles")]
        assert len(candles_mats) == 1 and candles_mats[0].partition == "BTCUSDT"
        checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in btc_run.get_asset_check_evaluations()}
        assert checks[("kline_files", "no_file_quarantined")] is False  # the bad file of the batch
        assert checks[("candles", "no_nulls")] is True and checks[("candles", "ts_strictly_increasing")] is True
        assert ("candles", "fresh_BTCUSDT") in checks  # evaluated after the materialisation too
        reason = (folder / "quarantine" / (bad_btc.name + ".reason.txt")).read_text().strip()
        assert reason == f"{bad_btc.name}:8: malformed row: expected 12 fields, found 13"
        assert (folder / "quarantine" / bad_btc.name).is_file() and not bad_btc.exists()

        eth_run = _run(defs, instance, by_symbol["ETHUSDT"])
        assert not eth_run.success  # its only file was bad: nothing written, the run says so
        assert _stored(fresh_questdb, "ETHUSDT").empty
        assert "column high not a number: 'abc'" in (folder / "quarantine" / (bad_eth.name + ".reason.txt")).read_text()

        # the next tick: nothing new (the good file stays in the folder, ingested once)
        idle = _tick(defs, instance, first.cursor, landing)
        assert not idle.run_requests and decode_cursor(idle.cursor) == {
            good.name: [good.stat().st_size, good.stat().st_mtime_ns]
        }

    # a restarted daemon (another instance) with the stored cursor ingests nothing again
    with dg.instance_for_test() as restarted:
        assert not _tick(defs, restarted, idle.cursor, landing).run_requests

        # the exchange republishes the day with a corrected candle: the rewritten file runs again
        corrected = btc.iloc[:DAY].copy()
        corrected.loc[100, "close"] = corrected.loc[100, "low"]
        _zip(good, corrected)
        _settled(good)
        again = _tick(defs, restarted, idle.cursor, landing)
        assert [r.partition_key for r in again.run_requests] == ["BTCUSDT"]
        assert again.run_requests[0].run_key != by_symbol["BTCUSDT"].run_key
        assert _run(defs, restarted, again.run_requests[0]).success
        pd.testing.assert_frame_equal(_stored(fresh_questdb, "BTCUSDT"), corrected)  # replaced, not duplicated
        assert not _tick(defs, restarted, again.cursor, landing).run_requests


def test_a_missing_landing_folder_is_a_skip(tmp_path: Path, questdb: QuestDBSettings) -> None:
    landing = LandingResource(folder=str(tmp_path / "nowhere"))
    with dg.instance_for_test() as instance:
        result = _tick(_defs(questdb, landing), instance, None, landing)
    assert not result.run_requests and "does not exist" in result.skip_reason.skip_message


# ---- mem ingest csv reads the exchange's zip archives --------------------------------------------


def test_mem_ingest_csv_reads_a_binance_zip(
    fresh_questdb: QuestDBSettings, shared_candles: Path, tmp_path: Path
) -> None:
    day = _real(shared_candles, "ETHUSDT", DAY)
    archive = _zip(tmp_path / "ETHUSDT-5m-2025-01-01.zip", day)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEM_QUESTDB")}
    env.update(
        MEM_HOME=str(tmp_path),
        MEM_QUESTDB_HTTP_PORT=str(fresh_questdb.http_port),
        MEM_QUESTDB_PG_PORT=str(fresh_questdb.pg_port),
    )
    done = subprocess.run(
        [MEM, "ingest", "csv", str(archive)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"ETHUSDT: {DAY} candles" in done.stdout and f"ingested {DAY} candles" in done.stdout
    pd.testing.assert_frame_equal(_stored(fresh_questdb, "ETHUSDT"), day)

    two = tmp_path / "ETHUSDT-5m-2025-01-02.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.csv", _dump_text(day))
        zf.writestr("b.csv", _dump_text(day))
    refused = subprocess.run(
        [MEM, "ingest", "csv", str(two)], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert (
        refused.returncode == 1
        and refused.stderr.strip() == f"error: {two}: a zip must hold exactly one CSV, found 2 files"
    )


@pytest.fixture(autouse=True)
def _no_landing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEM_LANDING_DIR", raising=False)
