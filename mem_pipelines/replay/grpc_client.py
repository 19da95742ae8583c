"""The replay's view of the running server over gRPC (``mem.v1.MemService``).

Converts between the replay's records and protobuf at this edge only. Every call has a deadline;
a failed call raises ``ReplayError`` naming the call and the status (the replay stops: a report
with silently missing decisions would be wrong).
"""
from __future__ import annotations

from collections.abc import Mapping

import grpc
import pandas as pd
from google.protobuf.timestamp_pb2 import Timestamp

from mem_pipelines.replay.runner import Enhanced, MLView, ReplayError
from mem_pipelines.replay.simulator import Trade
from mem_serving._gen.mem.v1 import mem_pb2, mem_pb2_grpc

_ACTIONS = {"BUY": mem_pb2.ACTION_BUY, "SELL": mem_pb2.ACTION_SELL, "HOLD": mem_pb2.ACTION_HOLD}
_ACTION_NAMES = {v: k for k, v in _ACTIONS.items()}
_DIRECTIONS = {mem_pb2.DIRECTION_BULLISH: "bullish", mem_pb2.DIRECTION_BEARISH: "bearish"}
_DIRECTION_ENUMS = {v: k for k, v in _DIRECTIONS.items()}


def _ts(t: pd.Timestamp) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(pd.Timestamp(t).tz_convert("UTC").to_pydatetime())
    return out


def _candles(frame: pd.DataFrame) -> list[mem_pb2.Candle]:
    out = []
    for ts, o, h, lo, c, v in zip(
        frame["ts"], frame["open"].to_numpy(), frame["high"].to_numpy(), frame["low"].to_numpy(),
        frame["close"].to_numpy(), frame["volume"].to_numpy(),
    ):
        out.append(mem_pb2.Candle(ts=_ts(ts), open=float(o), high=float(h), low=float(lo), close=float(c), volume=float(v)))
    return out


class GrpcSignalService:
    """``SignalService`` over a gRPC channel to ``address`` (host:port); with ``token`` every call
    carries ``authorization: Bearer <token>``; with ``root_cert`` (PEM) the channel is TLS."""

    @classmethod
    def from_env(cls, address: str, timeout_s: float = 30.0, session_id: str = "replay") -> "GrpcSignalService":
        """Token and TLS as ``mem serve`` is configured: MEM_SERVING_TOKEN, MEM_SERVING_TLS_CERT."""
        from mem_serving.settings import ClientSettings

        client = ClientSettings.from_env()
        return cls(
            address, timeout_s, session_id, token=client.token,
            root_cert=client.tls_cert.read_bytes() if client.tls_cert else None,
        )

    def __init__(
        self, address: str, timeout_s: float = 30.0, session_id: str = "replay", token: str | None = None,
        root_cert: bytes | None = None,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.session_id = session_id
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        if root_cert is not None:
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root_cert))
        else:
            self._channel = grpc.insecure_channel(address)
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise ReplayError(f"no gRPC server answers at {address} (waited {timeout_s:g} s); start it with `mem serve`") from None
        self._stub = mem_pb2_grpc.MemServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GrpcSignalService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, request):
        try:
            return getattr(self._stub, name)(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise ReplayError(f"{name} at {self.address} failed: {exc.code().name}: {exc.details()}") from None

    def parameters(self) -> Mapping[str, float]:
        return dict(self._call("GetParameters", mem_pb2.GetParametersRequest()).parameters)

    def strategies(self, include_deprecated: bool = True) -> list[mem_pb2.StrategySpec]:
        return list(self._call("ListStrategies", mem_pb2.ListStrategiesRequest(include_deprecated=include_deprecated)).strategies)

    def predict(self, symbol: str, candles: pd.DataFrame) -> MLView:
        r = self._call("PredictReversal", mem_pb2.PredictReversalRequest(symbol=symbol, candles=_candles(candles)))
        return MLView(
            is_reversal=bool(r.is_reversal),
            confidence=float(r.confidence),
            direction=_DIRECTIONS.get(r.direction, ""),
            model_version=r.model_version,
        )

    def enhance(self, symbol, action, base_confidence, price, time, strategy, candles, ml) -> Enhanced:
        req = mem_pb2.EnhanceSignalRequest(
            symbol=symbol,
            action=_ACTIONS[action],
            base_confidence=float(base_confidence),
            price=float(price),
            time=_ts(time),
            strategy=strategy,
            candles=_candles(candles),
            session_id=self.session_id,
        )
        if ml is not None:
            req.ml_prediction.CopyFrom(
                mem_pb2.MlPrediction(
                    confidence=ml.confidence, direction=_DIRECTION_ENUMS.get(ml.direction, 0), model_version=ml.model_version
                )
            )
        r = self._call("EnhanceSignal", req)
        return Enhanced(
            decision_id=r.decision_id,
            action=_ACTION_NAMES.get(r.action, "HOLD"),
            confidence=float(r.confidence),
            size=float(r.size),
            stop_loss=float(r.stop_loss),
            take_profit=float(r.take_profit),
            strategy=r.learned_strategy,
            model_version=r.model_version,
        )

    def log_outcome(self, trade: Trade) -> None:
        if not trade.tag:
            raise ReplayError("a full-system trade without a decision id cannot be reported")
        self._call(
            "LogOutcome",
            mem_pb2.LogOutcomeRequest(
                decision_id=trade.tag,
                entry_price=trade.entry_price,
                exit_price=trade.exit_price,
                size=trade.size,
                pnl=trade.pnl,
                pnl_pct=trade.pnl_pct,
                exit_reason=trade.exit_reason,
                time=_ts(trade.exit_ts),
            ),
        )
