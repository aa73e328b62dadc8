"""HTTP/1.x and FHIR REST: a real http.server / http.client exchange captured on loopback."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netcap import ctx_for, flows, free_port, run, tcpdump, tshark

from medsentry.events import encode_json
from medsentry.events.credentials import CleartextCredentials
from medsentry.events.http import FhirInteraction, HttpRequest, HttpResponse
from medsentry.protocols.base import ParseError
from medsentry.protocols.http import HttpDissector
from medsentry.protocols.registry import load, stream_dissector

# xdist_group: the modules that build or share these live captures (same loopback addresses,
# ports and MQTT client ids) run on one worker, so two builds never overlap
pytestmark = pytest.mark.xdist_group("net_live_captures")

PATIENT_NAME = "Zebediah Quixote"  # PHI stand-ins that must never leave the dissector
PATIENT_ID = "MRN884213"
BIRTH = "1931-02-27"

CAPABILITY = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "kind": "instance",
    "software": {"name": "HAPI FHIR Server", "version": "6.4.0"},
    "fhirVersion": "4.0.1",
    "format": ["json"],
}
PATIENT = {
    "resourceType": "Patient",
    "id": PATIENT_ID,
    "name": [{"text": PATIENT_NAME}],
    "birthDate": BIRTH,
}


class FhirHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FhirTest/1.0"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, code: int, doc: dict | None, chunked: bool = False) -> None:
        body = json.dumps(doc).encode() if doc is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/fhir+json; fhirVersion=4.0")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 7):
                part = body[i : i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_GET(self) -> None:
        if self.path.endswith("/metadata"):
            self._send(200, CAPABILITY, chunked=True)
        elif self.path.startswith("/fhir/Patient?"):
            self._send(
                200,
                {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": PATIENT}]},
            )
        elif self.path.startswith("/fhir/Patient/"):
            self._send(200, PATIENT)
        else:
            self._send(404, {"resourceType": "OperationOutcome"})

    def do_POST(self) -> None:
        self._body()
        if self.path == "/fhir":
            self._send(200, {"resourceType": "Bundle", "type": "transaction-response"})
        else:
            self._send(201, None)

    def do_PUT(self) -> None:
        self._body()
        self._send(200, PATIENT)

    def do_DELETE(self) -> None:
        self._send(204, None)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1234")
        self.end_headers()


@pytest.fixture(scope="module")
def http_capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), FhirHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    pcap = tmp_path_factory.mktemp("http") / "fhir.pcap"
    fhir_json = {"Accept": "application/fhir+json; fhirVersion=4.0", "User-Agent": "pump-fw/2.1"}
    try:
        with tcpdump(pcap, f"tcp port {port}"):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            auth = base64.b64encode(b"nurse.jones:s3cret!").decode()
            calls = [
                ("GET", "/fhir/metadata", None, {}),
                ("GET", f"/fhir/Patient/{PATIENT_ID}", None, {"Authorization": f"Basic {auth}"}),
                (
                    "GET",
                    f"/fhir/Patient?name={PATIENT_NAME.replace(' ', '+')}&birthdate={BIRTH}",
                    None,
                    {},
                ),
                (
                    "POST",
                    "/fhir/Observation",
                    json.dumps({"resourceType": "Observation", "subject": PATIENT_ID}),
                    {},
                ),
                ("PUT", f"/fhir/Patient/{PATIENT_ID}", json.dumps(PATIENT), {}),
                ("GET", f"/fhir/Patient/{PATIENT_ID}/_history/3", None, {}),
                ("DELETE", f"/fhir/Patient/{PATIENT_ID}", None, {}),
                ("HEAD", "/fhir/Binary/abc", None, {}),
            ]
            for method, url, body, extra in calls:
                c.request(method, url, body=body, headers={**fhir_json, **extra})
                c.getresponse().read()
            bundle = json.dumps(
                {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}}
                    ],
                }
            )
            c.putrequest("POST", "/fhir")
            for k, v in {
                **fhir_json,
                "Content-Type": "application/fhir+json",
                "Transfer-Encoding": "chunked",
            }.items():
                c.putheader(k, v)
            c.endheaders()
            c.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(bundle), bundle.encode()))
            c.getresponse().read()
            c.close()
            # two pipelined requests in one segment (RFC 9112 §9.3.2)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(
                    b"GET /fhir/Device/7 HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                while s.recv(65536):
                    pass
    finally:
        server.shutdown()
        server.server_close()
    return pcap


def _events(pcap: Path) -> list:
    load()
    out = []
    for fl in flows(pcap):
        d = stream_dissector("http")(ctx_for(fl.endpoints))
        out += run(d, fl.items, strict=False)
    return out


def test_fhir_exchange_matches_what_was_sent(http_capture: Path) -> None:
    ev = _events(http_capture)
    reqs = [e for e in ev if isinstance(e, HttpRequest)]
    resps = [e for e in ev if isinstance(e, HttpResponse)]
    fh = [e for e in ev if isinstance(e, FhirInteraction)]
    assert [r.method for r in reqs] == [
        "GET",
        "GET",
        "GET",
        "POST",
        "PUT",
        "GET",
        "DELETE",
        "HEAD",
        "POST",
        "GET",
        "GET",
    ]
    assert reqs[0].user_agent == "pump-fw/2.1"
    assert reqs[1].auth_scheme == "Basic"
    assert reqs[1].path == "/fhir/Patient/{id}"
    assert reqs[2].path == "/fhir/Patient" and reqs[2].query_params == ["name", "birthdate"]
    assert reqs[-1].path == "/index.html"
    assert [r.status for r in resps] == [200, 200, 200, 201, 200, 200, 204, 200, 200, 404, 404]
    assert resps[0].server.startswith("FhirTest/1.0")
    assert resps[7].request_method == "HEAD"
    inter = [(f.interaction, f.resource_type, f.path_template, f.status) for f in fh]
    assert inter == [
        ("capabilities", None, "/fhir/metadata", 200),
        ("read", "Patient", "/fhir/Patient/{id}", 200),
        ("search", "Patient", "/fhir/Patient", 200),
        ("create", "Observation", "/fhir/Observation", 201),
        ("update", "Patient", "/fhir/Patient/{id}", 200),
        ("vread", "Patient", "/fhir/Patient/{id}/_history/{vid}", 200),
        ("delete", "Patient", "/fhir/Patient/{id}", 204),
        ("read", "Binary", "/fhir/Binary/{id}", 200),
        ("transaction", None, "/fhir", 200),
        ("read", "Device", "/fhir/Device/{id}", 404),
    ]
    cap = fh[0]
    assert (cap.fhir_version, cap.software_name, cap.software_version) == (
        "4.0.1",
        "HAPI FHIR Server",
        "6.4.0",
    )
    assert fh[1].fhir_version == "4.0" and fh[1].mime_type == "application/fhir+json"
    assert [f.patient_data_in_clear for f in fh] == [
        False,
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        True,
        False,
    ]
    assert fh[2].search_params == ["name", "birthdate"]
    creds = [e for e in ev if isinstance(e, CleartextCredentials)]
    assert len(creds) == 1 and creds[0].mechanism == "basic" and creds[0].password_sent
    assert creds[0].username_hash == ctx_for().phi_hash("nurse.jones")


def test_no_phi_or_password_in_events(http_capture: Path) -> None:
    blob = b"".join(encode_json(e) for e in _events(http_capture))
    for secret in (PATIENT_NAME, "Zebediah", PATIENT_ID, BIRTH, "s3cret", "nurse.jones"):
        assert secret.encode() not in blob


def test_cross_check_with_tshark(http_capture: Path) -> None:
    ev = _events(http_capture)
    rows = tshark(
        http_capture, "http.request", "http.request.method", "http.request.uri", "http.user_agent"
    )
    reqs = [e for e in ev if isinstance(e, HttpRequest)]
    # tshark puts pipelined requests of one segment in one row, "|"-aggregated
    methods = [m for r in rows for m in r[0].split("|")]
    uris = [u for r in rows for u in r[1].split("|")]
    assert methods == [e.method for e in reqs]
    for uri, e in zip(uris, reqs, strict=True):
        if "{id}" not in e.path:
            assert uri.split("?")[0] == e.path
    agents = [r[2] for r in rows if "|" not in r[0]]
    assert agents == [e.user_agent or "" for e in reqs[: len(agents)]]
    codes = tshark(http_capture, "http.response", "http.response.code", "http.server")
    resps = [e for e in ev if isinstance(e, HttpResponse)]
    assert [int(c) for r in codes for c in r[0].split("|")] == [e.status for e in resps]


def test_split_anywhere_gives_same_events(http_capture: Path) -> None:
    """Byte-at-a-time feeding yields exactly the events of segment-sized feeding."""
    for fl in flows(http_capture):
        whole = run(HttpDissector(ctx_for(fl.endpoints)), fl.items)
        tiny = [(d, data[i : i + 1], ts) for d, data, ts in fl.items for i in range(len(data))]
        assert run(HttpDissector(ctx_for(fl.endpoints)), tiny) == whole


def test_gap_inside_body_keeps_framing() -> None:
    d = HttpDissector(ctx_for())
    d.feed(0, b"POST /fhir/Observation HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 1)
    d.gap(0, 7, 2)
    ev = d.feed(0, b"GET /x HTTP/1.1\r\n\r\n", 3)
    assert [e.path for e in ev if isinstance(e, HttpRequest)] == ["/x"]


def test_not_http_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        HttpDissector(ctx_for()).feed(0, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n", 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=300)), max_size=12))
def test_fuzz_any_bytes(chunks: list[tuple[int, bytes]]) -> None:
    d = HttpDissector(ctx_for())
    try:
        for direction, data in chunks:
            d.feed(direction, data, 1)
            d.gap(direction, 3, 1) if data[:1] == b"\x00" else None
        d.close(2)
    except ParseError:
        pass
    assert all(len(s.buf) <= 70_000 for s in d.sides)


_SEED = (
    b"POST /fhir HTTP/1.1\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: "
    b"chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\nGET /fhir/metadata HTTP/1.1\r\nAccept: "
    b"application/fhir+json\r\n\r\n"
)
_RESP = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n3\r\n{}x\r\n0\r\n\r\n"
)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_exchange(data: st.DataObject) -> None:
    req, resp = bytearray(_SEED), bytearray(_RESP)
    for buf in (req, resp):
        for _ in range(data.draw(st.integers(0, 4))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(req)))
    d = HttpDissector(ctx_for(), assume_fhir=True)
    try:
        d.feed(0, bytes(req[:cut]), 1)
        d.feed(1, bytes(resp), 2)
        d.feed(0, bytes(req[cut:]), 3)
        d.close(4)
    except ParseError:
        pass


def test_ndpi_basic_auth_capture(ndpi_pcaps: Path) -> None:
    """A real capture of HTTP Basic (nDPI corpus): the fact and the hashed user, no password."""
    pcap = ndpi_pcaps / "http_auth.pcap"
    rows = tshark(pcap, "http.authbasic", "http.authbasic")
    user = rows[0][0].split(":")[0]
    ev = _events(pcap)
    creds = [e for e in ev if isinstance(e, CleartextCredentials)]
    assert [c.username_hash for c in creds] == [ctx_for().phi_hash(user)]
    assert b"fail2" not in b"".join(encode_json(e) for e in ev)


@pytest.mark.parametrize(
    "name",
    ["http.pcapng", "http-lines-split.pcap", "http_ipv6.pcap", "http-proxy.pcapng", "webdav.pcap"],
)
def test_ndpi_http_captures_agree_with_tshark(ndpi_pcaps: Path, name: str) -> None:
    pcap = ndpi_pcaps / name
    ev = _events(pcap)
    rows = tshark(pcap, "http.request", "http.request.method")
    ours = sorted(e.method for e in ev if isinstance(e, HttpRequest))
    assert ours == sorted(m for r in rows for m in r[0].split("|"))


def test_parse_errors_do_not_quote_input() -> None:
    """ParseError messages end up in DecodeWarning events: they must not carry wire bytes."""
    for data in (
        b"\x01Zebediah Quixote\r\n\r\n",
        b"GET /x HTTP/1.1\r\nZebediah\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: Zebediah\r\n\r\n",
    ):
        with pytest.raises(ParseError) as exc:
            HttpDissector(ctx_for()).feed(0, data, 1)
        assert "Zebediah" not in str(exc.value)


def test_content_length_takes_ascii_digits_only() -> None:
    """Found by mutation fuzzing: "51\xb2" (latin-1 "51²") passed str.isdigit and int() raised
    ValueError; it is a malformed header (RFC 9110 §8.6: 1*DIGIT), a ParseError."""
    for head in (b"HTTP/1.1 200 OK\r\nContent-Length: 51\xb2\r\n\r\n",):
        d = HttpDissector(ctx_for())
        d.feed(0, b"GET /x HTTP/1.1\r\n\r\n", 1)
        with pytest.raises(ParseError):
            d.feed(1, head, 2)
    with pytest.raises(ParseError):
        HttpDissector(ctx_for()).feed(0, b"POST /x HTTP/1.1\r\nContent-Length: \xb9\r\n\r\n", 1)


def test_request_target_with_spaces_is_kept() -> None:
    """Attack traffic (nDPI WebattackRCE.pcap) puts spaces in the request-target; the path is
    kept as its template (the first segment, generic words), the query as its names."""
    ev = HttpDissector(ctx_for()).feed(
        0, b"GET /cgi-bin/handler/netsonar;cat /etc/passwd|?data=Download HTTP/1.1\r\n\r\n", 1
    )
    assert [(e.path, e.query_params) for e in ev] == [("/cgi-bin/{id}/{id}/{id}/{id}", ["data"])]


def test_fhir_capability_statement_not_utf8_is_read_leniently() -> None:
    """A body whose JSON strings are not UTF-8 raises nothing: the text fallback reads the
    version, the bad byte replaced."""
    from medsentry.protocols.fhir import capability_statement

    body = b'{"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1\xff"}'
    cap = capability_statement(body)
    assert cap.fhir_version == "4.0.1\ufffd" and cap.software_name is None


def test_fhir_capability_statement_nested_too_deep_raises_nothing() -> None:
    """A hostile body nested past the JSON decoder's recursion limit: read as text, no error."""
    from medsentry.protocols.fhir import capability_statement

    body = b'{"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "x": ' + b"[" * 200_000
    assert capability_statement(body).fhir_version == "4.0.1"
