"""The replay's orchestration over real candles with a scripted server (no gRPC): the variants,
the refusal of a model trained into the window, outcomes reported in time order, learning steps."""

from __future__ import annotations

import pandas as pd
import pytest

from mem_pipelines.replay.report import EvolutionPoint, LearningEvent
from mem_pipelines.replay.runner import (
    LookAheadError,
    ModelInfo,
    ReplayConfig,
    ReplayError,
    StoreMismatchError,
    check_model_window,
    check_same_store,
    replay_frames,
    served_model,
    server_store,
)
from mem_serving.client import (
    EnhancedSignal,
    OutcomeLearning,
    ParameterSet,
    ReversalPrediction,
    StoreIdentity,
    TradeStats,
    TrainingWindow,
)
from mem_serving.client import ModelInfo as ServerModelInfo

PARAMS = {"position_size": 0.1, "stop_loss_pct": 0.01, "take_profit_pct": 0.015, "ml_confidence_min": 0.5}


class ScriptedServer:
    """``MemClient``'s calls, scripted: supports a signal when the last candle's move agrees;
    enhance passes the action through."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, pd.Timestamp]] = []
        self.held_candles: dict[str, pd.DataFrame] = {}
        self.outcomes: list[pd.Timestamp] = []
        self.shadows: list[pd.Timestamp] = []
        self.held: dict[str, pd.Timestamp] = {}
        self.decided_at: dict[str, pd.Timestamp] = {}

    def get_parameters(self):
        return ParameterSet(dict(PARAMS), "v0")

    def _merge(self, symbol: str, candles: pd.DataFrame) -> pd.DataFrame:
        """The server's per-symbol history after a call: the call's candles replace the held ones
        from its first on; otherwise they must follow the held ones without a gap."""
        held = self.held_candles.get(symbol)
        first = candles["ts"].iloc[0]
        if held is not None and first > held["ts"].iloc[-1]:
            assert first == held["ts"].iloc[-1] + pd.Timedelta(minutes=5), "a gap in the candles sent"
            candles = pd.concat([held, candles], ignore_index=True)
        elif held is not None:
            candles = pd.concat([held[held["ts"] < first], candles], ignore_index=True)
        self.held_candles[symbol] = candles.iloc[-400:].reset_index(drop=True)
        return self.held_candles[symbol]

    def predict_reversal(self, symbol, candles=None):
        candles = self._merge(symbol, candles)
        assert len(candles) == 400
        self.calls.append(("predict", candles["ts"].iloc[-1]))
        up = candles["close"].iloc[-1] >= candles["open"].iloc[-1]
        return ReversalPrediction(True, 0.7, "bullish" if up else "bearish", "1")

    def enhance_signal(
        self,
        symbol,
        action,
        base_confidence,
        price,
        time,
        *,
        strategy="",
        candles=None,
        ml=None,
        session_id="",
        market_context=None,
    ):
        candles = self._merge(symbol, candles)
        assert candles["ts"].iloc[-1] == time and len(candles) == 400
        assert strategy == "momentum_rsi" and session_id == "replay" and ml is None
        self.calls.append(("enhance", time))
        did = f"{symbol}-{len(self.calls)}"
        self.decided_at[did] = time
        if base_confidence < 0.55:
            del self.decided_at[did]
            self.held[did] = time
            return EnhancedSignal(did, "HOLD", 0.4, 0.0, 0.0, 0.0)
        return EnhancedSignal(
            did,
            action,
            base_confidence,
            0.05,
            price * (0.99 if action == "BUY" else 1.01),
            price * (1.02 if action == "BUY" else 0.98),
        )

    def log_outcome(self, decision_id, entry_price, exit_price, size, pnl, pnl_pct, exit_reason, time, *, shadow=False):
        # a decision of this server, reported once, after it; a shadow only for a HOLD
        assert time > (self.held if shadow else self.decided_at).pop(decision_id)
        every = sorted(self.outcomes + self.shadows)
        assert not every or time >= every[-1]  # in time order, real and shadow together
        (self.shadows if shadow else self.outcomes).append(time)
        return OutcomeLearning(decision_id, pnl > 0, "", TradeStats(0, 0, 0.0, 0.0, 0.0), (), "v0", "")


class CountingLearner:
    def __init__(self) -> None:
        self.steps: list[pd.Timestamp] = []

    def step(self, now):
        self.steps.append(now)
        return [LearningEvent(now, "noop", "-", "nothing")]

    def snapshot(self, now, outcomes):
        return EvolutionPoint(now, outcomes, 0, 0, {"position_size": 0.1})

    def final_strategies(self):
        return []


def _cfg(**kw) -> ReplayConfig:
    return ReplayConfig(symbols=("BTCUSDT", "ETHUSDT"), start="2025-06-03", end="2025-06-05", learn_every=5, **kw)


def test_three_variants_on_real_candles(shared_csv) -> None:
    frames = {s: shared_csv(s, "2025-06-01", "2025-06-05") for s in ("BTCUSDT", "ETHUSDT")}
    model = ModelInfo("1", None, pd.Timestamp("2025-05-31T23:55", tz="UTC"))
    server, learner = ScriptedServer(), CountingLearner()
    rep = replay_frames(_cfg(), frames, server, model, learner, history=400)
    by = {v.name: v for v in rep.variants}
    assert list(by) == ["base", "base_ml", "full"]
    assert by["base"].metrics.trades > 10
    assert by["base_ml"].metrics.trades > 0 and by["base_ml"].skipped > 0
    assert by["full"].metrics.trades > 0 and by["full"].skipped > 0
    # Every full-system trade was reported, in time order, and every decision is inside the window.
    assert len(server.outcomes) == by["full"].metrics.trades
    assert all(rep.start <= t.decision_ts < rep.end for v in rep.variants for t in v.trades)
    assert all(t.entry_ts > t.decision_ts for v in rep.variants for t in v.trades)
    # Held signals were followed on paper and reported as shadows; learning ran every 5 outcomes
    # of either kind (and once at the end for the remainder).
    assert 0 < len(server.shadows) <= by["full"].skipped
    assert len(learner.steps) == -(-(len(server.outcomes) + len(server.shadows)) // 5)
    assert rep.evolution[-1].outcomes == len(server.outcomes)
    without = replay_frames(
        _cfg(shadow_outcomes=False), frames, ScriptedServer(), model, CountingLearner(), history=400
    )
    assert without.table_markdown() == rep.table_markdown()  # shadows change no trade of a scripted server
    assert "Base + ML + memory" in rep.table_markdown()
    # Same inputs, same report.
    again = replay_frames(_cfg(), frames, ScriptedServer(), model, CountingLearner(), history=400)
    assert again.table_markdown() == rep.table_markdown()
    assert again.trades_frame().equals(rep.trades_frame())


def test_refuses_a_model_trained_into_the_window(shared_csv) -> None:
    start = pd.Timestamp("2025-06-03", tz="UTC")
    with pytest.raises(LookAheadError, match="not before the replay window"):
        check_model_window(ModelInfo("7", None, start), start)
    with pytest.raises(LookAheadError, match="unknown"):
        check_model_window(ModelInfo("7", None, None), start)  # type: ignore[arg-type]
    check_model_window(ModelInfo("7", None, start - pd.Timedelta(minutes=5)), start)
    frames = {s: shared_csv(s, "2025-06-01", "2025-06-05") for s in ("BTCUSDT", "ETHUSDT")}
    server = ScriptedServer()
    with pytest.raises(LookAheadError):
        replay_frames(_cfg(), frames, server, ModelInfo("7", None, pd.Timestamp("2025-06-04", tz="UTC")), None, 400)
    assert server.calls == []  # refused before asking the server anything


def test_too_little_warm_up_is_an_error(shared_csv) -> None:
    frames = {s: shared_csv(s, "2025-06-02T22:00", "2025-06-05") for s in ("BTCUSDT", "ETHUSDT")}
    with pytest.raises(ReplayError, match="warm-up"):
        replay_frames(
            _cfg(), frames, ScriptedServer(), ModelInfo("1", None, pd.Timestamp("2025-06-01", tz="UTC")), None, 400
        )


def test_a_new_champion_during_the_replay_stops_it(shared_csv) -> None:
    class Switched(ScriptedServer):
        def predict_reversal(self, symbol, candles=None):
            view = super().predict_reversal(symbol, candles)
            return ReversalPrediction(view.is_reversal, view.confidence, view.direction, "2")

    frames = {s: shared_csv(s, "2025-06-01", "2025-06-05") for s in ("BTCUSDT", "ETHUSDT")}
    model = ModelInfo("1", None, pd.Timestamp("2025-05-31T23:55", tz="UTC"))
    with pytest.raises(ReplayError, match="not the champion 1"):
        replay_frames(_cfg(), frames, Switched(), model, None, history=400)


def _served(
    window: TrainingWindow | None,
    usable: bool = True,
    store: StoreIdentity = StoreIdentity("id-1", "/nowhere/memory.db"),
) -> ServerModelInfo:
    return ServerModelInfo(
        usable,
        "serving version 1" if usable else "no champion model yet",
        "1" if usable else "",
        "run-1",
        "gradient_boosting",
        "seed",
        (),
        window,
        {},
        {},
        store,
        "sqlite:///x.db",
    )


def test_the_window_comes_from_the_server_labels_look_ahead_included() -> None:
    last = pd.Timestamp("2025-05-31T23:05", tz="UTC")
    window = TrainingWindow(None, last.to_pydatetime(), 10, (last + pd.Timedelta(minutes=50)).to_pydatetime())
    model = served_model(_served(window))
    assert model.data_end == pd.Timestamp("2025-05-31T23:55", tz="UTC") and model.version == "1"
    check_model_window(model, pd.Timestamp("2025-06-01", tz="UTC"))
    with pytest.raises(LookAheadError, match="not before"):
        check_model_window(model, pd.Timestamp("2025-05-31T23:55", tz="UTC"))
    with pytest.raises(LookAheadError, match="without a recorded training window"):
        served_model(_served(None))
    silent = served_model(_served(None, usable=False))  # no champion: the replay runs with the ML silent
    assert not silent.usable and silent.version == "" and silent.absent_reason == "no champion model yet"
    check_model_window(silent, pd.Timestamp("2025-06-01", tz="UTC"))  # no model: nothing learned from any window


def test_the_store_must_be_the_servers(tmp_path) -> None:
    from mem_memory import MemoryStore

    with MemoryStore.open(tmp_path / "server.db") as s, MemoryStore.open(tmp_path / "other.db") as o:
        ours, theirs = s.store_id, o.store_id
    info = _served(None, store=StoreIdentity(ours, str(tmp_path / "server.db")))
    assert server_store(info, None) == tmp_path / "server.db"  # none given: the server's
    check_same_store(info, tmp_path / "server.db", ours)
    with pytest.raises(StoreMismatchError, match=f"id {theirs}.*writes .*server.db \\(id {ours}\\)"):
        check_same_store(info, tmp_path / "other.db", theirs)
    with pytest.raises(StoreMismatchError, match="no memory store at"):
        server_store(info, tmp_path / "missing.db")
    with pytest.raises(StoreMismatchError, match="does not report"):
        server_store(_served(None, store=StoreIdentity("", "")), None)
    # A server on another machine: the path is not here, the id decides.
    remote = _served(None, store=StoreIdentity(ours, "/elsewhere/memory.db"))
    check_same_store(remote, tmp_path / "server.db", ours)


def test_a_postgresql_store_is_checked_by_identity(postgres) -> None:
    """A server on a PostgreSQL memory reports the URL without its password: the replay uses it
    when it has no password, asks for the credentials when it had one, and compares ids."""
    from mem_memory import MemoryStore

    url = postgres.create_db("replay")
    try:
        with MemoryStore.open(url) as s:
            ours = s.store_id
        info = _served(None, store=StoreIdentity(ours, url))
        found = server_store(info, None)
        with MemoryStore.open(found) as again:  # the Path-collapsed URL opens the same store
            assert again.store_id == ours
        check_same_store(info, found, ours)
        with pytest.raises(StoreMismatchError, match="id other"):
            check_same_store(info, found, "other")
        hidden = url.replace("postgres@", "postgres:***@")
        with pytest.raises(StoreMismatchError, match="with the credentials"):
            server_store(_served(None, store=StoreIdentity(ours, hidden)), None)
        given = server_store(_served(None, store=StoreIdentity(ours, hidden)), url)  # type: ignore[arg-type]
        with MemoryStore.open(given) as named:  # --memory-db with the credentials
            assert named.store_id == ours
    finally:
        postgres.drop_db(url)
