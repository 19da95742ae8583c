"""The learning assets recorded after a run outside Dagster (``mem main``'s replay): reported
materializations on a real instance with the store's state, and the store unchanged by it."""

from __future__ import annotations

import dagster as dg

from mem_pipelines.learning.observe import report_memory_assets
from mem_pipelines.resources import MemoryStoreResource


def test_report_records_the_four_learning_assets_without_learning_again(planted: MemoryStoreResource, tmp_path) -> None:
    with planted.engine() as engine:
        engine.discover(engine.store.closed_trades(1)[0][1].time)  # some learned strategies to show
        before = engine.store.last_event_id()
        counts = engine.store.counts()
        with dg.DagsterInstance.ephemeral() as instance:
            keys = report_memory_assets(instance, engine, planted.db_path(), "3", "a test replay")
            assert [k.to_user_string() for k in keys] == [
                "served_model",
                "memory_store",
                "learned_strategies",
                "parameter_memory",
            ]
            got = {k.to_user_string(): instance.get_latest_materialization_event(k).asset_materialization for k in keys}
        assert engine.store.last_event_id() == before  # nothing learned, nothing written
        active = len(engine.strategies())
    assert got["served_model"].metadata["model_uri"].value == "models:/mem-reversal/3"
    store = got["memory_store"].metadata
    assert store["decisions"].value == counts["decisions"] == 240
    assert store["outcomes"].value == counts["outcomes"] and store["last_event_id"].value == before
    assert got["learned_strategies"].metadata["active"].value == active
    assert "| name |" in got["learned_strategies"].metadata["active_strategies"].value or active == 0
    assert got["parameter_memory"].metadata["last_event_id"].value == before
    assert "a test replay" in (got["parameter_memory"].description or "")
