"""The memory's vocabulary: small frozen records, validated on construction.

Validation raises ``InvalidRecord`` naming the field, so the gRPC edge can answer
INVALID_ARGUMENT with it. Times are timezone-aware UTC ``datetime`` (naive times are rejected:
a trading log in local time is a bug). The stored records serialise through one codec
(``mem_memory.serial``: ``to_dict``/``from_dict`` generated from the fields, in declaration
order), so the stored form stays stable when a field is added with a default. Validation runs
once, at construction; ``trusted`` builds a record from values validated already.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from mem_memory.errors import InvalidRecord
from mem_memory.requests import validate_request_id
from mem_memory.serial import OMIT_DEFAULT, STORED_NOT, Record
from mem_memory.symbols import validate_symbol

Action = Literal["BUY", "SELL", "HOLD"]
ACTIONS: tuple[str, ...] = ("BUY", "SELL", "HOLD")
DIRECTIONS: tuple[str, ...] = ("bullish", "bearish")
OPS: tuple[str, ...] = ("<", "<=", ">", ">=")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


# ---------------------------------------------------------------------------------- validators
def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(name, f"must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidRecord(name, "must be finite")
    return v


def _unit(name: str, value: Any) -> float:
    v = _finite(name, value)
    if not 0.0 <= v <= 1.0:
        raise InvalidRecord(name, f"must be in [0, 1], got {v}")
    return v


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    v = _finite(name, value)
    if v < 0 or (v == 0 and not allow_zero):
        raise InvalidRecord(name, f"must be {'>= 0' if allow_zero else '> 0'}, got {v}")
    return v


def _aware_utc(name: str, value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidRecord(name, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRecord(name, "must be timezone-aware (UTC)")
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        value = value.to_pydatetime()
    return value.astimezone(UTC)


def _text(name: str, value: Any, *, empty: bool = True, max_len: int = 4000) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(name, f"must be a string, got {type(value).__name__}")
    if not empty and not value.strip():
        raise InvalidRecord(name, "must not be empty")
    if len(value) > max_len:
        raise InvalidRecord(name, f"longer than {max_len} characters")
    return value


def _action(name: str, value: Any) -> str:
    v = str(value).upper() if isinstance(value, str) else value
    if v not in ACTIONS:
        raise InvalidRecord(name, f"must be one of {', '.join(ACTIONS)}, got {value!r}")
    return v


#: Feature names already checked against IDENTIFIER (the same dozen names arrive on every call).
_CHECKED_NAMES: set[str] = set()
_MAX_CHECKED_NAMES = 4096


def trusted[R](cls: type[R], **values: Any) -> R:
    """A record of ``cls`` (a frozen slots dataclass of this module) from values validated
    already, without ``__post_init__``'s checks: serving's request record, validated once at the
    edge, and ``decide``'s decision, computed from validated inputs. Omitted fields take their
    defaults."""
    record = object.__new__(cls)
    put = object.__setattr__
    for name, default, factory in _FIELDS.get(cls) or _fields_of(cls):
        if name in values:
            put(record, name, values[name])
        elif default is not MISSING:
            put(record, name, default)
        else:
            put(record, name, factory())  # a required field missing: TypeError (MISSING is not callable)
    return record


_FIELDS: dict[type, list[tuple[str, Any, Any]]] = {}


def record_maker[R](cls: type[R]) -> Callable[..., R]:
    """A function building a record of ``cls`` (a frozen slots dataclass) from every field's value
    in field order, unchecked like ``trusted`` (for values validated already): the slots are
    written on a twin class of the same layout (plain attribute stores, which the interpreter
    specialises), then the object becomes a ``cls`` (``__class__`` assignment, allowed between
    layouts that match): a third of the time of writing each slot through its descriptor, and
    a fraction of ``trusted`` or of the checked constructor."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    args = ", ".join(f"a{i}" for i in range(len(names)))
    twin = type(f"_{cls.__name__}Slots", cls.__bases__, {"__slots__": tuple(getattr(cls, "__slots__", ()))})
    env: dict[str, Any] = {"new": object.__new__, "cls": cls, "twin": twin, "setattr": object.__setattr__}
    body = "".join(f"    r.{n} = a{i}\n" for i, n in enumerate(names))
    src = f"def make({args}):\n    r = new(twin)\n{body}    setattr(r, '__class__', cls)\n    return r\n"
    if not _twins(cls, twin, names):  # not a slots class of its own fields: each slot through its descriptor
        env |= {f"s{i}": getattr(cls, n).__set__ for i, n in enumerate(names)}
        body = "".join(f"    s{i}(r, a{i})\n" for i in range(len(names)))
        src = f"def make({args}):\n    r = new(cls)\n{body}    return r\n"
    exec(src, env)  # noqa: S102  # generated from the field names
    return env["make"]


def _twins(cls: type, twin: type, names: list[str]) -> bool:
    """Whether an object of ``twin`` can become a ``cls``: both hold exactly the fields, in slots."""
    if "__dict__" in dir(cls) or list(getattr(cls, "__slots__", ())) != names:
        return False
    try:
        object.__setattr__(object.__new__(twin), "__class__", cls)
    except TypeError:
        return False
    return True


def _fields_of(cls: type) -> list[tuple[str, Any, Any]]:
    found = [(f.name, f.default, f.default_factory) for f in fields(cls)]
    _FIELDS[cls] = found
    return found


def _features(name: str, value: Any) -> Mapping[str, float]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise InvalidRecord(name, "must be a mapping of feature name to number")
    out: dict[str, float] = {}
    checked = _CHECKED_NAMES
    for k, v in value.items():
        if k not in checked:
            if not isinstance(k, str) or not IDENTIFIER.match(k):
                raise InvalidRecord(f"{name}.{k}", "feature names must be identifiers")
            if len(checked) < _MAX_CHECKED_NAMES:
                checked.add(k)
        if type(v) is float and math.isfinite(v):  # the common case, without _finite's call
            out[k] = v
        else:
            out[k] = _finite(f"{name}.{k}", v)
    return MappingProxyType(dict(sorted(out.items())))


#: At most this many market_context entries; keys up to 64 characters, values up to 256.
MAX_CONTEXT_ITEMS = 64


def _context(name: str, value: Any) -> Mapping[str, str]:
    """Free-form market context (string -> string), stored with the decision (encrypted like the
    rest of the payload). Only validated and kept: no rule reads it."""
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise InvalidRecord(name, "must be a mapping of string to string")
    if len(value) > MAX_CONTEXT_ITEMS:
        raise InvalidRecord(name, f"at most {MAX_CONTEXT_ITEMS} entries, got {len(value)}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or len(k) > 64:
            raise InvalidRecord(name, "keys must be strings of at most 64 characters")
        out[k] = _text(f"{name}[{k}]", v, max_len=256)
    return MappingProxyType(dict(sorted(out.items())))


# ---------------------------------------------------------------------------------- requests
@dataclass(frozen=True, slots=True)
class SignalRequest:
    """A base signal to enhance. ``ml_direction`` is the predicted reversal direction: bullish
    supports BUY, bearish supports SELL; when it disagrees with ``action`` the ML support is
    ``1 - ml_confidence`` (see rules.combine)."""

    symbol: str
    action: str
    base_confidence: float
    price: float
    time: datetime
    strategy: str = ""
    ml_confidence: float | None = None
    ml_direction: str | None = None
    model_version: str | None = None
    features: Mapping[str, float] = field(default_factory=dict)
    session_id: str = ""
    market_context: Mapping[str, str] = field(default_factory=dict)
    #: The caller's id of this request ("" = none): a repeat gets the first decision (``mem_memory.requests``).
    request_id: str = ""
    #: Why there is no ML confidence (e.g. no champion model), said in the reasoning ("" = not said).
    ml_absent_reason: str = ""

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "symbol", validate_symbol(self.symbol))
        s(self, "action", _action("action", self.action))
        s(self, "base_confidence", _unit("base_confidence", self.base_confidence))
        s(self, "price", _positive("price", self.price))
        s(self, "time", _aware_utc("time", self.time))
        s(self, "strategy", _text("strategy", self.strategy or "", max_len=128))
        if self.ml_confidence is not None:
            s(self, "ml_confidence", _unit("ml_confidence", self.ml_confidence))
        if self.ml_direction in ("", None):
            s(self, "ml_direction", None)
        elif self.ml_direction not in DIRECTIONS:
            raise InvalidRecord("ml_direction", f"must be bullish, bearish or empty, got {self.ml_direction!r}")
        s(self, "model_version", self.model_version or None)
        s(self, "features", _features("features", self.features))
        s(self, "session_id", _text("session_id", self.session_id or "", max_len=128))
        s(self, "market_context", _context("market_context", self.market_context))
        if self.request_id:
            s(self, "request_id", validate_request_id(self.request_id))
        s(self, "ml_absent_reason", _text("ml_absent_reason", self.ml_absent_reason or "", max_len=256))


# ---------------------------------------------------------------------------------- decisions
@dataclass(frozen=True, slots=True)
class Decision(Record):
    """One enhanced signal as recorded. ``confidence`` is the final (combined) confidence;
    ``stop_loss``/``take_profit`` are price levels, ``*_pct`` the distances they came from."""

    decision_id: str
    time: datetime
    symbol: str
    strategy: str
    action: str
    base_action: str
    price: float
    base_confidence: float
    ml_confidence: float | None
    memory_confidence: float | None
    confidence: float
    size: float
    stop_loss: float
    take_profit: float
    stop_loss_pct: float
    take_profit_pct: float
    reasoning: str
    learned_strategy: str | None = None
    model_version: str | None = None
    ml_direction: str | None = None
    features: Mapping[str, float] = field(default_factory=dict)
    regime: str = "normal"
    parameters_version: str = ""
    session_id: str = ""
    market_context: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = object.__setattr__
        _text("decision_id", self.decision_id, empty=False, max_len=64)
        s(self, "time", _aware_utc("time", self.time))
        s(self, "action", _action("action", self.action))
        s(self, "base_action", _action("base_action", self.base_action))
        for name in ("base_confidence", "confidence"):
            _unit(name, getattr(self, name))
        for name in ("ml_confidence", "memory_confidence"):
            if getattr(self, name) is not None:
                _unit(name, getattr(self, name))
        _positive("price", self.price)
        for name in ("size", "stop_loss", "take_profit", "stop_loss_pct", "take_profit_pct"):
            _positive(name, getattr(self, name), allow_zero=True)
        s(self, "features", _features("features", self.features))
        s(self, "market_context", _context("market_context", self.market_context))

    @property
    def final_confidence(self) -> float:
        return self.confidence


@dataclass(frozen=True, slots=True)
class Outcome(Record):
    """The close of a decision's trade. ``pnl_pct`` is a fraction (0.012 = +1.2%).

    ``shadow``: not a trade but what a HOLD decision's base signal would have done had it been
    traded (the caller followed the HOLD and tracked the signal on paper)."""

    decision_id: str
    entry_price: float
    exit_price: float
    size: float
    pnl: float
    pnl_pct: float
    exit_reason: str
    time: datetime
    shadow: bool = field(default=False, metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "decision_id", _text("decision_id", self.decision_id, empty=False, max_len=64))
        _positive("entry_price", self.entry_price)
        _positive("exit_price", self.exit_price)
        _positive("size", self.size, allow_zero=True)
        _finite("pnl", self.pnl)
        _finite("pnl_pct", self.pnl_pct)
        s(self, "exit_reason", _text("exit_reason", self.exit_reason or "", max_len=256))
        s(self, "time", _aware_utc("time", self.time))
        s(self, "shadow", bool(self.shadow))

    @property
    def win(self) -> bool:
        return self.pnl > 0


@dataclass(frozen=True, slots=True)
class DecisionView:
    """A decision with its outcome once closed (what 'last N decisions' returns)."""

    decision: Decision
    outcome: Outcome | None = None


# ---------------------------------------------------------------------------------- parameters
@dataclass(frozen=True, slots=True)
class ParameterAdjustment(Record):
    """One change of one parameter, with why (``reason``) and what caused it (``trigger``, e.g.
    ``outcome:<decision id>``, ``monitor``, ``restore:<version>``). ``impact`` is filled in by the
    export (win rate of the trades after vs before the change), never stored."""

    parameter: str
    from_value: float
    to_value: float
    reason: str
    trigger: str
    time: datetime
    impact: str | None = field(default=None, metadata=STORED_NOT)

    def __post_init__(self) -> None:
        if not IDENTIFIER.match(self.parameter):
            raise InvalidRecord("parameter", "must be an identifier")
        _finite("from_value", self.from_value)
        _finite("to_value", self.to_value)
        object.__setattr__(self, "time", _aware_utc("time", self.time))


def parameters_version(values: Mapping[str, float]) -> str:
    """The content hash identifying a parameter set (16 hex digits of SHA-256 over the sorted
    values written with repr, so 0.1 and 0.1000000001 differ)."""
    canonical = json.dumps({k: repr(float(v)) for k, v in sorted(values.items())}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Parameters(Record):
    """A parameter set, identified by the hash of its content (``version``)."""

    values: Mapping[str, float]
    updated_at: datetime
    version: str = ""

    def __post_init__(self) -> None:
        vals = {}
        for k, v in dict(self.values).items():
            if not isinstance(k, str) or not IDENTIFIER.match(k):
                raise InvalidRecord(f"values.{k}", "parameter names must be identifiers")
            vals[k] = _finite(f"values.{k}", v)
        object.__setattr__(self, "values", MappingProxyType(dict(sorted(vals.items()))))
        object.__setattr__(self, "updated_at", _aware_utc("updated_at", self.updated_at))
        object.__setattr__(self, "version", parameters_version(vals))

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def with_values(self, changes: Mapping[str, float], at: datetime) -> Parameters:
        return Parameters({**self.values, **changes}, at)


# ---------------------------------------------------------------------------------- strategies
@dataclass(frozen=True, slots=True)
class Condition(Record):
    """``feature op threshold`` on the decision-time feature snapshot."""

    feature: str
    op: str
    threshold: float

    def __post_init__(self) -> None:
        if not isinstance(self.feature, str) or not IDENTIFIER.match(self.feature):
            raise InvalidRecord("conditions.feature", f"must be an identifier, got {self.feature!r}")
        if self.op not in OPS:
            raise InvalidRecord("conditions.op", f"must be one of {' '.join(OPS)}, got {self.op!r}")
        object.__setattr__(self, "threshold", _finite("conditions.threshold", self.threshold))

    def holds(self, features: Mapping[str, float]) -> bool:
        v = features.get(self.feature)
        if v is None:
            return False
        t = self.threshold
        op = self.op
        return v < t if op == "<" else v <= t if op == "<=" else v > t if op == ">" else v >= t

    def __str__(self) -> str:
        return f"{self.feature} {self.op} {self.threshold:.6g}"


@dataclass(frozen=True, slots=True)
class StrategyStats(Record):
    """Running trade statistics (Welford for the variance of pnl_pct, so Sharpe updates in O(1)).
    Sharpe is per trade (mean / standard deviation of pnl_pct), not annualised."""

    trades: int = 0
    wins: int = 0
    losses: int = 0
    total_pnl: float = 0.0
    avg_pnl_pct: float = 0.0
    m2_pnl_pct: float = 0.0

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else 0.0

    @property
    def avg_gain(self) -> float:
        return self.avg_pnl_pct

    @property
    def sharpe(self) -> float:
        if self.trades < 2 or self.m2_pnl_pct <= 0:
            return 0.0
        return self.avg_pnl_pct / math.sqrt(self.m2_pnl_pct / (self.trades - 1))

    def add(self, pnl: float, pnl_pct: float) -> StrategyStats:
        n = self.trades + 1
        delta = pnl_pct - self.avg_pnl_pct
        mean = self.avg_pnl_pct + delta / n
        return StrategyStats(
            trades=n,
            wins=self.wins + (pnl > 0),
            losses=self.losses + (pnl <= 0),
            total_pnl=self.total_pnl + pnl,
            avg_pnl_pct=mean,
            m2_pnl_pct=self.m2_pnl_pct + delta * (pnl_pct - mean),
        )


@dataclass(frozen=True, slots=True)
class StrategySpec(Record):
    """A learned strategy: declarative, the source of truth (``strategy_modules.py`` is only a
    rendered view). ``name`` is an identifier; ``evidence`` says why it was created."""

    name: str
    conditions: tuple[Condition, ...]
    action: str
    confidence: float
    size: float
    stop_loss_pct: float
    take_profit_pct: float
    stats: StrategyStats
    created_at: datetime
    updated_at: datetime
    deprecated: bool = False
    deprecated_reason: str | None = None
    evidence: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not IDENTIFIER.match(self.name):
            raise InvalidRecord("name", f"must be an identifier (letters, digits, _), got {self.name!r}")
        object.__setattr__(self, "conditions", tuple(self.conditions))
        if not self.conditions or not all(isinstance(c, Condition) for c in self.conditions):
            raise InvalidRecord("conditions", "must be one or more Condition")
        if _action("action", self.action) == "HOLD":
            raise InvalidRecord("action", "a strategy must BUY or SELL")
        object.__setattr__(self, "action", _action("action", self.action))
        _unit("confidence", self.confidence)
        _positive("size", self.size)
        _positive("stop_loss_pct", self.stop_loss_pct)
        _positive("take_profit_pct", self.take_profit_pct)
        object.__setattr__(self, "created_at", _aware_utc("created_at", self.created_at))
        object.__setattr__(self, "updated_at", _aware_utc("updated_at", self.updated_at))

    def matches(self, action: str, features: Mapping[str, float]) -> bool:
        return not self.deprecated and action == self.action and all(c.holds(features) for c in self.conditions)

    def evolve(self, **changes: Any) -> StrategySpec:
        return replace(self, **changes)


# ---------------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class LearningUpdate(Record):
    """What one outcome taught the memory."""

    decision_id: str
    win: bool
    strategy: str | None
    strategy_stats: StrategyStats | None
    adjustments: tuple[ParameterAdjustment, ...]
    parameters_version: str
    summary: str
    deprecated: bool = False
    shadow: bool = False  # the outcome of a held signal: learned from, but no trade
    #: True when this is the stored answer to a repeated request id (nothing was learned now).
    replayed: bool = field(default=False, metadata=STORED_NOT)


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    """What one pattern-discovery run changed, and how much it looked at."""

    window_trades: int
    base_win_rate: float
    candidates: int
    rejected_by_guard: int
    created: tuple[StrategySpec, ...] = ()
    updated: tuple[StrategySpec, ...] = ()
    deprecated: tuple[StrategySpec, ...] = ()


@dataclass(frozen=True, slots=True)
class MemoryStats:
    decisions: int
    outcomes: int
    active_strategies: int
    deprecated_strategies: int
    trades_24h: int
    win_rate_24h: float | None
    #: Corrupt records the memory has met so far (left out of every read; ``mem memory verify``).
    corrupt_records: int = 0


# Event kinds of the audit trail (``MemoryStore.events_since``).
DECISION = "decision"
OUTCOME = "outcome"
#: A shadow outcome (``Outcome.shadow``): what a HOLD decision's signal would have done if traded.
SHADOW_OUTCOME = "shadow_outcome"
PARAMETER_ADJUSTMENT = "parameter_adjustment"
STRATEGY_UPSERT = "strategy_upsert"
EVENT_KINDS: tuple[str, ...] = (DECISION, OUTCOME, PARAMETER_ADJUSTMENT, STRATEGY_UPSERT, SHADOW_OUTCOME)
#: The store's ``heads`` kind of a symbol's newest decision (subject: the symbol's lookup tag).
SYMBOL_HEAD = "decision_symbol"


@dataclass(frozen=True, slots=True)
class Event:
    """One appended change. ``payload`` is the decrypted record as a dict: for ``decision`` a
    Decision, ``outcome`` an Outcome, ``parameter_adjustment`` {"parameters", "adjustments"},
    ``strategy_upsert`` a StrategySpec (``to_dict`` forms). ``record``: the record the store
    built (and so validated) from it when it read the event — a Decision, an Outcome, a
    StrategySpec, or (Parameters, adjustments, state) — so readers do not build it again."""

    event_id: int
    kind: str
    subject: str
    payload: Mapping[str, Any]
    record: Any = field(default=None, compare=False, repr=False)
