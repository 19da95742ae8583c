"""The serving logic, with no gRPC in it: predictions, enhanced signals, outcomes, memory reads.

The servicer converts requests into the records of ``mem_serving.types`` (validated once, at the
edge), awaits a method here and converts the result back. Errors are raised as
``mem_serving.errors`` (or the memory's and the candle store's own), mapped to status codes in
``errors.to_status``; the batch calls return one answer or error per item instead.

One path per call, on the server's event loop: EnhanceSignal is EnhanceSignals with one item.
Merge the items' candles into the history (one block: ``mem_serving.candles``) -> prediction
cache lookup -> the features of every miss read from the block in one compiled pass -> ONE
model call on the stacked rows -> the memory's decisions (pure ``mem_memory.decide`` on the
in-process index) committed together, each request id checked inside that commit -> metrics. Only reads of QuestDB (a history too short, or no
candles given) leave the loop, together in one hop to the thread pool (``blocking``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar

import numpy as np

from mem_core import features as feats
from mem_core.feature_sets import SEED
from mem_core.labels import TREND_LOOKBACK, reversal_direction
from mem_core.questdb.store import CandleStoreError
from mem_memory import (
    PUSH,
    Enhanced,
    LearningUpdate,
    MemoryStats,
    Outcome,
    Parameters,
    SignalRequest,
    StrategySpec,
)
from mem_memory.decide import record_maker
from mem_serving.caches import TTLCache
from mem_serving.candle_sink import CandleSink
from mem_serving.candles import CandleHistory, ShortHistory
from mem_serving.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NoModel
from mem_serving.metrics import ServingMetrics
from mem_serving.model_info import ModelInfoSource, ServedModelInfo
from mem_serving.model_provider import ModelProvider, ServingModel
from mem_serving.settings import ServingSettings
from mem_serving.types import CandleBlock, EnhanceQuery, EnhanceResult, Prediction, PredictQuery, PushAnswer

log = logging.getLogger(__name__)
#: The reversal the labels test for a prior trend down (False) and up (True).
_DIRECTIONS = (reversal_direction("down"), reversal_direction("up"))
#: ``SignalRequest`` from every field's value in order, unchecked (validated at the edge).
_signal = record_maker(SignalRequest)

#: Work is not started when less than this many seconds of the caller's deadline remain.
MIN_BUDGET_S = 0.0005

#: ``(symbol, n, until_ms)`` -> the newest ``n`` candles opened at or before ``until_ms`` (None:
#: the newest there are), ascending: QuestDB in a server (``questdb_source``).
CandleSource = Callable[[str, int, "int | None"], CandleBlock]
T = TypeVar("T")
#: ``await blocking(fn)``: ``fn()`` on the server's thread pool (the QuestDB reads).
Blocking = Callable[[Callable[[], T]], Awaitable[T]]
Ahead = Callable[[list[Any]], object]  # ``Handlers.enhance``'s


def _predict_rows(model: ServingModel, x: np.ndarray) -> list[float]:
    """P(reversal) of every row of ``x``: the model's compiled path on all rows at once when it
    has one (``predict_one.many``), else row by row, else one ``predict_proba`` call for the
    stack. (Profiled on 200 symbols with ``hist_gb``: ``predict_proba`` on the stacked rows took
    ~16 ms a batch, its per-tree loop and threads.)"""
    many = getattr(model.predict_one, "many", None)
    if model.compiled and many is not None:
        return many(x).tolist()
    if model.compiled or len(x) == 1 or model.loaded is None:
        return [float(model.predict_one(row)) for row in x]
    return [float(p) for p in model.loaded.model.predict_proba(x)]


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

    async def enhance_many(
        self, requests: Sequence[SignalRequest], fingerprints: Sequence[str] | None = None, meanwhile: Any = None
    ) -> list[Enhanced | Exception]: ...
    def record_outcome(self, outcome: Outcome, request_id: str = "", fingerprint: str = "") -> LearningUpdate: ...
    def once(
        self, kind: str, request_id: str, fingerprint: str, act: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]: ...
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
        #: Per symbol: its last prediction and what it was made for (newest candle, model version).
        self.predictions: TTLCache[tuple[tuple, Prediction]] = TTLCache(
            settings.prediction_ttl_s, max_items=self.history.max_symbols
        )
        self.memory_cache: TTLCache[Any] = TTLCache(settings.memory_ttl_s, max_items=16)
        self._memory_seen = -1  # the engine's newest applied event when the cache was last checked
        self.model_info_source = ModelInfoSource(models, getattr(engine, "store", None))
        #: Per model version: its features' training ranges as columns, names and bounds.
        self._ranges: dict[str, tuple[list[int], list[str], np.ndarray, np.ndarray]] = {}

    # ---- calls -------------------------------------------------------------------------

    async def predict(self, query: PredictQuery, budget: Budget, blocking: Blocking) -> Prediction:
        """The champion's reversal prediction for the newest candle of ``query.symbol``."""
        model = self.models.model
        if model is None:  # no champion yet (a new deployment): the candles are still kept (QuestDB, training)
            self.history.merge_many([query.symbol], [query.candles])
            raise NoModel(self.models.absent_reason())
        (prediction,) = await self._predictions([(query.symbol, query.candles)], model, budget, blocking)
        if isinstance(prediction, Exception):
            raise prediction
        return prediction

    async def _predictions(
        self,
        items: Sequence[tuple[str, CandleBlock | None]],
        model: ServingModel,
        budget: Budget,
        blocking: Blocking,
    ) -> list[Prediction | Exception]:
        """Predictions for many (symbol, candles), each its own answer or error: the candles
        merged, the QuestDB reads (no candles given, or a run too short) in one hop to the thread
        pool, then ``_predict_held``. A symbol given twice is read after each of its items."""
        need, source = model.feature_set.min_history, self.candle_source
        out: list[Prediction | Exception | None] = [None] * len(items)
        for idx in _rounds([s for s, _ in items]):
            symbols = [items[i][0] for i in idx]
            given = [items[i][1] for i in idx]
            slots = self.history.merge_many(symbols, given)
            if source is not None:
                with self.history.lock:
                    short = self.history.newest(slots)[1] < need
                reads = [k for k, c in enumerate(given) if c is None or short[k]]
                if reads:
                    for k, exc in zip(reads, await blocking(partial(self._fill, symbols, given, reads, budget))):
                        if exc is not None:
                            out[idx[k]] = exc
                    slots = self.history.merge_many(symbols, [None] * len(symbols))  # evicted meanwhile: empty
            todo = [k for k in range(len(idx)) if out[idx[k]] is None]
            for k, got in zip(todo, self._predict_held([symbols[k] for k in todo], slots[todo], model, budget)):
                out[idx[k]] = got
        return out  # type: ignore[return-value]  # every item answered

    def _fill(
        self, symbols: list[str], given: list[CandleBlock | None], reads: list[int], budget: Budget
    ) -> list[Exception | None]:
        """On the thread pool: each read symbol's history from QuestDB (its newest when the call
        gave no candles; else filled behind a run too short, a failed read only logged)."""
        source, got = self.candle_source, list[Exception | None]()
        assert source is not None
        for k in reads:
            try:
                budget.check("reading candles from QuestDB")
                if given[k] is None:
                    self.history.fill(symbols[k], source(symbols[k], feats.SERVING_HISTORY, None))
                else:
                    try:
                        self.history.fill_from(symbols[k], source)
                    except CandleStoreError as exc:  # the call brought candles: too short, not unavailable
                        log.debug("no QuestDB fill for %s: %s", symbols[k], exc)
                got.append(None)
            except Exception as exc:
                got.append(exc)
        return got

    def _predict_held(
        self, symbols: list[str], slots: np.ndarray, model: ServingModel, budget: Budget
    ) -> list[Prediction | Exception]:
        """The predictions of the held newest runs of ``symbols`` (their ``slots``): per symbol a
        cache lookup; for the misses the features in one compiled pass over the history's block,
        ONE model call (``_predict_rows``), the checks vectorised."""
        fs, need, version = model.feature_set, model.feature_set.min_history, model.version
        h = self.history
        out: list[Prediction | Exception | None] = [None] * len(symbols)
        with h.lock:
            ends, lengths, ts_ms, rows, before = h.newest(slots, TREND_LOOKBACK)
            ts, up = ts_ms.tolist(), (rows[:, 3] >= before).tolist()
            keys = [(t, tuple(row), version) for t, row in zip(ts, rows.tolist())]  # the newest candle, the model
            misses: list[int] = []
            for k, (n, cached) in enumerate(zip(lengths.tolist(), self.predictions.get_many(symbols))):
                if n < need:
                    out[k] = ShortHistory(symbols[k], n, need)
                elif cached is not None and cached[0] == keys[k]:
                    out[k] = cached[1]
                else:
                    misses.append(k)
            hits = len(symbols) - len(misses) - sum(isinstance(o, Exception) for o in out)
            for outcome, count in (("hit", hits), ("miss", len(misses))):
                if count:
                    self.metrics.prediction_cache.labels(outcome).inc(count)
            if not misses:
                return out  # type: ignore[return-value]
            budget.check("computing features")
            started = time.perf_counter()
            sel = slice(None) if len(misses) == len(symbols) else misses  # all: views, no copies
            matrix = fs.newest_ring(h.ohlcv, slots[sel], ends[sel], lengths[sel], ts_ms[sel])
        names = fs.names
        finite = np.isfinite(matrix).all(axis=1)
        ok = misses
        if not finite.all():
            for k, row in zip(misses, matrix[~finite]):
                try:
                    feats.finite_values(names, row)
                except feats.InsufficientHistory as exc:
                    out[k] = exc
            ok, matrix = [k for k, good in zip(misses, finite.tolist()) if good], matrix[finite]
        probabilities = _predict_rows(model, matrix) if ok else []
        self.metrics.ml_latency.observe(time.perf_counter() - started)
        ranges = self._ranges.get(version)
        if ranges is None:  # the training ranges of the model's features, in ``feature_ranges`` order
            named = [(n, lo, hi) for n, (lo, hi) in model.feature_ranges.items() if n in names]
            ranges = self._ranges[version] = (
                [names.index(n) for n, _, _ in named],
                [n for n, _, _ in named],
                np.array([lo for _, lo, _ in named], dtype=np.float64),
                np.array([hi for _, _, hi in named], dtype=np.float64),
            )
        cols, bad, lo, hi = ranges
        within = matrix[:, cols]
        outside = ~((within >= lo) & (within <= hi))
        oor = {
            r: tuple(bad[j] for j in np.flatnonzero(outside[r])) for r in np.flatnonzero(outside.any(axis=1)).tolist()
        }
        if probabilities:
            self.metrics.predictions(probabilities, list(oor.values()))
        threshold = self.settings.reversal_threshold
        made: list[Prediction] = []  # (not list[Prediction](): a generic alias call costs ~0.5 us)
        for r, (k, values, p) in enumerate(zip(ok, matrix.tolist(), probabilities)):
            features = dict(zip(names, values))
            out[k] = prediction = Prediction(
                symbols[k], p >= threshold, p, _DIRECTIONS[up[k]], version, oor.get(r, ()), ts[k], features
            )
            made.append(prediction)
        self.predictions.put_many((symbols[k], (keys[k], p)) for k, p in zip(ok, made))
        return out  # type: ignore[return-value]

    def _snapshots(self, items: Sequence[tuple[str, CandleBlock | None]], budget: Budget) -> list[dict[str, float]]:
        """The decision's feature snapshot of the seed set for items with the caller's own ML
        prediction (or no champion): their candles merged, none when the run is too short."""
        out: list[dict[str, float]] = [{} for _ in items]
        for idx in _rounds([s for s, _ in items]):
            slots = self.history.merge_many([items[i][0] for i in idx], [items[i][1] for i in idx])
            budget.check("computing features")
            with self.history.lock:
                ends, lengths = self.history.newest(slots)[:2]
                long = lengths >= SEED.min_history
                matrix = SEED.newest_ring(self.history.ohlcv, slots[long], ends[long], lengths[long], None)
            for i, values in zip(np.asarray(idx)[long].tolist(), matrix.tolist()):
                if all(map(math.isfinite, values)):
                    out[i] = dict(zip(SEED.names, values))
        return out

    async def enhance(
        self, queries: Sequence[EnhanceQuery], budget: Budget, blocking: Blocking, ahead: Ahead | None = None
    ) -> list[EnhanceResult | Exception]:
        """Enhanced signals for many requests (a batch of one too), each its own answer or error: the ML predictions,
        the decisions committed together (``enhance_many``, request ids checked inside; no champion or too short a
        history: the ML silent, saying why). ``ahead`` gets the results as new while they commit (remade if not)."""
        started = time.perf_counter()
        model = self.models.model
        out: list[EnhanceResult | Exception | None] = [None] * len(queries)
        made: list[Prediction | None] = [None] * len(queries)
        absent = [self.models.absent_reason() if model is None else ""] * len(queries)  # why the ML is silent
        predict = [i for i, q in enumerate(queries) if q.ml is None and model is not None]
        if predict:
            assert model is not None
            got = await self._predictions(
                [(queries[i].symbol, queries[i].candles) for i in predict], model, budget, blocking
            )
            for i, p in zip(predict, got):
                if isinstance(p, ShortHistory):  # the ML is silent, the decision is still taken
                    absent[i] = f"too short a candle history: {p.reason}"
                elif isinstance(p, Exception):
                    out[i] = p
                else:
                    made[i] = p
        rest = [i for i, q in enumerate(queries) if q.ml is not None or model is None]
        snapshots = dict(zip(rest, self._snapshots([(queries[i].symbol, queries[i].candles) for i in rest], budget)))
        taken = [i for i, o in enumerate(out) if o is None]
        requests = [_signal_request(queries[i], made[i], snapshots.get(i), absent[i]) for i in taken]
        budget.check("recording the decisions")
        memory_started = time.perf_counter()

        def as_new(decisions: list[Any], ahead: Ahead) -> None:  # on the loop while they commit
            for i, r, d in zip(taken, requests, decisions):
                out[i] = EnhanceResult(d, made[i], r.model_version or "", False, r.ml_absent_reason)
            ahead(list[Any](out))

        fps = [queries[i].fingerprint for i in taken]
        soon = partial(as_new, ahead=ahead) if ahead is not None and not any(out) else None  # no error mapped twice
        answers = await self.engine.enhance_many(requests, fps, soon) if requests else []
        self.metrics.memory_load.observe(time.perf_counter() - memory_started)
        actions: list[str] = []  # metrics counted once per batch
        replays = silent = 0
        for i, request, answer in zip(taken, requests, answers):
            if isinstance(answer, Exception):
                out[i] = answer
                continue
            if answer.replayed:
                replays += 1
            else:
                actions.append(answer.decision.action)
                silent += request.ml_confidence is None
            if not isinstance(new := out[i], EnhanceResult) or new.decision is not answer.decision:  # not made ahead
                reason = "" if answer.replayed else request.ml_absent_reason
                out[i] = EnhanceResult(answer.decision, made[i], request.model_version or "", answer.replayed, reason)
        for action, count in Counter(actions).items():
            self.metrics.decisions.labels(action).inc(count)
        if replays:
            self.metrics.replays.labels("EnhanceSignal").inc(replays)
        if silent:
            self.metrics.ml_absent.inc(silent)
        if actions:
            self.memory_cache.clear()  # memory queries (stats) include decisions
        self.metrics.enhancement.observe(time.perf_counter() - started)
        return [o if o is not None else InvalidArgument("request", "not answered") for o in out]

    def push_candles(self, symbol: str, block: CandleBlock, request_id: str = "", fingerprint: str = "") -> PushAnswer:
        """Queue a bulk block of candles for QuestDB (the held history is left as it is); with a
        ``request_id``, at most once per id (a repeat gets the first answer, replayed)."""
        sink = self.candle_sink
        if sink is None:
            raise FailedPrecondition("this server does not write candles to QuestDB (MEM_SERVING_CANDLE_SINK=off)")
        if not request_id:
            offer = sink.offer(symbol, block)
            return PushAnswer(offer.queued, offer.dropped, offer.pending)

        def queue() -> dict[str, Any]:
            offer = sink.offer(symbol, block)
            return {"queued": offer.queued, "dropped": offer.dropped, "pending": offer.pending}

        answer, replayed = self.engine.once(PUSH, request_id, fingerprint, queue)
        if replayed:
            self.metrics.replays.labels("PushCandles").inc()
        return PushAnswer(int(answer["queued"]), int(answer["dropped"]), int(answer["pending"]), replayed)

    def log_outcome(
        self, outcome: Outcome, budget: Budget = UNLIMITED, request_id: str = "", fingerprint: str = ""
    ) -> LearningUpdate:
        """Learn from ``outcome``; with ``request_id`` already answered, the first answer."""
        budget.check("learning from the outcome")
        update = self.engine.record_outcome(outcome, request_id, fingerprint)
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


def _signal_request(
    q: EnhanceQuery, p: Prediction | None, snapshot: dict[str, float] | None, absent: str
) -> SignalRequest:
    """The memory's request for ``q``: the ML prediction made and the features it was made on,
    else the caller's (with ``snapshot``, the features of the candles given or held), else none
    (``absent``: why). Validated at the edge already: built unchecked, every field in order
    (``market_context`` is stored with the decision, encrypted like the rest)."""
    features: Mapping[str, float] | None
    if p is not None:
        ml, direction, version, features = p.confidence, p.direction, p.model_version or None, p.features
    elif (m := q.ml) is not None:
        ml, direction, version, features, absent = m.confidence, m.direction, m.model_version or None, snapshot, ""
    else:
        ml, direction, version, features = None, None, None, snapshot
    return _signal(
        q.symbol, q.action, q.base_confidence, q.price, q.time, q.strategy, ml, direction, version,
        {} if features is None else features, q.session_id, q.market_context, q.request_id, absent if ml is None else "",
    )  # fmt: skip


def _rounds(symbols: Sequence[str]) -> list[list[int]]:
    """Item indices in rounds: round r holds every symbol's r-th item (one round when no symbol
    repeats), so an item's features see its own candles and those of the items before it."""
    if len(set(symbols)) == len(symbols):  # the common batch: one round
        return [list(range(len(symbols)))] if symbols else []
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for i, symbol in enumerate(symbols):
        r = seen[symbol] = seen.get(symbol, -1) + 1
        if r == len(rounds):
            rounds.append([])
        rounds[r].append(i)
    return rounds
