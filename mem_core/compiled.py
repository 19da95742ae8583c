"""When a compiled kernel runs on numba's thread pool: only for batches large enough to pay for
the launch (a candle close's 1,000 symbols), one launch at a time.

numba's threading layer is OpenMP here, TBB where installed, else its own ``workqueue``, which
must not be entered by two threads at once: ``LAUNCH`` serialises the launches in any case.
The pool has ``NUMBA_NUM_THREADS`` threads (default: the machine's cores).
"""

from __future__ import annotations

import threading

#: Fewest rows for the parallel kernel; below it the serial one runs (a launch costs ~20 us).
PARALLEL_MIN_ROWS = 64
#: Held while a parallel kernel runs.
LAUNCH = threading.Lock()
