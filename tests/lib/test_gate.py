"""The pure promotion rule (the registry-level gate tests are in tests/training/test_gate.py)."""
from __future__ import annotations

import numpy as np
import pytest

from mem_pipelines.lib.gate import GatePolicy, decide, mcnemar


def _predictions(n: int, champion_wrong: int, challenger_wrong: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two predictors; the challenger's errors are a subset of the champion's."""
    y = np.arange(n) % 2
    champion = y.copy()
    champion[:champion_wrong] = 1 - champion[:champion_wrong]
    challenger = y.copy()
    challenger[:challenger_wrong] = 1 - challenger[:challenger_wrong]
    return y, champion, challenger


def test_exactly_two_points_ahead_and_significant_is_promoted() -> None:
    y, champion, challenger = _predictions(1000, 320, 300)
    d = decide(y, challenger, champion)
    assert d.promote and d.margin == pytest.approx(0.02) and d.p_value < 0.05


def test_just_under_two_points_is_not_promoted() -> None:
    y, champion, challenger = _predictions(1000, 319, 300)
    d = decide(y, challenger, champion)
    assert d.p_value < 0.05 and not d.promote and "margin" in d.reason


def test_two_points_on_few_rows_is_not_significant() -> None:
    y, champion, challenger = _predictions(100, 32, 30)
    d = decide(y, challenger, champion)
    assert d.margin == pytest.approx(0.02) and d.p_value >= 0.05 and not d.promote


def test_first_model_is_promoted_and_policy_is_configurable() -> None:
    y, _, challenger = _predictions(50, 0, 10)
    assert decide(y, challenger, None).promote
    y, champion, challenger = _predictions(100, 32, 30)
    assert decide(y, challenger, champion, GatePolicy(min_margin=0.01, alpha=0.6)).promote
    with pytest.raises(ValueError):
        GatePolicy(alpha=0.0)


def test_mcnemar_exact_and_chi_square() -> None:
    a = np.array([True] * 10 + [False] * 2)
    b = np.array([False] * 10 + [True] * 2)
    small = mcnemar(a, b)
    assert small.method == "exact" and small.champion_only == 10 and small.challenger_only == 2
    assert small.p_value == pytest.approx(0.0386, abs=1e-3)
    a = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    b = ~a
    big = mcnemar(a, b)
    assert big.method == "chi2_cc" and big.statistic == pytest.approx((20 - 1) ** 2 / 100)
    assert mcnemar(a, a).p_value == 1.0
