"""The pure promotion rule (the registry-level gate tests are in tests/training/test_gate.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mem_pipelines.lib.gate import GatePolicy, decide, judge, mcnemar


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


# --- judge: skill floor and configurable metric ------------------------------------------------


def _holdout(n: int = 12_000, seed: int = 2):
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    p = 1 / (1 + np.exp(-(1.5 * score - 1.0)))
    y = (rng.random(n) < p).astype(int)
    ts = pd.date_range("2025-03-01", periods=n, freq="5min", tz="UTC")
    return y, p, ts


def test_judge_refuses_a_first_model_without_skill() -> None:
    y, _, ts = _holdout()
    noise = np.random.default_rng(9).uniform(0.2, 0.4, len(y))
    verdict = judge(y, noise, None, ts, float(y.mean()), resamples=200)
    assert not verdict.promote
    assert verdict.sentence.startswith("Not promoted: the model has no skill")
    assert verdict.tags()["gate.promoted"] == "false"


def test_judge_promotes_a_skilful_first_model_and_says_why() -> None:
    y, p, ts = _holdout()
    verdict = judge(y, p, None, ts, float(y.mean()), resamples=200)
    assert verdict.promote and verdict.sentence.startswith("Promoted as the first champion")
    assert "log-loss gain +" in verdict.sentence


def test_judge_by_log_loss_promotes_a_significantly_better_challenger_only() -> None:
    y, p, ts = _holdout()
    weaker = 0.6 * p + 0.4 * y.mean()
    by_ll = GatePolicy(metric="log_loss", min_margin=1.0)
    better = judge(y, p, weaker, ts, float(y.mean()), by_ll, resamples=200)
    assert better.promote and better.p_value is not None and better.p_value < 0.05
    assert better.improvement is not None and better.improvement >= 1.0
    same = judge(y, p, p, ts, float(y.mean()), by_ll, resamples=200)
    assert not same.promote and same.sentence.startswith("Champion kept")
    too_small = judge(y, p, weaker, ts, float(y.mean()), GatePolicy(metric="brier", min_margin=0.5), resamples=200)
    assert not too_small.promote


def test_judge_by_accuracy_keeps_the_seed_rule() -> None:
    y, p, ts = _holdout()
    verdict = judge(y, p, p, ts, float(y.mean()), GatePolicy(), resamples=200)
    assert not verdict.promote and verdict.metric == "accuracy"
    assert verdict.accuracy is not None and verdict.accuracy.margin == 0.0


def test_policy_refuses_an_unknown_metric() -> None:
    with pytest.raises(ValueError, match="metric"):
        GatePolicy(metric="f1")


def test_the_review_sets_the_accuracy_rule_beside_log_loss_and_brier_and_says_how_to_promote() -> None:
    """Accuracy ties (the seed's rule keeps the champion) while log loss and Brier show a clearly
    better challenger: the reviewer sees both, with CIs, and the command to override the gate."""
    y, p, ts = _holdout()
    weaker = 0.6 * p + 0.4 * y.mean()  # same ranking, worse calibration
    verdict = judge(y, p, weaker, ts, float(y.mean()), GatePolicy(), resamples=200)
    assert not verdict.promote and verdict.metric == "accuracy"
    assert [c.metric for c in verdict.comparisons] == ["log_loss", "brier"]
    log_loss, brier = verdict.comparisons
    assert log_loss.improvement > 0 and log_loss.interval.low > 0  # better, and the CI says so
    assert brier.improvement > 0 and brier.interval.low > 0
    lines = verdict.review("7", "3").splitlines()
    assert lines[0] == verdict.sentence
    assert lines[1].startswith("Accuracy rule (the seed's): ") and lines[1].endswith("not met.")
    assert lines[2].startswith(f"Log loss on the same {len(y):,} holdout rows: challenger better by ")
    assert f"[95% CI {log_loss.interval.low:+.1f}, {log_loss.interval.high:+.1f}]" in lines[2]
    assert lines[3].startswith(f"Brier score on the same {len(y):,} holdout rows: challenger better by ")
    assert f"[95% CI {brier.interval.low:+.5f}, {brier.interval.high:+.5f}]" in lines[3]
    assert lines[4] == 'To promote by hand: mem model promote 7 --reason "<why>"'
    # the comparison the policy gates on is the same bootstrap as the one shown
    by_ll = judge(y, p, weaker, ts, float(y.mean()), GatePolicy(metric="log_loss", min_margin=1.0), resamples=200)
    assert by_ll.promote and by_ll.improvement == pytest.approx(by_ll.comparisons[0].improvement)
    assert by_ll.review("7", "3").splitlines()[-1] == 'To roll back by hand: mem model promote 3 --reason "<why>"'


def test_a_first_model_has_no_comparison_lines() -> None:
    y, p, ts = _holdout()
    noise = np.random.default_rng(9).uniform(0.2, 0.4, len(y))
    refused = judge(y, noise, None, ts, float(y.mean()), resamples=200)
    assert refused.comparisons == ()
    assert refused.review("1").splitlines() == [
        refused.sentence,
        'To promote by hand: mem model promote 1 --reason "<why>"',
    ]
    first = judge(y, p, None, ts, float(y.mean()), resamples=200)
    assert first.review("1").splitlines() == [first.sentence]


def test_a_worse_challenger_is_said_to_be_worse_not_better_by_a_negative_amount() -> None:
    from mem_pipelines.lib.gate import comparison_line
    from mem_pipelines.lib.skill import Interval, PairedComparison

    worse = PairedComparison("log_loss", -3.3, Interval(-8.7, 1.6), 0.2, 1000)
    line = comparison_line(worse, 13824)
    assert "challenger worse by 3.3 mnat" in line and "better" not in line
    assert "(improvement -3.3 [95% CI -8.7, +1.6])" in line
    better = PairedComparison("brier", 0.0016, Interval(0.0001, 0.003), 0.01, 1000)
    assert "challenger better by 0.00160 " in comparison_line(better, 10)
