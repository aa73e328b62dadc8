"""The detection engine as an analysis engine of `medsentry scan` / `medsentry monitor`.

`feed` keeps the batch (bounded) and `finish` runs it: at that point the inventory engine, which
runs first, has stored this capture's devices, so detectors see device categories even on the
first scan of a capture. A live session calls `finish` at every commit interval, so alerts are
at most one interval late; beyond `MAX_BUFFERED` events a batch is processed at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from medsentry.detect.engine import DetectionEngine
from medsentry.detect.outputs import sinks_from_config
from medsentry.detect.registry import default_detectors, detect_config, learning_ns
from medsentry.events.base import Event

if TYPE_CHECKING:
    from medsentry.store import Store

MAX_BUFFERED = 200_000
DEVICE_REFRESH_S = 10.0
# A live session stores the learned state at most this often (alerts at every commit).
STATE_SAVE_S = 30.0

_TS = attrgetter("ts_ns")


class DetectAnalyzer:
    name = "detect"

    def __init__(self, store: Store) -> None:
        cfg = detect_config()
        self.engine = DetectionEngine(
            default_detectors(),
            store,
            learning_ns=learning_ns(cfg),
            sinks=sinks_from_config(cfg),
        )
        self.buffer: list[Event] = []
        self.session: set[str] = set()  # captures this run has seen (a live one, many times)
        self._refreshed = 0.0
        self._state_saved = 0.0
        self._unsaved = False  # state learned in a `finish` that did not save it

    def feed(self, events: Sequence[Event]) -> None:
        self.buffer.extend(events)
        if len(self.buffer) >= MAX_BUFFERED:
            self._run()

    def _run(self) -> None:
        now = time.monotonic()
        if now - self._refreshed > DEVICE_REFRESH_S:
            self.engine.refresh_devices()
            self._refreshed = now
        batch, self.buffer = self.buffer, []
        batch.sort(key=_TS)  # flows arrive at their end; detectors want time order
        self.engine.process(batch)

    def finish(self, store: Store, capture_id: str | None) -> dict[str, Any]:
        engine = self.engine
        first = capture_id not in self.session
        self._refreshed = 0.0  # the inventory (run before) may have stored new devices
        if capture_id is not None and first:
            self.session.add(capture_id)
            if capture_id in engine.captures:  # the same file scanned again: already detected
                self.buffer = []
                return {"alerts": 0, "open": len(engine.open), "skipped": "already detected"}
            engine.captures.append(capture_id)
        engine.ctx.capture_id = capture_id
        before = engine.raised
        self._run()
        now = time.monotonic()
        # a file's only finish saves the state; a live session every STATE_SAVE_S
        save_state = first or now - self._state_saved >= STATE_SAVE_S
        engine.commit(state=save_state)
        if save_state:
            self._state_saved = now
        self._unsaved = not save_state  # `close` saves it (events of a failed run: never)
        return {"alerts": engine.raised - before, "open": len(engine.open)}

    def close(self) -> list[str]:
        """The end of the run: the learned state stored (a live session saves it only every
        STATE_SAVE_S otherwise), the alert outputs drained; what they could not deliver."""
        try:
            if self._unsaved and self.engine.store is not None:
                self.engine.commit()
                self._unsaved = False
        finally:
            problems = self.engine.close()
        return problems


def detect_analyzer(store: Store) -> DetectAnalyzer:
    return DetectAnalyzer(store)
