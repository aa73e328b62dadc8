"""The app behind a connection, where the capture names it (capture/processes.py)."""

from __future__ import annotations

from medsentry.events.base import Endpoints, Event


class ProcessTraffic(Event, tag="process_traffic", frozen=True, kw_only=True):
    """A process on the capturing host took part in one connection: one event per (flow,
    process) in a capture. `endpoints.client` is the host's side: the end the capture marks as
    its own (the packet direction), else the address in more of the attributed packets (the
    capturing host is in all of them), else the end with the higher (ephemeral) port."""

    endpoints: Endpoints
    flow_id: str | None = None  # the flow record of the connection (None: not a tracked flow)
    process: str  # Android package or app name (PCAPdroid); command name (Apple pth_comm, PIB)
    label: str | None = None  # the app's display name, where the capture gives it
    process_id: int | None = None  # Android uid, Apple pid
    via: str | None = None  # Apple: the process that did the I/O on `process`'s behalf
    source: str  # "pcapdroid", "pktap", "apple-pcapng"
    local_known: bool = False  # True when the packet direction, not the ports, named the host
