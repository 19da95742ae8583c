"""Protobuf ⇄ domain records, at the edge. Input is validated here; a bad field raises
``InvalidArgument`` naming it in proto terms (``candles[3].high``, ``ml_prediction.confidence``).

Output converters take the handlers' results (serving records and the memory's records) and
build replies; they never raise for valid domain values.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from mem_memory import (
    LearningUpdate,
    Outcome,
    ParameterAdjustment,
    Parameters,
    StrategySpec,
    StrategyStats,
    fingerprint,
    request_id_problem,
    symbol_problem,
)
from mem_serving._gen.mem.v1 import mem_pb2 as pb
from mem_serving.errors import InvalidArgument, to_status
from mem_serving.model_info import ServedModelInfo
from mem_serving.time_sanity import FutureLimit
from mem_serving.types import CandleBlock, EnhanceQuery, EnhanceResult, MLInput, Prediction, PredictQuery, PushAnswer

MAX_TEXT_LEN = 256
#: Most requests in one EnhanceSignals call.
MAX_BATCH_ITEMS = 5000
MAX_CONTEXT_ITEMS = 64
# Timestamps a client may send: 1970 .. 9999 (protobuf's valid range ends at 9999-12-31); the
# server keeps them to the microsecond (Python's datetime).
_MAX_SECONDS = 253402300799
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Prices a candle (and EnhanceSignal.price) may carry. Within them every feature of a window is
#: finite (sums, squares and ratios of prices stay far from overflow), so a call is never refused
#: for its prices after its candles were accepted; 1e308 or 5e-324 is a client's bug.
MIN_PRICE, MAX_PRICE = 1e-12, 1e12

ACTIONS = {pb.ACTION_BUY: "BUY", pb.ACTION_SELL: "SELL", pb.ACTION_HOLD: "HOLD"}
ACTION_ENUMS = {v: k for k, v in ACTIONS.items()}
DIRECTIONS = {pb.DIRECTION_BULLISH: "bullish", pb.DIRECTION_BEARISH: "bearish"}
DIRECTION_ENUMS = {v: k for k, v in DIRECTIONS.items()}
#: Times more than one candle interval plus the default clock skew ahead of now are refused.
NO_FUTURE = FutureLimit()
_GOOD_SYMBOLS: set[str] = set()  # up to 65,536 symbols that passed the rule unchanged (the same every candle)
_LATER = CandleBlock.empty()  # a batch item's one candle, until the batch's columns are made


# ---- validation helpers ------------------------------------------------------------------


def symbol(value: str, field: str = "symbol") -> str:
    """The symbol rule of the whole system (``mem_memory.symbols``), as an ``InvalidArgument``."""
    problem = None if value in _GOOD_SYMBOLS else symbol_problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)
    if len(_GOOD_SYMBOLS) < 65536 and value == value.strip():
        _GOOD_SYMBOLS.add(value)
    return value.strip()


def request_id(value: str, field: str = "request_id") -> str:
    """The request-id rule of the memory (``mem_memory.requests``) as an ``InvalidArgument``; "" is no id."""
    problem = request_id_problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return value


def text(value: str, field: str, max_len: int = MAX_TEXT_LEN) -> str:
    if len(value) > max_len:
        raise InvalidArgument(field, f"longer than {max_len} characters")
    return value


def finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value!r}")
    return value


def positive(value: float, field: str) -> float:
    finite(value, field)
    if value <= 0:
        raise InvalidArgument(field, f"must be > 0, got {value!r}")
    return value


def price(value: float, field: str) -> float:
    positive(value, field)
    if not MIN_PRICE <= value <= MAX_PRICE:
        raise InvalidArgument(field, f"must lie within [{MIN_PRICE:g}, {MAX_PRICE:g}], got {value!r}")
    return value


def probability(value: float, field: str) -> float:
    finite(value, field)
    if not 0.0 <= value <= 1.0:
        raise InvalidArgument(field, f"must be within [0, 1], got {value!r}")
    return value


def action(value: int, field: str = "action") -> str:
    try:
        return ACTIONS[value]  # type: ignore[index]  # a wire int; an unknown one is refused below
    except KeyError:
        raise InvalidArgument(
            field, f"must be ACTION_BUY, ACTION_SELL or ACTION_HOLD, got {_enum_name(pb.Action, value)}"
        ) from None


def direction(value: int, field: str) -> str:
    try:
        return DIRECTIONS[value]  # type: ignore[index]  # a wire int; an unknown one is refused below
    except KeyError:
        raise InvalidArgument(
            field, f"must be DIRECTION_BULLISH or DIRECTION_BEARISH, got {_enum_name(pb.Direction, value)}"
        ) from None


def _enum_name(enum: Any, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


def timestamp(ts: Timestamp, field: str, *, has: bool, default: Callable[[], datetime] | None) -> datetime:
    """A Timestamp as an aware UTC datetime; unset -> ``default()`` (or an error without one)."""
    if not has:
        if default is None:
            raise InvalidArgument(field, "is required")
        return default()
    if not (0 <= ts.seconds <= _MAX_SECONDS) or not (0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument(field, "out of range (1970-01-01 .. 9999-12-31, nanos in [0, 1e9))")
    # integer arithmetic: a float sum rounds 9999-12-31T23:59:59.999999999 up into year 10000
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def now_utc() -> datetime:
    return datetime.now(UTC)


def not_ahead(value: datetime, field: str, limit: FutureLimit) -> datetime:
    """``value``, unless it lies further in the future than ``limit`` allows."""
    problem = limit.problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return value


# ---- candles -----------------------------------------------------------------------------


def _one_row(c: pb.Candle, latest_ms: int) -> tuple[Any, ...] | None:
    """A candle's open time (ms) and OHLCV when it passes every check of ``candles`` (opened
    by ``latest_ms``), else None. (Prices within the bounds are finite, so is 0 <= volume < inf.)"""
    t = c.ts
    s, ns, o, h, lo, cl, v = t.seconds, t.nanos, c.open, c.high, c.low, c.close, c.volume
    if 0 < s <= _MAX_SECONDS and 0 <= ns < 1_000_000_000 and (ms := s * 1000 + ns // 1_000_000) <= latest_ms:
        if MIN_PRICE <= lo <= o <= h <= MAX_PRICE and lo <= cl <= h and 0 <= v < math.inf:
            return ms, o, h, lo, cl, v
    return None


def candles(items: Any, max_candles: int, field: str = "candles", limit: FutureLimit = NO_FUTURE) -> CandleBlock | None:
    """Repeated Candle -> CandleBlock (None when empty). Checks every value (times from the
    future: ``limit``); names the first bad one."""
    n = len(items)
    if n == 0:
        return None
    if n > max_candles:
        raise InvalidArgument(field, f"at most {max_candles} candles per request, got {n}")
    if n == 1 and (row := _one_row(items[0], limit.latest_ms())) is not None:  # the hot path: no numpy checks
        return CandleBlock(np.array(row[:1], dtype=np.int64), np.array([row[1:]], dtype=np.float64))
    secs = np.empty(n, dtype=np.int64)
    nanos = np.empty(n, dtype=np.int64)
    ohlcv = np.empty((n, 5), dtype=np.float64)
    for i, c in enumerate(items):
        t = c.ts
        secs[i] = t.seconds
        nanos[i] = t.nanos
        ohlcv[i] = (c.open, c.high, c.low, c.close, c.volume)
    if not np.isfinite(ohlcv).all():
        i, j = np.argwhere(~np.isfinite(ohlcv))[0]
        raise InvalidArgument(
            f"{field}[{i}].{('open', 'high', 'low', 'close', 'volume')[j]}",
            f"must be a finite number, got {ohlcv[i, j]!r}",
        )
    bad_ts = (secs <= 0) | (secs > _MAX_SECONDS) | (nanos < 0) | (nanos >= 1_000_000_000)
    if bad_ts.any():
        i = int(np.argmax(bad_ts))
        problem = "is required" if secs[i] == 0 and nanos[i] == 0 else "out of range"
        raise InvalidArgument(f"{field}[{i}].ts", problem)
    o, h, lo, c, v = ohlcv.T
    checks = (
        (lo <= 0, "low", "must be > 0"),
        (lo < MIN_PRICE, "low", f"must be >= {MIN_PRICE:g}"),
        (h > MAX_PRICE, "high", f"must be <= {MAX_PRICE:g}"),
        (h < lo, "high", "must be >= low"),
        ((o < lo) | (o > h), "open", "must lie within [low, high]"),
        ((c < lo) | (c > h), "close", "must lie within [low, high]"),
        (v < 0, "volume", "must be >= 0"),
    )
    for bad, name, problem in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidArgument(
                f"{field}[{i}].{name}",
                f"{problem} (open={o[i]!r} high={h[i]!r} low={lo[i]!r} close={c[i]!r} volume={v[i]!r})",
            )
    ts_ms = secs * 1000 + nanos // 1_000_000
    if n > 1:
        step = np.diff(ts_ms)
        if (step <= 0).any():
            i = int(np.argmax(step <= 0)) + 1
            raise InvalidArgument(f"{field}[{i}].ts", "candles must be ascending by ts with unique times (newest last)")
    ahead = limit.first_ahead(ts_ms)
    if ahead is not None:
        raise InvalidArgument(f"{field}[{ahead[0]}].ts", ahead[1])
    return CandleBlock(ts_ms, ohlcv)


# ---- requests ------------------------------------------------------------------------------


def predict_query(req: pb.PredictReversalRequest, max_candles: int, limit: FutureLimit = NO_FUTURE) -> PredictQuery:
    return PredictQuery(symbol=symbol(req.symbol), candles=candles(req.candles, max_candles, limit=limit))


def enhance_query(
    req: pb.EnhanceSignalRequest,
    max_candles: int,
    limit: FutureLimit = NO_FUTURE,
    now: datetime | None = None,
    block: CandleBlock | None = None,
) -> EnhanceQuery:
    """The request record of ``req`` (an unset ``time`` is ``now``, default the clock, which no limit refuses;
    ``block``: its candles, checked already). A common value passes one comparison, others the named check."""
    sym = req.symbol
    sym = sym if sym in _GOOD_SYMBOLS else symbol(sym)
    act = ACTIONS.get(req.action) or action(req.action)
    base, price_ = req.base_confidence, req.price
    base = base if 0.0 <= base <= 1.0 else probability(base, "base_confidence")
    price_ = price_ if MIN_PRICE <= price_ <= MAX_PRICE else price(price_, "price")
    if req.HasField("time"):
        when = not_ahead(timestamp(req.time, "time", has=True, default=None), "time", limit)
    else:
        when = now or now_utc()
    ml = None
    if req.HasField("ml_prediction"):
        m = req.ml_prediction
        ml = MLInput(
            confidence=probability(m.confidence, "ml_prediction.confidence"),
            direction=direction(m.direction, "ml_prediction.direction"),
            model_version=text(m.model_version, "ml_prediction.model_version", 64),
        )
    context: dict[str, str] = {}
    if mc := req.market_context:
        if len(mc) > MAX_CONTEXT_ITEMS:
            raise InvalidArgument("market_context", f"at most {MAX_CONTEXT_ITEMS} entries")
        context = {text(k, "market_context", 64): text(v, f"market_context[{k}]") for k, v in mc.items()}
    strategy = s if len(s := req.strategy) <= 128 else text(s, "strategy", 128)
    if block is None:
        block = candles(req.candles, max_candles, limit=limit)
    session = s if len(s := req.session_id) <= 128 else text(s, "session_id", 128)  # checked in the fields' order
    ids = (request_id(rid), request_fingerprint(req)) if (rid := req.request_id) else ("", "")
    return EnhanceQuery(sym, act, base, price_, when, strategy, ml, block, context, session, *ids)


def request_fingerprint(req: Any) -> str:
    """The fingerprint stored with a request's id: a digest of the message's deterministic
    serialization ("" without an id). The same request sent again gives the same one."""
    return fingerprint(req.SerializeToString(deterministic=True)) if req.request_id else ""


def enhance_queries(
    req: pb.EnhanceSignalsRequest, max_candles: int, max_items: int, limit: FutureLimit = NO_FUTURE
) -> list[EnhanceQuery | Exception]:
    """Each item of a batch as ``enhance_query`` makes it, or its validation error (an item's error is
    its own answer); the candles of the good one-candle items (the candle close) read into two columns."""
    items = req.requests
    if len(items) > max_items:
        raise InvalidArgument("requests", f"at most {max_items} requests per call, got {len(items)}")
    out: list[EnhanceQuery | Exception] = []
    now, latest_ms = now_utc(), limit.latest_ms()
    ones: list[int] = []  # the items of one good candle, and its values
    rows: list[tuple[Any, ...]] = []
    for item in items:
        try:
            if len(cs := item.candles) != 1 or max_candles < 1 or (row := _one_row(cs[0], latest_ms)) is None:
                out.append(enhance_query(item, max_candles, limit, now))
                continue
            ones.append(len(out))
            rows.append(row)
            out.append(enhance_query(item, max_candles, limit, now, _LATER))
        except InvalidArgument as exc:  # as EnhanceSignal answers that request alone
            out.append(exc)
    if ones:
        columns = np.array(rows, dtype=np.float64)
        ts_ms, ohlcv = columns[:, 0].astype(np.int64), np.ascontiguousarray(columns[:, 1:])
        for k, i in enumerate(ones):
            if isinstance(q := out[i], EnhanceQuery):
                q.candles = CandleBlock(ts_ms[k : k + 1], ohlcv[k : k + 1])
    return out


def push_query(
    req: pb.PushCandlesRequest, max_candles: int, limit: FutureLimit = NO_FUTURE
) -> tuple[str, CandleBlock, str, str]:
    """Symbol, candles, request id and fingerprint of a PushCandles request."""
    block = candles(req.candles, max_candles, limit=limit)
    if block is None:
        raise InvalidArgument("candles", "must not be empty")
    return symbol(req.symbol), block, request_id(req.request_id), request_fingerprint(req)


def outcome_query(req: pb.LogOutcomeRequest, limit: FutureLimit = NO_FUTURE) -> Outcome:
    """The outcome record of ``req``; its fields are checked once, by ``Outcome`` itself (an
    ``InvalidRecord`` is INVALID_ARGUMENT naming the field); the edge adds only what the wire
    needs: a missing time is now, and no time from the future."""
    return Outcome(
        decision_id=req.decision_id.strip(),
        entry_price=req.entry_price,
        exit_price=req.exit_price,
        size=req.size,
        pnl=req.pnl,
        pnl_pct=req.pnl_pct,
        exit_reason=req.exit_reason,
        time=not_ahead(timestamp(req.time, "time", has=req.HasField("time"), default=now_utc), "time", limit),
        shadow=req.shadow,
    )


# ---- replies -------------------------------------------------------------------------------


def ts_pb(value: datetime | None) -> Timestamp | None:
    return None if value is None else Timestamp(**_ts_fields(value))


def _ts_fields(value: datetime) -> dict[str, int]:
    d = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - _EPOCH  # FromDatetime's, in integers
    return {"seconds": d.days * 86400 + d.seconds, "nanos": d.microseconds * 1000}


#: ``_ts_fields`` of the few decision times of a batch (its items share one): read-only dicts.
_decision_time_fields = functools.lru_cache(maxsize=8)(_ts_fields)


def ms_pb(ms: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMilliseconds(int(ms))
    return ts


def prediction_pb(p: Prediction) -> pb.PredictReversalResponse:
    return pb.PredictReversalResponse(
        symbol=p.symbol,
        is_reversal=p.is_reversal,
        confidence=p.confidence,
        direction=DIRECTION_ENUMS.get(p.direction, pb.DIRECTION_UNSPECIFIED),
        model_version=p.model_version,
        out_of_distribution=p.out_of_distribution,
        out_of_range_features=list(p.out_of_range_features),
        candle_ts=ms_pb(p.candle_ts_ms),
    )


def _as_float_map(values: Mapping[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ---- memory records -> replies ---------------------------------------------------------------


def signal_fields(result: EnhanceResult) -> dict[str, Any]:
    """The fields of ``result``'s ``EnhancedSignal`` as a dict (its decision's values are typed already)."""
    d = result.decision  # for a repeated request id, the first call's decision: its symbol and time
    fields: dict[str, Any] = {
        "decision_id": d.decision_id,
        "action": ACTION_ENUMS.get(d.action) or ACTION_ENUMS.get(str(d.action).upper(), pb.ACTION_UNSPECIFIED),
        "symbol": d.symbol,
        "confidence": d.confidence,
        "size": d.size,
        "stop_loss": d.stop_loss,
        "take_profit": d.take_profit,
        "reasoning": d.reasoning,
        "base_confidence": d.base_confidence,
        "learned_strategy": d.learned_strategy or "",
        "model_version": d.model_version or result.model_version or "",
        "time": _decision_time_fields(d.time),
        "replayed": result.replayed,
    }
    if d.ml_confidence is not None:
        fields["ml_confidence"] = d.ml_confidence
    else:
        fields["ml_absent"] = True
        fields["ml_absent_reason"] = result.ml_absent_reason
    if d.memory_confidence is not None:
        fields["memory_confidence"] = d.memory_confidence
    return fields


class ReplyAhead:
    """EnhanceSignals' reply: ``ahead`` makes it while the decisions commit; ``bytes_of``: it, or remade if answered otherwise."""

    made: Sequence[Any] = ()
    data = b""

    def ahead(self, results: list[EnhanceResult | Exception]) -> None:
        add = (reply := pb.EnhanceSignalsResponse()).results.add
        for r in results:
            if isinstance(r, Exception):
                code, message = to_status(r, "EnhanceSignals")
                add(code=code.value[0], message=message)
            else:
                add(signal=signal_fields(r))
        self.made, self.data = results, reply.SerializeToString()

    def bytes_of(self, results: list[EnhanceResult | Exception]) -> bytes:
        if len(results) != len(self.made) or not all(r is m for r, m in zip(results, self.made)):
            self.ahead(results)  # answered otherwise than as new: made now
        return self.data


def stats_pb(stats: StrategyStats | None) -> pb.StrategyStats:
    if stats is None:
        return pb.StrategyStats()
    return pb.StrategyStats(
        trades=int(stats.trades),
        wins=int(stats.wins),
        win_rate=float(stats.win_rate),
        total_pnl=float(stats.total_pnl),
        avg_pnl_pct=float(stats.avg_pnl_pct),
    )


def adjustment_pb(a: ParameterAdjustment) -> pb.ParameterAdjustment:
    return pb.ParameterAdjustment(
        parameter=str(a.parameter),
        from_value=float(a.from_value),
        to_value=float(a.to_value),
        reason=str(a.reason),
        trigger=str(a.trigger),
        time=ts_pb(a.time),
    )


def learning_pb(update: LearningUpdate) -> pb.LogOutcomeResponse:
    return pb.LogOutcomeResponse(
        decision_id=update.decision_id,
        win=bool(update.win),
        strategy=str(update.strategy or ""),
        strategy_stats=stats_pb(update.strategy_stats),
        adjustments=[adjustment_pb(a) for a in update.adjustments],
        parameters_version=str(update.parameters_version),
        summary=str(update.summary),
        shadow=bool(update.shadow),
        replayed=bool(update.replayed),
    )


def parameters_pb(params: Parameters) -> pb.GetParametersResponse:
    return pb.GetParametersResponse(
        parameters=_as_float_map(params.values),
        version=str(params.version),
        updated_at=ts_pb(params.updated_at),
    )


def strategy_pb(spec: StrategySpec) -> pb.StrategySpec:
    return pb.StrategySpec(
        name=str(spec.name),
        conditions=[
            pb.Condition(feature=str(c.feature), op=str(c.op), threshold=float(c.threshold)) for c in spec.conditions
        ],
        action=ACTION_ENUMS.get(str(spec.action).upper(), pb.ACTION_UNSPECIFIED),
        confidence=float(spec.confidence),
        size=float(spec.size),
        stop_loss_pct=float(spec.stop_loss_pct),
        take_profit_pct=float(spec.take_profit_pct),
        stats=stats_pb(spec.stats),
        created_at=ts_pb(spec.created_at),
        updated_at=ts_pb(spec.updated_at),
        deprecated=bool(spec.deprecated),
        deprecated_reason=str(spec.deprecated_reason or ""),
    )


def push_pb(a: PushAnswer) -> pb.PushCandlesResponse:
    return pb.PushCandlesResponse(queued=a.queued, dropped=a.dropped, pending=a.pending, replayed=a.replayed)


def model_info_pb(info: ServedModelInfo) -> pb.ModelInfo:
    reply = pb.ModelInfo(
        ml_usable=info.ml_usable,
        reason=info.reason,
        champion_version=info.champion_version,
        run_id=info.run_id,
        estimator=info.estimator,
        feature_set=info.feature_set,
        feature_names=list(info.feature_names),
        holdout_skill=_as_float_map(info.holdout_skill),
        walk_forward_skill=_as_float_map(info.walk_forward_skill),
        memory_store=pb.MemoryStoreIdentity(store_id=info.memory_store.store_id, location=info.memory_store.location),
        registry=info.registry,
    )
    w = info.training_window
    if w is not None:
        reply.training_window.CopyFrom(
            pb.TrainingWindow(
                first_candle=ts_pb(w.first_candle),
                last_candle=ts_pb(w.last_candle),
                label_horizon=w.label_horizon,
                last_label_candle=ts_pb(w.last_label_candle),
            )
        )
    return reply
