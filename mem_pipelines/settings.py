"""Pipeline settings: the only module of ``mem_pipelines`` that reads the environment.

``PipelineSettings.from_env()`` is called once, when ``mem_pipelines.definitions`` builds the
Definitions; ``mem main`` builds its own settings (its symbols) and passes them explicitly.
The shared defaults (symbols, QuestDB) come from ``mem_core.settings``. Landing folder and
freshness (docs/data.md):

============================  ===============================================  ==========================
variable                      meaning                                          default
============================  ===============================================  ==========================
MEM_LANDING_DIR               folder the landing sensor watches for Binance    <MEM_HOME>/.mem/landing
                              kline files (.csv, .csv.gz, .zip); bad files
                              move to its ``quarantine/`` subfolder
MEM_LANDING_SETTLE_S          a file is taken once it has not changed for      10
                              this many seconds (still being copied)
MEM_CANDLES_MAX_LAG_MINUTES   freshness: the newest candle of each symbol      30
                              opened at most this long ago
MEM_CANDLES_LIVE              1/true: a live feed keeps candles current, so     false (historical data:
                              stale candles fail the freshness checks          the checks only warn,
                              (ERROR) and ``candles_freshness`` runs every     saying how old the
                              10 minutes                                       newest candle is)
============================  ===============================================  ==========================
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mem_core.settings import DEFAULT_SYMBOLS, QuestDBSettings, project_paths, questdb_password_is_set

#: The candles' gap check fails above this share of missing 5-minute slots (MEM_MAX_GAP_RATIO).
DEFAULT_MAX_GAP_RATIO = 0.01
#: The freshness check fails when a symbol's newest candle opened longer ago (minutes).
DEFAULT_MAX_LAG_MINUTES = 30.0

#: Where the services the pipelines use run: ``local`` (the project's own QuestDB on loopback)
#: or ``external`` (the QuestDB that MEM_QUESTDB_HOST names).
Deployment = Literal["local", "external"]


def parse_symbols(raw: str | Iterable[str]) -> tuple[str, ...]:
    """Symbols from a comma-separated string (or a sequence): stripped, upper-cased, each once,
    in their first order."""
    parts = raw.split(",") if isinstance(raw, str) else raw
    return tuple(dict.fromkeys(s.strip().upper() for s in parts if s.strip()))


@dataclass(frozen=True)
class PipelineSettings:
    """What the Definitions are built from."""

    #: The partitions of ``candles``, every one of which training reads in one run (MEM_SYMBOLS).
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    #: Threshold of the candles' gap check (MEM_MAX_GAP_RATIO).
    max_gap_ratio: float = DEFAULT_MAX_GAP_RATIO
    questdb: QuestDBSettings = field(default_factory=QuestDBSettings)
    #: True when MEM_QUESTDB_PASSWORD is set: the resource then gets it as a ``dg.EnvVar``.
    questdb_password_from_env: bool = False

    def __post_init__(self) -> None:
        symbols = parse_symbols(self.symbols)
        if not symbols:
            raise ValueError("symbols: give at least one symbol")
        object.__setattr__(self, "symbols", symbols)

    @property
    def deployment(self) -> Deployment:
        return "external" if self.questdb.external else "local"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineSettings:
        env = os.environ if env is None else env
        return cls(
            symbols=parse_symbols(env.get("MEM_SYMBOLS", "")) or DEFAULT_SYMBOLS,
            max_gap_ratio=float(env.get("MEM_MAX_GAP_RATIO", DEFAULT_MAX_GAP_RATIO)),
            questdb=QuestDBSettings.from_env(env),
            questdb_password_from_env=questdb_password_is_set(env),
        )


def dagster_home(default: Path, env: Mapping[str, str] | None = None) -> Path:
    """The Dagster instance's folder: DAGSTER_HOME, else ``default``."""
    env = os.environ if env is None else env
    named = env.get("DAGSTER_HOME", "")
    return Path(os.path.expanduser(named)) if named else default


def ensure_instance_config(home: Path, project_config: Path | None = None) -> Path:
    """``home``'s dagster.yaml, written from the project's when it has none: an instance under a
    MEM_HOME elsewhere gets the same run queue and limits, and no telemetry prompt, with its
    storage under ``home/.mem/dagster``. An existing file is left as it is."""
    import json

    from mem_core.settings import PROJECT_ROOT

    target = home / "dagster.yaml"
    if target.exists():
        return target
    text = (project_config or PROJECT_ROOT / "dagster.yaml").read_text(encoding="utf-8")
    for folder in ("storage", "artifacts", "compute_logs"):
        # a JSON string is a YAML string: any path, quoted
        text = text.replace(
            f"base_dir: .mem/dagster/{folder}", f"base_dir: {json.dumps(str(home / '.mem' / 'dagster' / folder))}"
        )
    home.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


#: Where ``scripts/ui.sh mlflow`` serves the MLflow UI (for the links in Dagster's metadata).
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"


#: The file under ``<MEM_HOME>/.mem`` where ``scripts/ui.sh mlflow`` records the URL it serves at.
MLFLOW_UI_URL_FILE = "mlflow_ui_url"


def mlflow_ui_url(tracking_uri: str, env: Mapping[str, str] | None = None) -> str:
    """The MLflow UI the Dagster metadata links to: MEM_MLFLOW_UI_URL, else the tracking server
    itself (an http tracking URI), else the address the last ``scripts/ui.sh mlflow`` of this
    MEM_HOME served at (its PORT), else ``DEFAULT_MLFLOW_UI_URL``."""
    env = os.environ if env is None else env
    named = env.get("MEM_MLFLOW_UI_URL", "")
    if named:
        return named.rstrip("/")
    if tracking_uri.startswith("http"):
        return tracking_uri.rstrip("/")
    recorded = project_paths(dict(env)).state / MLFLOW_UI_URL_FILE
    try:
        url = recorded.read_text(encoding="utf-8").strip()
    except OSError:
        url = ""
    return url.rstrip("/") if url.startswith("http") else DEFAULT_MLFLOW_UI_URL


QUARANTINE = "quarantine"


@dataclass(frozen=True)
class LandingSettings:
    """Where kline files land and how long a file must rest before it is taken."""

    folder: Path
    settle_s: float = 10.0

    @property
    def quarantine(self) -> Path:
        return self.folder / QUARANTINE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LandingSettings:
        env = os.environ if env is None else env
        raw = env.get("MEM_LANDING_DIR", "")
        folder = Path(raw).expanduser() if raw else project_paths(dict(env)).state / "landing"
        return cls(folder=folder.resolve(), settle_s=float(env.get("MEM_LANDING_SETTLE_S", 10.0)))


@dataclass(frozen=True)
class FreshnessSettings:
    """How old the newest candle of a symbol may be before ``candles`` counts as stale."""

    max_lag_minutes: float = DEFAULT_MAX_LAG_MINUTES
    #: A live feed keeps the candles current (MEM_CANDLES_LIVE): only then is an old candle a failure.
    live: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FreshnessSettings:
        env = os.environ if env is None else env
        lag = float(env.get("MEM_CANDLES_MAX_LAG_MINUTES", DEFAULT_MAX_LAG_MINUTES))
        if lag <= 0:
            raise ValueError(f"MEM_CANDLES_MAX_LAG_MINUTES must be positive, got {lag}")
        raw = env.get("MEM_CANDLES_LIVE", "").strip().lower()
        if raw not in ("", "0", "1", "false", "true", "no", "yes"):
            raise ValueError(f"MEM_CANDLES_LIVE must be 1/true or 0/false, got {raw!r}")
        return cls(max_lag_minutes=lag, live=raw in ("1", "true", "yes"))
