"""Loopback helpers for identification tests: a recording TCP relay between a real client and
a real server, and a one-shot UDP/TCP listener that keeps what a real client sent.

The relay sits on 127.0.0.1 and forwards both directions unchanged, keeping the first bytes of
each (what the flow layer would hand to `identify`).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from dataclasses import dataclass, field

LIMIT = 4096


@dataclass
class Recording:
    c2s: bytearray = field(default_factory=bytearray)
    s2c: bytearray = field(default_factory=bytearray)


class RecordingRelay:
    """Accept one client on 127.0.0.1:<port>, connect it to `upstream`, relay and record."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.recording = Recording()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.listener.settimeout(20)
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(self.upstream, timeout=20)
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, (server, self.recording.c2s))
        sel.register(server, selectors.EVENT_READ, (client, self.recording.s2c))
        open_socks = 2
        while open_socks:
            events = sel.select(timeout=20)
            if not events:
                break
            for key, _ in events:
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                dst, buf = key.data
                try:
                    data = src.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(src)
                    open_socks -= 1
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    continue
                if len(buf) < LIMIT:
                    buf += data[: LIMIT - len(buf)]
                dst.sendall(data)
        client.close()
        server.close()
        self.listener.close()

    def wait(self, timeout: float = 20) -> Recording:
        self._thread.join(timeout)
        return self.recording


class OneShotServer:
    """Listen on 127.0.0.1 (TCP or UDP) and keep the first bytes a client sends; a TCP server
    may first send `greeting` (for protocols where the server speaks first)."""

    def __init__(self, udp: bool = False, greeting: bytes | None = None):
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.udp = udp
        self.greeting = greeting
        self.received = b""
        if not udp:
            self.sock.listen(1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(20)
        try:
            if self.udp:
                self.received, _ = self.sock.recvfrom(65536)
                return
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(5)
                if self.greeting is not None:
                    conn.sendall(self.greeting)
                chunks = b""
                try:
                    while len(chunks) < LIMIT:
                        data = conn.recv(65536)
                        if not data:
                            break
                        chunks += data
                        self.received = chunks
                        conn.settimeout(0.5)  # the client's first flight is in; stop soon
                except OSError:
                    pass
        except OSError:
            pass
        finally:
            self.sock.close()

    def wait(self, timeout: float = 20) -> bytes:
        self._thread.join(timeout)
        return self.received
