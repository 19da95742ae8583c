"""Is anything listening at a gRPC server address? A TCP connect with a short timeout, so a
command that needs ``mem serve`` fails in about a second instead of waiting for gRPC's
channel to give up."""

from __future__ import annotations

import socket

#: How long to wait for the TCP handshake (a listening server on a LAN answers in milliseconds).
CONNECT_TIMEOUT_S = 1.5


def split_address(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``[v6]:port``; None for other gRPC targets (``unix:...``,
    ``dns:///...``), which are not probed."""
    if "://" in address or address.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


def unreachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why nothing can be reached at ``address`` (one line), or None when something accepts a
    TCP connection there (or the address is not host:port)."""
    target = split_address(address)
    if target is None:
        return None
    try:
        with socket.create_connection(target, timeout=timeout_s):
            return None
    except TimeoutError:
        return f"nothing answers at {address} within {timeout_s:g} s"
    except OSError as exc:
        return f"nothing listens at {address} ({exc.strerror or exc})"
