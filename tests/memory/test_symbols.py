"""One symbol rule: the memory's ``validate_symbol``, and ingest and serving agreeing with it."""

from __future__ import annotations

import pytest

from mem_memory import MAX_SYMBOL_LEN, InvalidRecord, symbol_problem, validate_symbol
from mem_pipelines.ingest.validation import IngestError, checked_symbol
from mem_serving import converters
from mem_serving.errors import InvalidArgument

from .helpers import request

GOOD = ["BTCUSDT", "btcusdt", " ETHUSDT\n", "BRK.B", "A,B", "X" * MAX_SYMBOL_LEN, "ÄPFEL"]
BAD = {
    "": "must not be empty",
    " \t\n": "must not be empty",
    "BAD SYM": "must be printable, without spaces",
    "BTC\nUSDT": "must be printable, without spaces",
    "BTC\x00": "must be printable, without spaces",
    "X" * (MAX_SYMBOL_LEN + 1): f"longer than {MAX_SYMBOL_LEN} characters",
    "X" * 10_000: f"longer than {MAX_SYMBOL_LEN} characters",
}


@pytest.mark.parametrize("name", GOOD)
def test_good_symbols_are_stripped_and_keep_their_case(name: str) -> None:
    assert symbol_problem(name) is None
    assert validate_symbol(name) == name.strip()


@pytest.mark.parametrize("name, problem", BAD.items())
def test_bad_symbols_name_the_problem(name: str, problem: str) -> None:
    assert symbol_problem(name) == problem
    with pytest.raises(InvalidRecord) as info:
        validate_symbol(name, "candles.symbol")
    assert info.value.field == "candles.symbol" and str(info.value) == f"candles.symbol: {problem}"
    assert symbol_problem(42) == "must be a string, got int"


@pytest.mark.parametrize("name", [*GOOD, *BAD])
def test_memory_ingest_and_serving_accept_the_same_symbols(name: str) -> None:
    """Each user of the rule accepts exactly what ``validate_symbol`` accepts, with its own error."""
    ok = symbol_problem(name) is None
    outcomes = []
    for use, error in (
        (lambda: request(symbol=name).symbol, InvalidRecord),
        (lambda: converters.symbol(name), InvalidArgument),
        (lambda: checked_symbol(name), IngestError),
    ):
        try:
            outcomes.append(use())
        except error as exc:
            assert not ok and symbol_problem(name) in str(exc)
            outcomes.append(None)
    if ok:
        assert outcomes == [name.strip(), name.strip(), name.strip().upper()]
    else:
        assert outcomes == [None, None, None]
