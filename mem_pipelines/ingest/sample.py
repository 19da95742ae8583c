"""The sample of real candles shipped in the repository (``data/sample``, see its README): 175 days
of Binance spot 5-minute klines of BTCUSDT and ETHUSDT, which ``mem main`` ingests when it is
given no ``--csv`` so its report is about a real market with no network and no other data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mem_core.settings import PROJECT_ROOT, QuestDBSettings
from mem_pipelines.ingest.csv_source import parse_filename
from mem_pipelines.ingest.load import IngestResult, ingest_csv_files
from mem_pipelines.ingest.validation import IngestError

#: Where the sample lives in the repository (one ``SYMBOL-5m.csv.gz`` per symbol).
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"


def sample_files(symbols: Sequence[str] | None = None, folder: Path = SAMPLE_DIR) -> tuple[Path, ...]:
    """The sample's files for ``symbols`` (all of them when None), in the order asked;
    ``IngestError`` naming what is missing and what the sample holds."""
    available = {}
    for path in sorted(folder.glob("*-5m.csv.gz")):
        symbol, _interval = parse_filename(path)
        if symbol is not None:
            available[symbol] = path
    if not available:
        raise IngestError(f"no sample candles in {folder} (expected SYMBOL-5m.csv.gz files; see data/sample/README.md)")
    if symbols is None:
        return tuple(available.values())
    wanted = [s.strip().upper() for s in symbols if s.strip()]
    missing = [s for s in wanted if s not in available]
    if missing or not wanted:
        raise IngestError(
            f"the sample has no candles of {', '.join(missing) or 'no symbol'} (it holds {', '.join(available)}); "
            "use --csv FILE for other symbols or --synthetic for generated candles"
        )
    return tuple(available[s] for s in wanted)


def sample_symbols(folder: Path = SAMPLE_DIR) -> tuple[str, ...]:
    """The symbols the sample holds."""
    return tuple(p.name.split("-", 1)[0] for p in sample_files(folder=folder))


def ingest_sample(settings: QuestDBSettings, symbols: Sequence[str] | None = None) -> list[IngestResult]:
    """Validate and write the sample's candles of ``symbols`` (idempotent, like every ingest)."""
    return ingest_csv_files(settings, sample_files(symbols))
