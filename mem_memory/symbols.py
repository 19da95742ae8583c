"""The symbol rule: what a market symbol may be, wherever one enters the system.

Ingest (``--symbol`` and file names), serving (every request) and the memory (``SignalRequest``)
all call ``validate_symbol``, so a symbol one part accepts is a symbol every part accepts. The rule
lives here because the memory imports no other package of ours, and the others may import it.
"""

from __future__ import annotations

from typing import Any

from mem_memory.errors import InvalidRecord

#: Longest symbol, in characters (after surrounding whitespace is stripped).
MAX_SYMBOL_LEN = 64


def symbol_problem(value: Any) -> str | None:
    """Why ``value`` (stripped of surrounding whitespace) is not a symbol, or None when it is."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    s = value.strip()
    if not s:
        return "must not be empty"
    if len(s) > MAX_SYMBOL_LEN:
        return f"longer than {MAX_SYMBOL_LEN} characters"
    if not s.isprintable() or any(c.isspace() for c in s):
        return "must be printable, without spaces"
    return None


def validate_symbol(value: Any, field: str = "symbol") -> str:
    """``value`` stripped of surrounding whitespace; ``InvalidRecord(field, problem)`` when it is
    empty, longer than ``MAX_SYMBOL_LEN``, not printable or contains whitespace. Case is kept."""
    problem = symbol_problem(value)
    if problem is not None:
        raise InvalidRecord(field, problem)
    return value.strip()
