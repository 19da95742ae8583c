"""The k nearest closed trades of many snapshots in one compiled pass (``Ring.query_many``).

Per snapshot: the squared distance to every trade up to the snapshot's own constant, in float32
(``z . Z[i]`` with ``z`` the snapshot times -2, summed in feature order, plus ``sq[i]``), computed
for all trades a feature at a time (a row of ``ZT`` per feature: the loop over trades is
vectorised, each trade's sum keeps its order); then the ``k`` smallest kept in order, the newer
trade first among equal distances (the ring is walked from its newest trade back), and of those
the ones within ``limit`` of the snapshot.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def nearest(
    ZT: np.ndarray,
    sq: np.ndarray,
    n: int,
    newest: int,
    queries: np.ndarray,
    norms: np.ndarray,
    k: int,
    limit: float,
    picked: np.ndarray,
    counts: np.ndarray,
) -> None:
    """For each row of ``queries`` (standardised snapshots, 0 where missing) with squared norm
    ``norms``: the ring rows (the first ``n`` columns of ``ZT`` are held; ``newest`` the latest written) of its at
    most ``k`` nearest trades within ``limit`` into ``picked[j, :counts[j]]``, nearest first."""
    f = ZT.shape[0]
    m = min(k, n)
    acc = np.empty(n, dtype=np.float32)
    best_d = np.empty(m, dtype=np.float32)
    best_i = np.empty(m, dtype=np.int64)
    for j in range(queries.shape[0]):
        acc[:] = 0.0
        for c in range(f):
            zc = queries[j, c] * np.float32(-2.0)
            row = ZT[c]
            for i in range(n):
                acc[i] += row[i] * zc
        held = 0
        for t in range(n):
            i = newest - t
            if i < 0:
                i += n
            d = acc[i] + sq[i]
            if held == m and not d < best_d[m - 1]:
                continue
            p = held if held < m else m - 1  # after every nearer or equally near one
            while p > 0 and d < best_d[p - 1]:
                best_d[p] = best_d[p - 1]
                best_i[p] = best_i[p - 1]
                p -= 1
            best_d[p] = d
            best_i[p] = i
            if held < m:
                held += 1
        got = 0
        for p in range(held):
            if np.float64(best_d[p]) + norms[j] <= limit:
                picked[j, got] = best_i[p]
                got += 1
        counts[j] = got


def warm_up() -> None:
    """Load ``nearest`` (numba's cache, else compile) before the first query needs it (~0.3 s)."""
    zt = np.zeros((1, 2), dtype=np.float32)
    nearest(zt, zt[0], 2, 1, zt[:, :1], np.zeros(1), 1, 1.0, np.empty((1, 1), np.int64), np.empty(1, np.int64))
