"""Run the replay: candles from QuestDB, base signals, the running gRPC server, the memory learning.

``run_replay(ReplayConfig) -> ReplayReport`` trades the same candles three ways, with the same
fills and costs (``simulator``), in one pass over time (``drive_together``: each variant has its
own simulator; the server's candle history of a symbol, which the two variants that call it share,
only moves forward, so every answer is for the candle the replay is at):

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

Before anything runs, the server is asked (``GetModelInfo``) which model answers and which memory
store it writes. The served model's last training candle (labels' look-ahead included) must be
before the replay window starts (``check_model_window``), or the replay refuses
(``LookAheadError``); the store the replay learns on must be the server's (``check_same_store``),
or it refuses (``StoreMismatchError``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import pandas as pd

from mem_core.features import SERVING_HISTORY
from mem_core.questdb.store import read_candles
from mem_core.settings import DEFAULT_FEE_BPS, DEFAULT_SERVER_ADDRESS, DEFAULT_SLIPPAGE_BPS, QuestDBSettings
from mem_memory.backend import is_postgres
from mem_memory.rules.combine import combine, hold_rule, ml_support
from mem_pipelines.replay.base_strategy import BaseStrategyConfig, base_signals
from mem_pipelines.replay.learner import MemoryLearner
from mem_pipelines.replay.metrics import compute_metrics, equity_curve
from mem_pipelines.replay.report import EvolutionPoint, LearningEvent, ReplayReport, VariantResult
from mem_pipelines.replay.simulator import Candle, Costs, Order, Policy, Simulator, Trade, as_utc, drive_together
from mem_serving.client import (
    EnhancedSignal,
    MemClient,
    MemClientError,
    OutcomeLearning,
    ParameterSet,
    ReversalPrediction,
)
from mem_serving.client import ModelInfo as ServerModelInfo

CANDLE = pd.Timedelta(minutes=5)


class ReplayError(RuntimeError):
    """The replay cannot run as asked (no candles, no server, ...); nothing is reported."""


class LookAheadError(ReplayError):
    """The champion model saw data from inside (or after the start of) the replay window, or its
    training window is unknown; the replay refuses to run rather than report flattering numbers."""


class StoreMismatchError(ReplayError):
    """The memory store the replay would learn on is not the one the server writes; learning there
    would never reach the server's decisions, so the replay refuses."""


@dataclass(frozen=True)
class ModelInfo:
    """The served champion's training window. ``data_end`` is the last candle the training saw:
    the last labelled row plus the label horizon (its label looked that far ahead)."""

    version: str
    data_start: pd.Timestamp | None
    data_end: pd.Timestamp | None
    run_id: str = ""
    #: Why the server scores with no model ("" when it has one): the ML is silent in base + ML
    #: and in the full system, as EnhanceSignal is without a champion.
    absent_reason: str = ""

    @property
    def usable(self) -> bool:
        return not self.absent_reason


def served_model(info: ServerModelInfo, address: str = "") -> ModelInfo:
    """The model the server scores with, from its ``GetModelInfo`` answer; without one (no
    champion: the gate promotes only a model with skill) the replay runs with the ML silent, as
    the server decides then. Raises ``LookAheadError`` when a served model reports no training
    window. The replay's own registry plays no part: what counts is the model that answers."""
    where = f" at {address}" if address else ""
    if not info.ml_usable:
        return ModelInfo(version="", data_start=None, data_end=None, absent_reason=info.reason or "no model")
    window = info.training_window
    if window is None:
        raise LookAheadError(
            f"the server{where} serves model version {info.champion_version} without a recorded training window "
            f"(run {info.run_id or 'unknown'}): {info.reason}; refusing to replay"
        )
    return ModelInfo(
        version=info.champion_version,
        data_start=as_utc(window.first_candle) if window.first_candle is not None else None,
        data_end=as_utc(window.last_label_candle),
        run_id=info.run_id,
    )


def server_store(info: ServerModelInfo, requested: Path | None, address: str = "") -> Path:
    """The memory store to learn on: ``requested`` or, when None, the one the server reports. It
    must exist (the server created it); ``check_same_store`` compares identities once it is open."""
    where = f" at {address}" if address else ""
    served = info.memory_store
    if not served.store_id:
        raise StoreMismatchError(f"the server{where} does not report the identity of the memory store it writes")
    if requested is not None and is_postgres(requested):
        return Path(requested)  # a database: check_same_store compares the identities once open
    if requested is None and is_postgres(served.location):
        if "***@" in served.location:  # the server reports its URL without the password
            raise StoreMismatchError(
                f"the server{where} writes the PostgreSQL memory {served.location} (id {served.store_id}); "
                "give its URL with the credentials (--memory-db or MEM_MEMORY_DB)"
            )
        return Path(served.location)
    path = Path(requested) if requested is not None else Path(served.location)
    if not path.is_file():
        raise StoreMismatchError(
            f"no memory store at {path}, but the server{where} writes {served.location} (id {served.store_id}); "
            "give the server's store (--memory-db) or leave the option out to use it"
        )
    return path


def check_same_store(info: ServerModelInfo, path: Path, store_id: str, address: str = "") -> None:
    """The store opened at ``path`` (id ``store_id``) must be the one the server writes: the same
    id, and the same file when the server's path exists on this machine (a copy keeps the id)."""
    where = f" at {address}" if address else ""
    served = info.memory_store
    same = store_id == served.store_id
    theirs = Path(served.location)
    if same and not is_postgres(served.location) and theirs.is_file():
        same = os.path.samefile(path, theirs)
    if not same:
        raise StoreMismatchError(
            f"the replay would learn on the memory store {path} (id {store_id}), but the server{where} writes "
            f"{served.location} (id {served.store_id}): its learning would never reach the server's decisions; "
            "give the server's store (--memory-db) or leave the option out to use it"
        )


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
        *,
        shadow: bool = False,
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
    # Another base strategy: (symbol, candles) -> frame aligned with the candles with ``action``
    # ("BUY" | "SELL" | "") and ``confidence`` (e.g. the planted-edge experiment's signals, with a
    # ``description`` attribute for the report); None = the momentum + RSI strategy of ``base``.
    signals: Callable[[str, pd.DataFrame], pd.DataFrame] | None = None
    max_holding_bars: int = 24
    learn_every: int = 10
    shadow_outcomes: bool = True  # report what held signals would have done (LogOutcome shadow=True)
    incremental_candles: bool = True  # after a symbol's first call send only the newer candles
    history: int | None = None  # candles sent with each call; None = mem_core.features.SERVING_HISTORY
    memory_db: Path | None = None  # the server's store; None = the store the server reports (GetModelInfo)
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
    candle the training saw, the labels' look-ahead included — see ``served_model``) must be
    strictly before ``start``. An unknown window is refused too. No model: nothing to check."""
    if not model.usable:
        return
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
        self._sent: dict[str, int] = {}  # per symbol: row count of the candles already sent

    def _candles(self, symbol: str, candles: pd.DataFrame, history: int) -> pd.DataFrame:
        """The candles to send with a call at the last row of ``candles``: the first call of this
        policy for a symbol sends ``history`` candles; later ones (``cfg.incremental_candles``)
        only those after the previous call's, which the server merges into the history it holds
        for the symbol (contiguous, so its newest ``history`` candles, and every feature, are
        the same as if all were sent). The policies run together in time order
        (``drive_together``): whatever another policy sent is the same candles, never newer."""
        n = len(candles)
        before = self._sent.get(symbol)
        self._sent[symbol] = n
        if before is None or not self.cfg.incremental_candles or n - before >= history:
            return candles.iloc[-history:]
        return candles.iloc[before:]

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
    """The server must score with the champion whose training window was checked (or with none
    when it had none at the start)."""
    if got and got != expected:
        raise ReplayError(
            f"the server answered with model version {got}, not the champion {expected} whose training window was "
            "checked (a new champion during the replay?); rerun the replay"
        )


def _same_candle(symbol: str, expected: pd.Timestamp, got: datetime | None) -> None:
    """The server must answer for the candle the replay is at: a server already holding newer
    candles of the symbol (another caller, an earlier replay) answers for its newest one."""
    if got is not None and as_utc(got) != as_utc(expected):
        raise ReplayError(
            f"the server answered for the {symbol} candle of {as_utc(got).isoformat()}, not the replay's "
            f"{as_utc(expected).isoformat()}: it holds newer candles of {symbol} (another caller, or an earlier "
            "replay); replay against a server started for it (mem main does)"
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
        if self.model_version:
            ml = self.service.predict_reversal(symbol, self._candles(symbol, candles, self.history))
            _same_model(self.model_version, ml.model_version)
            _same_candle(symbol, candles["ts"].iloc[-1], ml.candle_ts)
            final = combine(sig[1], ml_support(sig[0], ml.confidence, ml.direction or None), None)
        else:  # no model served: the ML is silent (what EnhanceSignal does then)
            final = combine(sig[1], None, None)
        if hold_rule(sig[0], final, self.defaults.ml_confidence_min) == "HOLD":
            self.skipped += 1
            return None
        return self._order(symbol, sig[0], candles["ts"].iloc[-1], final)


class FullPolicy(_SignalPolicy):
    """The full system: EnhanceSignal decides; outcomes go back; learning runs as it goes.

    With ``cfg.shadow_outcomes`` a signal the server held is followed on paper, as the base
    strategy would have traded it (starting size, stop and target, same fills and costs, one paper
    position per symbol), and its result goes back as a shadow outcome at its exit candle, in time
    order with the real exits: the memory learns from the signals it held, not only from the ones
    it let through. Shadow positions are not trades of the full system (not in its metrics)."""

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
        self.paper = Simulator(cfg.costs, cfg.capital) if cfg.shadow_outcomes else None
        self.shadows = 0
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
        hist = self._candles(symbol, candles, self.history)
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
            if e.action == "HOLD" and self.paper is not None and self.paper.is_flat(symbol):
                self.paper.submit(self._order(symbol, sig[0], ts, sig[1], tag=e.decision_id))
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

    def on_candle(self, symbol: str, candle: Candle) -> None:
        if self.paper is not None:
            for trade in self.paper.on_candle(symbol, candle):
                self._shadow(trade)

    def finish(self) -> None:
        if self.paper is not None:
            for trade in self.paper.close_all():
                self._shadow(trade)

    def _shadow(self, trade: Trade) -> None:
        self.service.log_outcome(
            trade.tag,
            trade.entry_price,
            trade.exit_price,
            trade.size,
            trade.pnl,
            trade.pnl_pct,
            trade.exit_reason,
            trade.exit_ts,
            shadow=True,
        )
        self.shadows += 1
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
    strategy = cfg.signals or (lambda _symbol, candles: base_signals(candles, cfg.base))
    signals = {s: strategy(s, f) for s, f in frames.items()}
    defaults = defaults_from_parameters(service.get_parameters().values)
    grid = pd.DatetimeIndex(sorted({t for f in frames.values() for t in f["ts"] if cfg.start <= t < cfg.end}))

    variants: list[VariantResult] = []
    base = BasePolicy(cfg, signals, defaults)
    ml = MLFilterPolicy(cfg, signals, defaults, service, history, model.version)
    full = FullPolicy(cfg, signals, defaults, service, history, learner, model.version)
    policies: tuple[tuple[str, _SignalPolicy], ...] = (("base", base), ("base_ml", ml), ("full", full))
    # One pass over time for the three (each with its own simulator): the server's candle history
    # of a symbol, which base + ML and the full system share, only ever moves forward, so every
    # call is answered for the candle it brought (a policy run after another would restart from
    # an older point than the server holds, and be answered for the newer candles).
    driven = drive_together(frames, [(p, Simulator(cfg.costs, cfg.capital)) for _, p in policies], cfg.start, cfg.end)
    for (name, policy), result in zip(policies, driven, strict=True):
        trades = tuple(result.trades)
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
        model_data_end=model.data_end.isoformat() if model.data_end is not None else "",
        model_absent_reason=model.absent_reason,
        variants=variants,
        evolution=full.evolution,
        events=full.events,
        final_strategies=learner.final_strategies() if learner is not None else [],
        notes=[
            (
                str(getattr(cfg.signals, "description", "Base strategy: the caller's signals."))
                if cfg.signals is not None
                else f"Base strategy: momentum over {cfg.base.momentum_bars} candles beyond ±{cfg.base.momentum_threshold:g}, "
                f"RSI({cfg.base.rsi_period}) below {cfg.base.rsi_overbought:g} for BUY / above {cfg.base.rsi_oversold:g} for SELL."
            ),
            (
                f"Starting parameters (base and base + ML): size {defaults.size:g} of capital, stop {defaults.stop_pct:.2%}, "
                f"target {defaults.target_pct:.2%}, ML support needed {defaults.ml_confidence_min:g}; "
                f"max holding {cfg.max_holding_bars} candles."
            ),
            f"Learning step (pattern discovery + performance monitor) every {cfg.learn_every} outcomes of the full system"
            + (
                f" (its trades and the shadow outcomes of the signals it held: {full.shadows} shadows)."
                if full.paper is not None
                else "; held signals not followed (no shadow outcomes)."
            ),
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

    Before anything else it asks the server (``GetModelInfo``) which model answers and which
    memory store it writes: a model whose training window reaches the replay window
    (``LookAheadError``) or a store other than the server's (``StoreMismatchError``) stops it
    before the memory or QuestDB is touched. Start the server on a fresh store for a reproducible
    report. Deterministic: no randomness, no wall clock. Token and TLS as ``mem serve`` is
    configured (``MemClient.from_env``); a failed call stops the replay (``ReplayError``): a report
    with silently missing decisions would be wrong.
    """
    history = settings.history or SERVING_HISTORY
    address = settings.server
    try:
        with MemClient.from_env(address, settings.timeout_s) as client:
            info = client.get_model_info()
            model = served_model(info, address)
            check_model_window(model, settings.start)
            path = server_store(info, settings.memory_db, address)
            frames = load_frames(settings, history)
            with MemoryLearner.open(path) as learner:
                check_same_store(info, path, learner.engine.store.store_id, address)
                return replay_frames(settings, frames, client, model, learner, history)
    except MemClientError as exc:
        raise ReplayError(str(exc)) from None
