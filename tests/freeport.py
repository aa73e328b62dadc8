"""Ports for the tests' own servers, chosen below the kernel's ephemeral port range (or above it).

Binding port 0, closing, then binding again races with every client socket of the other
xdist worker, which takes its local port from the ephemeral range; a port below that range is
never handed out meanwhile. Random choice keeps the two workers apart; it draws from the OS
(SystemRandom), not the `random` module, whose state test tools such as Hypothesis seed the same way
in both workers.
"""

from __future__ import annotations

import random
import socket

_RNG = random.SystemRandom()
LOW, HIGH = 20000, 32000  # under net.ipv4.ip_local_port_range (32768-60999 by default)


# above that range (61000-65535): no client is handed one either, yet both it and the clients'
# ports are ephemeral by RFC 6335 §6 (49152-65535) and by the flow table's port classes
ABOVE = (61000, 65535)


def free_port(
    kind: int = socket.SOCK_STREAM,
    family: int = socket.AF_INET,
    span: tuple[int, int] = (LOW, HIGH),
) -> int:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    low, high = span
    for _ in range(500):
        port = _RNG.randint(low, high)
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port between {low} and {high}")


def bound_socket(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> socket.socket:
    """A socket of `kind` already bound to a port below the ephemeral range: no window in which
    another process can take the port between choosing and binding it."""
    for _ in range(500):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((host, _RNG.randint(LOW, HIGH)))
        except OSError:
            s.close()
            continue
        return s
    raise RuntimeError(f"no free port between {LOW} and {HIGH}")
