"""A seeded request generator over every RPC of ``mem.v1.MemService`` and the run that checks a
real server's answers; used by tests/serving/test_fuzz_scale.py (a short run in CI) and
bench/bench_fuzz.py (the 10,000-request run whose figures are in docs/serving.md).

Every request starts as a valid one built from real candles, with state carried between calls
(each symbol's next candle, decision ids answered, request ids used), and is then sent as is
(~30%), with one to three fields broken (~50%: non-finite and out-of-range numbers, unknown
enum numbers, timestamps at and past protobuf's range, oversized, empty, control-character and
non-ASCII text, broken or disordered candles, unknown or repeated ids), as its serialized bytes
flipped or cut (~10%), or as random bytes (~10%). The run checks: no INTERNAL, for a request
that decodes or not (bytes that do not decode get INVALID_ARGUMENT), health SERVING throughout,
and afterwards the caller compares the store with the calls that succeeded (nothing from a
refused call is stored).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mem_serving.api import SERVICE_NAME, pb

METHODS = (
    "PredictReversal",
    "EnhanceSignal",
    "LogOutcome",
    "GetParameters",
    "ListStrategies",
    "PushCandles",
    "GetModelInfo",
)
REQUEST_TYPES = {
    "PredictReversal": pb.PredictReversalRequest,
    "EnhanceSignal": pb.EnhanceSignalRequest,
    "LogOutcome": pb.LogOutcomeRequest,
    "GetParameters": pb.GetParametersRequest,
    "ListStrategies": pb.ListStrategiesRequest,
    "PushCandles": pb.PushCandlesRequest,
    "GetModelInfo": pb.GetModelInfoRequest,
}
#: Statuses a request that decodes may get; anything else (INTERNAL above all) is a server bug.
EXPECTED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
WEIGHTS = (0.18, 0.32, 0.23, 0.08, 0.08, 0.06, 0.05)
BAD_FLOATS = (float("nan"), float("inf"), float("-inf"), -1.0, 0.0, -0.0, 5e-324, 1e308, -1e308, 2.0, 1.5e19)
BAD_TEXT = ("", " ", "\x00", "\n", "a b", "€漢字🙂", "\u202e" + "USDT", "x" * 65, "y" * 129, "z" * 257, "w" * 5000)
BAD_ENUMS = (-1, 0, 4, 99, 2**31 - 1, -(2**31))
BAD_SECONDS = (
    (-1, 0),
    (0, 0),
    (253402300799, 999_999_999),
    (253402300800, 0),
    (2**62, 0),
    (1_700_000_000, -1),
    (1_700_000_000, 1_000_000_000),
)


@dataclass
class FuzzReport:
    """What a run saw. ``unexpected`` lists (method, kind, status, details) of every answer
    outside ``EXPECTED`` for a decodable request and other than INVALID_ARGUMENT for bytes that do
    not decode; ``internal_decodable`` and ``internal_undecodable`` count the INTERNAL answers to
    each (0 expected for both)."""

    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    undecodable: int = 0
    internal_decodable: int = 0
    internal_undecodable: int = 0
    unexpected: list[tuple[str, str, str, str]] = field(default_factory=list)
    health_checks: int = 0
    health_not_serving: int = 0
    decisions: set[str] = field(default_factory=set)
    closed: set[str] = field(default_factory=set)
    #: Decisions closed by an acknowledged shadow outcome (``LogOutcome.shadow`` on a HOLD).
    shadowed: set[str] = field(default_factory=set)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 1),
            "by_kind": dict(self.by_kind),
            "by_status": dict(sorted(self.by_status.items())),
            "undecodable": self.undecodable,
            "internal_decodable": self.internal_decodable,
            "internal_undecodable": self.internal_undecodable,
            "unexpected": len(self.unexpected),
            "unexpected_examples": self.unexpected[:10],
            "health_checks": self.health_checks,
            "health_not_serving": self.health_not_serving,
            "decisions_acknowledged": len(self.decisions),
            "outcomes_acknowledged": len(self.closed),
            "shadow_outcomes_acknowledged": len(self.shadowed),
        }

    def expected_counts(self) -> dict[str, int]:
        """What the store must hold after the run: exactly what was acknowledged."""
        return {"decisions": len(self.decisions), "outcomes": len(self.closed), "shadow_outcomes": len(self.shadowed)}


class Generator:
    """Seeded requests with state: ``symbols`` have served histories (``seed_histories``), each
    valid candle is the symbol's next real one; ``answered`` feeds decision ids back."""

    def __init__(self, seed: int, rows: np.ndarray, symbols: tuple[str, ...], history: int) -> None:
        self.rng = random.Random(seed)
        self.rows = rows  # (n, 6): ts_ms, open, high, low, close, volume
        self.symbols = symbols
        self.next = dict.fromkeys(symbols, history)
        self.decision_ids: list[str] = []
        self.request_ids: list[str] = []
        self._consumed: tuple[str, int] | None = None  # (symbol, candle index) the last request brought
        self.with_id: list[tuple[str, bytes]] = []  # sent requests that carried a request id

    # ------------------------------------------------------------------ building blocks
    def candle(self, i: int) -> pb.Candle:
        ts, o, h, lo, c, v = self.rows[i % len(self.rows)]
        c_pb = pb.Candle(open=o, high=h, low=lo, close=c, volume=v)
        c_pb.ts.FromMilliseconds(int(ts))
        return c_pb

    def next_candle(self, symbol: str) -> pb.Candle:
        i = self.next[symbol]
        self._consumed = (symbol, i)
        if i + 1 < len(self.rows):
            self.next[symbol] = i + 1
        return self.candle(i)

    def symbol(self) -> str:
        r = self.rng.random()
        if r < 0.85:
            return self.rng.choice(self.symbols)
        return self.rng.choice(("FUZZNEW", "btcusdt", " ETHUSDT ", "SYM-" + str(self.rng.randrange(1000))))

    def request_id(self) -> str:
        r = self.rng.random()
        if r < 0.5:
            return ""
        if r < 0.65 and self.request_ids:
            return self.rng.choice(self.request_ids)  # a retry
        rid = f"fuzz-{self.rng.getrandbits(48):x}"
        self.request_ids.append(rid)
        return rid

    # ------------------------------------------------------------------ valid requests
    def valid(self, method: str) -> Any:
        rng = self.rng
        if method == "PredictReversal":
            s = self.symbol()
            shape = rng.random()
            if shape < 0.7:
                candles = [self.next_candle(s)] if s in self.next else []
            elif shape < 0.9:  # a window of its own symbol: it would reset a served symbol's history
                s = f"WIN{rng.randrange(5)}"
                start = rng.randrange(len(self.rows) - 60)
                candles = [self.candle(start + k) for k in range(60)]
            else:
                candles = []  # the server reads QuestDB
            return pb.PredictReversalRequest(symbol=s, candles=candles)
        if method == "EnhanceSignal":
            s = self.symbol()
            candle = self.next_candle(s) if s in self.next else self.candle(rng.randrange(len(self.rows)))
            req = pb.EnhanceSignalRequest(
                symbol=s,
                action=rng.choice((pb.ACTION_BUY, pb.ACTION_SELL, pb.ACTION_HOLD)),
                base_confidence=rng.random(),
                price=candle.close,
                strategy=rng.choice(("momentum", "reversion", "")),
                candles=[candle] if rng.random() < 0.9 else [],
                session_id=rng.choice(("", "s1", "s2")),
                request_id=self.request_id(),
            )
            if rng.random() < 0.5:
                req.time.GetCurrentTime()
            if rng.random() < 0.3:
                req.ml_prediction.CopyFrom(
                    pb.MlPrediction(
                        confidence=rng.random(),
                        direction=rng.choice((pb.DIRECTION_BULLISH, pb.DIRECTION_BEARISH)),
                        model_version="fuzz",
                    )
                )
            if rng.random() < 0.2:
                req.market_context.update({"regime": rng.choice(("trend", "chop")), "note": "fuzz"})
            return req
        if method == "LogOutcome":
            r = rng.random()
            if r < 0.7 and self.decision_ids:
                decision_id = rng.choice(self.decision_ids)
            else:
                decision_id = str(uuid.UUID(int=rng.getrandbits(128)))
            entry = 100.0 + rng.random() * 10
            pnl_pct = rng.uniform(-0.05, 0.05)
            req = pb.LogOutcomeRequest(
                decision_id=decision_id,
                entry_price=entry,
                exit_price=entry * (1 + pnl_pct),
                size=rng.random() * 0.05,
                pnl=pnl_pct * 100,
                pnl_pct=pnl_pct,
                exit_reason=rng.choice(("take_profit", "stop_loss", "")),
                request_id=self.request_id(),
                shadow=rng.random() < 0.1,  # valid on a HOLD decision only
            )
            if rng.random() < 0.5:
                req.time.GetCurrentTime()
            return req
        if method == "GetParameters":
            return pb.GetParametersRequest()
        if method == "PushCandles":
            start = rng.randrange(len(self.rows) - 60)
            symbol = rng.choice((self.symbol(), f"PUSH{rng.randrange(5)}"))
            return pb.PushCandlesRequest(
                symbol=symbol, candles=[self.candle(start + k) for k in range(rng.choice((1, 5, 60)))]
            )
        if method == "GetModelInfo":
            return pb.GetModelInfoRequest()
        return pb.ListStrategiesRequest(include_deprecated=rng.random() < 0.5)

    # ------------------------------------------------------------------ breaking a request
    def mutate(self, method: str, msg: Any) -> None:
        rng = self.rng
        numbers = [f.name for f in msg.DESCRIPTOR.fields if f.type in (f.TYPE_DOUBLE, f.TYPE_FLOAT)]
        texts = [f.name for f in msg.DESCRIPTOR.fields if f.type == f.TYPE_STRING]
        enums = [f.name for f in msg.DESCRIPTOR.fields if f.type == f.TYPE_ENUM]
        times = [
            f.name for f in msg.DESCRIPTOR.fields if f.message_type is not None and f.message_type.name == "Timestamp"
        ]
        choices: list[Callable[[], None]] = []
        if numbers:
            choices.append(lambda: setattr(msg, rng.choice(numbers), rng.choice(BAD_FLOATS)))
        if texts:
            choices.append(lambda: setattr(msg, rng.choice(texts), rng.choice(BAD_TEXT)))
        if enums:
            choices.append(lambda: setattr(msg, rng.choice(enums), rng.choice(BAD_ENUMS)))
        if times:

            def bad_time() -> None:
                ts = getattr(msg, rng.choice(times))
                ts.seconds, ts.nanos = rng.choice(BAD_SECONDS)

            choices.append(bad_time)
        if method in ("PredictReversal", "EnhanceSignal", "PushCandles"):
            choices.append(lambda: self._break_candles(msg))
        if method == "EnhanceSignal":

            def bad_ml() -> None:
                msg.ml_prediction.CopyFrom(
                    pb.MlPrediction(
                        confidence=rng.choice(BAD_FLOATS + (0.5,)),
                        direction=rng.choice(BAD_ENUMS + (1,)),
                        model_version=rng.choice(BAD_TEXT),
                    )
                )

            choices.append(bad_ml)
            choices.append(
                lambda: msg.market_context.update(
                    {f"k{i}": "v" * rng.choice((1, 300)) for i in range(rng.choice((2, 65)))}
                )
            )
        if not choices:
            return
        for _ in range(rng.randint(1, 3)):
            rng.choice(choices)()

    def _break_candles(self, msg: Any) -> None:
        rng = self.rng
        base = rng.randrange(len(self.rows) - 80)
        candles = [self.candle(base + k) for k in range(rng.choice((1, 2, 5, 60)))]
        how = rng.randrange(7)
        c = candles[rng.randrange(len(candles))]
        if how == 0:
            c.high, c.low = c.low * 0.5, c.high
        elif how in (1, 3):
            c.volume = rng.choice((-1.0, float("nan")))
        elif how == 2:
            c.low = rng.choice((0.0, -5.0, float("inf")))
        elif how == 3 and len(candles) > 1:
            rng.shuffle(candles)
        elif how == 4 and len(candles) > 1:
            candles[-1].ts.CopyFrom(candles[0].ts)  # a repeated time
        elif how == 5:
            c.ts.seconds, c.ts.nanos = rng.choice(BAD_SECONDS)
        else:
            candles = [self.candle(base)] * rng.choice((5001, 2))
        del msg.candles[:]
        msg.candles.extend(candles)

    # ------------------------------------------------------------------ one request
    def request(self) -> tuple[str, str, bytes]:
        """(method, kind, bytes): kind is valid | mutated | garbled | random | retry (the same
        bytes as an earlier request with a request id)."""
        rng = self.rng
        self._consumed = None
        if self.with_id and rng.random() < 0.05:
            method, data = rng.choice(self.with_id)
            return method, "retry", data
        method = rng.choices(METHODS, WEIGHTS)[0]
        r = rng.random()
        if r < 0.1:
            return method, "random", rng.randbytes(rng.randrange(0, 300))
        msg = self.valid(method)
        if r < 0.2:
            data = bytearray(msg.SerializeToString())
            if data and rng.random() < 0.5:
                for _ in range(rng.randint(1, 4)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            elif data:
                data = data[: rng.randrange(len(data))]
            return method, "garbled", bytes(data)
        kind = "valid"
        if r < 0.7:
            self.mutate(method, msg)
            kind = "mutated"
        data = msg.SerializeToString()
        if getattr(msg, "request_id", ""):
            self.with_id = [*self.with_id[-199:], (method, data)]
        return method, kind, data

    def answered(self, method: str, code: grpc.StatusCode, reply: bytes | None) -> None:
        """Learn from the answer: decision ids to close later; a refused request's candle is
        sent again by the next one (the symbol's history stays contiguous)."""
        if code != grpc.StatusCode.OK:
            if self._consumed is not None:
                symbol, i = self._consumed
                self.next[symbol] = i
            return
        if method == "EnhanceSignal" and reply is not None:
            decision_id = pb.EnhancedSignal.FromString(reply).decision_id
            if decision_id not in self.decision_ids:
                self.decision_ids.append(decision_id)


def decodes(method: str, data: bytes) -> bool:
    try:
        REQUEST_TYPES[method].FromString(data)
    except DecodeError:
        return False
    return True


def seed_histories(channel: grpc.Channel, rows: np.ndarray, symbols: tuple[str, ...], history: int) -> None:
    """Give each symbol the server-side history its next candles continue."""
    gen = Generator(0, rows, symbols, history)
    call = channel.unary_unary(f"/{SERVICE_NAME}/PredictReversal", request_serializer=None, response_deserializer=None)
    for s in symbols:
        call(
            pb.PredictReversalRequest(symbol=s, candles=[gen.candle(k) for k in range(history)]).SerializeToString(),
            timeout=60,
        )


def healthy(channel: grpc.Channel) -> bool:
    stub = health_pb2_grpc.HealthStub(channel)
    return all(
        stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=10).status
        == health_pb2.HealthCheckResponse.SERVING
        for s in ("", SERVICE_NAME)
    )


def run(channel: grpc.Channel, gen: Generator, n: int, health_every: int = 100, timeout_s: float = 30.0) -> FuzzReport:
    """Send ``n`` generated requests one after the other; check each answer and, every
    ``health_every`` requests, the health."""
    report = FuzzReport()
    calls = {
        m: channel.unary_unary(f"/{SERVICE_NAME}/{m}", request_serializer=None, response_deserializer=None)
        for m in METHODS
    }
    started = time.perf_counter()
    for i in range(n):
        method, kind, data = gen.request()
        report.requests += 1
        report.by_kind[kind] += 1
        decodable = decodes(method, data)
        report.undecodable += not decodable
        try:
            reply = calls[method](data, timeout=timeout_s)
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            reply, code, details = None, exc.code(), exc.details() or ""
        report.by_status[f"{method} {code.name}"] += 1
        gen.answered(method, code, reply)
        if code == grpc.StatusCode.OK:
            if method == "EnhanceSignal":
                report.decisions.add(pb.EnhancedSignal.FromString(reply).decision_id)
            elif method == "LogOutcome":
                learned = pb.LogOutcomeResponse.FromString(reply)
                (report.shadowed if learned.shadow else report.closed).add(learned.decision_id)
        internal = code == grpc.StatusCode.INTERNAL
        if decodable:
            report.internal_decodable += internal
            wrong = code not in EXPECTED
        else:
            report.internal_undecodable += internal
            wrong = code != grpc.StatusCode.INVALID_ARGUMENT
        if wrong:
            report.unexpected.append((method, kind, code.name, details[:200]))
        if (i + 1) % health_every == 0:
            report.health_checks += 1
            report.health_not_serving += not healthy(channel)
    report.health_checks += 1
    report.health_not_serving += not healthy(channel)
    report.seconds = time.perf_counter() - started
    return report
