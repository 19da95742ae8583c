"""The champion gate against the registry: champion and challenger scored on the same holdout
rows of the current dataset, each on its own feature set; ``mem_pipelines.lib.gate.judge``
decides (the skill floor, then the configured comparison); alias ``champion`` moves only per
its verdict. The verdict's sentence (with a warning when the challenger does not beat its
majority baseline or the constant base rate on these rows) becomes the challenger version's
description and, with its
evidence, its ``gate.*`` tags. Any error leaves the alias where it was, is recorded the same way
and re-raised as ``GateError``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mem_core import labels as label_defs
from mem_core import registry
from mem_pipelines.lib.evaluation import HOLDOUT_FRACTION, baseline_accuracy
from mem_pipelines.lib.gate import GatePolicy, Verdict, judge
from mem_pipelines.training.dataset import split_dataset
from mem_pipelines.training.fit import limited_threads
from mem_pipelines.training.mlflow_logging import baseline_warning

log = logging.getLogger(__name__)

GATE_TAG_PREFIX = "gate."
_DEFAULT_POLICY = GatePolicy()


class GateError(RuntimeError):
    """The gate could not reach a verdict; the champion alias was left untouched."""


@dataclass(frozen=True)
class GateOutcome:
    verdict: Verdict
    challenger_version: str
    champion_before: str | None
    champion_after: str | None
    holdout_start: str
    #: Holdout rows both models were scored on, and those left out (seen by the champion).
    rows: int
    rows_seen_by_champion: int
    base_rate: float

    @property
    def promoted(self) -> bool:
        return self.verdict.promote

    @property
    def review(self) -> str:
        """The verdict for a reviewer (``Verdict.review``): what the version's description says."""
        return self.verdict.review(self.challenger_version, self.champion_before)


def run_gate(
    dataset: pd.DataFrame,
    challenger_version: str,
    *,
    tracking_uri: str,
    policy: GatePolicy = _DEFAULT_POLICY,
    holdout_fraction: float = HOLDOUT_FRACTION,
    horizon: int = label_defs.HORIZON,
    model_name: str = registry.MODEL_NAME,
) -> GateOutcome:
    """Score champion and challenger on the same holdout rows; move ``champion`` per the verdict.

    The constant the skill floor compares with is the positive rate of the challenger's training
    rows (the dataset's training part). Moving the alias is the very last step: any error before
    it leaves the champion in place, is recorded on the challenger's version (description,
    ``gate.outcome=error``, ``gate.error``) and re-raised as ``GateError``.
    """
    client = registry.client(tracking_uri)
    champion_before: str | None = None
    try:
        champion_mv = registry.version_by_alias(registry.CHAMPION, tracking_uri, model_name)
        champion_before = None if champion_mv is None else str(champion_mv.version)
        if champion_before == str(challenger_version):
            raise GateError(f"version {challenger_version} is already the champion")
        split = split_dataset(dataset, holdout_fraction, horizon)
        rows, seen = _rows_unseen_by(client, champion_mv, dataset, split.holdout, horizon)
        if len(rows) == 0:
            raise GateError(f"every holdout row was in the champion's (v{champion_before}) training data")
        # the skill floor on the whole holdout (the figure the training reports); the comparison
        # with the champion on the rows it never trained on
        scored = dataset.iloc[split.holdout]
        compared = np.isin(split.holdout, rows)
        y = dataset["label"].to_numpy(dtype="int64")
        base_rate = float(y[split.train].mean())
        challenger = registry.load_version(challenger_version, tracking_uri, model_name)
        challenger_proba = _proba(challenger, scored)
        champion_proba = None
        if champion_before is not None:
            champion_proba = _proba(registry.load_version(champion_before, tracking_uri, model_name), scored)
        verdict = judge(
            y[split.holdout],
            challenger_proba,
            champion_proba,
            scored["ts"].to_numpy(),
            base_rate,
            policy,
            compared=compared,
        )
        if seen:
            verdict = replace(
                verdict,
                sentence=f"{verdict.sentence} The champion is compared on the {len(rows):,} of {len(split.holdout):,} "
                f"holdout rows it never trained on.",
            )
        tags = {
            **verdict.tags(),
            "gate.outcome": "promoted" if verdict.promote else "rejected",
            "gate.champion_version": champion_before or "",
            "gate.holdout_rows": str(len(rows)),
            "gate.holdout_rows_seen_by_champion": str(seen),
            "gate.holdout_start": split.holdout_start.isoformat(),
            "gate.base_rate": f"{base_rate:.6f}",
            "gate.min_margin": str(policy.min_margin),
            "gate.alpha": str(policy.alpha),
            "gate.challenger_accuracy": f"{verdict.skill['accuracy']:.6f}",
        }
        if verdict.accuracy is not None:
            acc = verdict.accuracy
            tags.update(
                {
                    "gate.champion_accuracy": f"{acc.champion_accuracy:.6f}",
                    "gate.accuracy_margin": f"{acc.margin:.6f}",
                    "gate.mcnemar_p_value": f"{acc.p_value:.6g}",
                    "gate.mcnemar_test": acc.test or "",
                }
            )
        record_gate(client, model_name, str(challenger_version), tags)
        warning = baseline_warning(
            float(verdict.skill["accuracy"]),
            baseline_accuracy(y[split.holdout]),
            float(verdict.skill["log_loss_gain_mnat"]),
        )
        # the sentence (and its warning), the accuracy rule beside log loss and Brier on the same
        # rows, and how to override the gate by hand (``Verdict.review``)
        first, _, rest = verdict.review(str(challenger_version), champion_before).partition("\n")
        description = (f"{first} {warning}" if warning else first) + (f"\n{rest}" if rest else "")
        client.update_model_version(model_name, str(challenger_version), description=description)
        if verdict.promote:
            client.set_registered_model_alias(model_name, registry.CHAMPION, str(challenger_version))
    except Exception as exc:
        _record_failure(client, model_name, challenger_version, champion_before, exc)
        if isinstance(exc, GateError):
            raise
        raise GateError(
            f"gate failed for version {challenger_version}; champion kept at {champion_before}: {exc}"
        ) from exc
    after = registry.version_by_alias(registry.CHAMPION, tracking_uri, model_name)
    return GateOutcome(
        verdict,
        str(challenger_version),
        champion_before,
        None if after is None else str(after.version),
        split.holdout_start.isoformat(),
        len(rows),
        seen,
        base_rate,
    )


def _rows_unseen_by(
    client: Any, champion_mv: Any, dataset: pd.DataFrame, holdout: np.ndarray, horizon: int
) -> tuple[np.ndarray, int]:
    """Holdout rows the champion never trained on (nor on a label reaching them).

    A champion trained on another window (a data scientist's custom run) may have trained on part
    of today's holdout; those rows would flatter it. Rows up to its ``split.train_end`` + H candles
    are left out of the comparison. Champions without that tag are compared on every row.
    """
    if champion_mv is None or not champion_mv.run_id:
        return holdout, 0
    train_end = client.get_run(champion_mv.run_id).data.tags.get("split.train_end")
    if not train_end:
        return holdout, 0
    stamps = pd.Series(pd.unique(dataset["ts"])).sort_values()
    bar = stamps.diff().median() if len(stamps) > 1 else pd.Timedelta(0)
    end = pd.Timestamp(train_end)
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    ts = pd.to_datetime(dataset["ts"].iloc[holdout], utc=True)
    keep = (ts > end + horizon * bar).to_numpy()
    return holdout[keep], int((~keep).sum())


def _proba(model: registry.LoadedModel, rows: pd.DataFrame) -> np.ndarray:
    """P(reversal) of ``model`` on ``rows``, read in the columns of its own feature set."""
    missing = [name for name in model.feature_names if name not in rows.columns]
    if missing:
        raise GateError(
            f"version {model.version} expects features {list(model.feature_names)}; the dataset lacks {missing}"
        )
    X = model.feature_set.matrix(rows)
    with limited_threads():
        proba = np.asarray(model.predict_proba(X), dtype="float64")
    if proba.shape != (len(X),) or not np.isfinite(proba).all() or (proba < 0).any() or (proba > 1).any():
        raise GateError(f"version {model.version} returned unusable probabilities {proba.shape}")
    return proba


#: The gate's one tag on a version (promoted, rejected or error); the rest of its evidence is the
#: JSON artifact ``GATE_ARTIFACT`` of the version's training run (a version keeps a few tags).
OUTCOME_TAG = GATE_TAG_PREFIX + "outcome"
GATE_ARTIFACT = "gate_verdict.json"


def record_gate(client: Any, model_name: str, version: str, details: dict[str, str]) -> None:
    """Tag ``version`` with the gate's outcome and write every detail to ``GATE_ARTIFACT``."""
    mv = client.get_model_version(model_name, version)
    if mv.run_id:
        client.log_dict(mv.run_id, {"version": version, **details}, GATE_ARTIFACT)
    client.set_model_version_tag(model_name, version, OUTCOME_TAG, details.get(OUTCOME_TAG, ""))


def _record_failure(client: Any, model_name: str, version: str, champion: str | None, exc: Exception) -> None:
    message = f"{type(exc).__name__}: {exc}"[:4000]
    try:
        details = {OUTCOME_TAG: "error", GATE_TAG_PREFIX + "promoted": "false", GATE_TAG_PREFIX + "error": message}
        record_gate(client, model_name, str(version), details)
        kept = f"the champion stays version {champion}" if champion else "there is no champion"
        client.update_model_version(
            model_name, str(version), description=f"Not promoted: the gate failed ({message}); {kept}."
        )
    except Exception:  # the original error is what must surface
        log.exception("could not record the gate failure on version %s", version)
