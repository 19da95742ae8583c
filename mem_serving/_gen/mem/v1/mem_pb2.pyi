import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_BUY: _ClassVar[Action]
    ACTION_SELL: _ClassVar[Action]
    ACTION_HOLD: _ClassVar[Action]

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_BULLISH: _ClassVar[Direction]
    DIRECTION_BEARISH: _ClassVar[Direction]
ACTION_UNSPECIFIED: Action
ACTION_BUY: Action
ACTION_SELL: Action
ACTION_HOLD: Action
DIRECTION_UNSPECIFIED: Direction
DIRECTION_BULLISH: Direction
DIRECTION_BEARISH: Direction

class Candle(_message.Message):
    __slots__ = ("ts", "open", "high", "low", "close", "volume")
    TS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FIELD_NUMBER: _ClassVar[int]
    ts: _timestamp_pb2.Timestamp
    open: float
    high: float
    low: float
    close: float
    volume: float
    def __init__(self, ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., open: _Optional[float] = ..., high: _Optional[float] = ..., low: _Optional[float] = ..., close: _Optional[float] = ..., volume: _Optional[float] = ...) -> None: ...

class PredictReversalRequest(_message.Message):
    __slots__ = ("symbol", "candles")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    candles: _containers.RepeatedCompositeFieldContainer[Candle]
    def __init__(self, symbol: _Optional[str] = ..., candles: _Optional[_Iterable[_Union[Candle, _Mapping]]] = ...) -> None: ...

class PredictReversalResponse(_message.Message):
    __slots__ = ("symbol", "is_reversal", "confidence", "direction", "model_version", "out_of_distribution", "out_of_range_features", "candle_ts")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    IS_REVERSAL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_FEATURES_FIELD_NUMBER: _ClassVar[int]
    CANDLE_TS_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    is_reversal: bool
    confidence: float
    direction: Direction
    model_version: str
    out_of_distribution: bool
    out_of_range_features: _containers.RepeatedScalarFieldContainer[str]
    candle_ts: _timestamp_pb2.Timestamp
    def __init__(self, symbol: _Optional[str] = ..., is_reversal: _Optional[bool] = ..., confidence: _Optional[float] = ..., direction: _Optional[_Union[Direction, str]] = ..., model_version: _Optional[str] = ..., out_of_distribution: _Optional[bool] = ..., out_of_range_features: _Optional[_Iterable[str]] = ..., candle_ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MlPrediction(_message.Message):
    __slots__ = ("confidence", "direction", "model_version")
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    confidence: float
    direction: Direction
    model_version: str
    def __init__(self, confidence: _Optional[float] = ..., direction: _Optional[_Union[Direction, str]] = ..., model_version: _Optional[str] = ...) -> None: ...

class EnhanceSignalRequest(_message.Message):
    __slots__ = ("symbol", "action", "base_confidence", "price", "time", "strategy", "ml_prediction", "candles", "market_context", "session_id", "request_id")
    class MarketContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    BASE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ML_PREDICTION_FIELD_NUMBER: _ClassVar[int]
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    MARKET_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    action: Action
    base_confidence: float
    price: float
    time: _timestamp_pb2.Timestamp
    strategy: str
    ml_prediction: MlPrediction
    candles: _containers.RepeatedCompositeFieldContainer[Candle]
    market_context: _containers.ScalarMap[str, str]
    session_id: str
    request_id: str
    def __init__(self, symbol: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., base_confidence: _Optional[float] = ..., price: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., strategy: _Optional[str] = ..., ml_prediction: _Optional[_Union[MlPrediction, _Mapping]] = ..., candles: _Optional[_Iterable[_Union[Candle, _Mapping]]] = ..., market_context: _Optional[_Mapping[str, str]] = ..., session_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class EnhancedSignal(_message.Message):
    __slots__ = ("decision_id", "action", "symbol", "confidence", "size", "stop_loss", "take_profit", "reasoning", "base_confidence", "ml_confidence", "memory_confidence", "learned_strategy", "model_version", "time", "ml_absent", "ml_absent_reason", "replayed")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    BASE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ML_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LEARNED_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ML_ABSENT_FIELD_NUMBER: _ClassVar[int]
    ML_ABSENT_REASON_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    action: Action
    symbol: str
    confidence: float
    size: float
    stop_loss: float
    take_profit: float
    reasoning: str
    base_confidence: float
    ml_confidence: float
    memory_confidence: float
    learned_strategy: str
    model_version: str
    time: _timestamp_pb2.Timestamp
    ml_absent: bool
    ml_absent_reason: str
    replayed: bool
    def __init__(self, decision_id: _Optional[str] = ..., action: _Optional[_Union[Action, str]] = ..., symbol: _Optional[str] = ..., confidence: _Optional[float] = ..., size: _Optional[float] = ..., stop_loss: _Optional[float] = ..., take_profit: _Optional[float] = ..., reasoning: _Optional[str] = ..., base_confidence: _Optional[float] = ..., ml_confidence: _Optional[float] = ..., memory_confidence: _Optional[float] = ..., learned_strategy: _Optional[str] = ..., model_version: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ml_absent: _Optional[bool] = ..., ml_absent_reason: _Optional[str] = ..., replayed: _Optional[bool] = ...) -> None: ...

class EnhanceSignalsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[EnhanceSignalRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[EnhanceSignalRequest, _Mapping]]] = ...) -> None: ...

class EnhanceSignalResult(_message.Message):
    __slots__ = ("signal", "code", "message")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    signal: EnhancedSignal
    code: int
    message: str
    def __init__(self, signal: _Optional[_Union[EnhancedSignal, _Mapping]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class EnhanceSignalsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[EnhanceSignalResult]
    def __init__(self, results: _Optional[_Iterable[_Union[EnhanceSignalResult, _Mapping]]] = ...) -> None: ...

class LogOutcomeRequest(_message.Message):
    __slots__ = ("decision_id", "entry_price", "exit_price", "size", "pnl", "pnl_pct", "exit_reason", "time", "request_id", "shadow")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_PRICE_FIELD_NUMBER: _ClassVar[int]
    EXIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PNL_FIELD_NUMBER: _ClassVar[int]
    PNL_PCT_FIELD_NUMBER: _ClassVar[int]
    EXIT_REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    entry_price: float
    exit_price: float
    size: float
    pnl: float
    pnl_pct: float
    exit_reason: str
    time: _timestamp_pb2.Timestamp
    request_id: str
    shadow: bool
    def __init__(self, decision_id: _Optional[str] = ..., entry_price: _Optional[float] = ..., exit_price: _Optional[float] = ..., size: _Optional[float] = ..., pnl: _Optional[float] = ..., pnl_pct: _Optional[float] = ..., exit_reason: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., shadow: _Optional[bool] = ...) -> None: ...

class StrategyStats(_message.Message):
    __slots__ = ("trades", "wins", "win_rate", "total_pnl", "avg_pnl_pct")
    TRADES_FIELD_NUMBER: _ClassVar[int]
    WINS_FIELD_NUMBER: _ClassVar[int]
    WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PNL_FIELD_NUMBER: _ClassVar[int]
    AVG_PNL_PCT_FIELD_NUMBER: _ClassVar[int]
    trades: int
    wins: int
    win_rate: float
    total_pnl: float
    avg_pnl_pct: float
    def __init__(self, trades: _Optional[int] = ..., wins: _Optional[int] = ..., win_rate: _Optional[float] = ..., total_pnl: _Optional[float] = ..., avg_pnl_pct: _Optional[float] = ...) -> None: ...

class ParameterAdjustment(_message.Message):
    __slots__ = ("parameter", "from_value", "to_value", "reason", "trigger", "time")
    PARAMETER_FIELD_NUMBER: _ClassVar[int]
    FROM_VALUE_FIELD_NUMBER: _ClassVar[int]
    TO_VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    parameter: str
    from_value: float
    to_value: float
    reason: str
    trigger: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, parameter: _Optional[str] = ..., from_value: _Optional[float] = ..., to_value: _Optional[float] = ..., reason: _Optional[str] = ..., trigger: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogOutcomeResponse(_message.Message):
    __slots__ = ("decision_id", "win", "strategy", "strategy_stats", "adjustments", "parameters_version", "summary", "shadow", "replayed")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    WIN_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_STATS_FIELD_NUMBER: _ClassVar[int]
    ADJUSTMENTS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_VERSION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    win: bool
    strategy: str
    strategy_stats: StrategyStats
    adjustments: _containers.RepeatedCompositeFieldContainer[ParameterAdjustment]
    parameters_version: str
    summary: str
    shadow: bool
    replayed: bool
    def __init__(self, decision_id: _Optional[str] = ..., win: _Optional[bool] = ..., strategy: _Optional[str] = ..., strategy_stats: _Optional[_Union[StrategyStats, _Mapping]] = ..., adjustments: _Optional[_Iterable[_Union[ParameterAdjustment, _Mapping]]] = ..., parameters_version: _Optional[str] = ..., summary: _Optional[str] = ..., shadow: _Optional[bool] = ..., replayed: _Optional[bool] = ...) -> None: ...

class GetParametersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetParametersResponse(_message.Message):
    __slots__ = ("parameters", "version", "updated_at")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    parameters: _containers.ScalarMap[str, float]
    version: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, parameters: _Optional[_Mapping[str, float]] = ..., version: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListStrategiesRequest(_message.Message):
    __slots__ = ("include_deprecated",)
    INCLUDE_DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    include_deprecated: bool
    def __init__(self, include_deprecated: _Optional[bool] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("feature", "op", "threshold")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    feature: str
    op: str
    threshold: float
    def __init__(self, feature: _Optional[str] = ..., op: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

class StrategySpec(_message.Message):
    __slots__ = ("name", "conditions", "action", "confidence", "size", "stop_loss_pct", "take_profit_pct", "stats", "created_at", "updated_at", "deprecated", "deprecated_reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STOP_LOSS_PCT_FIELD_NUMBER: _ClassVar[int]
    TAKE_PROFIT_PCT_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_FIELD_NUMBER: _ClassVar[int]
    DEPRECATED_REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    action: Action
    confidence: float
    size: float
    stop_loss_pct: float
    take_profit_pct: float
    stats: StrategyStats
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    deprecated: bool
    deprecated_reason: str
    def __init__(self, name: _Optional[str] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., action: _Optional[_Union[Action, str]] = ..., confidence: _Optional[float] = ..., size: _Optional[float] = ..., stop_loss_pct: _Optional[float] = ..., take_profit_pct: _Optional[float] = ..., stats: _Optional[_Union[StrategyStats, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deprecated: _Optional[bool] = ..., deprecated_reason: _Optional[str] = ...) -> None: ...

class ListStrategiesResponse(_message.Message):
    __slots__ = ("strategies",)
    STRATEGIES_FIELD_NUMBER: _ClassVar[int]
    strategies: _containers.RepeatedCompositeFieldContainer[StrategySpec]
    def __init__(self, strategies: _Optional[_Iterable[_Union[StrategySpec, _Mapping]]] = ...) -> None: ...

class PushCandlesRequest(_message.Message):
    __slots__ = ("symbol", "candles", "request_id")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    CANDLES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    candles: _containers.RepeatedCompositeFieldContainer[Candle]
    request_id: str
    def __init__(self, symbol: _Optional[str] = ..., candles: _Optional[_Iterable[_Union[Candle, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class PushCandlesResponse(_message.Message):
    __slots__ = ("queued", "dropped", "pending", "replayed")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    queued: int
    dropped: int
    pending: int
    replayed: bool
    def __init__(self, queued: _Optional[int] = ..., dropped: _Optional[int] = ..., pending: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrainingWindow(_message.Message):
    __slots__ = ("first_candle", "last_candle", "label_horizon", "last_label_candle")
    FIRST_CANDLE_FIELD_NUMBER: _ClassVar[int]
    LAST_CANDLE_FIELD_NUMBER: _ClassVar[int]
    LABEL_HORIZON_FIELD_NUMBER: _ClassVar[int]
    LAST_LABEL_CANDLE_FIELD_NUMBER: _ClassVar[int]
    first_candle: _timestamp_pb2.Timestamp
    last_candle: _timestamp_pb2.Timestamp
    label_horizon: int
    last_label_candle: _timestamp_pb2.Timestamp
    def __init__(self, first_candle: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_candle: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label_horizon: _Optional[int] = ..., last_label_candle: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MemoryStoreIdentity(_message.Message):
    __slots__ = ("store_id", "location")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    location: str
    def __init__(self, store_id: _Optional[str] = ..., location: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("ml_usable", "reason", "champion_version", "run_id", "estimator", "feature_set", "feature_names", "training_window", "holdout_skill", "walk_forward_skill", "memory_store", "registry")
    class HoldoutSkillEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class WalkForwardSkillEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ML_USABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHAMPION_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ESTIMATOR_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SET_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    TRAINING_WINDOW_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_SKILL_FIELD_NUMBER: _ClassVar[int]
    WALK_FORWARD_SKILL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_STORE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    ml_usable: bool
    reason: str
    champion_version: str
    run_id: str
    estimator: str
    feature_set: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    training_window: TrainingWindow
    holdout_skill: _containers.ScalarMap[str, float]
    walk_forward_skill: _containers.ScalarMap[str, float]
    memory_store: MemoryStoreIdentity
    registry: str
    def __init__(self, ml_usable: _Optional[bool] = ..., reason: _Optional[str] = ..., champion_version: _Optional[str] = ..., run_id: _Optional[str] = ..., estimator: _Optional[str] = ..., feature_set: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., training_window: _Optional[_Union[TrainingWindow, _Mapping]] = ..., holdout_skill: _Optional[_Mapping[str, float]] = ..., walk_forward_skill: _Optional[_Mapping[str, float]] = ..., memory_store: _Optional[_Union[MemoryStoreIdentity, _Mapping]] = ..., registry: _Optional[str] = ...) -> None: ...
