"""MEM's durable, encrypted decision / parameter / strategy memory and its learning rules.

Imports nothing from mem_pipelines or mem_serving. See docs/memory.md and docs/CONTRACTS.md.
"""

from mem_memory.config import DEFAULT_PARAMETERS, PARAMETER_LIMITS, MemoryConfig
from mem_memory.crypto import PREVIOUS_KEYS_ENV, key_id, new_key
from mem_memory.engine import MemoryEngine
from mem_memory.errors import (
    CorruptRecord,
    DuplicateDecision,
    DuplicateOutcome,
    InvalidRecord,
    MalformedMemoryKey,
    MemoryKeyError,
    MemoryStoreError,
    MemoryUnavailable,
    MissingMemoryKey,
    StoreClosed,
    StoreFull,
    StoreInUse,
    UnencryptedStoreKeyError,
    UnknownDecision,
    UnknownParameterVersion,
    WrongMemoryKey,
)
from mem_memory.files import private_dir
from mem_memory.index import Similar
from mem_memory.opening import open_with_env_keys
from mem_memory.requests import REQUEST_ID_WINDOW_S, request_id_problem, validate_request_id
from mem_memory.settings import KEY_ENV, key_from_env, previous_keys_from_env
from mem_memory.store import MemoryStore
from mem_memory.symbols import MAX_SYMBOL_LEN, symbol_problem, validate_symbol
from mem_memory.types import (
    DECISION,
    OUTCOME,
    PARAMETER_ADJUSTMENT,
    SHADOW_OUTCOME,
    STRATEGY_UPSERT,
    Condition,
    Decision,
    DecisionView,
    DiscoveryResult,
    Event,
    LearningUpdate,
    MemoryStats,
    Outcome,
    ParameterAdjustment,
    Parameters,
    SignalRequest,
    StrategySpec,
    StrategyStats,
    parameters_version,
)

__all__ = [
    "DECISION",
    "EVENT_KINDS",
    "SHADOW_OUTCOME",
    "OUTCOME",
    "PARAMETER_ADJUSTMENT",
    "STRATEGY_UPSERT",
    "DEFAULT_PARAMETERS",
    "PARAMETER_LIMITS",
    "KEY_ENV",
    "Condition",
    "CorruptRecord",
    "Decision",
    "DecisionView",
    "DiscoveryResult",
    "DuplicateDecision",
    "DuplicateOutcome",
    "Event",
    "InvalidRecord",
    "LearningUpdate",
    "MalformedMemoryKey",
    "MemoryConfig",
    "MemoryEngine",
    "MemoryKeyError",
    "MemoryStats",
    "MemoryStore",
    "MemoryStoreError",
    "MemoryUnavailable",
    "MissingMemoryKey",
    "Outcome",
    "ParameterAdjustment",
    "Parameters",
    "SignalRequest",
    "Similar",
    "StoreClosed",
    "StoreFull",
    "StrategySpec",
    "StrategyStats",
    "UnencryptedStoreKeyError",
    "UnknownDecision",
    "UnknownParameterVersion",
    "WrongMemoryKey",
    "key_from_env",
    "open_with_env_keys",
    "new_key",
    "parameters_version",
    "MAX_SYMBOL_LEN",
    "symbol_problem",
    "validate_symbol",
    "PREVIOUS_KEYS_ENV",
    "StoreInUse",
    "key_id",
    "previous_keys_from_env",
    "private_dir",
    "REQUEST_ID_WINDOW_S",
    "request_id_problem",
    "validate_request_id",
    "StoreFull",
]
