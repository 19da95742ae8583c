"""Run the replay: candles from QuestDB, base signals, the running gRPC server, the memory learning.

``run_replay(ReplayConfig) -> ReplayReport`` trades the same candles three times, with the same
fills and costs (``simulator``):

1. ``base``    — every base signal (``base_strategy``) is traded with the starting parameters
   (size, stop, target) the server reports before the replay.
2. ``base_ml`` — memory off: a base signal is traded only when the server's model supports it
   (PredictReversal; the memory engine's own combination rule with the memory silent, see
   ``MLFilterPolicy``). Nothing is written to memory.
3. ``full``    — every base signal goes to EnhanceSignal with the candle history the features need;
   the answer's action, size, stop and target are acted on (HOLD = no trade). Each exit goes back
   with LogOutcome, in replay-time order, before any later decision; every ``learn_every``
   outcomes the learning step the Dagster sensors trigger (pattern discovery, performance monitor)
   runs in-process on the same memory store, so later decisions see what was learned.

Before anything runs, the champion model's training window is checked: its last training candle
must be before the replay window starts (``check_model_window``), or the replay refuses
(``LookAheadError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from mem_core import registry
from mem_core.features import SERVING_HISTORY
from mem_core.questdb.store import read_candles
from mem_core.settings import DEFAULT_FEE_BPS, DEFAULT_SERVER_ADDRESS, DEFAULT_SLIPPAGE_BPS, QuestDBSettings
from mem_memory.rules.combine import combine, hold_rule, ml_support
from mem_pipelines.replay.base_strategy import BaseStrategyConfig, base_signals
from mem_pipelines.replay.learner import MemoryLearner
from mem_pipelines.replay.metrics import compute_metrics, equity_curve
from mem_pipelines.replay.report import EvolutionPoint, LearningEvent, ReplayReport, VariantResult
from mem_pipelines.replay.simulator import Costs, Order, Policy, Simulator, Trade, as_utc, drive
from mem_serving.client import (
    EnhancedSignal,
    MemClient,
    MemClientError,
    OutcomeLearning,
    ParameterSet,
    ReversalPrediction,
)

CANDLE = pd.Timedelta(minutes=5)


class ReplayError(RuntimeError):
    """The replay cannot run as asked (no candles, no server, ...); nothing is reported."""


class LookAheadError(ReplayError):
    """The champion model saw data from inside (or after the start of) the replay window, or its
    training window is unknown; the replay refuses to run rather than report flattering numbers."""


@dataclass(frozen=True)
class ModelInfo:
    """The champion's training window. ``data_end`` is the last candle the training saw: the last
    labelled row plus the label horizon (its label looked that far ahead)."""

    version: str
    data_start: pd.Timestamp | None
    data_end: pd.Timestamp
    run_id: str = ""


def champion_info(tracking_uri: str | None = None) -> ModelInfo:
    """The champion's version and training window, from its MLflow run's lineage params
    (``data.start``, ``data.end`` = the last labelled row, ``label.horizon``; see
    ``mem_pipelines.training.dataset.lineage``). Raises ``ReplayError`` when there is no champion
    and ``LookAheadError`` when its window is not recorded."""
    uri = tracking_uri or registry.tracking_uri()
    mv = registry.version_by_alias(registry.CHAMPION, uri)
    if mv is None:
        raise ReplayError(f"no @{registry.CHAMPION} model in {uri}; train one first (the pipeline's gate)")
    run = registry.client(uri).get_run(mv.run_id)
    lineage = {**run.data.tags, **run.data.params}
    if "data.end" not in lineage:
        raise LookAheadError(f"model version {mv.version}: its run {mv.run_id} records no data.end; refusing to replay")
    horizon = int(lineage.get("label.horizon", "0") or 0)
    end = as_utc(lineage["data.end"]) + horizon * CANDLE
    start = as_utc(lineage["data.start"]) if lineage.get("data.start") else None
    return ModelInfo(version=str(mv.version), data_start=start, data_end=end, run_id=mv.run_id)


class SignalService(Protocol):
    """The server as the replay sees it: the calls of ``mem_serving.client.MemClient`` it makes."""

    def get_parameters(self) -> ParameterSet: ...

    def predict_reversal(self, symbol: str, candles: pd.DataFrame | None = None) -> ReversalPrediction: ...

    def enhance_signal(
        self,
        symbol: str,
        action: str,
        base_confidence: float,
        price: float,
        time: datetime,
        *,
        strategy: str = "",
        candles: pd.DataFrame | None = None,
        ml: ReversalPrediction | None = None,
        session_id: str = "",
        market_context: Mapping[str, str] | None = None,
    ) -> EnhancedSignal: ...

    def log_outcome(
        self,
        decision_id: str,
        entry_price: float,
        exit_price: float,
        size: float,
        pnl: float,
        pnl_pct: float,
        exit_reason: str,
        time: datetime,
    ) -> OutcomeLearning: ...


class Learner(Protocol):
    """The learning the Dagster sensors trigger, run in-process on the server's memory store."""

    def step(self, now: pd.Timestamp) -> list[LearningEvent]: ...

    def snapshot(self, now: pd.Timestamp, outcomes: int) -> EvolutionPoint: ...

    def final_strategies(self) -> list[dict[str, object]]: ...


@dataclass(frozen=True)
class ReplayConfig:
    """Everything a replay depends on; the same config on the same data gives the same report."""

    symbols: tuple[str, ...]
    start: pd.Timestamp
    end: pd.Timestamp
    server: str = DEFAULT_SERVER_ADDRESS
    fee_bps: float = DEFAULT_FEE_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    capital: float = 10_000.0
    base: BaseStrategyConfig = field(default_factory=BaseStrategyConfig)
    max_holding_bars: int = 24
    learn_every: int = 10
    history: int | None = None  # candles sent with each call; None = mem_core.features.SERVING_HISTORY
    memory_db: Path | None = None  # the server's store; None = MEM_MEMORY_DB or project_paths().memory_db
    tracking_uri: str | None = None  # MLflow; None = mem_core.registry.tracking_uri()
    questdb: QuestDBSettings | None = None  # None = QuestDBSettings.from_env()
    timeout_s: float = 30.0
    session_id: str = "replay"

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(s.strip().upper() for s in self.symbols if s.strip()))
        object.__setattr__(self, "start", as_utc(self.start))
        object.__setattr__(self, "end", as_utc(self.end))
        if not self.symbols:
            raise ValueError("symbols: give at least one symbol")
        if not self.start < self.end:
            raise ValueError("start must be before end")
        if self.learn_every < 1 or self.max_holding_bars < 1:
            raise ValueError("learn_every and max_holding_bars must be >= 1")
        Costs(self.fee_bps, self.slippage_bps)  # validates

    @property
    def costs(self) -> Costs:
        return Costs(self.fee_bps, self.slippage_bps)


# --------------------------------------------------------------------------- the model's window
def check_model_window(model: ModelInfo, start: pd.Timestamp) -> None:
    """Refuse a model whose training data reaches the replay window: ``model.data_end`` (the last
    candle the training saw, the labels' look-ahead included — see ``champion_info``) must be
    strictly before ``start``. An unknown window is refused too."""
    if model.data_end is None or pd.isna(model.data_end):
        raise LookAheadError(
            f"model version {model.version}: training window unknown (no data_end); refusing to replay"
        )
    if model.data_end >= start:
        raise LookAheadError(
            f"model version {model.version} was trained on data up to {model.data_end.isoformat()}, "
            f"which is not before the replay window's start {start.isoformat()}: its scores would use the future"
        )


# --------------------------------------------------------------------------- policies
@dataclass(frozen=True)
class Defaults:
    size: float
    stop_pct: float
    target_pct: float
    ml_confidence_min: float


def defaults_from_parameters(params: Mapping[str, float]) -> Defaults:
    try:
        return Defaults(
            size=float(params["position_size"]),
            stop_pct=float(params["stop_loss_pct"]),
            target_pct=float(params["take_profit_pct"]),
            ml_confidence_min=float(params["ml_confidence_min"]),
        )
    except KeyError as exc:
        raise ReplayError(f"the server's parameters lack {exc.args[0]!r}") from None


class _SignalPolicy(Policy):
    def __init__(self, cfg: ReplayConfig, signals: Mapping[str, pd.DataFrame], defaults: Defaults) -> None:
        self.cfg = cfg
        self.signals = {s: (f["action"].to_numpy(), f["confidence"].to_numpy()) for s, f in signals.items()}
        self.defaults = defaults
        self.seen = 0
        self.skipped = 0

    def _signal(self, symbol: str, index: int) -> tuple[str, float] | None:
        action, conf = self.signals[symbol]
        if action[index] == "":
            return None
        self.seen += 1
        return str(action[index]), float(conf[index])

    def _order(
        self,
        symbol: str,
        side: str,
        ts: pd.Timestamp,
        conf: float,
        size: float | None = None,
        stop_pct: float | None = None,
        target_pct: float | None = None,
        tag: str = "",
    ) -> Order:
        d = self.defaults
        return Order(
            symbol,
            side,
            ts,
            size or d.size,
            stop_pct or d.stop_pct,
            target_pct or d.target_pct,
            self.cfg.max_holding_bars,
            tag=tag,
            confidence=conf,
        )


def _same_model(expected: str, got: str) -> None:
    """The server must score with the champion whose training window was checked."""
    if expected and got and got != expected:
        raise ReplayError(
            f"the server answered with model version {got}, not the champion {expected} whose training window was "
            "checked (a new champion during the replay?); rerun the replay"
        )


class BasePolicy(_SignalPolicy):
    def decide(self, symbol, index, candles):
        sig = self._signal(symbol, index)
        if sig is None:
            return None
        return self._order(symbol, sig[0], candles["ts"].iloc[-1], sig[1])


class MLFilterPolicy(_SignalPolicy):
    """Base + ML with memory off: the memory engine's own rule with the memory silent —
    ``final = combine(base, ml_support, None)`` (0.4·base + 0.3·ML, renormalised) and HOLD below the
    starting ``ml_confidence_min`` (``mem_memory.rules.combine``); size/stop/target are the
    starting parameters. ML support: a predicted reversal towards the signal's side supports it
    with its probability, one against it with 1 - probability."""

    def __init__(self, cfg, signals, defaults, service: SignalService, history: int, model_version: str = "") -> None:
        super().__init__(cfg, signals, defaults)
        self.service = service
        self.history = history
        self.model_version = model_version

    def decide(self, symbol, index, candles):
        sig = self._signal(symbol, index)
        if sig is None:
            return None
        ml = self.service.predict_reversal(symbol, candles.iloc[-self.history :])
        _same_model(self.model_version, ml.model_version)
        final = combine(sig[1], ml_support(sig[0], ml.confidence, ml.direction or None), None)
        if hold_rule(sig[0], final, self.defaults.ml_confidence_min) == "HOLD":
            self.skipped += 1
            return None
        return self._order(symbol, sig[0], candles["ts"].iloc[-1], final)


class FullPolicy(_SignalPolicy):
    """The full system: EnhanceSignal decides; outcomes go back; learning runs as it goes."""

    def __init__(
        self,
        cfg,
        signals,
        defaults,
        service: SignalService,
        history: int,
        learner: Learner | None,
        model_version: str = "",
    ) -> None:
        super().__init__(cfg, signals, defaults)
        self.service = service
        self.history = history
        self.learner = learner
        self.model_version = model_version
        self.outcomes = 0
        self.since_learning = 0
        self.events: list[LearningEvent] = []
        self.evolution: list[EvolutionPoint] = []

    def decide(self, symbol, index, candles):
        sig = self._signal(symbol, index)
        if sig is None:
            return None
        last = candles.iloc[-1]
        ts = last["ts"]
        hist = candles.iloc[-self.history :]
        # No ML prediction passed: the server predicts from the same candles itself.
        e = self.service.enhance_signal(
            symbol,
            sig[0],
            sig[1],
            float(last["close"]),
            ts,
            strategy=self.cfg.base.name,
            candles=hist,
            session_id=self.cfg.session_id,
        )
        _same_model(self.model_version, e.model_version)
        if e.action not in ("BUY", "SELL") or not e.size > 0:
            self.skipped += 1
            return None
        price = float(last["close"])
        stop_pct = abs(price - e.stop_loss) / price if e.stop_loss > 0 else None
        target_pct = abs(e.take_profit - price) / price if e.take_profit > 0 else None
        return self._order(
            symbol, e.action, ts, e.confidence, e.size, stop_pct or None, target_pct or None, tag=e.decision_id
        )

    def on_exit(self, trade: Trade) -> None:
        if not trade.tag:
            raise ReplayError("a full-system trade without a decision id cannot be reported")
        self.service.log_outcome(
            trade.tag,
            trade.entry_price,
            trade.exit_price,
            trade.size,
            trade.pnl,
            trade.pnl_pct,
            trade.exit_reason,
            trade.exit_ts,
        )
        self.outcomes += 1
        self.since_learning += 1

    def after_step(self, ts: pd.Timestamp) -> None:
        if self.learner is not None and self.since_learning >= self.cfg.learn_every:
            self.learn(ts)

    def learn(self, ts: pd.Timestamp) -> None:
        assert self.learner is not None
        self.since_learning = 0
        # The learning happens at the close of candle ts (after its exits), in replay time.
        now = ts + CANDLE
        self.events.extend(self.learner.step(now))
        self.evolution.append(self.learner.snapshot(now, self.outcomes))


# --------------------------------------------------------------------------- the run
def replay_frames(
    cfg: ReplayConfig,
    frames: Mapping[str, pd.DataFrame],
    service: SignalService,
    model: ModelInfo,
    learner: Learner | None,
    history: int,
) -> ReplayReport:
    """The three variants over candle frames already loaded (each may start before ``cfg.start``:
    warm-up). Pure apart from the calls to ``service`` and ``learner``."""
    check_model_window(model, cfg.start)
    frames = {s: frames[s] for s in cfg.symbols}
    for s, f in frames.items():
        inside = f[(f["ts"] >= cfg.start) & (f["ts"] < cfg.end)]
        if inside.empty:
            raise ReplayError(f"no candles of {s} in [{cfg.start.isoformat()}, {cfg.end.isoformat()})")
        if int((f["ts"] < cfg.start).sum()) < max(history, cfg.base.warmup):
            raise ReplayError(
                f"{s}: fewer than {max(history, cfg.base.warmup)} candles before the window start for warm-up"
            )
    signals = {s: base_signals(f, cfg.base) for s, f in frames.items()}
    defaults = defaults_from_parameters(service.get_parameters().values)
    grid = pd.DatetimeIndex(sorted({t for f in frames.values() for t in f["ts"] if cfg.start <= t < cfg.end}))

    def run(policy: Policy) -> list[Trade]:
        return drive(frames, policy, Simulator(cfg.costs, cfg.capital), cfg.start, cfg.end).trades

    variants: list[VariantResult] = []
    base = BasePolicy(cfg, signals, defaults)
    ml = MLFilterPolicy(cfg, signals, defaults, service, history, model.version)
    full = FullPolicy(cfg, signals, defaults, service, history, learner, model.version)
    for name, policy in (("base", base), ("base_ml", ml), ("full", full)):
        trades = tuple(run(policy))
        variants.append(
            VariantResult(
                name,
                trades,
                compute_metrics(trades, cfg.capital, grid),
                equity_curve(trades, cfg.capital, grid),
                signals=policy.seen,
                skipped=policy.skipped,
            )
        )
    if learner is not None and full.since_learning:
        full.learn(grid[-1])
    return ReplayReport(
        symbols=cfg.symbols,
        start=cfg.start,
        end=cfg.end,
        fee_bps=cfg.fee_bps,
        slippage_bps=cfg.slippage_bps,
        capital=cfg.capital,
        model_version=model.version,
        model_data_end=model.data_end.isoformat(),
        variants=variants,
        evolution=full.evolution,
        events=full.events,
        final_strategies=learner.final_strategies() if learner is not None else [],
        notes=[
            (
                f"Base strategy: momentum over {cfg.base.momentum_bars} candles beyond ±{cfg.base.momentum_threshold:g}, "
                f"RSI({cfg.base.rsi_period}) below {cfg.base.rsi_overbought:g} for BUY / above {cfg.base.rsi_oversold:g} for SELL."
            ),
            (
                f"Starting parameters (base and base + ML): size {defaults.size:g} of capital, stop {defaults.stop_pct:.2%}, "
                f"target {defaults.target_pct:.2%}, ML support needed {defaults.ml_confidence_min:g}; "
                f"max holding {cfg.max_holding_bars} candles."
            ),
            f"Learning step (pattern discovery + performance monitor) every {cfg.learn_every} outcomes of the full system.",
        ],
    )


def load_frames(cfg: ReplayConfig, history: int) -> dict[str, pd.DataFrame]:
    """Candles of each symbol from QuestDB: the window plus enough warm-up before it."""
    settings = cfg.questdb or QuestDBSettings.from_env()
    warm = max(history, cfg.base.warmup)
    frames = {}
    for symbol in cfg.symbols:
        frame = read_candles(settings, symbol, cfg.start - 2 * warm * CANDLE, cfg.end)
        if frame.empty:
            raise ReplayError(f"QuestDB has no candles of {symbol} before {cfg.end.isoformat()}; ingest them first")
        frames[symbol] = frame.reset_index(drop=True)
    return frames


def run_replay(settings: ReplayConfig) -> ReplayReport:
    """Replay ``settings.symbols`` over ``[settings.start, settings.end)`` through the server at
    ``settings.server`` and return the three-way report (``report.write(folder)`` for files).

    The memory store must be the one the server uses (``settings.memory_db``); start from a fresh
    one for a reproducible report. Deterministic: no randomness, no wall clock. Token and TLS
    as ``mem serve`` is configured (``MemClient.from_env``); a failed call stops the replay
    (``ReplayError``): a report with silently missing decisions would be wrong.
    """
    model = champion_info(settings.tracking_uri)
    check_model_window(model, settings.start)
    history = settings.history or SERVING_HISTORY
    frames = load_frames(settings, history)
    try:
        with (
            MemClient.from_env(settings.server, settings.timeout_s) as client,
            MemoryLearner.open(settings.memory_db) as learner,
        ):
            return replay_frames(settings, frames, client, model, learner, history)
    except MemClientError as exc:
        raise ReplayError(str(exc)) from None
