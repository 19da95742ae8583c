"""The floor of the single-call benches: a do-nothing grpc.aio servicer of
``mem.v1.MemService/EnhanceSignal`` that decodes the request and answers an empty
``EnhancedSignal``, in a process of its own (bench_burst.py, bench_sustained.py).

    .venv/bin/python bench/floor_server.py    # prints its port, serves until stdin closes

``start(env)`` runs it as a child and returns the process and its address.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Mapping


async def serve(method: str, handler: object) -> None:
    """``handler`` as ``mem.v1.MemService/<method>`` on a grpc.aio server on a free loopback port:
    prints the port, serves until stdin closes (bench_candle_close's batch floor uses it too)."""
    import grpc

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("mem.v1.MemService", {method: handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(1)


async def _serve() -> None:
    import grpc

    from mem_serving.api import pb

    async def enhance(request: object, context: object) -> object:
        return pb.EnhancedSignal()

    handler = grpc.unary_unary_rpc_method_handler(
        enhance,
        request_deserializer=pb.EnhanceSignalRequest.FromString,
        response_serializer=pb.EnhancedSignal.SerializeToString,
    )
    await serve("EnhanceSignal", handler)


def start(env: Mapping[str, str]) -> tuple[subprocess.Popen[str], str]:
    """The do-nothing servicer as a child process and its address; ``finish`` stops it."""
    proc = subprocess.Popen(
        [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=dict(env)
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        sys.exit(f"the do-nothing servicer exited before it was ready (exit code {proc.wait()})")
    return proc, f"127.0.0.1:{int(line)}"


def finish(proc: subprocess.Popen[str]) -> None:
    """Close its stdin (it stops) and reap it."""
    proc.stdin.close()  # type: ignore[union-attr]
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    asyncio.run(_serve())
