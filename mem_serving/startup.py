"""What ``mem serve`` checks before it starts anything, so that nothing is half started when a port
is taken or a file is missing; ``StartupError`` names the port, file or variable to fix.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path

from mem_serving.credentials import CertificatePair
from mem_serving.settings import ServingSettings


class StartupError(RuntimeError):
    """The server cannot start with this configuration; the message says what to change."""


def check_port(host: str, port: int, what: str, setting: str) -> None:
    """``StartupError`` unless ``host:port`` can be bound now (0 = any free port: always fine)."""
    if port == 0:
        return
    if not 0 < port < 65536:
        raise StartupError(f"the {what} port {port} is not a TCP port (1-65535); set {setting}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve the {what} host {host!r} ({exc.strerror}); set {setting}") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC and http.server bind
        try:
            s.bind(address)
        except OSError as exc:
            problem = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise StartupError(f"the {what} port {host}:{port} {problem}; choose another with {setting}") from None


def preflight(settings: ServingSettings) -> None:
    """Every check that needs nothing started: ports free, TLS files usable (``CredentialError``)."""
    check_port(settings.host, settings.port, "gRPC", "MEM_SERVING_PORT or --port")
    if settings.metrics_port > 0:
        check_port(
            settings.metrics_host, settings.metrics_port, "metrics", "MEM_SERVING_METRICS_PORT or --metrics-port"
        )
    if settings.tls_cert is not None and settings.tls_key is not None:
        CertificatePair(settings.tls_cert, settings.tls_key)


def process_age_s() -> float:
    """Seconds since this process began (Linux /proc; 0.0 where that cannot be read): the start-up
    log counts the interpreter and the imports too."""
    try:
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, since_boot - ticks / os.sysconf("SC_CLK_TCK"))


class StartupClock:
    """Where a start's time goes: ``mark(step)`` closes a step; ``summary()`` says, in one line,
    the seconds since the process began and each step's wall and CPU seconds (``python``: the
    interpreter and the command's own imports, before the clock was made)."""

    def __init__(self) -> None:
        self._began = time.perf_counter() - process_age_s()
        self._last, self._cpu = time.perf_counter(), time.process_time()
        self._steps: list[tuple[str, float, float]] = [("python", self._last - self._began, self._cpu)]

    def mark(self, step: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self._steps.append((step, now - self._last, cpu - self._cpu))
        self._last, self._cpu = now, cpu

    def summary(self) -> str:
        steps = ", ".join(f"{name} {wall:.2f}/{cpu:.2f}" for name, wall, cpu in self._steps)
        return f"{self._last - self._began:.2f} s since the process began, CPU {self._cpu:.2f} s (wall/CPU s: {steps})"
