"""``mem main --replay-days 1`` on the shipped sample, as a new user runs it (default training
window, default champion): it finishes with the three-row report. About 6 minutes on 2 cores:
slow tier, one window only (2 and 5 days: ``bench/bench_replay_main.py sample --replay-days 1 2
5``); the cheap check of the 1, 2 and 5-day replays is tests/replay/test_replay_sample.py."""

from __future__ import annotations

import pytest

from mem_testing.main_job import run_main


@pytest.mark.slow
def test_mem_main_on_the_sample_finishes_with_the_three_rows() -> None:
    run = run_main(["--replay-days", "1"], timeout=1800)
    assert run["exit_code"] == 0 and not run["error"], run
    assert run["three_rows"] and len(run["variants"]) == 3, run
