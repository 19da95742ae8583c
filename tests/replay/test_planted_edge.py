"""Does memory learn? The planted-edge experiment, short version (docs/closed_loop.md §6).

Four synthetic symbols whose (synthetic) base signals win only when decided between 12:00 and
18:00 UTC (``mem_pipelines.replay.planted``), a champion trained on their first four days, the
real server on an empty memory store, and a replay of the next twelve days. The full system must learn the
window (a learned strategy on ``utc_hour``) and, in the second half, beat base + ML per trade after
costs with a 95% CI above 0. The same market with the condition shuffled (served by the same
champion) must create no strategy and claim no help.
"""

from __future__ import annotations

import logging

import pytest

from mem_cli.planted_job import PlantedRun, control_of, run_planted
from mem_pipelines.replay.planted import PlantedMarket
from mem_pipelines.replay.stats import BETTER

SMALL_GBC = {"n_estimators": 40, "max_depth": 3, "random_state": 42}
RUN = PlantedRun(
    PlantedMarket(days=18, seed=11, symbols=("PE11A", "PE11B", "PE11C", "PE11D")),
    train_days=4,
    estimator_params=SMALL_GBC,
)


@pytest.fixture(autouse=True)
def _quiet() -> None:
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _full_vs_ml(report):
    return {scope.split(" ")[0]: d for scope, d in report.differences() if (d.a, d.b) == ("full", "base_ml")}


def test_memory_learns_a_planted_edge_and_nothing_from_its_shuffled_control(questdb, tmp_path) -> None:
    planted = run_planted(RUN, questdb, tmp_path / "planted")
    learned = [s for s in planted.final_strategies if not s["deprecated"]]
    assert learned and all(s["conditions"] == "utc_hour >= 12 and utc_hour < 18" for s in learned), learned
    assert {s["action"] for s in learned} <= {"BUY", "SELL"}
    half = _full_vs_ml(planted)["second"]
    assert half.verdict == BETTER and half.interval.low > 0 and half.trades_a >= 10, half
    by = {v.name: v for v in planted.variants}
    assert any("shadows" in n for n in planted.notes) and any("planted signals" in n for n in planted.notes)

    control = run_planted(
        control_of(RUN), questdb, tmp_path / "control", tracking_uri=f"sqlite:///{tmp_path / 'planted' / 'mlflow.db'}"
    )
    assert control.final_strategies == []
    assert not [e for e in control.events if e.kind.startswith("strategy")]
    for d in _full_vs_ml(control).values():
        assert d.verdict != BETTER, d
    assert "helped" not in control.verdict()
    assert by["full"].metrics.trades > 0 and control.variants[-1].metrics.trades > 0
