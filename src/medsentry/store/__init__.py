"""The store: SQL schema, automatic migrations, bulk idempotent writes, queries.

Writing a capture file (one transaction; see `writer` for why):

    from medsentry.store import open_store, CaptureWriter, file_capture_info
    with open_store(url) as store, CaptureWriter(store, file_capture_info(path)) as w:
        stats = Pipeline(ScanConfig()).scan_files([path], sink=w.write)
        w.finish(packets=stats.packets, bytes=stats.bytes)

`w.write(events)` takes any list of events: FlowRecords go to `flows`, every other kind to
`events` (msgspec JSON + kind, time, flow, capture). A live source uses
`CaptureWriter(store, live_capture_info(iface), commit_each_batch=True)`.

Reading:

    from medsentry.store import FlowFilter, list_flows, iter_flow_records, iter_events
    list_flows(store, FlowFilter.parse(protocol="hl7", host="10.0.0.5", sort="-bytes"))
    for ev in iter_events(store, kinds=["dicom_associate_rq"], capture="3fa2"): ...
"""

from medsentry.store.db import Store, migrate, open_store, redact, resolve_url
from medsentry.store.queries import (
    FLOW_TABLE_COLUMNS,
    SORT_KEYS,
    FlowFilter,
    count_rows,
    iter_events,
    iter_flow_records,
    list_captures,
    list_flows,
    ns_to_iso,
    parse_time,
)
from medsentry.store.writer import (
    CaptureInfo,
    CaptureWriter,
    file_capture_info,
    live_capture_info,
    sniff_format,
)

__all__ = [
    "FLOW_TABLE_COLUMNS",
    "SORT_KEYS",
    "CaptureInfo",
    "CaptureWriter",
    "FlowFilter",
    "Store",
    "count_rows",
    "file_capture_info",
    "iter_events",
    "iter_flow_records",
    "list_captures",
    "list_flows",
    "live_capture_info",
    "migrate",
    "ns_to_iso",
    "open_store",
    "parse_time",
    "redact",
    "resolve_url",
    "sniff_format",
]
