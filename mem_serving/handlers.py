"""The serving logic, with no gRPC in it: predictions, enhanced signals, outcomes, memory reads.

The servicer converts requests into the records of ``mem_serving.types``, calls a method here
and converts the result back. Errors are raised as ``mem_serving.errors`` (or the memory's and
the candle store's own), mapped to status codes in ``errors.to_status``.

Hot path of EnhanceSignal (no ML prediction given, one new candle):
merge the candle into the symbol's history (numpy) -> prediction cache lookup -> features of
the newest row only (``newest_features``, numpy) -> compiled one-row model -> memory engine
(in-process index + one durable SQLite write) -> metrics.

The gRPC server runs on an asyncio event loop: ``enhance_async`` is that same path for the loop
(it awaits the memory's ``enhance_async``), used when ``enhance_reads_candle_source`` says the
call will not read QuestDB; every other call runs the synchronous methods in a thread pool.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from mem_core import features as feats
from mem_core.feature_sets import SEED, FeatureSet
from mem_core.labels import newest_direction
from mem_memory import Decision, LearningUpdate, MemoryStats, Outcome, Parameters, SignalRequest, StrategySpec
from mem_serving.caches import NewestPerKey, TTLCache
from mem_serving.candle_sink import CandleSink, Offer
from mem_serving.candles import CandleHistory, ShortHistory
from mem_serving.errors import DeadlineExceeded, FailedPrecondition, NoModel
from mem_serving.metrics import ServingMetrics
from mem_serving.model_info import ModelInfoSource, ServedModelInfo
from mem_serving.model_provider import ModelProvider
from mem_serving.settings import ServingSettings
from mem_serving.types import CandleBlock, EnhanceQuery, EnhanceResult, Prediction, PredictQuery

log = logging.getLogger(__name__)

#: Work is not started when less than this many seconds of the caller's deadline remain.
MIN_BUDGET_S = 0.0005

#: ``(symbol, n, until_ms)`` -> the newest ``n`` candles opened at or before ``until_ms`` (None:
#: the newest there are), ascending: QuestDB in a server (``questdb_source``).
CandleSource = Callable[[str, int, "int | None"], CandleBlock]


class WouldReadCandles(Exception):
    """Raised instead of reading the candle source (blocking I/O) when the caller asked not to,
    i.e. on the event loop; nothing was recorded, and the caller runs the call in its thread
    pool instead. Only happens when another call changed the symbol's history between the
    ``reads_candle_source`` check and the merge."""


class Budget:
    """The caller's deadline as seen by a handler (no gRPC: a ``time_remaining`` callable)."""

    __slots__ = ("_remaining",)

    def __init__(self, remaining: Callable[[], float | None] | None = None) -> None:
        self._remaining = remaining

    def check(self, before: str) -> None:
        if self._remaining is None:
            return
        left = self._remaining()
        if left is not None and left < MIN_BUDGET_S:
            raise DeadlineExceeded(f"deadline exceeded before {before}")


UNLIMITED = Budget()


class MemoryEngineLike(Protocol):
    """The part of ``mem_memory.MemoryEngine`` serving uses (thread-safe: it locks itself)."""

    def enhance(self, request: SignalRequest) -> Decision: ...
    async def enhance_async(self, request: SignalRequest) -> Decision: ...
    def answered_decision(
        self, request_id: str, symbol: str | None = None, action: str | None = None
    ) -> Decision | None: ...
    def record_outcome(self, outcome: Outcome, request_id: str = "") -> LearningUpdate: ...
    def parameters(self) -> Parameters: ...
    def seen_event_id(self) -> int: ...
    def strategies(self, include_deprecated: bool = False) -> list[StrategySpec]: ...
    def stats(self, now: Any = None) -> MemoryStats: ...


def questdb_source(settings: Any) -> CandleSource:
    """The newest candles from QuestDB as a CandleBlock source.

    Reads through one ``CandleReader`` (kept-open PG connections; one the server dropped is
    replaced and the read retried once) instead of a new connection per call, and as numpy
    arrays without a DataFrame; the source's ``close()`` closes the connections.
    """
    from mem_core.questdb.store import CandleReader

    reader = CandleReader(settings)

    def read(symbol: str, n: int, until_ms: int | None = None) -> CandleBlock:
        ts_us, ohlcv = reader.read_latest_arrays(symbol, n, until_ms)  # columns open, high, low, close, volume
        if len(ts_us) == 0:
            return CandleBlock.empty()
        return CandleBlock(ts_us // 1000, ohlcv)

    read.reader = reader  # type: ignore[attr-defined]
    read.close = reader.close  # type: ignore[attr-defined]
    return read


def newest_features(block: CandleBlock, feature_set: FeatureSet = SEED) -> dict[str, float]:
    """The newest candle's features of ``feature_set`` (the champion's), from the block's numpy
    columns without building a DataFrame.

    For the seed set that is ``features.latest_features_arrays`` over the block's columns (a
    fraction of the time of ``latest_features``' pandas indexing); it cuts the history to
    ``SERVING_HISTORY``, raises ``InsufficientHistory`` below ``MIN_HISTORY`` and checks
    finiteness. ``regime_v1`` adds the regime features, which also read the newest candle's open
    time. tests/serving/test_features_path.py proves both equal to the training frame on real
    candles.
    """
    return feature_set.newest(block.ohlcv, block.newest_ts_ms)


class Handlers:
    """Serving's calls. Thread-safe: the memory engine locks itself; caches and the candle history
    have their own locks; the model reference is swapped atomically by the provider."""

    def __init__(
        self,
        settings: ServingSettings,
        models: ModelProvider,
        engine: MemoryEngineLike,
        metrics: ServingMetrics | None = None,
        candle_source: CandleSource | None = None,
        candle_sink: CandleSink | None = None,
    ) -> None:
        self.settings = settings
        self.models = models
        self.engine = engine
        self.metrics = metrics or ServingMetrics()
        self.candle_source = candle_source
        #: Where accepted candles go on their way to QuestDB (None: nowhere).
        self.candle_sink = candle_sink
        #: The per-symbol candle history (``mem_serving.candles``: its merge rule); what it
        #: accepts from a call goes to QuestDB through the candle sink.
        self.history = CandleHistory(on_change=candle_sink.offer if candle_sink is not None else None)
        self.predictions: NewestPerKey[Prediction] = NewestPerKey(
            settings.prediction_ttl_s, max_keys=self.history.max_symbols
        )
        self.memory_cache: TTLCache[Any] = TTLCache(settings.memory_ttl_s, max_items=16)
        self._memory_seen = -1  # the engine's newest applied event when the cache was last checked
        self.model_info_source = ModelInfoSource(models, getattr(engine, "store", None))

    # ---- candles and features ----------------------------------------------------------

    def reads_candle_source(self, symbol: str, given: CandleBlock | None) -> bool:
        """Whether computing features for ``symbol`` from ``given`` would read the candle source
        (QuestDB, blocking I/O): no candles given, or the newest contiguous run after merging
        ``given`` is shorter than the champion needs so ``_candles`` would fill it. Never true
        without a source.

        A guide for where to run the call, not a lock: a concurrent merge of the same symbol on
        another thread may change the answer."""
        if self.candle_source is None:
            return False
        if given is None:
            return True
        return self.history.run_length_after(symbol, given) < self._min_history()

    def _min_history(self) -> int:
        """Fewest candles the current champion's features need (the seed's when there is none)."""
        model = self.models.model
        return feats.MIN_HISTORY if model is None else model.feature_set.min_history

    def enhance_reads_candle_source(self, query: EnhanceQuery) -> bool:
        """Whether ``enhance(query)`` would read the candle source (only when it predicts: with an
        ML prediction given, the snapshot uses the candles given or held and never reads it)."""
        return (
            query.ml is None and self.models.model is not None and self.reads_candle_source(query.symbol, query.candles)
        )

    def _candles(
        self,
        symbol: str,
        given: CandleBlock | None,
        budget: Budget,
        may_read: bool = True,
        need: int = feats.MIN_HISTORY,
        merged: bool = False,
    ) -> CandleBlock:
        """The newest contiguous run of ``symbol`` to compute features on (at least ``need``
        candles): ``given`` merged into the history once (``merged``: it already was), QuestDB's
        newest when no candles are given, and the run filled from QuestDB when it is short.
        ``ShortHistory`` (FAILED_PRECONDITION) when it is still short; ``may_read=False``:
        ``WouldReadCandles`` rather than read QuestDB."""
        source = self.candle_source
        if given is None and source is not None:
            if not may_read:
                raise WouldReadCandles(symbol)
            budget.check("reading candles from QuestDB")
            run = self.history.fill(symbol, source(symbol, feats.SERVING_HISTORY, None))
        elif given is None or merged:
            run = self.history.run(symbol)
        else:
            run = self.history.merge(symbol, given)
        if len(run) < need and source is not None and given is not None:
            if not may_read:
                raise WouldReadCandles(symbol)
            budget.check("reading candles from QuestDB")
            run = self.history.fill_from(symbol, source)
        if len(run) < need:
            raise ShortHistory(symbol, len(run), need)
        return run

    @staticmethod
    def _features(block: CandleBlock, feature_set: FeatureSet = SEED) -> tuple[dict[str, float], str]:
        """Features of the newest candle and the direction a reversal would take."""
        return newest_features(block, feature_set), newest_direction(block.ohlcv[:, 3])

    def _model(self) -> Any:
        model = self.models.model
        if model is None:
            raise NoModel(self.models.absent_reason())
        return model

    # ---- calls -------------------------------------------------------------------------

    def predict(
        self, query: PredictQuery, budget: Budget = UNLIMITED, may_read: bool = True, merged: bool = False
    ) -> Prediction:
        """The champion's reversal prediction for the newest candle held (``may_read``,
        ``merged``: see ``_candles``); ``ShortHistory`` when the history is too short."""
        try:
            model = self._model()
        except NoModel:
            # no champion yet (a new deployment): the candles are still kept, for QuestDB and the
            # first training, and for when a champion arrives
            self.keep_candles(query.symbol, query.candles)
            raise
        block = self._candles(query.symbol, query.candles, budget, may_read, model.feature_set.min_history, merged)
        version = (block.newest_key(), model.version)
        cached = self.predictions.get(query.symbol, version)
        if cached is not None:
            self.metrics.prediction_cache.labels("hit").inc()
            return cached
        self.metrics.prediction_cache.labels("miss").inc()
        budget.check("computing features")
        started = time.perf_counter()
        values, direction = self._features(block, model.feature_set)
        x = np.array([values[name] for name in model.feature_names], dtype=np.float64)
        probability = model.predict_one(x)
        out_of_range = feats.out_of_range(values, model.feature_ranges)
        self.metrics.ml_latency.observe(time.perf_counter() - started)
        prediction = Prediction(
            symbol=query.symbol,
            is_reversal=probability >= self.settings.reversal_threshold,
            confidence=probability,
            direction=direction,
            model_version=model.version,
            out_of_range_features=out_of_range,
            candle_ts_ms=block.newest_ts_ms,
            features=values,
        )
        self.predictions.put(query.symbol, version, prediction)
        return prediction

    def enhance(self, query: EnhanceQuery, budget: Budget = UNLIMITED, merged: bool = False) -> EnhanceResult:
        """``merged``: ``query.candles`` were merged into the history already (``keep_candles``)."""
        replayed = self._replayed(query)
        if replayed is not None:
            return replayed
        request, prediction, version, started = self._prepare_enhance(query, budget, merged=merged)
        memory_started = time.perf_counter()
        decision = self.engine.enhance(request)
        return self._finish_enhance(decision, prediction, version, started, memory_started, request.ml_absent_reason)

    def _replayed(self, query: EnhanceQuery) -> EnhanceResult | None:
        """The first call's decision when ``query.request_id`` was answered already (its candles
        are still merged into the history: a retry never loses them); None otherwise."""
        if not query.request_id:
            return None
        original = self.engine.answered_decision(query.request_id, query.symbol, query.action)
        if original is None:
            return None
        self.keep_candles(query.symbol, query.candles)
        self.metrics.replays.labels("EnhanceSignal").inc()
        return EnhanceResult(
            decision=original, prediction=None, model_version=original.model_version or "", replayed=True
        )

    def keep_candles(self, symbol: str, candles: CandleBlock | None) -> None:
        """Merge a request's candles into the symbol's history now, before anything can cancel
        the call: an expired or cancelled call never loses the candles it brought."""
        if candles is not None:
            self.history.merge(symbol, candles)  # QuestDB gets what it accepts (on_change) first

    async def enhance_async(self, query: EnhanceQuery, budget: Budget = UNLIMITED) -> EnhanceResult:
        """``enhance`` for the event loop: the same steps, awaiting the memory's durable write.

        Everything before that await runs on the caller's thread, so it never reads QuestDB:
        ``WouldReadCandles`` instead (call it when ``enhance_reads_candle_source(query)`` is
        false, and run ``enhance`` in a thread pool if it raises that anyway)."""
        replayed = self._replayed(query)
        if replayed is not None:
            return replayed
        request, prediction, version, started = self._prepare_enhance(query, budget, may_read=False)
        memory_started = time.perf_counter()
        decision = await self.engine.enhance_async(request)
        return self._finish_enhance(decision, prediction, version, started, memory_started, request.ml_absent_reason)

    def _prepare_enhance(
        self, query: EnhanceQuery, budget: Budget, may_read: bool = True, merged: bool = False
    ) -> tuple[SignalRequest, Prediction | None, str, float]:
        """The memory's request for ``query`` (predicting when no ML prediction is given), the
        prediction, the model version and the start time. Without a champion, or with too short
        a candle history, the ML is silent: the memory decides on base and memory alone and the
        request says why."""
        started = time.perf_counter()
        prediction: Prediction | None = None
        absent = ""
        if query.ml is None and self.models.model is None:
            ml_confidence, ml_direction, version = None, None, ""
            absent = self.models.absent_reason()
            features = self._snapshot(query, budget, merged)
            self.metrics.ml_absent.inc()
        elif query.ml is None:
            try:
                prediction = self.predict(PredictQuery(query.symbol, query.candles), budget, may_read, merged)
            except ShortHistory as short:
                ml_confidence, ml_direction, version = None, None, ""
                absent, features = f"too short a candle history: {short.reason}", {}
                self.metrics.ml_absent.inc()
            else:
                ml_confidence, ml_direction = prediction.confidence, prediction.direction
                version, features = prediction.model_version, dict(prediction.features)
        else:
            ml_confidence, ml_direction, version = query.ml.confidence, query.ml.direction, query.ml.model_version
            features = self._snapshot(query, budget, merged)
        budget.check("recording the decision")
        request = self._signal_request(query, ml_confidence, ml_direction, version, features, absent)
        return request, prediction, version, started

    def _finish_enhance(
        self,
        decision: Decision,
        prediction: Prediction | None,
        version: str,
        started: float,
        memory_started: float,
        ml_absent_reason: str = "",
    ) -> EnhanceResult:
        self.memory_cache.clear()  # memory queries (stats) include decisions
        self.metrics.memory_load.observe(time.perf_counter() - memory_started)
        self.metrics.decision(decision.action)
        self.metrics.enhancement.observe(time.perf_counter() - started)
        return EnhanceResult(
            decision=decision, prediction=prediction, model_version=version, ml_absent_reason=ml_absent_reason
        )

    def _snapshot(self, query: EnhanceQuery, budget: Budget, merged: bool = False) -> dict[str, float]:
        """Features for the decision snapshot when the caller brought its own ML prediction (or
        there is no champion): from the newest contiguous run after merging the candles given;
        none when it is too short."""
        if query.candles is None or merged:
            block = self.history.run(query.symbol)
        else:
            block = self.history.merge(query.symbol, query.candles)
        if len(block) < feats.MIN_HISTORY:
            return {}
        budget.check("computing features")
        try:
            return self._features(block)[0]
        except feats.InsufficientHistory:
            return {}

    def _signal_request(
        self, q: EnhanceQuery, ml_confidence, ml_direction, version, features, ml_absent_reason: str = ""
    ) -> SignalRequest:
        # market_context is stored with the decision (encrypted like the rest); the feature
        # snapshot is what drives strategies and similarity.
        return SignalRequest(
            symbol=q.symbol,
            action=q.action,
            base_confidence=q.base_confidence,
            price=q.price,
            time=q.time,
            strategy=q.strategy,
            ml_confidence=ml_confidence,
            ml_direction=ml_direction,
            model_version=version or None,
            features=features,
            session_id=q.session_id,
            market_context=q.market_context,
            request_id=q.request_id,
            ml_absent_reason=ml_absent_reason,
        )

    def push_candles(self, symbol: str, block: CandleBlock) -> Offer:
        """Queue a bulk block of candles for QuestDB (the held history is left as it is)."""
        if self.candle_sink is None:
            raise FailedPrecondition("this server does not write candles to QuestDB (MEM_SERVING_CANDLE_SINK=off)")
        return self.candle_sink.offer(symbol, block)

    def log_outcome(self, outcome: Outcome, budget: Budget = UNLIMITED, request_id: str = "") -> LearningUpdate:
        """Learn from ``outcome``; with ``request_id`` already answered, the first answer."""
        budget.check("learning from the outcome")
        update = self.engine.record_outcome(outcome, request_id)
        if update.replayed:
            self.metrics.replays.labels("LogOutcome").inc()
            return update
        self.memory_cache.clear()
        if not update.shadow:  # a held signal's paper result is not a trade
            self.metrics.outcome(update.win)
        return update

    def _fresh_memory_cache(self) -> None:
        """Drop the memory query cache when the store moved since it was filled, whoever wrote:
        another replica or a Dagster sensor on the same store is seen within the engine's refresh
        interval (1 s), not after the cache's TTL."""
        seen = self.engine.seen_event_id()
        if seen != self._memory_seen:
            self.memory_cache.clear()
            self._memory_seen = seen

    def parameters(self) -> Parameters:
        self._fresh_memory_cache()
        return self.memory_cache.get_or_compute(("parameters",), self.engine.parameters)

    def strategies(self, include_deprecated: bool = False) -> list[StrategySpec]:
        self._fresh_memory_cache()
        return self.memory_cache.get_or_compute(
            ("strategies", bool(include_deprecated)),
            lambda: list(self.engine.strategies(include_deprecated=include_deprecated)),
        )

    def model_info(self) -> ServedModelInfo:
        """The served champion (training window, skill) and the memory store this server writes."""
        return self.model_info_source.current()

    def memory_stats(self) -> MemoryStats:
        """Counts and the 24 h win rate from the store (for the metrics; cached like memory queries)."""
        self._fresh_memory_cache()
        return self.memory_cache.get_or_compute(("stats",), self.engine.stats)
