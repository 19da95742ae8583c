"""Fill numba's on-disk cache with the kernels ``mem serve`` loads at its start (the features,
the memory's similarity search, ``hist_gb``'s tree walk) and at its first call (the candle
history's), so that the first start on a machine loads them instead of compiling them (~5 s of
CPU, and ~0.5 s more in the first call). Run by scripts/bootstrap.sh; a kernel whose
source changed later is compiled again at its next use, as always."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from mem_core import feature_sets
from mem_core.estimators.hist_gb import HistGB
from mem_core.feature_sets import REGIME_V1
from mem_memory import nearest
from mem_serving.candles import BAR_MS, CandleHistory
from mem_serving.types import CandleBlock

feature_sets.warm_up()
nearest.warm_up()
rng = np.random.default_rng(0)
X = rng.normal(size=(400, len(REGIME_V1.names)))
fitted = HistGradientBoostingClassifier(max_iter=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
walk = HistGB(fitted, REGIME_V1)
state = walk.one_row_state()
assert state is not None
walk.compile_one_row_from(state)  # the walk, one row and many

history = CandleHistory()
ts = (np.arange(3, dtype=np.int64) + 10) * BAR_MS
history.merge("WARM", CandleBlock(ts, np.full((3, 5), 100.0)))
history.merge_many(["WARM"], [CandleBlock(ts[-1:] + BAR_MS, np.full((1, 5), 100.0))])  # the append path
with history.lock:
    history.newest(np.zeros(1, dtype=np.int64))
