"""Pipeline settings read from the environment in one place (never at import time).

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
============================  ===============================================  ==========================
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mem_core.settings import project_paths

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

    max_lag_minutes: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FreshnessSettings:
        env = os.environ if env is None else env
        lag = float(env.get("MEM_CANDLES_MAX_LAG_MINUTES", 30.0))
        if lag <= 0:
            raise ValueError(f"MEM_CANDLES_MAX_LAG_MINUTES must be positive, got {lag}")
        return cls(max_lag_minutes=lag)
