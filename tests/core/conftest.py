from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from .helpers import load_shared


@pytest.fixture(scope="session")
def btc(shared_candles: Path) -> pd.DataFrame:
    return load_shared(shared_candles, "BTCUSDT")


@pytest.fixture(scope="session")
def eth(shared_candles: Path) -> pd.DataFrame:
    return load_shared(shared_candles, "ETHUSDT")
