"""Property tests: records survive the (encrypted) store unchanged; combine stays a weighted mean."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mem_memory import MemoryConfig, MemoryStore, Parameters
from mem_memory.rules.combine import combine

from .helpers import make_decision, outcome

unit = st.floats(0.0, 1.0, allow_nan=False)
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(base=unit, ml=st.none() | unit, memory=st.none() | unit)
def test_combine_is_a_weighted_mean_of_the_present_components(base, ml, memory) -> None:
    final = combine(base, ml, memory, MemoryConfig())
    present = [x for x in (base, ml, memory) if x is not None]
    assert min(present) - 1e-12 <= final <= max(present) + 1e-12


@settings(max_examples=30, deadline=None)
@given(
    features=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True), finite, max_size=6),
    pnl=st.floats(-0.5, 0.5, allow_nan=False),
    text=st.text(max_size=50),
    minutes=st.integers(0, 10**6),
)
def test_records_round_trip_through_the_encrypted_store(features, pnl, text, minutes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore.open(Path(tmp) / "m.db", key=os.urandom(32))
        d = make_decision(
            1, features=features or {"x": 1.0}, time=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
        )
        d = type(d)(**{**d.to_dict(), "time": d.time, "reasoning": text, "features": d.features})
        store.append_decision(d)
        o = outcome(d, pnl)
        store.append_outcome(o)
        got_d, got_o = store.get_decision(d.decision_id)
        assert got_d == d and got_o == o
        store.close()


@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), finite, min_size=1))
def test_parameter_versions_depend_only_on_content(values) -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert (
        Parameters(values, t).version == Parameters(dict(reversed(list(values.items()))), t + timedelta(days=1)).version
    )
