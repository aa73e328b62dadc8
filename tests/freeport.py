"""Ports for the tests' own servers, chosen below the kernel's ephemeral port range.

Binding port 0, closing, then binding again races with every client socket of the other
xdist worker, which takes its local port from the ephemeral range; a port below that range is
never handed out meanwhile. Random choice keeps the two workers apart.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32000  # under net.ipv4.ip_local_port_range (32768-60999 by default)


def free_port(kind: int = socket.SOCK_STREAM, family: int = socket.AF_INET) -> int:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    for _ in range(500):
        port = random.randint(LOW, HIGH)
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port between {LOW} and {HIGH}")
