"""The champion/challenger gate against a real MLflow registry; verdicts read back from aliases,
version descriptions and tags.

Two kinds of models: real ones fitted by the training code (on pure noise, on data with a
signal) and echo models (tests/training/helpers.py) whose probabilities are set exactly by the
dataset's holdout rows, so accuracy, margin, McNemar's discordant counts and log loss are known.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mem_core import registry
from mem_core.feature_sets import SEED
from mem_pipelines.lib.gate import GatePolicy
from mem_pipelines.training.dataset import split_dataset
from mem_pipelines.training.gate_runner import GateError, run_gate
from mem_pipelines.training.mlflow_logging import train_and_log

from .helpers import (
    CHALLENGER_COL,
    CHAMPION_COL,
    Unscorable,
    champion,
    description,
    echo,
    gate_dataset,
    logit,
    register,
)


def _tags(uri: str, version: str) -> dict[str, str]:
    """The version's tags with the gate's evidence (its JSON artifact in the version's run)."""
    import mlflow

    from mem_pipelines.training.gate_runner import GATE_ARTIFACT

    mv = MlflowClient(uri).get_model_version(registry.MODEL_NAME, version)
    mlflow.set_tracking_uri(uri)
    details = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/{GATE_ARTIFACT}")
    assert details["version"] == version and details["gate.outcome"] == mv.tags["gate.outcome"]
    return {**details, **mv.tags}


@pytest.fixture
def champion_v1(mlflow_uri: str) -> str:
    version = register(mlflow_uri, echo(CHAMPION_COL))
    MlflowClient(mlflow_uri).set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, version)
    return version


def _market(days: int, signal: float, seed: int) -> pd.DataFrame:
    """Two symbols of 5-minute rows with the seed's feature columns; the label's log-odds are
    ``signal`` times the first feature (0: pure noise), positive rate ~30%."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2025-03-01", periods=days * 288, freq="5min", tz="UTC")
    parts = []
    for symbol in ("AAAUSDT", "BBBUSDT"):
        X = rng.normal(size=(len(ts), len(SEED.names)))
        p = 1 / (1 + np.exp(-(signal * X[:, 0] - 0.9)))
        part = pd.DataFrame(X, columns=list(SEED.names))
        part.insert(0, "ts", ts)
        part.insert(1, "symbol", symbol)
        part["label"] = (rng.random(len(ts)) < p).astype("int64")
        part["direction"] = "bullish"
        parts.append(part)
    return pd.concat(parts).sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


def _train(uri: str, data: pd.DataFrame) -> str:
    return train_and_log(data, tracking_uri=uri, estimator="hist_gb", feature_set="seed").version


def test_a_first_model_trained_on_pure_noise_is_not_promoted(mlflow_uri: str) -> None:
    data = _market(days=12, signal=0.0, seed=1)
    version = _train(mlflow_uri, data)
    outcome = run_gate(data, version, tracking_uri=mlflow_uri)
    assert not outcome.promoted and champion(mlflow_uri) is None
    assert (
        outcome.verdict.skill["log_loss_gain_mnat"] <= 0
        or outcome.verdict.skill.intervals["log_loss_gain_mnat"].low <= 0
    )
    assert description(mlflow_uri, version).startswith(outcome.verdict.sentence)
    assert outcome.verdict.sentence.startswith("Not promoted: the model has no skill")
    # a reviewer is warned in the version's description that the noise model beats no baseline
    assert "Warning: " in description(mlflow_uri, version)
    tags = _tags(mlflow_uri, version)
    assert (tags["gate.outcome"], tags["gate.promoted"]) == ("rejected", "false")
    assert tags["gate.verdict"] == outcome.verdict.sentence[:250]


def test_serving_without_the_refused_model_answers_with_the_ml_silent(mlflow_uri: str, tmp_path) -> None:
    """The noise model is refused, so the registry has no champion: a real server on it still
    decides (EnhanceSignal, the ML silent) and PredictReversal is FAILED_PRECONDITION."""
    import grpc

    from mem_serving.client import MemClient, MemClientError
    from tests.serving.stack import start_stack

    data = _market(days=12, signal=0.0, seed=1)
    assert not run_gate(data, _train(mlflow_uri, data), tracking_uri=mlflow_uri).promoted
    stack = start_stack(mlflow_uri, tmp_path / "memory.db")
    try:
        with MemClient(stack.address, timeout_s=10) as client:
            signal = client.enhance_signal("BTCUSDT", "BUY", 0.7, 100.0, pd.Timestamp.now(tz="UTC").to_pydatetime())
            with pytest.raises(MemClientError) as refused:
                client.predict_reversal("BTCUSDT")
            info = client.get_model_info()
    finally:
        stack.channel.close()
        stack.running.stop(grace=1.0)
    assert signal.ml_absent and "no champion model" in signal.ml_absent_reason and signal.ml_confidence is None
    assert signal.action == "BUY" and signal.confidence == pytest.approx(0.7)  # base alone (memory silent too)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION and "no champion model" in str(refused.value)
    assert not info.ml_usable and info.champion_version == ""


def test_a_skilful_first_model_is_promoted(mlflow_uri: str) -> None:
    data = _market(days=12, signal=1.0, seed=2)
    version = _train(mlflow_uri, data)
    outcome = run_gate(data, version, tracking_uri=mlflow_uri)
    assert outcome.promoted and champion(mlflow_uri) == version
    assert outcome.verdict.skill.intervals["log_loss_gain_mnat"].low > 0
    assert description(mlflow_uri, version).startswith(outcome.verdict.sentence)
    assert outcome.verdict.sentence.startswith("Promoted as the first champion")
    tags = _tags(mlflow_uri, version)
    assert (tags["gate.outcome"], tags["gate.promoted"], tags["gate.champion_version"]) == ("promoted", "true", "")
    base = float(data["label"].to_numpy()[split_dataset(data).train].mean())
    assert float(tags["gate.base_rate"]) == pytest.approx(base, abs=1e-6)


def test_two_points_ahead_and_significant_is_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(1000, 320, 300)  # +0.020 exactly, 20 discordant rows all for the challenger
    challenger = register(mlflow_uri, echo(CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert champion(mlflow_uri) == challenger != champion_v1
    tags = _tags(mlflow_uri, challenger)
    assert tags["gate.outcome"] == "promoted" and tags["gate.metric"] == "accuracy"
    assert float(tags["gate.accuracy_margin"]) == pytest.approx(0.02)
    assert float(tags["gate.mcnemar_p_value"]) < 0.05
    assert tags["gate.holdout_rows"] == "1000" and tags["gate.champion_version"] == champion_v1
    assert float(tags["gate.champion_accuracy"]) == pytest.approx(0.68)
    assert float(tags["gate.challenger_accuracy"]) == pytest.approx(0.70)
    assert description(mlflow_uri, challenger).startswith(outcome.verdict.sentence)
    assert outcome.verdict.sentence.startswith("Promoted: accuracy 0.7000 vs the champion's 0.6800")


def test_just_under_two_points_is_not_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(1000, 319, 300)  # +0.019, significant
    challenger = register(mlflow_uri, echo(CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert outcome.verdict.p_value is not None and outcome.verdict.p_value < 0.05
    assert champion(mlflow_uri) == champion_v1
    assert _tags(mlflow_uri, challenger)["gate.outcome"] == "rejected"
    assert description(mlflow_uri, challenger).startswith("Champion kept: accuracy 0.7000 vs the champion's 0.6810")
    # the reviewer sees the accuracy rule beside log loss and Brier on the same rows, and the override
    review = description(mlflow_uri, challenger).splitlines()
    assert review[1].startswith("Accuracy rule (the seed's): 0.7000 vs 0.6810 (+0.0190") and "not met" in review[1]
    assert re.match(rf"Log loss on the same {outcome.rows:,} holdout rows: challenger (better|worse) by \d", review[2])
    assert re.match(
        rf"Brier score on the same {outcome.rows:,} holdout rows: challenger (better|worse) by \d", review[3]
    )
    assert "[95% CI " in review[2] and "[95% CI " in review[3]
    assert review[-1] == f'To promote by hand: mem model promote {challenger} --reason "<why>"'
    assert outcome.review.splitlines()[1:] == review[1:]


def test_two_points_on_too_few_rows_is_not_promoted(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(100, 32, 30)  # +0.02 but only 2 discordant rows
    challenger = register(mlflow_uri, echo(CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert outcome.verdict.improvement == pytest.approx(0.02) and outcome.verdict.p_value >= 0.05
    assert champion(mlflow_uri) == champion_v1
    # the same rows pass with a looser, configured alpha
    run_gate(data, challenger, tracking_uri=mlflow_uri, policy=GatePolicy(alpha=0.6))
    assert champion(mlflow_uri) == challenger


def test_a_challenger_without_skill_is_refused_even_when_more_accurate(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(1000, 320, 300)
    hold = split_dataset(data).holdout
    # the challenger is right on the same rows as before but certain: each of its 300 errors costs 34 nats
    col = data.columns.get_loc(SEED.names[CHALLENGER_COL])
    data.iloc[hold, col] = np.sign(data.iloc[hold, col].to_numpy()) * 35.0
    challenger = register(mlflow_uri, echo(CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert (
        outcome.verdict.accuracy is not None and outcome.verdict.accuracy.promote
    )  # the accuracy rule alone would promote
    assert not outcome.promoted and champion(mlflow_uri) == champion_v1
    assert description(mlflow_uri, challenger).startswith("Not promoted: the model has no skill")


@pytest.mark.parametrize(("metric", "margin", "unit"), [("log_loss", 5.0, "mnat"), ("brier", 0.002, "Brier")])
def test_a_challenger_better_by_the_configured_metric_and_significant_is_promoted(
    mlflow_uri: str, champion_v1: str, metric: str, margin: float, unit: str
) -> None:
    """Both models say "no reversal" on every row (equal accuracy): only the probabilities differ."""
    data = gate_dataset(2000, 0, 0)
    hold = split_dataset(data).holdout
    y = data["label"].to_numpy()[hold]
    rng = np.random.default_rng(5)
    informative = rng.random(len(hold)) < 0.7
    champion_p = np.where(informative, np.where(y == 1, 0.45, 0.35), 0.40)
    challenger_p = np.where(informative, np.where(y == 1, 0.49, 0.25), 0.40)
    data.iloc[hold, data.columns.get_loc(SEED.names[CHAMPION_COL])] = logit(champion_p)
    data.iloc[hold, data.columns.get_loc(SEED.names[CHALLENGER_COL])] = logit(challenger_p)
    challenger = register(mlflow_uri, echo(CHALLENGER_COL))

    by_accuracy = run_gate(data, challenger, tracking_uri=mlflow_uri)
    assert not by_accuracy.promoted and by_accuracy.verdict.improvement == pytest.approx(0.0)
    assert description(mlflow_uri, challenger).startswith("Champion kept: accuracy")

    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri, policy=GatePolicy(metric=metric, min_margin=margin))
    assert outcome.promoted and champion(mlflow_uri) == challenger
    v = outcome.verdict
    assert v.improvement is not None and v.improvement >= margin and v.p_value is not None and v.p_value < 0.05
    assert description(mlflow_uri, challenger).startswith(v.sentence)
    assert v.sentence.startswith(f"Promoted: {metric.replace('_', ' ')} better by +") and unit in v.sentence
    tags = _tags(mlflow_uri, challenger)
    assert tags["gate.metric"] == metric and tags["gate.outcome"] == "promoted"


def test_failure_while_scoring_keeps_the_champion(mlflow_uri: str, champion_v1: str) -> None:
    data = gate_dataset(1000, 320, 100)  # would be promoted by far
    broken = register(mlflow_uri, echo(3, Unscorable))  # NaN probabilities
    with pytest.raises(GateError):
        run_gate(data, broken, tracking_uri=mlflow_uri)
    assert champion(mlflow_uri) == champion_v1
    tags = _tags(mlflow_uri, broken)
    assert tags["gate.outcome"] == "error" and "unusable probabilities" in tags["gate.error"]
    assert description(mlflow_uri, broken).startswith("Not promoted: the gate failed")
    assert f"the champion stays version {champion_v1}" in description(mlflow_uri, broken)


def test_rows_the_champion_trained_on_are_left_out(mlflow_uri: str, champion_v1: str) -> None:
    """A champion trained on a later window must not be scored on rows it has seen."""
    data = gate_dataset(1000, 320, 300, spread=False)
    split = split_dataset(data)
    client = MlflowClient(mlflow_uri)
    run_id = client.get_model_version(registry.MODEL_NAME, champion_v1).run_id
    seen_until = data["ts"].iloc[split.holdout[399]]
    client.set_tag(run_id, "split.train_end", seen_until.isoformat())
    challenger = register(mlflow_uri, echo(CHALLENGER_COL))
    outcome = run_gate(data, challenger, tracking_uri=mlflow_uri)
    # rows up to seen_until + 10 candles are excluded: 400 + 10 of 1000
    assert outcome.rows == 590 and outcome.rows_seen_by_champion == 410
    tags = _tags(mlflow_uri, challenger)
    assert tags["gate.holdout_rows_seen_by_champion"] == "410"
    # the champion's extra errors were all in the first 320 rows: on the rest both are equal
    decision = outcome.verdict.accuracy
    assert decision is not None and decision.rows == 590 and decision.margin == pytest.approx(0.0)
    assert champion(mlflow_uri) == champion_v1
    # the skill figure is the challenger's whole holdout (what its training reports), named as such
    assert outcome.verdict.skill.rows == 1000
    assert "compared on the 590 of 1,000 holdout rows it never trained on" in outcome.verdict.sentence
