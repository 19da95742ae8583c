"""Closing the loop: candles the engine pushes through ``mem serve``'s app for a symbol QuestDB has
never seen reach QuestDB (written behind, drained on stop) and the next ``train_and_gate``
dataset, with no `mem ingest` in between. Even before any champion exists (a new deployment)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import dagster as dg
import grpc
import pandas as pd
import pytest

from mem_core.questdb.store import read_candles, wait_for_wal
from mem_core.settings import QuestDBSettings
from mem_pipelines.resources import MlflowResource, QuestDBResource, TrainingFramesIOManager
from mem_pipelines.training.defs import training_defs
from mem_serving.api import MemServiceStub, pb
from mem_serving.server import build_app
from mem_serving.settings import ServingSettings
from tests.serving.helpers import candle_pb, candles_pb, load_candles

SYMBOL = "NEWUSDT"
ROWS = 6000


def test_pushed_candles_of_a_new_symbol_reach_questdb_and_the_next_training(
    fresh_questdb: QuestDBSettings, shared_candles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    candles = load_candles(shared_candles, "ETHUSDT", ROWS + 1)  # real candles under a new name
    monkeypatch.setenv("MEM_HOME", str(tmp_path))
    monkeypatch.setenv("MEM_QUESTDB_HTTP_PORT", str(fresh_questdb.http_port))
    monkeypatch.setenv("MEM_QUESTDB_PG_PORT", str(fresh_questdb.pg_port))
    monkeypatch.delenv("MEM_MEMORY_KEY", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # no champion yet
    running = build_app(
        ServingSettings(port=0, metrics_port=0, memory_db=tmp_path / "memory.db", tracking_uri=uri, candle_flush_s=60.0)
    )  # written on flush or stop only
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = MemServiceStub(channel)
            for start in range(0, ROWS, 3000):
                reply = stub.PushCandles(
                    pb.PushCandlesRequest(symbol=SYMBOL, candles=candles_pb(candles.iloc[start : start + 3000])),
                    timeout=30,
                )
                assert (reply.queued, reply.dropped) == (3000, 0)
            assert running.handlers.candle_sink is not None and running.handlers.candle_sink.flush(60.0)
            metrics = (
                urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=10).read().decode()
            )
            assert f"mem_candles_written_total {ROWS}.0" in metrics
            assert f'mem_candles_newest_age_seconds{{symbol="{SYMBOL}"}}' in metrics
            # the engine's next candle, with a prediction request: no champion to answer, but the
            # candle is kept, and the stop below writes it (the queue is drained on shutdown)
            with pytest.raises(grpc.RpcError) as err:
                stub.PredictReversal(
                    pb.PredictReversalRequest(symbol=SYMBOL, candles=[candle_pb(tuple(candles.iloc[ROWS]))]), timeout=10
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        running.stop(grace=1.0)
    wait_for_wal(fresh_questdb)

    stored = read_candles(fresh_questdb, SYMBOL)
    assert len(stored) == ROWS + 1 and stored["ts"].iloc[-1] == candles["ts"].iloc[-1]

    defs = dg.Definitions.merge(
        training_defs((SYMBOL,)),
        dg.Definitions(
            resources={
                "questdb": QuestDBResource.from_settings(fresh_questdb),
                "mlflow": MlflowResource(tracking_uri=uri),
                "training_frames": TrainingFramesIOManager(base_dir=str(tmp_path / "frames")),
            }
        ),
    )
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("train_and_gate").execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "training_dataset": {"config": {"last_days": 30}},
                    "reversal_model": {"config": {"params": {"max_iter": 40}, "walk_forward_folds": 0}},
                }
            },
        )
    assert result.success
    dataset = result.asset_materializations_for_node("training_dataset")[0].metadata
    rows = dataset["rows_per_symbol"].value
    assert list(rows) == [SYMBOL] and ROWS - 500 < rows[SYMBOL] <= ROWS  # less the warm-up and the label horizon
    assert pd.Timestamp(dataset["end"].value) > candles["ts"].iloc[ROWS - 20]  # up to the newest labelled candle
    gate = result.asset_materializations_for_node("champion_gate")[0].metadata
    # the gate judged the model trained on them (promoted only with skill over the base rate)
    assert gate["verdict"].value in ("promoted", "rejected") and gate["sentence"].value
