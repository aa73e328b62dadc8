"""Calls run in order on one worker thread, with at most a few waiting.

A capture's SHA-256 (its capture id) is taken this way while it is decoded: hashlib releases the
GIL on large buffers, so hashing overlaps decoding instead of adding to it, and the bounded queue
keeps at most a few windows alive.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class OrderedWork:
    """`submit` calls run one after another, in order; `submit` waits while `queued` wait."""

    def __init__(self, name: str, queued: int = 4) -> None:
        self.name = name
        self.queued = queued
        self._pool: ThreadPoolExecutor | None = None  # started with the first call
        self._queue: deque[Future] = deque()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self._queue.append(self._pool.submit(fn, *args))
        while len(self._queue) > self.queued:
            self._queue.popleft().result()

    def wait(self) -> None:
        """Every call submitted has run (an exception of one is raised here)."""
        while self._queue:
            self._queue.popleft().result()

    def close(self) -> None:
        """Drop the calls still waiting, wait for the running one, stop the thread."""
        for future in self._queue:
            future.cancel()
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
