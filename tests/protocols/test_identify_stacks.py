"""Identification of bytes produced by real protocol stacks on loopback.

Each test runs a real client (and, where one is at hand, a real server) over 127.0.0.1, with a
recording relay in between, and hands the first bytes of each direction to `identify` — what
the flow layer does with a captured flow.
"""

from __future__ import annotations

import http.client
import http.server
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from identify_stack import OneShotServer, RecordingRelay

from medsentry.protocols.identify import identify

# xdist_group: one worker runs this module, so its live capture is built once, without clashes
pytestmark = pytest.mark.xdist_group("test_identify_stacks")

TCP, UDP = 6, 17


def _free_ae_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- DICOM: pynetdicom association (SCU and SCP) through the relay ------------------------


@pytest.fixture
def verification_scp() -> Iterator[int]:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="STORESCP")
    ae.add_supported_context(Verification)
    port = _free_ae_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    try:
        yield port
    finally:
        server.shutdown()


def _associate(relay_port: int, called: str = "STORESCP") -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", relay_port, ae_title=called)
    if assoc.is_established:
        assoc.send_c_echo()
        assoc.release()


@pytest.mark.parametrize("server_port", [104, 11112, 80, 40000])
def test_dicom_association_is_dicom_on_any_port(verification_scp: int, server_port: int) -> None:
    relay = RecordingRelay(("127.0.0.1", verification_scp))
    _associate(relay.port)
    rec = relay.wait()
    assert rec.c2s[:1] == b"\x01" and rec.s2c[:1] == b"\x02"  # A-ASSOCIATE-RQ / -AC
    got = identify(TCP, 51000, server_port, bytes(rec.c2s), bytes(rec.s2c), False)
    assert got is not None
    assert (got.protocol, got.method, got.detail) == ("dicom", "signature", "A-ASSOCIATE-RQ")
    # the request alone is enough: no need to wait for the answer
    alone = identify(TCP, 51000, server_port, bytes(rec.c2s), b"", False)
    assert alone is not None and alone.protocol == "dicom"


def test_dicom_rejected_association_is_dicom() -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="STORESCP")
    ae.require_called_aet = True
    ae.add_supported_context(Verification)
    port = _free_ae_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    try:
        relay = RecordingRelay(("127.0.0.1", port))
        _associate(relay.port, called="WRONGAET")
        rec = relay.wait()
    finally:
        server.shutdown()
    assert rec.s2c[:1] == b"\x03"  # A-ASSOCIATE-RJ
    got = identify(TCP, 51000, 4000, b"", bytes(rec.s2c), True)
    assert got is not None and (got.protocol, got.detail) == ("dicom", "A-ASSOCIATE-RJ")


def _pdus() -> dict[str, bytes]:
    from pynetdicom import pdu
    from pynetdicom import pdu_primitives as pp

    out: dict[str, bytes] = {}
    pdata = pp.P_DATA()
    pdata.presentation_data_value_list = [[1, b"\x03" + b"\x00" * 40]]
    p = pdu.P_DATA_TF()
    p.from_primitive(pdata)
    out["P-DATA-TF"] = p.encode()
    assoc = pp.A_ASSOCIATE()
    assoc.result, assoc.result_source, assoc.diagnostic = 1, 1, 1
    rj = pdu.A_ASSOCIATE_RJ()
    rj.from_primitive(assoc)
    out["A-ASSOCIATE-RJ"] = rj.encode()
    out["A-RELEASE-RQ"] = pdu.A_RELEASE_RQ().encode()
    rp = pdu.A_RELEASE_RP()
    rp.from_primitive(pp.A_RELEASE())
    out["A-RELEASE-RP"] = rp.encode()
    abort = pp.A_ABORT()
    abort.abort_source = 0
    ab = pdu.A_ABORT_RQ()
    ab.from_primitive(abort)
    out["A-ABORT"] = ab.encode()
    return out


@pytest.mark.parametrize("name", sorted(_pdus()))
def test_each_dicom_pdu_type_is_dicom(name: str) -> None:
    data = _pdus()[name]
    got = identify(TCP, 51000, 80, data, b"", True)
    assert got is not None and (got.protocol, got.detail) == ("dicom", name)


def test_dicom_pdu_with_wrong_length_is_not_dicom() -> None:
    data = bytearray(_pdus()["A-RELEASE-RQ"])
    data[5] = 5  # PDU-length must be 4 (PS3.8 §9.3.6)
    got = identify(TCP, 51000, 104, bytes(data), b"", True)
    assert got is not None and got.method == "port"  # not a signature match


# --- HL7 v2 over MLLP: hl7apy ----------------------------------------------------------


def _hl7_mllp() -> bytes:
    from hl7apy.core import Message

    msg = Message("ADT_A01", version="2.5")
    msg.msh.msh_3 = "ADT"
    msg.msh.msh_4 = "WARD1"
    msg.msh.msh_9 = "ADT^A01^ADT_A01"
    msg.msh.msh_10 = "MSG00001"
    msg.msh.msh_11 = "P"
    msg.pid.pid_3 = "123456"
    return msg.to_mllp().encode("ascii")


@pytest.mark.parametrize("server_port", [2575, 6661, 80])
def test_hl7_mllp_from_hl7apy_over_a_socket(server_port: int) -> None:
    import socket

    server = OneShotServer()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(_hl7_mllp())
    data = server.wait()
    assert data.startswith(b"\x0bMSH|")
    got = identify(TCP, 51000, server_port, data, b"", False)
    assert got is not None and (got.protocol, got.method) == ("hl7-mllp", "signature")


def test_hl7_without_mllp_start_block_is_not_hl7() -> None:
    raw = _hl7_mllp()[1:]  # "MSH|..." without <VT>
    got = identify(TCP, 51000, 40000, raw, b"", True)
    assert got is None or got.protocol != "hl7-mllp"


# --- MQTT: paho-mqtt against the Mosquitto broker ------------------------------------------


def _broker_up() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _broker_up(), reason="Mosquitto broker not listening on 127.0.0.1:1883")
@pytest.mark.parametrize("version", [3, 4, 5])  # MQTT 3.1, 3.1.1, 5.0
def test_mqtt_connect_from_paho(version: int) -> None:
    import paho.mqtt.client as mqtt

    relay = RecordingRelay(("127.0.0.1", 1883))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pump-7", protocol=version)
    client.connect("127.0.0.1", relay.port)
    client.loop_start()
    info = client.publish("ward/1/pump", b"ok", qos=1)
    info.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
    rec = relay.wait()
    assert rec.c2s[:1] == b"\x10" and rec.s2c[:1] == b"\x20"
    for port in (1883, 40000):
        got = identify(TCP, 51000, port, bytes(rec.c2s), bytes(rec.s2c), False)
        assert got is not None and (got.protocol, got.method) == ("mqtt", "signature")


# --- TLS: Python's ssl module on both sides -----------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed (needed to make a test certificate)")
    d = tmp_path_factory.mktemp("tls")
    key, cert = d / "key.pem", d / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=pacs",
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()


def _tls_exchange(server_port: int) -> tuple[bytes, bytes]:
    relay = RecordingRelay(("127.0.0.1", server_port))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", relay.port, context=ctx, timeout=10)
    conn.request("GET", "/")
    conn.getresponse().read()
    conn.close()
    rec = relay.wait()
    return bytes(rec.c2s), bytes(rec.s2c)


def test_tls_client_and_server_hello(tls_server: int) -> None:
    c2s, s2c = _tls_exchange(tls_server)
    assert c2s[:1] == b"\x16" and c2s[5] == 1 and s2c[5] == 2  # ClientHello, ServerHello
    got = identify(TCP, 51000, 443, c2s, s2c, False)
    assert got is not None and (got.protocol, got.method) == ("tls", "signature")
    only_server = identify(TCP, 51000, 8000, b"", s2c, True)
    assert only_server is not None and only_server.protocol == "tls"


def test_tls_on_dicom_tls_port_is_dicom_tls(tls_server: int) -> None:
    c2s, s2c = _tls_exchange(tls_server)
    got = identify(TCP, 51000, 2762, c2s, s2c, False)
    assert got is not None and (got.protocol, got.method) == ("dicom-tls", "signature")


# --- HTTP and FHIR: http.client against http.server --------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if "fhir" in self.path.lower() or self.path.startswith("/api/"):
            body = b'{"resourceType":"Bundle","type":"searchset","total":0}'
            ctype = "application/fhir+json; charset=utf-8"
        else:
            body = b"<html><body>ok</body></html>"
            ctype = "text/html"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()


def _http_exchange(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[bytes, bytes]:
    relay = RecordingRelay(("127.0.0.1", port))
    conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    conn.getresponse().read()
    conn.close()
    rec = relay.wait()
    return bytes(rec.c2s), bytes(rec.s2c)


@pytest.mark.parametrize("server_port", [80, 104, 2575, 40000])
def test_http_is_http_on_any_port(http_server: int, server_port: int) -> None:
    c2s, s2c = _http_exchange(http_server, "/index.html")
    got = identify(TCP, 51000, server_port, c2s, s2c, False)
    assert got is not None and (got.protocol, got.method) == ("http", "signature")


def test_http_request_waits_for_the_response_before_ruling_out_fhir(http_server: int) -> None:
    c2s, _ = _http_exchange(http_server, "/index.html")
    assert identify(TCP, 51000, 80, c2s, b"", False) is None  # a FHIR answer may follow
    got = identify(TCP, 51000, 80, c2s, b"", True)
    assert got is not None and got.protocol == "http"


def test_fhir_search_by_path(http_server: int) -> None:
    c2s, s2c = _http_exchange(
        http_server, "/fhir/Observation?code=8867-4", {"Accept": "application/fhir+json"}
    )
    got = identify(TCP, 51000, 8080, c2s, b"", False)
    assert got is not None and (got.protocol, got.detail) == ("fhir", "Observation")
    both = identify(TCP, 51000, 8080, c2s, s2c, False)
    assert both is not None and both.protocol == "fhir"


def test_fhir_by_response_media_type(http_server: int) -> None:
    c2s, s2c = _http_exchange(http_server, "/api/v2/search")
    assert b"application/fhir+json" in s2c
    got = identify(TCP, 51000, 443, c2s, s2c, False)
    assert got is not None and got.protocol == "fhir"


# --- Redis and PostgreSQL: their own command-line clients against the local servers -----


def _tcp_up(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(
    shutil.which("redis-cli") is None or not _tcp_up(6379), reason="redis-cli/Redis absent"
)
def test_redis_cli_command_is_redis() -> None:
    relay = RecordingRelay(("127.0.0.1", 6379))
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(relay.port), "PING"],
        check=True,
        capture_output=True,
        timeout=20,
    )
    rec = relay.wait()
    got = identify(TCP, 51000, 16379, bytes(rec.c2s), bytes(rec.s2c), False)
    assert got is not None and (got.protocol, got.method) == ("redis", "signature")


@pytest.mark.skipif(
    shutil.which("psql") is None or not _tcp_up(5432), reason="psql/PostgreSQL absent"
)
def test_psql_startup_is_postgresql() -> None:
    relay = RecordingRelay(("127.0.0.1", 5432))
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(relay.port),
            "-U",
            "postgres",
            "-d",
            "test",
            "-c",
            "select 1",
        ],
        capture_output=True,
        timeout=20,
        env={"PGCONNECT_TIMEOUT": "10", "PATH": "/usr/bin:/bin"},
    )
    rec = relay.wait()
    got = identify(TCP, 51000, 15432, bytes(rec.c2s), bytes(rec.s2c), False)
    assert got is not None and (got.protocol, got.method) == ("postgresql", "signature")


# --- clients whose server we do not run: OpenSSH, curl (FTP, SMTP, Telnet, RTSP, TFTP, MQTT) --


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
def test_openssh_client_banner() -> None:
    server = OneShotServer()
    subprocess.run(
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "StrictHostKeyChecking=no",
            "-p",
            str(server.port),
            "nurse@127.0.0.1",
            "true",
        ],
        capture_output=True,
        timeout=30,
    )
    data = server.wait()
    assert data.startswith(b"SSH-2.0-")
    got = identify(TCP, 51000, 2222, data, b"", False)
    assert got is not None and (got.protocol, got.method) == ("ssh", "signature")


def _curl(url: str, *extra: str) -> None:
    subprocess.run(["curl", "-s", "--max-time", "3", *extra, url], capture_output=True, timeout=30)


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")


@needs_curl
def test_curl_ftp_session_is_ftp() -> None:
    banner = b"220 Service ready for new user.\r\n"  # RFC 959 §5.4 greeting
    server = OneShotServer(greeting=banner)
    _curl(f"ftp://127.0.0.1:{server.port}/")
    data = server.wait()
    assert data.startswith(b"USER ")
    got = identify(TCP, 51000, 2121, data, banner, False)
    assert got is not None and (got.protocol, got.method) == ("ftp", "signature")


@needs_curl
def test_curl_smtp_session_is_smtp() -> None:
    banner = b"220 mail.example.org Service ready\r\n"  # RFC 5321 §4.2 greeting
    server = OneShotServer(greeting=banner)
    _curl(f"smtp://127.0.0.1:{server.port}/", "--mail-from", "a@example.org")
    data = server.wait()
    assert data[:5] in (b"EHLO ", b"HELO ")
    got = identify(TCP, 51000, 2525, data, banner, False)
    assert got is not None and (got.protocol, got.method) == ("smtp", "signature")


@needs_curl
def test_curl_telnet_negotiation_is_telnet() -> None:
    server = OneShotServer(greeting=b"\xff\xfd\x18")  # IAC DO TERMINAL-TYPE (RFC 1091)
    subprocess.run(
        ["curl", "-s", "--max-time", "2", f"telnet://127.0.0.1:{server.port}", "-t", "TTYPE=vt100"],
        input=b"",
        capture_output=True,
        timeout=30,
    )
    data = server.wait()
    assert data[:1] == b"\xff"
    got = identify(TCP, 51000, 2323, data, b"", False)
    assert got is not None and got.protocol == "telnet"


@needs_curl
def test_curl_rtsp_options_is_rtsp() -> None:
    server = OneShotServer()
    _curl(f"rtsp://127.0.0.1:{server.port}/stream")  # curl sends OPTIONS by default
    data = server.wait()
    got = identify(TCP, 51000, 8554, data, b"", False)
    assert got is not None and (got.protocol, got.method) == ("rtsp", "signature")


@needs_curl
def test_curl_tftp_read_request_is_tftp() -> None:
    server = OneShotServer(udp=True)
    _curl(f"tftp://127.0.0.1:{server.port}/pump-firmware.bin")
    data = server.wait()
    assert data[:2] == b"\x00\x01"  # RRQ
    got = identify(UDP, 51000, 6969, data, b"", False)
    assert got is not None and (got.protocol, got.method) == ("tftp", "signature")


@needs_curl
@pytest.mark.skipif(not _broker_up(), reason="Mosquitto broker not listening on 127.0.0.1:1883")
def test_curl_mqtt_is_mqtt() -> None:
    relay = RecordingRelay(("127.0.0.1", 1883))
    _curl(f"mqtt://127.0.0.1:{relay.port}/ward/telemetry", "-d", "42")
    rec = relay.wait()
    got = identify(TCP, 51000, 1884, bytes(rec.c2s), bytes(rec.s2c), False)
    assert got is not None and got.protocol == "mqtt"


# --- DNS family: dpkt's DNS encoder -------------------------------------------------------


def _dns_query(name: str, qtype: int) -> bytes:
    import dpkt

    q = dpkt.dns.DNS(id=0x1A2B, qd=[dpkt.dns.DNS.Q(name=name, type=qtype)])
    return bytes(q)


@pytest.mark.parametrize(
    ("port", "expected"), [(53, "dns"), (5353, "mdns"), (5355, "llmnr"), (10053, "dns")]
)
def test_dns_family_by_port(port: int, expected: str) -> None:
    data = _dns_query("pacs.radiology.example.org", 1)
    got = identify(UDP, 51000, port, data, b"", False)
    assert got is not None and (got.protocol, got.method) == (expected, "signature")


def test_dns_over_tcp_has_a_length_prefix() -> None:
    data = _dns_query("ehr.example.org", 28)
    framed = len(data).to_bytes(2, "big") + data
    got = identify(TCP, 51000, 53, framed, b"", False)
    assert got is not None and got.protocol == "dns"


# --- end to end: dcmtk on loopback, captured by tcpdump, scanned by medsentry's pipeline ----

DCMTK = Path("/usr/bin")


@pytest.mark.skipif(
    shutil.which("tcpdump") is None
    or not (DCMTK / "echoscu").exists()
    or not (DCMTK / "storescp").exists(),
    reason="tcpdump or dcmtk (echoscu/storescp) not installed",
)
def test_dcmtk_echo_captured_on_loopback_is_dicom(tmp_path: Path) -> None:
    from medsentry.events.flow import FlowRecord
    from medsentry.pipeline import Pipeline, ScanConfig

    port = _free_ae_port()
    pcap = tmp_path / "echo.pcap"
    dump = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
            str(pcap),
            f"tcp port {port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert dump.stderr is not None
        line = dump.stderr.readline().decode(errors="replace")  # "listening on lo, ..."
        if "listening" not in line:
            pytest.skip(f"tcpdump cannot capture on lo: {line.strip()}")
        scp = subprocess.Popen(
            [str(DCMTK / "storescp"), "--aetitle", "PACS", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(50):  # until storescp listens
                if _tcp_up(port):
                    break
                time.sleep(0.1)
            echo = subprocess.run(
                [
                    str(DCMTK / "echoscu"),
                    "-aet",
                    "MODALITY",
                    "-aec",
                    "PACS",
                    "127.0.0.1",
                    str(port),
                ],
                capture_output=True,
                timeout=30,
            )
            assert echo.returncode == 0, echo.stderr
        finally:
            scp.terminate()
            scp.wait(10)
        time.sleep(0.5)
    finally:
        dump.terminate()
        dump.wait(10)

    flows: list[FlowRecord] = []
    Pipeline(ScanConfig(dissectors=False)).scan_files(
        [pcap], lambda events: flows.extend(e for e in events if isinstance(e, FlowRecord))
    )
    echo_flows = [f for f in flows if f.server_port == port and f.payload_c2s > 0]
    assert echo_flows, [(f.client_port, f.server_port) for f in flows]
    assert all((f.app_protocol, f.app_method) == ("dicom", "signature") for f in echo_flows), [
        (f.app_protocol, f.app_method) for f in echo_flows
    ]
