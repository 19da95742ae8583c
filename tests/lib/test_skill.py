"""Skill against the constant base rate and the day-block bootstrap (pure units)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mem_pipelines.lib.skill import paired_loss_comparison, skill_report


def _rows(n: int = 20_000, seed: int = 1) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
    """A latent score that drives a ~30% positive label: the score carries real skill."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    p_true = 1.0 / (1.0 + np.exp(-(score - 0.9)))
    y = (rng.random(n) < p_true).astype(int)
    ts = pd.date_range("2025-01-01", periods=n, freq="5min", tz="UTC")
    return y, p_true, ts


def test_constant_prediction_at_the_base_rate_has_exactly_no_skill() -> None:
    y, _, ts = _rows()
    base = float(y.mean())
    report = skill_report(y, np.full(len(y), base), ts, base, resamples=200)
    assert report["log_loss_gain_mnat"] == pytest.approx(0.0, abs=1e-9)
    assert report["brier_skill"] == pytest.approx(0.0, abs=1e-12)
    assert not report.skilful()


def test_a_model_with_skill_is_skilful_and_its_interval_holds_the_point() -> None:
    y, p, ts = _rows()
    report = skill_report(y, p, ts, float(y.mean()), resamples=300)
    gain = report.intervals["log_loss_gain_mnat"]
    assert report["log_loss_gain_mnat"] > 10
    assert gain.low > 0 and gain.low <= report["log_loss_gain_mnat"] <= gain.high
    assert report["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    auc = report.intervals["roc_auc"]
    assert auc.low < report["roc_auc"] < auc.high
    assert report["top_decile_lift"] > 1.5
    assert report["baseline_accuracy"] == pytest.approx(max(y.mean(), 1 - y.mean()))
    assert report.skilful()


def test_noise_is_worse_than_a_constant() -> None:
    y, _, ts = _rows()
    noise = np.random.default_rng(5).random(len(y))
    report = skill_report(y, noise, ts, float(y.mean()), resamples=200)
    assert report["log_loss_gain_mnat"] < 0
    assert report.intervals["log_loss_gain_mnat"].high < 0
    assert not report.skilful()
    assert report.intervals["roc_auc"].low < 0.5 < report.intervals["roc_auc"].high


def test_day_blocks_widen_the_interval_when_days_share_their_errors() -> None:
    """Rows of one day that err together: resampling days must see fewer independent units."""
    rng = np.random.default_rng(3)
    days = 40
    ts = pd.date_range("2025-01-01", periods=days * 288, freq="5min", tz="UTC")
    day_shift = np.repeat(rng.normal(scale=0.15, size=days), 288)
    p = np.clip(0.3 + day_shift, 0.01, 0.99)
    y = (rng.random(len(p)) < 0.3).astype(int)
    blocky = skill_report(y, p, ts, 0.3, resamples=300)
    shuffled_ts = pd.date_range("2025-01-01", periods=len(p), freq="5min", tz="UTC")[rng.permutation(len(p))]
    # the same rows spread over days at random: the shared error is gone from the days
    spread = skill_report(y, p, shuffled_ts, 0.3, resamples=300)
    width = lambda r: r.intervals["log_loss_gain_mnat"].high - r.intervals["log_loss_gain_mnat"].low  # noqa: E731
    assert width(blocky) > 1.5 * width(spread)


def test_bad_input_is_refused() -> None:
    y, p, ts = _rows(100)
    with pytest.raises(ValueError, match="base_rate"):
        skill_report(y, p, ts, 1.0)
    with pytest.raises(ValueError, match="equally many"):
        skill_report(y, p[:-1], ts, 0.3)


def test_paired_comparison_sees_a_better_challenger_and_not_a_twin() -> None:
    y, p, ts = _rows()
    weak = 0.5 * p + 0.5 * y.mean()
    better = paired_loss_comparison(y, weak, p, ts, "log_loss", resamples=300)
    assert better.improvement > 0 and better.p_value < 0.01 and better.interval.low > 0
    twin = paired_loss_comparison(y, p, p, ts, "brier", resamples=300)
    assert twin.improvement == 0 and twin.p_value == 1.0
    worse = paired_loss_comparison(y, p, weak, ts, "brier", resamples=300)
    assert worse.improvement < 0 and worse.p_value > 0.99
    with pytest.raises(ValueError, match="metric"):
        paired_loss_comparison(y, p, p, ts, "accuracy")
