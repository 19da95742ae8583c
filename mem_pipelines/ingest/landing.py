"""The landing folder: Binance kline files dropped there reach QuestDB once each (no Dagster here).

Three steps, each a plain function the sensor and the asset call:

* :func:`scan` lists the files that may be klines: top-level ``*.csv``, ``*.csv.gz`` and ``*.zip``
  (the exchange's daily and monthly archives), not hidden ones; subfolders (the quarantine) are
  not entered.
* :func:`plan` compares them with the cursor, a JSON map ``name -> [size, mtime_ns]`` of the files
  already handed to a run. A file is new when its name is not in the cursor or its size or
  modification time changed (a rewritten file is ingested again; DEDUP UPSERT makes that
  harmless). Files still changing (modified within ``settle_s``) wait for a later tick. Names
  that do not say a known symbol are refused. The new cursor holds only files still present,
  so it stays as small as the folder.
* :func:`ingest_landed` (in the run) parses and validates each file with ``read_kline_csv``, as
  ``mem ingest csv`` does, and writes the good ones; a bad file moves to the quarantine folder
  with ``<name>.reason.txt`` (its one-line reason) beside it, and nothing from it is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mem_core.questdb.store import write_candles
from mem_core.settings import QuestDBSettings
from mem_pipelines.ingest.csv_source import CandleFile, parse_filename, read_kline_csv
from mem_pipelines.ingest.load import IngestResult
from mem_pipelines.ingest.validation import DEFAULT_INTERVAL, IngestError

SUFFIXES = (".csv", ".csv.gz", ".zip")
REASON_SUFFIX = ".reason.txt"


@dataclass(frozen=True)
class LandedFile:
    name: str
    size: int
    mtime_ns: int

    @property
    def signature(self) -> list[int]:
        return [self.size, self.mtime_ns]


@dataclass(frozen=True)
class LandingPlan:
    """What one sensor tick does: runs per symbol, files to refuse, the cursor to store."""

    batches: dict[str, list[LandedFile]] = field(default_factory=dict)
    refused: list[tuple[LandedFile, str]] = field(default_factory=list)
    waiting: list[LandedFile] = field(default_factory=list)
    cursor: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class LandingResult:
    """What one run did with its files."""

    ingested: list[IngestResult] = field(default_factory=list)
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(r.rows for r in self.ingested)


def scan(folder: Path) -> list[LandedFile]:
    """The candidate kline files directly in ``folder``, by name."""
    out = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if (
                entry.name.startswith(".")
                or not entry.name.endswith(SUFFIXES)
                or not entry.is_file(follow_symlinks=False)
            ):
                continue
            st = entry.stat(follow_symlinks=False)
            out.append(LandedFile(entry.name, st.st_size, st.st_mtime_ns))
    return sorted(out, key=lambda f: f.name)


def decode_cursor(cursor: str | None) -> dict[str, list[int]]:
    if not cursor:
        return {}
    data = json.loads(cursor)
    return {str(k): [int(v[0]), int(v[1])] for k, v in data.get("files", {}).items()}


def encode_cursor(files: Mapping[str, list[int]]) -> str:
    return json.dumps({"files": dict(sorted(files.items()))}, separators=(",", ":"))


def plan(
    files: Iterable[LandedFile], cursor: Mapping[str, list[int]], now_ns: int, settle_s: float, symbols: Sequence[str]
) -> LandingPlan:
    """Which files go to a run (grouped by the symbol in their name), which are refused, and the
    new cursor (see the module doc)."""
    out = LandingPlan()
    known = set(symbols)
    for f in files:
        seen = cursor.get(f.name)
        if seen == f.signature:
            out.cursor[f.name] = seen
            continue
        if now_ns - f.mtime_ns < settle_s * 1e9:
            out.waiting.append(f)
            if seen is not None:
                out.cursor[f.name] = seen
            continue
        symbol, _ = parse_filename(Path(f.name))
        if symbol is None:
            out.refused.append(
                (f, "cannot tell the symbol from the file name (expected e.g. BTCUSDT-5m-2024-01-02.zip)")
            )
        elif symbol not in known:
            out.refused.append(
                (f, f"{symbol} is not one of the candles partitions ({', '.join(symbols)}; MEM_SYMBOLS)")
            )
        else:
            out.batches.setdefault(symbol, []).append(f)
            out.cursor[f.name] = f.signature
    return out


def quarantine(folder: Path, quarantine_dir: Path, name: str, reason: str) -> Path:
    """Move ``folder/name`` into ``quarantine_dir`` with its one-line reason beside it."""
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = quarantine_dir / name
    os.replace(folder / name, target)
    line = " ".join(reason.split())
    (quarantine_dir / (name + REASON_SUFFIX)).write_text(line + "\n", encoding="utf-8")
    return target


def ingest_landed(
    settings: QuestDBSettings,
    folder: Path,
    quarantine_dir: Path,
    names: Sequence[str],
    symbol: str,
    interval: str = DEFAULT_INTERVAL,
) -> LandingResult:
    """Validate each of ``names`` (files in ``folder`` of ``symbol``), quarantine the bad ones,
    then write the good ones. A ``CandleStoreError`` (QuestDB down) propagates and leaves every
    file where it is."""
    result = LandingResult()
    good: list[CandleFile] = []
    for name in names:
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"{name!r} is not a file name in the landing folder")
        path = folder / name
        if not path.is_file():
            result.missing.append(name)  # moved or deleted since the sensor saw it
            continue
        try:
            parsed = read_kline_csv(path, interval=interval)
            if parsed.symbol != symbol:
                raise IngestError(f"{path}: holds {parsed.symbol}, not {symbol}")
        except IngestError as exc:
            reason = str(exc).replace(str(folder) + os.sep, "")
            quarantine(folder, quarantine_dir, name, reason)
            result.quarantined.append((name, reason))
            continue
        good.append(parsed)
    for f in good:
        write_candles(settings, f.frame)
        result.ingested.append(
            IngestResult(f.path.name, f.symbol, f.rows, f.frame["ts"].iloc[0], f.frame["ts"].iloc[-1])
        )
    return result
