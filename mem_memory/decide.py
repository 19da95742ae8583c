"""The decision of an enhanced signal, pure: ``decide`` for one request and ``decide_many`` for a
batch (the candle close), equal to ``decide`` item by item (tests/memory/test_decide.py).

Inputs: the request with its ML prediction and feature snapshot, the current parameters, the
first matching learned strategy and the similar closed trades (what the engine's in-process
index holds); output: the decision record. No I/O, no clock, no lock: the engine
(``MemoryEngine.enhance``/``enhance_many``) retrieves the inputs and commits the records.
"""

from __future__ import annotations

import os
import time as _time
from collections.abc import Sequence

from mem_memory.config import MemoryConfig
from mem_memory.index import Similar
from mem_memory.rules import parameters as prules
from mem_memory.rules.adapter import Adaptation, adapt, regime_rule
from mem_memory.rules.combine import combine, hold_rule, memory_confidence, ml_support
from mem_memory.types import Decision, Parameters, SignalRequest, StrategySpec, record_maker, trusted

__all__ = ["Retrieved", "decide", "decide_many", "new_decision_ids", "record_maker"]

#: What ``decide`` needs besides the request: the parameters, the matching strategy, the similar trades.
Retrieved = tuple[Parameters, StrategySpec | None, Similar | None]


def decide(
    request: SignalRequest,
    params: Parameters,
    spec: StrategySpec | None,
    sim: Similar | None,
    cfg: MemoryConfig,
    decision_id: str,
) -> Decision:
    """The decision record for ``request`` (pure: no I/O, no clock). Inputs: the request with
    its ML prediction (``ml_confidence``/``ml_direction``) and feature snapshot, the current
    parameters, the first matching learned strategy and the similar closed trades (both None
    for a HOLD). Combines base, ML and memory confidence, applies the HOLD rule and sizes the
    trade from the parameters, adjusted by the strategy and the regime (docs/memory.md). The
    record is built unchecked (``trusted``): its inputs are validated records and the rules keep
    confidences in [0, 1] and sizes >= 0 (tests/memory/test_decide.py checks it passes the checks)."""
    features = request.features
    base_action = request.action
    ml = ml_support(base_action, request.ml_confidence, request.ml_direction)
    adaptation = adapt(features, request.strategy, cfg)
    memory: float | None = None
    memory_note = "memory silent"
    if sim is not None:
        memory, memory_note = memory_confidence(sim.wins, sim.n, spec.confidence if spec else None, cfg.min_similar)
    final = combine(request.base_confidence, ml, memory, cfg)
    action = base_action if base_action == "HOLD" else hold_rule(base_action, final, params["ml_confidence_min"])
    if action == "HOLD":
        size = stop = target = 0.0
        stop_price = take_price = 0.0
        sizing_note = ""
    else:
        sz = prules.sizing(params, spec, adaptation, cfg)
        size, stop, target, sizing_note = sz.size, sz.stop_loss_pct, sz.take_profit_pct, sz.note
        sign = 1.0 if action == "BUY" else -1.0
        stop_price = request.price * (1.0 - sign * stop)
        take_price = request.price * (1.0 + sign * target)
    reasoning = _reasoning(
        request,
        action,
        final,
        ml,
        memory,
        memory_note,
        spec,
        adaptation.regime,
        params["ml_confidence_min"],
        sizing_note,
    )
    return trusted(
        Decision,
        decision_id=decision_id,
        time=request.time,
        symbol=request.symbol,
        strategy=request.strategy,
        action=action,
        base_action=base_action,
        price=request.price,
        base_confidence=request.base_confidence,
        ml_confidence=request.ml_confidence,
        memory_confidence=memory,
        confidence=final,
        size=size,
        stop_loss=stop_price,
        take_profit=take_price,
        stop_loss_pct=stop,
        take_profit_pct=target,
        reasoning=reasoning,
        learned_strategy=spec.name if spec else None,
        model_version=request.model_version,
        ml_direction=request.ml_direction,
        features=features,
        regime=adaptation.regime,
        parameters_version=params.version,
        session_id=request.session_id,
        market_context=request.market_context,
    )


def _reasoning(
    req: SignalRequest,
    action: str,
    final: float,
    ml: float | None,
    memory: float | None,
    memory_note: str,
    spec: StrategySpec | None,
    regime: str,
    minimum: float,
    sizing_note: str,
) -> str:
    """The decision's reasoning text: its head, the three inputs, the input that moved the final
    confidence most (first of base, ML, memory on a tie) and what adjusted it."""
    base_action = req.action
    if base_action == "HOLD":
        return f"HOLD kept: the base strategy {req.strategy or 'signal'} said HOLD."
    base = req.base_confidence
    driver, pull = "base", abs(base - final)
    if ml is None:
        ml_part = f"no ML ({req.ml_absent_reason})" if req.ml_absent_reason else "no ML"
    else:
        direction = req.ml_direction
        if direction is None:
            ml_part = f"ML {ml:.2f}"
        else:
            verb = "supports" if ml == req.ml_confidence else "opposes"
            ml_part = f"ML {ml:.2f} ({direction} reversal {verb} {base_action})"
        if abs(ml - final) > pull:
            driver, pull = "ML", abs(ml - final)
    if memory is None:
        memory_part = "memory silent"
    else:
        memory_part = f"memory {memory:.2f} ({memory_note})"
        if abs(memory - final) > pull:
            driver = "memory"
    head = (
        f"{action} at {final:.2f}"
        if action != "HOLD"
        else f"HOLD: final confidence {final:.2f} below minimum {minimum:.2f}"
    )
    tail = f"driven most by {driver}"
    if spec is not None:
        tail += f"; learned strategy {spec.name} matched"
    if regime != "normal":
        tail += f"; regime {regime}"
    if sizing_note:
        tail += f"; {sizing_note}"
    return f"{head} (base {base:.2f}, {ml_part}, {memory_part}); {tail}."


def new_decision_ids(n: int) -> list[str]:
    """``n`` version-7 UUIDs (RFC 9562: the Unix time in ms, then 74 random bits) in the form
    ``str(uuid.uuid4())`` writes, from one read of the OS's randomness. Time first, so a batch's
    ids land at the end of the store's indexes on them (``decisions``' key, ``events_subject``)
    rather than on a random page each: with version 4, a 1,000-decision commit wrote 716 WAL
    pages on an empty store and 3,299 at 150,000 decisions (inserts + COMMIT 31 -> 92 ms);
    with version 7, 600 and 1,428. A batch's digits are placed column by column (each of the
    32 hex digits of every id in one slice)."""
    raw = bytearray(os.urandom(16 * n))
    for k, b in enumerate(int(_time.time() * 1000).to_bytes(6, "big")):
        raw[k::16] = bytes((b,)) * n
    raw[6::16] = raw[6::16].translate(_VERSION_7)
    raw[8::16] = raw[8::16].translate(_VARIANT_RFC_4122)
    if n < 64:
        h = raw.hex()
        return [
            f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
            for i in range(0, 32 * n, 32)
        ]
    digits = raw.hex().encode()
    text = bytearray(b"-" * (37 * n))  # per id: its 36 characters, then a space
    for i, at in enumerate(_DIGIT_PLACES):
        text[at::37] = digits[i::32]
    text[36::37] = b" " * n
    return text.decode().split()


#: A UUID's 7th byte with the version (7) in its high bits; its 9th with the variant (RFC 4122).
_VERSION_7 = bytes(b & 0x0F | 0x70 for b in range(256))
_VARIANT_RFC_4122 = bytes(b & 0x3F | 0x80 for b in range(256))
#: Where each of a UUID's 32 hex digits goes in its text (8-4-4-4-12 digits, dashes between).
_DIGIT_PLACES = [i + (i >= 8) + (i >= 12) + (i >= 16) + (i >= 20) for i in range(32)]


_record = record_maker(Decision)


def decide_many(
    requests: Sequence[SignalRequest], retrieved: Sequence[Retrieved], cfg: MemoryConfig, decision_ids: Sequence[str]
) -> list[Decision]:
    """``decide`` of every request (with its ``retrieved`` inputs and decision id), equal to it item
    by item, in a fraction of the time on a batch: what depends only on the parameters, the
    strategy and the regime (the adaptation, the sizing, the HOLD minimum) is
    computed once per batch, ``combine`` is inlined, and the records are built unchecked
    (``record_maker``). The arithmetic per item is ``decide``'s, in the same order, so the
    numbers are the same to the last bit (tests/memory/test_decide.py)."""
    adaptations: dict[tuple[str, str], Adaptation] = {}
    sizings: dict[tuple[int, int, int], prules.Sizing] = {}
    minimums: dict[int, float] = {}
    w_base, w_ml, w_memory, min_similar = cfg.weight_base, cfg.weight_ml, cfg.weight_memory, cfg.min_similar
    record, reasoning, regime_of = _record, _reasoning, regime_rule(cfg)
    out: list[Decision] = []
    for request, (params, spec, sim), decision_id in zip(requests, retrieved, decision_ids, strict=True):
        features = request.features
        base_action = request.action
        base = request.base_confidence
        ml = ml_confidence = request.ml_confidence
        direction = request.ml_direction
        if ml is not None and direction is not None and base_action != "HOLD":  # ml_support
            ml = ml if (direction == "bullish") == (base_action == "BUY") else 1.0 - ml
        regime = regime_of(features)
        adaptation = adaptations.get((regime, request.strategy))
        if adaptation is None:  # its regime and multipliers are a function of the regime and the strategy (adapt)
            adaptation = adaptations[regime, request.strategy] = adapt(features, request.strategy, cfg)
        memory: float | None = None
        memory_note = "memory silent"
        if sim is not None and (spec is not None or sim.n >= min_similar):
            memory, memory_note = memory_confidence(sim.wins, sim.n, spec.confidence if spec else None, min_similar)
        total, weight = w_base * base, w_base  # combine(base, ml, memory, cfg), its operations in its order
        if ml is not None:
            total += w_ml * ml
            weight += w_ml
        if memory is not None:
            total += w_memory * memory
            weight += w_memory
        final = min(1.0, max(0.0, total / weight))
        minimum = minimums.get(id(params))
        if minimum is None:
            minimum = minimums[id(params)] = params["ml_confidence_min"]
        action = base_action if base_action == "HOLD" else "HOLD" if final < minimum else base_action  # hold_rule
        if action == "HOLD":
            size = stop = target = stop_price = take_price = 0.0
            sizing_note = ""
        else:  # the retrieved objects and the adaptations outlive the loop: their ids are not reused meanwhile
            key = (id(params), id(spec), id(adaptation))
            sz = sizings.get(key)
            if sz is None:
                sz = sizings[key] = prules.sizing(params, spec, adaptation, cfg)
            size, stop, target, sizing_note = sz.size, sz.stop_loss_pct, sz.take_profit_pct, sz.note
            sign = 1.0 if action == "BUY" else -1.0
            stop_price = request.price * (1.0 - sign * stop)
            take_price = request.price * (1.0 + sign * target)
        out.append(
            record(
                decision_id,
                request.time,
                request.symbol,
                request.strategy,
                action,
                base_action,
                request.price,
                base,
                ml_confidence,
                memory,
                final,
                size,
                stop_price,
                take_price,
                stop,
                target,
                reasoning(
                    request, action, final, ml, memory, memory_note, spec, adaptation.regime, minimum, sizing_note
                ),
                spec.name if spec else None,
                request.model_version,
                direction,
                features,
                adaptation.regime,
                params.version,
                request.session_id,
                request.market_context,
            )
        )
    return out
