"""MEM's durable, encrypted decision / parameter / strategy memory and its learning rules.

Imports nothing from mem_pipelines or mem_serving. See docs/memory.md and docs/CONTRACTS.md.
"""
from mem_memory.config import DEFAULT_PARAMETERS, PARAMETER_LIMITS, MemoryConfig
from mem_memory.crypto import KEY_ENV, key_from_env, new_key
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
    UnencryptedStoreKeyError,
    UnknownDecision,
    UnknownParameterVersion,
    WrongMemoryKey,
)
from mem_memory.index import Similar
from mem_memory.store import MemoryStore
from mem_memory.types import (
    DECISION,
    EVENT_KINDS,
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
    "DECISION", "EVENT_KINDS", "OUTCOME", "PARAMETER_ADJUSTMENT", "SHADOW_OUTCOME", "STRATEGY_UPSERT", "DEFAULT_PARAMETERS",
    "PARAMETER_LIMITS", "KEY_ENV", "Condition", "CorruptRecord", "Decision", "DecisionView", "DiscoveryResult",
    "DuplicateDecision", "DuplicateOutcome", "Event", "InvalidRecord", "LearningUpdate", "MalformedMemoryKey",
    "MemoryConfig", "MemoryEngine", "MemoryKeyError", "MemoryStats", "MemoryStore", "MemoryStoreError", "MemoryUnavailable",
    "MissingMemoryKey", "Outcome", "ParameterAdjustment", "Parameters", "SignalRequest", "Similar", "StoreClosed",
    "StrategySpec", "StrategyStats", "UnencryptedStoreKeyError", "UnknownDecision", "UnknownParameterVersion",
    "WrongMemoryKey", "key_from_env", "new_key", "parameters_version",
]
