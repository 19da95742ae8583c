"""The public Python client of ``mem.v1.MemService`` (docs/CONTRACTS.md, docs/serving.md): plain
Python values in (a candle frame, "BUY"/"SELL"/"HOLD", "bullish"/"bearish", tz-aware times),
frozen records out; protobuf stays inside this module. A failed call raises ``MemClientError``
naming the call, the address and the status code (never the token).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Self

import grpc
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_core.settings import DEFAULT_SERVER_ADDRESS
from mem_serving.api import SERVICE_NAME, MemServiceStub, pb
from mem_serving.settings import ClientSettings

_ACTIONS = {"BUY": pb.ACTION_BUY, "SELL": pb.ACTION_SELL, "HOLD": pb.ACTION_HOLD}
_ACTION_NAMES = {v: k for k, v in _ACTIONS.items()}
_DIRECTIONS = {"bullish": pb.DIRECTION_BULLISH, "bearish": pb.DIRECTION_BEARISH}
_DIRECTION_NAMES = {v: k for k, v in _DIRECTIONS.items()}


class MemClientError(RuntimeError):
    """A call failed, or no server answered (``code`` is None then)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ReversalPrediction:
    """PredictReversal's answer about the newest candle."""

    is_reversal: bool
    confidence: float  # probability of a reversal
    direction: str  # "bullish" | "bearish" ("" when unspecified)
    model_version: str
    symbol: str = ""
    out_of_range_features: tuple[str, ...] = ()
    candle_ts: datetime | None = None

    @property
    def out_of_distribution(self) -> bool:
        return bool(self.out_of_range_features)


@dataclass(frozen=True)
class EnhancedSignal:
    """EnhanceSignal's decision (recorded in the memory under ``decision_id``)."""

    decision_id: str
    action: str  # "BUY" | "SELL" | "HOLD"
    confidence: float
    size: float  # fraction of capital
    stop_loss: float  # price level
    take_profit: float  # price level
    learned_strategy: str = ""
    model_version: str = ""
    symbol: str = ""
    reasoning: str = ""
    base_confidence: float = 0.0
    ml_confidence: float | None = None  # None: no ML prediction was available
    memory_confidence: float | None = None  # None: the memory had nothing to say
    time: datetime | None = None
    ml_absent: bool = False  # decided with the ML silent (the server has no champion model)
    ml_absent_reason: str = ""
    replayed: bool = False  # the stored answer of an earlier call with the same request_id


@dataclass(frozen=True)
class TradeStats:
    trades: int
    wins: int
    win_rate: float
    total_pnl: float
    avg_pnl_pct: float


@dataclass(frozen=True)
class ParameterChange:
    parameter: str
    from_value: float
    to_value: float
    reason: str
    trigger: str
    time: datetime | None = None


@dataclass(frozen=True)
class OutcomeLearning:
    """LogOutcome's answer: what the memory learned from the trade."""

    decision_id: str
    win: bool
    strategy: str  # the learned strategy whose stats changed, "" when none
    strategy_stats: TradeStats
    adjustments: tuple[ParameterChange, ...]
    parameters_version: str
    summary: str
    shadow: bool = False  # a held signal's paper result: learned from, not a trade
    replayed: bool = False  # the stored answer of an earlier call with the same request_id


@dataclass(frozen=True)
class ParameterSet:
    """The parameter memory and its content hash."""

    values: dict[str, float]
    version: str
    updated_at: datetime | None = None


@dataclass(frozen=True)
class StrategyInfo:
    """A learned strategy; ``conditions`` are (feature, op, threshold)."""

    name: str
    conditions: tuple[tuple[str, str, float], ...]
    action: str
    confidence: float
    size: float
    stop_loss_pct: float
    take_profit_pct: float
    stats: TradeStats
    deprecated: bool
    deprecated_reason: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class TrainingWindow:
    """The candles the served model was trained on (open times, UTC): the first and last labelled
    candle, the labels' look-ahead in candles and the last candle a label looked at."""

    first_candle: datetime | None
    last_candle: datetime
    label_horizon: int
    last_label_candle: datetime


@dataclass(frozen=True)
class StoreIdentity:
    """The memory store a server writes: its id (kept in the store) and where it is."""

    store_id: str
    location: str


@dataclass(frozen=True)
class ModelInfo:
    """GetModelInfo's answer: the model the server scores with and the store it writes (empty
    fields when unknown; the server builds its answer as this record too)."""

    ml_usable: bool  # the server has a champion it scores with
    reason: str
    champion_version: str = ""
    run_id: str = ""
    estimator: str = ""
    feature_set: str = ""
    feature_names: tuple[str, ...] = ()
    training_window: TrainingWindow | None = None  # None: the champion's run records none
    holdout_skill: dict[str, float] = field(default_factory=dict)
    walk_forward_skill: dict[str, float] = field(default_factory=dict)
    memory_store: StoreIdentity = StoreIdentity("", "")
    registry: str = ""


class MemClient:
    """A channel to the server at ``address`` (host:port) and typed calls over it, each with the
    deadline ``timeout_s``; ``token``: the bearer token, ``root_cert`` (PEM): TLS. The constructor
    waits up to ``timeout_s`` for the channel, so a missing server fails here, clearly."""

    @classmethod
    def from_env(cls, address: str = DEFAULT_SERVER_ADDRESS, timeout_s: float = 30.0, **kwargs: Any) -> MemClient:
        """Token and trust root as ``mem serve`` is configured (``ClientSettings.from_env``)."""
        settings = ClientSettings.from_env()
        root_cert = settings.root_cert.read_bytes() if settings.root_cert is not None else None
        return cls(address, timeout_s, token=settings.token, root_cert=root_cert, **kwargs)

    def __init__(
        self,
        address: str = DEFAULT_SERVER_ADDRESS,
        timeout_s: float = 30.0,
        *,
        token: str | None = None,
        root_cert: bytes | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        if root_cert is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_cert)
            self._channel = grpc.secure_channel(address, credentials, options=list(options))
        else:
            self._channel = grpc.insecure_channel(address, options=list(options))
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise MemClientError(
                f"no gRPC server answers at {address} (waited {timeout_s:g} s); start it with `mem serve`"
            ) from None
        self._stub = MemServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, request: Any, method: Any = None) -> Any:
        """``method`` (default: the MemService call ``name``) with the deadline and the token."""
        try:
            return (method or getattr(self._stub, name))(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code()
            raise MemClientError(f"{name} at {self.address} failed: {code.name}: {exc.details()}", code) from None

    def health(self, service: str = SERVICE_NAME) -> str:
        """The standard health status of ``service`` ("SERVING", "NOT_SERVING", ...); "" = the server's."""
        check = health_pb2_grpc.HealthStub(self._channel).Check
        reply = self._call("Health", health_pb2.HealthCheckRequest(service=service), check)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))

    def predict_reversal(self, symbol: str, candles: pd.DataFrame | None = None) -> ReversalPrediction:
        """Is the newest candle a reversal? Without ``candles`` the server reads them from QuestDB."""
        r = self._call("PredictReversal", pb.PredictReversalRequest(symbol=symbol, candles=_candles(candles)))
        return _record(ReversalPrediction, r, direction=_DIRECTION_NAMES.get(r.direction, ""))

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
        request_id: str = "",
    ) -> EnhancedSignal:
        """Enhance a base signal; ``ml`` passes a prediction the caller already has (else the
        server predicts from ``candles``, or from QuestDB without them). ``request_id``: your id
        of this call; a retry with the same id (after a deadline, a cancel, UNAVAILABLE) gets the
        first answer (``replayed``) and records nothing new; the same id with a different
        request is refused (ALREADY_EXISTS)."""
        return _signal(self._call("EnhanceSignal", _enhance_request(locals())))

    def enhance_signals(self, items: Sequence[Mapping[str, Any]]) -> list[EnhancedSignal | MemClientError]:
        """EnhanceSignal for many symbols in one call (the candle close): each item holds the
        keyword arguments of ``enhance_signal``. One answer per item, in order: its signal, or a
        ``MemClientError`` with the item's own status (one bad item never fails the others)."""
        req, signature = pb.EnhanceSignalsRequest(), inspect.signature(self.enhance_signal)
        for item in items:
            args = signature.bind(**item)  # a missing or unknown argument: TypeError
            args.apply_defaults()
            req.requests.append(_enhance_request(args.arguments))
        out: list[EnhancedSignal | MemClientError] = []
        for r in self._call("EnhanceSignals", req).results:
            if r.code == 0:
                out.append(_signal(r.signal))
            else:
                code = next((c for c in grpc.StatusCode if c.value[0] == r.code), grpc.StatusCode.UNKNOWN)
                out.append(MemClientError(f"{code.name}: {r.message}", code))
        return out

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
        request_id: str = "",
        *,
        shadow: bool = False,
    ) -> OutcomeLearning:
        """Report the exit of a trade opened from ``decision_id``; the memory learns from it.
        ``request_id``: as for ``enhance_signal`` (a retry learns nothing twice). ``shadow``:
        ``decision_id`` was a HOLD and this is what its signal would have done."""
        args = {name: value for name, value in locals().items() if name != "self"}  # the request's fields, by name
        r = self._call("LogOutcome", pb.LogOutcomeRequest(**{**args, "time": _timestamp(time)}))
        return _record(
            OutcomeLearning,
            r,
            strategy_stats=_record(TradeStats, r.strategy_stats),
            adjustments=tuple(_record(ParameterChange, a) for a in r.adjustments),
        )

    def get_parameters(self) -> ParameterSet:
        r = self._call("GetParameters", pb.GetParametersRequest())
        return _record(ParameterSet, r, values=dict(r.parameters))

    def get_model_info(self) -> ModelInfo:
        """The served champion (version, run, training window, skill) and the server's memory store."""
        r = self._call("GetModelInfo", pb.GetModelInfoRequest())
        window = _record(TrainingWindow, r.training_window) if r.HasField("training_window") else None
        store = _record(StoreIdentity, r.memory_store)
        return _record(ModelInfo, r, training_window=window, memory_store=store)

    def list_strategies(self, include_deprecated: bool = False) -> list[StrategyInfo]:
        r = self._call("ListStrategies", pb.ListStrategiesRequest(include_deprecated=include_deprecated))
        return [
            _record(
                StrategyInfo,
                s,
                conditions=tuple((c.feature, c.op, c.threshold) for c in s.conditions),
                action=_ACTION_NAMES.get(s.action, ""),
                stats=_record(TradeStats, s.stats),
            )
            for s in r.strategies
        ]


def _enhance_request(args: Mapping[str, Any]) -> pb.EnhanceSignalRequest:
    """The request of ``enhance_signal``'s arguments (all of them, defaults included)."""
    ml = args["ml"]
    return pb.EnhanceSignalRequest(
        symbol=args["symbol"],
        action=_ACTIONS[args["action"]],
        base_confidence=float(args["base_confidence"]),
        price=float(args["price"]),
        time=_timestamp(args["time"]),
        strategy=args["strategy"],
        candles=_candles(args["candles"]),
        session_id=args["session_id"],
        request_id=args["request_id"],
        market_context=args["market_context"],  # None: no entries
        ml_prediction=None  # None: the server predicts
        if ml is None
        else pb.MlPrediction(
            confidence=ml.confidence,
            direction=_DIRECTIONS.get(ml.direction, pb.DIRECTION_UNSPECIFIED),
            model_version=ml.model_version,
        ),
    )


def _signal(r: pb.EnhancedSignal) -> EnhancedSignal:
    return _record(EnhancedSignal, r, action=_ACTION_NAMES.get(r.action, "HOLD"))


def _record[R](cls: type[R], msg: Any, **given: Any) -> R:
    """A ``cls`` of ``given`` and, for its other fields, the same-named fields of ``msg``: a
    timestamp as a UTC datetime, a repeated field as a tuple, a map as a dict, an optional field
    that is not set as None."""
    proto = msg.DESCRIPTOR.fields_by_name
    for f in fields(cls):  # type: ignore[arg-type]  # cls is a dataclass
        d = proto.get(f.name)
        if f.name in given or d is None:
            continue
        value = getattr(msg, f.name)
        if d.message_type is not None and d.message_type.GetOptions().map_entry:
            value = dict(value)
        elif d.is_repeated:
            value = tuple(value)
        elif d.has_presence and not msg.HasField(f.name):
            value = None
        elif d.message_type is not None:  # google.protobuf.Timestamp: the only other message here
            value = value.ToDatetime(tzinfo=UTC)
        given[f.name] = value
    return cls(**given)


def _timestamp(t: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(pd.Timestamp(t).tz_convert("UTC").to_pydatetime())
    return out


def _candles(frame: pd.DataFrame | None) -> list[pb.Candle]:
    if frame is None:
        return []
    columns = (frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume"))
    return [
        pb.Candle(ts=_timestamp(ts), open=float(o), high=float(h), low=float(lo), close=float(c), volume=float(v))
        for ts, o, h, lo, c, v in zip(frame["ts"], *columns, strict=True)
    ]
