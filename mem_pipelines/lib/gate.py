"""The champion/challenger promotion rule (pure: no I/O, no MLflow).

:func:`judge` is the whole gate. First the **skill floor**: no challenger, the first included,
becomes champion unless its holdout log-loss gain over the constant base rate (its training
rows' positive rate) is positive with the day-block bootstrap lower bound above 0 (see
``mem_pipelines.lib.skill``). Then, when there is a champion, the **comparison** on the same
holdout rows by the policy's metric:

* ``accuracy`` (the seed's rule, the default): :func:`decide` below;
* ``log_loss`` (margin in thousandths of a nat) or ``brier``: the challenger's mean per-row loss
  must be lower by at least ``min_margin`` and the paired day-block bootstrap one-sided p-value
  below ``alpha``. Two skilful models tie on accuracy at a ~30% label, hence these.

The accuracy rule (:func:`decide`): the challenger is promoted only when

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
import pandas as pd
from scipy import stats

from mem_pipelines.lib.skill import (
    DEFAULT_RESAMPLES,
    PairedComparison,
    SkillReport,
    paired_loss_comparison,
    skill_report,
)

EXACT_BELOW: int = 25
METRICS: tuple[str, ...] = ("accuracy", "log_loss", "brier")
_EPS: float = 1e-9


@dataclass(frozen=True)
class GatePolicy:
    min_margin: float = 0.02
    alpha: float = 0.05
    metric: str = "accuracy"
    #: Refuse any challenger without skill over the constant base rate (DESIGN §4).
    skill_floor: bool = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
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
        return GateDecision(
            True,
            "first model: no champion yet",
            len(y),
            challenger_acc,
            None,
            None,
            None,
            None,
            policy.min_margin,
            policy.alpha,
        )
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
    return GateDecision(
        ahead and significant,
        reason,
        len(y),
        challenger_acc,
        champion_acc,
        margin,
        test.p_value,
        test.method,
        policy.min_margin,
        policy.alpha,
    )


@dataclass(frozen=True)
class Verdict:
    """The gate's answer: promote or not, one plain sentence, and the evidence behind it."""

    promote: bool
    sentence: str
    metric: str
    skill: SkillReport
    accuracy: GateDecision | None  # the accuracy rule's evidence (always computed when a champion exists)
    improvement: float | None  # challenger minus champion on ``metric`` (accuracy points, mnat, Brier)
    interval: tuple[float, float] | None
    p_value: float | None
    #: Log loss and Brier, challenger vs champion on the same holdout rows (paired day-block
    #: bootstrap), whatever the policy's metric: what moves when accuracy does not. Empty
    #: without a champion.
    comparisons: tuple[PairedComparison, ...] = ()

    def review(self, version: str, champion: str | None = None) -> str:
        """The verdict for a reviewer: the sentence, then for a challenger with a champion the
        seed's accuracy rule and beside it the log-loss and Brier differences with their CIs on
        the same holdout rows, then one line saying how to override the gate by hand."""
        lines = [self.sentence]
        acc = self.accuracy
        if acc is not None and acc.champion_accuracy is not None:
            met = "met" if acc.promote else "not met"
            lines.append(
                f"Accuracy rule (the seed's): {acc.challenger_accuracy:.4f} vs {acc.champion_accuracy:.4f} "
                f"({(acc.margin or 0.0):+.4f}; needs +{acc.min_margin} with McNemar p < {acc.alpha}, "
                f"p = {(acc.p_value if acc.p_value is not None else 1.0):.3g}): {met}."
            )
        for c in self.comparisons:
            lines.append(comparison_line(c, self.skill.rows))
        if self.promote and champion:
            lines.append(f'To roll back by hand: mem model promote {champion} --reason "<why>"')
        elif not self.promote:
            lines.append(f'To promote by hand: mem model promote {version} --reason "<why>"')
        return "\n".join(lines)

    def tags(self) -> dict[str, str]:
        """Short strings for MLflow tags (the sentence goes in the version description)."""
        gain = self.skill.intervals["log_loss_gain_mnat"]
        out = {
            "gate.promoted": str(self.promote).lower(),
            "gate.metric": self.metric,
            "gate.verdict": self.sentence[:250],
            "gate.log_loss_gain_mnat": f"{self.skill['log_loss_gain_mnat']:.2f}",
            "gate.log_loss_gain_ci": f"[{gain.low:.2f}, {gain.high:.2f}]",
            "gate.roc_auc": f"{self.skill['roc_auc']:.4f}",
        }
        if self.improvement is not None:
            out["gate.improvement"] = f"{self.improvement:.4f}"
        if self.p_value is not None:
            out["gate.p_value"] = f"{self.p_value:.3g}"
        return out


def comparison_line(c: PairedComparison, rows: int) -> str:
    """One paired loss comparison in words (positive = the challenger's loss is lower)."""
    if c.metric == "log_loss":
        what, digits, unit = "Log loss", 1, " mnat"
    else:
        what, digits, unit = "Brier score", 5, ""
    direction = "better" if c.improvement >= 0 else "worse"
    return (
        f"{what} on the same {rows:,} holdout rows: challenger {direction} by {abs(c.improvement):.{digits}f}{unit} "
        f"(improvement {c.improvement:+.{digits}f} [95% CI {c.interval.low:+.{digits}f}, "
        f"{c.interval.high:+.{digits}f}]), p = {c.p_value:.3g}."
    )


def judge(
    y_true: np.ndarray,
    challenger_proba: np.ndarray,
    champion_proba: np.ndarray | None,
    ts: pd.Series | np.ndarray,
    base_rate: float,
    policy: GatePolicy = GatePolicy(),
    threshold: float = 0.5,
    resamples: int = DEFAULT_RESAMPLES,
    compared: np.ndarray | None = None,
) -> Verdict:
    """The gate on the holdout rows: skill floor, then the policy's comparison with the champion.

    The skill floor and its evidence use every row (the challenger's whole holdout: the same
    figure its training reports); the comparison with the champion uses the rows ``compared``
    (a boolean mask; default all), those the champion never trained on."""
    y_all = np.asarray(y_true).astype(int)
    challenger_all = np.asarray(challenger_proba, dtype="float64")
    skill = skill_report(y_all, challenger_all, ts, base_rate, resamples)
    gain, ci = skill["log_loss_gain_mnat"], skill.intervals["log_loss_gain_mnat"]
    evidence = (
        f"holdout log-loss gain {gain:+.1f} mnat [95% CI {ci.low:+.1f}, {ci.high:+.1f}] over the constant "
        f"base rate {base_rate:.3f}"
    )
    keep = np.ones(len(y_all), dtype=bool) if compared is None else np.asarray(compared, dtype=bool)
    y, challenger = y_all[keep], challenger_all[keep]
    ts = np.asarray(ts)[keep]
    accuracy = None
    comparisons: tuple[PairedComparison, ...] = ()
    if champion_proba is not None:
        champion = np.asarray(champion_proba, dtype="float64")[keep]
        accuracy = decide(y, (challenger >= threshold).astype(int), (champion >= threshold).astype(int), policy)
        comparisons = tuple(
            paired_loss_comparison(y, champion, challenger, ts, metric, resamples) for metric in ("log_loss", "brier")
        )
    if policy.skill_floor and not skill.skilful():
        sentence = f"Not promoted: the model has no skill over always predicting the base rate ({evidence})."
        return Verdict(False, sentence, policy.metric, skill, accuracy, None, None, None, comparisons)
    if champion_proba is None:
        sentence = f"Promoted as the first champion: it beats the constant base rate ({evidence})."
        return Verdict(True, sentence, policy.metric, skill, None, None, None, None)
    assert accuracy is not None
    if policy.metric == "accuracy":
        margin = accuracy.margin if accuracy.margin is not None else 0.0
        verb = "Promoted" if accuracy.promote else "Champion kept"
        sentence = (
            f"{verb}: accuracy {accuracy.challenger_accuracy:.4f} vs the champion's {accuracy.champion_accuracy:.4f} "
            f"({margin:+.4f}; needs +{policy.min_margin} with McNemar p < {policy.alpha}, p = {accuracy.p_value:.3g}); "
            f"{evidence}."
        )
        return Verdict(
            accuracy.promote, sentence, "accuracy", skill, accuracy, margin, None, accuracy.p_value, comparisons
        )
    paired = next(c for c in comparisons if c.metric == policy.metric)  # the same paired bootstrap
    promote = paired.improvement >= policy.min_margin - _EPS and paired.p_value < policy.alpha
    unit = "mnat" if policy.metric == "log_loss" else "Brier"
    verb = "Promoted" if promote else "Champion kept"
    sentence = (
        f"{verb}: {policy.metric.replace('_', ' ')} better by {paired.improvement:+.4f} {unit} "
        f"[95% CI {paired.interval.low:+.4f}, {paired.interval.high:+.4f}] (needs {policy.min_margin} with "
        f"p < {policy.alpha}, p = {paired.p_value:.3g}); {evidence}."
    )
    return Verdict(
        promote,
        sentence,
        policy.metric,
        skill,
        accuracy,
        paired.improvement,
        (paired.interval.low, paired.interval.high),
        paired.p_value,
        comparisons,
    )
