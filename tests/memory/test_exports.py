"""Exports regenerated from the store; strategy_modules.py is a safe, fixed-template view."""

from __future__ import annotations

import ast
import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from mem_memory import Condition, InvalidRecord, MemoryEngine, StrategySpec, StrategyStats
from mem_memory.exports import render_strategy, strategy_modules

from .helpers import T0, outcome, request

EVIL = '"""\nimport os\nos.system("echo pwned")\n"""\' + __import__("os").getcwd() + \''


def spec(name: str = "learned_buy_rsi14_low", evidence: str = "42/50 wins", reason: str | None = None) -> StrategySpec:
    return StrategySpec(
        name=name,
        conditions=(Condition("rsi14", "<=", 33.25),),
        action="BUY",
        confidence=0.72,
        size=0.025,
        stop_loss_pct=0.02,
        take_profit_pct=0.04,
        stats=StrategyStats().add(1.0, 0.01),
        created_at=T0,
        updated_at=T0,
        deprecated=reason is not None,
        deprecated_reason=reason,
        evidence=evidence,
    )


def test_export_all_contains_the_decision_close_and_learning(engine: MemoryEngine, tmp_path: Path) -> None:
    d = engine.enhance(request())
    engine.record_outcome(outcome(d, 0.015))
    engine.store.append_strategy(spec())
    paths = engine.export_all(tmp_path / "exports")
    core = paths["core_memory_updates"].read_text()
    assert f"DECISION {d.decision_id} BTCUSDT BUY" in core
    assert "base 0.65 / ML 0.78" in core and "entry 100" in core
    assert f"CLOSE {d.decision_id}" in core and "(+1.50%) WIN" in core
    assert "STRATEGY learned_buy_rsi14_low learned: rsi14 <= 33.25 -> BUY" in core
    assert "PARAMETER position_size 0.02 -> 0.0204 because win" in core
    assert all(line.startswith("[2026-") for line in core.splitlines())
    params = json.loads(paths["parameter_updates"].read_text())
    day = params["days"][0]
    assert day["date"] == (T0 + timedelta(minutes=30)).date().isoformat()
    assert day["parameters"]["position_size"] == pytest.approx(0.0204)
    adj = day["adjustments"][0]
    assert adj["reason"].startswith("win") and adj["trigger"] == f"outcome:{d.decision_id}" and "impact" in adj
    assert day["performance"]["win_rate"] == 1.0 and day["performance"]["max_drawdown"] == 0.0
    assert params["current"]["version"] == engine.parameters().version
    module = paths["strategy_modules"].read_text()
    tree = ast.parse(module)
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == ["LearnedBuyRsi14Low"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths.values())


def test_rendered_class_works_as_documented() -> None:
    namespace: dict = {}
    # Executing OUR rendering of a trusted spec, only to check the template itself is correct.
    exec(compile(strategy_modules([spec()]), "strategy_modules.py", "exec"), namespace)  # noqa: S102
    cls = namespace["LearnedBuyRsi14Low"]
    s = cls()
    assert s.should_enter({"rsi14": 30.0}) and not s.should_enter({"rsi14": 40.0}) and not s.should_enter({})
    assert s.update_performance(-1.0, -0.01) == pytest.approx(0.5)
    assert "Performance: 1 trades, 1 wins" in cls.__doc__


def test_malicious_names_are_rejected_at_the_record() -> None:
    for bad in ['x"""\nimport os', "a b", "1abc", "x;import os", "é"]:
        with pytest.raises(InvalidRecord) as e:
            spec(name=bad)
        assert e.value.field == "name"
    with pytest.raises(InvalidRecord):
        Condition("rsi14) or __import__('os').system('x') or (1", "<=", 1.0)
    with pytest.raises(InvalidRecord):
        Condition("rsi14", "<= 1 or True or", 1.0)


def test_malicious_free_text_stays_a_string() -> None:
    text = strategy_modules([spec(evidence=EVIL, reason=EVIL)])
    tree = ast.parse(text)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assigned = {t.targets[0].id: t.value for t in cls.body if isinstance(t, ast.Assign)}
    assert isinstance(assigned["EVIDENCE"], ast.Constant) and assigned["EVIDENCE"].value == EVIL
    assert isinstance(assigned["DEPRECATED_REASON"], ast.Constant) and assigned["DEPRECATED_REASON"].value == EVIL
    # the module's top level is exactly: docstring, __future__ import, helper, classes
    kinds = [type(n).__name__ for n in tree.body]
    assert kinds == ["Expr", "ImportFrom", "FunctionDef", "ClassDef"]
    calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
    assert "system" not in calls and "getcwd" not in calls
    assert not any(isinstance(n, ast.Import) for n in ast.walk(tree))


def test_render_refuses_a_record_that_bypassed_validation() -> None:
    s = spec()
    object.__setattr__(s, "name", "evil():\n    pass\nimport os\nclass X")
    with pytest.raises(InvalidRecord):
        render_strategy(s)
    t = spec()
    object.__setattr__(t, "conditions", (Condition("rsi14", "<=", 1.0),))
    object.__setattr__(t.conditions[0], "threshold", float("nan"))
    with pytest.raises(InvalidRecord):
        render_strategy(t)
