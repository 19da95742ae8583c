"""``mem serve`` as a child process of a bench: started on a free gRPC port, its ready line read,
stopped with SIGTERM (then killed); and what /proc tells about it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]


def start_serve(
    memory_db: str | os.PathLike[str],
    *options: str,
    env: Mapping[str, str],
    tracking_uri: str | None = None,
    metrics_port: int = 0,
    model_poll: float | None = None,
    stderr: int | IO[Any] = subprocess.DEVNULL,
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``mem serve --port 0`` on ``memory_db`` with ``env`` (``metrics_port`` -1: no metrics;
    ``tracking_uri`` and ``model_poll`` when given; then ``options``); returns the process and its
    ready line (``grpc``, ``metrics``, ``model_version``, ...). A server that exits before it is
    ready ends the bench with its exit code."""
    args = ["--port", "0", "--metrics-port", str(metrics_port), "--memory-db", os.fspath(memory_db)]
    if tracking_uri is not None:
        args += ["--tracking-uri", tracking_uri]
    if model_poll is not None:
        args += ["--model-poll", f"{model_poll:g}"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mem_cli.main", "serve", *args, *options],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line:
        sys.exit(f"mem serve exited before it was ready (exit code {proc.wait()})")
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str], timeout: float = 20.0) -> int:
    """SIGTERM (graceful: calls in flight finish), then SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024.0, 1)
    return float("nan")


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (a thread that ends while they are listed is skipped)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return found


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
