"""Fill numba's on-disk cache with the kernels ``mem serve`` loads at its start (the features,
the memory's similarity search, ``hist_gb``'s tree walk), so that the first start on a machine
loads them instead of compiling them (~5 s of CPU). Run by scripts/bootstrap.sh; a kernel whose
source changed later is compiled again at its next use, as always."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from mem_core import feature_sets
from mem_core.estimators.hist_gb import HistGB
from mem_core.feature_sets import REGIME_V1
from mem_memory import nearest

feature_sets.warm_up()
nearest.warm_up()
rng = np.random.default_rng(0)
X = rng.normal(size=(400, len(REGIME_V1.names)))
fitted = HistGradientBoostingClassifier(max_iter=2, random_state=0).fit(X, (X[:, 0] > 0).astype(int))
state = HistGB(fitted, REGIME_V1).one_row_state()
assert state is not None
HistGB(fitted, REGIME_V1).compile_one_row_from(state)  # the walk, one row and many
