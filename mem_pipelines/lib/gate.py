"""The champion/challenger promotion rule (pure: no I/O, no MLflow).

Both models are scored on the same holdout rows. The challenger is promoted only when

* its accuracy >= the champion's + ``min_margin`` (0.02 by default; compared with a 1e-9
  tolerance so that exactly +0.02 passes despite float rounding and +0.019 does not), and
* the paired difference is significant: McNemar's test on the rows where exactly one of the
  two is right, ``p < alpha`` (0.05 by default). Exact two-sided binomial test when there are
  fewer than ``EXACT_BELOW`` discordant rows, else chi-square with continuity correction.

Without a champion the challenger is promoted (the first model becomes champion).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

EXACT_BELOW: int = 25
_EPS: float = 1e-9


@dataclass(frozen=True)
class GatePolicy:
    min_margin: float = 0.02
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError("alpha must be in (0, 1)")
        if self.min_margin < 0.0:
            raise ValueError("min_margin must be >= 0")


@dataclass(frozen=True)
class McNemarResult:
    champion_only: int  # rows the champion gets right and the challenger wrong
    challenger_only: int  # rows the challenger gets right and the champion wrong
    statistic: float
    p_value: float
    method: str  # "exact" | "chi2_cc" | "none"


def mcnemar(champion_correct: np.ndarray, challenger_correct: np.ndarray) -> McNemarResult:
    """McNemar's test on paired correctness vectors of the same rows."""
    a = np.asarray(champion_correct, dtype=bool)
    b = np.asarray(challenger_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("paired predictions must cover the same rows")
    n01 = int(np.sum(a & ~b))
    n10 = int(np.sum(~a & b))
    discordant = n01 + n10
    if discordant == 0:
        return McNemarResult(n01, n10, 0.0, 1.0, "none")
    if discordant < EXACT_BELOW:
        p = float(stats.binomtest(n10, discordant, 0.5).pvalue)
        return McNemarResult(n01, n10, float(min(n01, n10)), min(1.0, p), "exact")
    statistic = (abs(n01 - n10) - 1.0) ** 2 / discordant
    return McNemarResult(n01, n10, float(statistic), float(stats.chi2.sf(statistic, 1)), "chi2_cc")


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    rows: int
    challenger_accuracy: float
    champion_accuracy: float | None
    margin: float | None
    p_value: float | None
    test: str | None
    min_margin: float
    alpha: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def decide(
    y_true: np.ndarray,
    challenger_pred: np.ndarray,
    champion_pred: np.ndarray | None,
    policy: GatePolicy = GatePolicy(),
) -> GateDecision:
    """The verdict for a challenger's and (if any) the champion's 0/1 predictions on the same rows."""
    y = np.asarray(y_true).astype(int)
    ch = np.asarray(challenger_pred).astype(int)
    if len(y) == 0 or ch.shape != y.shape:
        raise ValueError("challenger predictions must cover the holdout rows")
    challenger_acc = float(np.mean(ch == y))
    if champion_pred is None:
        return GateDecision(True, "first model: no champion yet", len(y), challenger_acc, None, None, None, None,
                            policy.min_margin, policy.alpha)
    cp = np.asarray(champion_pred).astype(int)
    if cp.shape != y.shape:
        raise ValueError("champion predictions must cover the holdout rows")
    champion_acc = float(np.mean(cp == y))
    margin = challenger_acc - champion_acc
    test = mcnemar(cp == y, ch == y)
    ahead = margin >= policy.min_margin - _EPS
    significant = test.p_value < policy.alpha
    if ahead and significant:
        reason = f"promoted: +{margin:.4f} accuracy >= {policy.min_margin} and p={test.p_value:.3g} < {policy.alpha}"
    elif not ahead:
        reason = f"kept champion: margin {margin:+.4f} < {policy.min_margin}"
    else:
        reason = f"kept champion: p={test.p_value:.3g} >= {policy.alpha} (difference not significant)"
    return GateDecision(ahead and significant, reason, len(y), challenger_acc, champion_acc, margin,
                        test.p_value, test.method, policy.min_margin, policy.alpha)
