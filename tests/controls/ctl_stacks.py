"""One capture of real protocol stacks, each service on its own 127.0.8.x address, covering the
controls audit's finding types (see test_controls_stacks.py). Built once per test session.

Stacks: a Telnet login dialogue (Python socket server, stdlib telnetlib client), pyftpdlib +
ftplib, Net-SNMP snmpd + snmpget (v2c, community "public"), dcmtk storescp/storescu in clear
and over TLS, openssl s_server -tls1 with a weak, expired, self-signed certificate, an HL7 v2
MLLP receiver + hl7apy-built ADT^A01 with PID, Mosquitto (anonymous), http.server with Basic
auth, an IIS 6.0 banner and a FHIR Patient resource, impacket's SMB server/client forced to
SMB1, and tftpd-hpa + tftp-hpa.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

NET = "127.0.8"
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "protocols" / "hl7"))


def have(tool: str) -> str | None:
    for path in (f"/usr/bin/{tool}", f"/usr/sbin/{tool}", shutil.which(tool)):
        if path and Path(path).exists():
            return path
    return None


def wait_tcp(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


@contextlib.contextmanager
def tcpdump(path: Path, expr: str, iface: str = "lo", netns: str | None = None) -> Iterator[Path]:
    exe = have("tcpdump")
    if exe is None:
        pytest.skip("tcpdump is not installed")
    cmd = [
        exe,
        "-i",
        iface,
        "-n",
        "-U",
        "--immediate-mode",
        "-s",
        "0",
        "-B",
        "16384",
        "-w",
        str(path),
    ]
    if iface == "any":
        cmd[3:3] = ["-Q", "in"]  # each routed packet once: as the router receives it
    cmd.append(expr)
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = ""
    for _ in range(4):  # "-i any" first warns about the link type, then says "listening"
        line = proc.stderr.readline() if proc.stderr else ""
        if "listening" in line or not line:
            break
    if "listening" not in line:
        proc.kill()
        proc.wait()
        pytest.skip(f"cannot capture: {line.strip()}")
    try:
        yield path
    finally:
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


@contextlib.contextmanager
def process(cmd: list[str], **kw) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- Telnet --------------------------------------------------------------------------------------


def _telnet_server(sock: socket.socket) -> None:
    """The getty/login dialogue of RFC 854 servers: option negotiation, prompts, a shell."""
    conn, _ = sock.accept()
    with conn:
        conn.settimeout(5)
        conn.sendall(b"\xff\xfb\x01\xff\xfb\x03\xff\xfd\x18\r\nmonitor-gw login: ")
        buf = b""
        while b"\n" not in buf and b"\r" not in buf:
            chunk = conn.recv(1024)
            if not chunk:
                return
            buf += chunk.replace(b"\xff\xfd\x01", b"").replace(b"\xff\xfd\x03", b"")
        conn.sendall(b"Password: ")
        buf = b""
        while b"\n" not in buf and b"\r" not in buf:
            chunk = conn.recv(1024)
            if not chunk:
                return
            buf += chunk
        conn.sendall(b"\r\nLast login: Mon Nov 23 08:00:00 on ttyS0\r\n# ")
        with contextlib.suppress(OSError):
            conn.recv(1024)


def telnet_session() -> None:
    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((f"{NET}.1", 23))
        srv.listen(1)
        t = threading.Thread(target=_telnet_server, args=(srv,), daemon=True)
        t.start()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import telnetlib  # the stdlib client (RFC 854 option handling)

        tn = telnetlib.Telnet(f"{NET}.1", 23, timeout=5)
        tn.read_until(b"login: ", 5)
        tn.write(b"root\r\n")
        tn.read_until(b"Password: ", 5)
        tn.write(b"pump-secret\r\n")
        tn.read_until(b"# ", 5)
        tn.write(b"exit\r\n")
        time.sleep(0.2)
        tn.close()
        t.join(5)


# -- FTP -----------------------------------------------------------------------------------------


def ftp_sessions(tmp: Path) -> None:
    import ftplib

    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    (tmp / "ftproot").mkdir(exist_ok=True)
    auth = DummyAuthorizer()
    auth.add_user("admin", "admin", str(tmp / "ftproot"), perm="elr")
    auth.add_anonymous(str(tmp / "ftproot"))
    handler = type("H", (FTPHandler,), {"authorizer": auth, "banner": "pyftpdlib ready"})
    server = FTPServer((f"{NET}.2", 21), handler)
    t = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1}, daemon=True)
    t.start()
    try:
        for user, pw in (("admin", "admin"), ("anonymous", "guest@")):
            f = ftplib.FTP()
            f.connect(f"{NET}.2", 21, timeout=5)
            f.login(user, pw)
            f.nlst()
            f.quit()
    finally:
        server.close_all()
        t.join(5)


# -- SNMP ----------------------------------------------------------------------------------------


def snmp_query(tmp: Path) -> None:
    snmpd, snmpget = have("snmpd"), have("snmpget")
    if snmpd is None or snmpget is None:
        pytest.skip("Net-SNMP (Debian snmpd, snmp) is not installed")
    conf = tmp / "snmpd.conf"
    conf.write_text(
        "rocommunity public 127.0.0.0/8\n"
        # the Windows SNMP service's sysDescr form, of an end-of-life release
        "sysDescr Hardware: x86 Family 6 Model 8 - Software: Windows 2000 Version 5.0\n"
        "createUser v3open\n"  # USM users (RFC 3414): one without authentication,
        "rouser v3open noauth\n"
        "createUser v3auth SHA authpass-1234\n"  # one authenticated but not encrypted
        "rouser v3auth auth\n"
    )
    # a throw-away persistent directory for the agent's engine ID and USM users
    env = {**os.environ, "SNMP_PERSISTENT_DIR": str(tmp / "snmp-persist"), "MIBS": ""}
    cmd = [snmpd, "-f", "-Lo", "-C", "-c", str(conf), "-p", str(tmp / "snmpd.pid")]
    sys_descr = "1.3.6.1.2.1.1.1.0"
    with process([*cmd, f"udp:{NET}.3:161"], env=env):
        time.sleep(1.0)
        for args in (
            ["-v2c", "-c", "public"],
            ["-v3", "-l", "noAuthNoPriv", "-u", "v3open"],
            ["-v3", "-l", "authNoPriv", "-u", "v3auth", "-a", "SHA", "-A", "authpass-1234"],
        ):
            for _ in range(3):
                out = subprocess.run(
                    [snmpget, *args, "-t", "1", "-r", "1", f"{NET}.3", sys_descr],
                    capture_output=True,
                    text=True,
                    env=env,
                )
                if out.returncode == 0:
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"snmpget {' '.join(args[:3])} failed: {out.stderr.strip()}")


# -- DICOM ---------------------------------------------------------------------------------------


def dicom_clear(tmp: Path) -> None:
    from loopcap import dcmtk
    from pydicom.data import get_testdata_file

    storescp, storescu = dcmtk("storescp"), dcmtk("storescu")
    out = tmp / "dicom_in"
    out.mkdir(exist_ok=True)
    port = 11112
    with process([storescp, "-aet", "PACS", "-od", str(out), str(port)]):
        wait_tcp(f"{NET}.4", port)
        ct = get_testdata_file("CT_small.dcm")
        subprocess.run(
            [storescu, "-aec", "PACS", f"{NET}.4", str(port), ct], check=True, capture_output=True
        )


def _cert(tmp: Path, name: str, cn: str, *, expired: bool, weak: bool) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=1024 if weak else 2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=400), now - dt.timedelta(days=30))
        if expired
        else (
            now - dt.timedelta(days=1),
            now + dt.timedelta(days=30),
        )
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    kp, cp = tmp / f"{name}.key", tmp / f"{name}.crt"
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp


def dicom_tls(tmp: Path) -> bool:
    """storescp/storescu with TLS on the DICOM TLS port 2762; False when the port is taken."""
    from loopcap import dcmtk
    from pydicom.data import get_testdata_file

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as storescp does
        try:
            probe.bind(("0.0.0.0", 2762))
        except OSError:
            return False
    storescp, storescu = dcmtk("storescp"), dcmtk("storescu")
    key, cert = _cert(tmp, "pacs", "pacs.example", expired=False, weak=False)
    out = tmp / "dicom_tls_in"
    out.mkdir(exist_ok=True)
    tls = ["+tls", str(key), str(cert), "+cf", str(cert), "-rc"]
    with process([storescp, "-aet", "PACS", *tls, "-od", str(out), "2762"]):
        wait_tcp(f"{NET}.11", 2762)
        ct = get_testdata_file("CT_small.dcm")
        subprocess.run(
            [storescu, "-aet", "MODALITY1", "-aec", "PACS", *tls, f"{NET}.11", "2762", ct],
            check=True,
            capture_output=True,
        )
    return True


# -- TLS 1.0 -------------------------------------------------------------------------------------


def tls10(tmp: Path) -> None:
    openssl = have("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    key, cert = _cert(tmp, "old", "device.example", expired=True, weak=True)
    cipher = "NULL-SHA:@SECLEVEL=0"  # TLS_RSA_WITH_NULL_SHA: no encryption
    srv = [openssl, "s_server", "-accept", f"{NET}.5:4433", "-tls1", "-cipher", cipher]
    srv += ["-cert", str(cert), "-key", str(key), "-naccept", "1", "-quiet"]
    with process(srv, stdin=subprocess.DEVNULL):
        wait_tcp_probe_free = time.monotonic() + 10
        while time.monotonic() < wait_tcp_probe_free:  # no probe connection: -naccept 1
            ss = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
            if f"{NET}.5:4433" in ss:
                break
            time.sleep(0.1)
        cli = [openssl, "s_client", "-connect", f"{NET}.5:4433", "-tls1", "-cipher", cipher]
        cli += ["-servername", "pump.example"]
        subprocess.run(cli, input=b"Q\n", capture_output=True, timeout=20)


# -- HL7 -----------------------------------------------------------------------------------------


def hl7_exchange() -> None:
    from hl7_build import adt_a01, mllp
    from hl7apy.core import Message
    from hl7apy.parser import parse_message

    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((f"{NET}.6", 2575))
        srv.listen(1)

        def receiver() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.settimeout(5)
                buf = b""
                while b"\x1c\x0d" not in buf:
                    buf += conn.recv(65536)
                msg = parse_message(buf[1 : buf.index(b"\x1c")].decode())
                control_id = msg.msh.msh_10.value
                ack = Message("ACK", version="2.5")
                ack.msh.msh_3 = "ADT_RECEIVER"
                ack.msh.msh_9 = "ACK^A01^ACK"
                ack.msh.msh_10 = "ACK-" + control_id
                ack.msh.msh_11 = "P"
                ack.msa.msa_1 = "AA"
                ack.msa.msa_2 = control_id
                conn.sendall(mllp(ack.to_er7()))

        t = threading.Thread(target=receiver, daemon=True)
        t.start()
        with socket.create_connection((f"{NET}.6", 2575), timeout=5) as c:
            c.sendall(mllp(adt_a01()))
            c.recv(65536)
        t.join(5)


# -- MQTT ----------------------------------------------------------------------------------------


def mqtt_anonymous() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError:
        return False
    import paho.mqtt.client as paho

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ward7-monitor")
    c.connect("127.0.0.1", 1883, keepalive=30, bind_address=f"{NET}.7")
    c.loop_start()
    time.sleep(0.3)
    c.publish("ward7/bed3/status", b"online", qos=1).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()
    return True


# -- HTTP: Basic auth, an end-of-life banner, FHIR ---------------------------------------------


_PATIENT = (
    b'{"resourceType":"Patient","id":"p1","name":[{"family":"Quixote","given":["Zebediah"]}],'
    b'"birthDate":"1950-01-01"}'
)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "Microsoft-IIS/6.0"
    sys_version = ""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/fhir/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(_PATIENT)))
            self.end_headers()
            self.wfile.write(_PATIENT)
            return
        if not self.headers.get("Authorization", "").startswith("Basic "):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="pump"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<html>infusion pump settings</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def http_sessions() -> None:
    import urllib.request

    server = http.server.ThreadingHTTPServer((f"{NET}.8", 80), _Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        mgr = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        mgr.add_password(None, f"http://{NET}.8/", "admin", "admin")
        opener = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(mgr))
        opener.addheaders = [("User-Agent", "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1)")]
        opener.open(f"http://{NET}.8/settings", timeout=5).read()
        fhir = urllib.request.Request(
            f"http://{NET}.8/fhir/Patient/p1", headers={"Accept": "application/fhir+json"}
        )
        urllib.request.urlopen(fhir, timeout=5).read()
    finally:
        server.shutdown()
        server.server_close()


class _Wado(http.server.BaseHTTPRequestHandler):
    """WADO-URI (DICOM PS3.18 §9): a DICOM object over plain HTTP."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        from pydicom.data import get_testdata_file

        body = Path(get_testdata_file("CT_small.dcm")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def dicomweb_session() -> None:
    import urllib.request

    server = http.server.ThreadingHTTPServer((f"{NET}.12", 8080), _Wado)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://{NET}.12:8080/wado?requestType=WADO&studyUID=1&seriesUID=2&objectUID=3"
        urllib.request.urlopen(url, timeout=5).read()
    finally:
        server.shutdown()
        server.server_close()


# -- SMB1 ----------------------------------------------------------------------------------------


def smb1_session(tmp: Path) -> None:
    pytest.importorskip("impacket", reason="impacket is not installed")
    from impacket import smb, smbserver
    from impacket.smbconnection import SMBConnection

    share = tmp / "share"
    share.mkdir(exist_ok=True)
    server = smbserver.SimpleSMBServer(listenAddress=f"{NET}.9", listenPort=445)
    server.addShare("SCANS", str(share), "")
    server.setSMB2Support(False)
    server.setSMBChallenge("")
    t = threading.Thread(target=server.start, daemon=True)
    t.start()
    wait_tcp(f"{NET}.9", 445)
    conn = SMBConnection("*SMBSERVER", f"{NET}.9", sess_port=445, preferredDialect=smb.SMB_DIALECT)
    with contextlib.suppress(Exception):
        conn.login("", "")
    with contextlib.suppress(Exception):
        conn.close()
    server.stop()


# -- TFTP ----------------------------------------------------------------------------------------


def tftp_transfer(tmp: Path) -> None:
    tftpd, tftp = have("in.tftpd"), have("tftp")
    if tftpd is None or tftp is None:
        pytest.skip("tftpd-hpa / tftp-hpa are not installed")
    root = tmp / "tftproot"
    root.mkdir(exist_ok=True)
    (root / "pump.cfg").write_bytes(b"rate_limit=5\n" * 100)
    with process([tftpd, "-L", "-s", str(root), "-a", f"{NET}.10:69"]):
        time.sleep(0.5)
        subprocess.run(
            [tftp, f"{NET}.10", "-c", "get", "pump.cfg", str(tmp / "pump.cfg")],
            capture_output=True,
            timeout=20,
            cwd=tmp,
        )


def build(tmp: Path) -> tuple[Path, dict[str, bool]]:
    """Run every stack while capturing lo; returns the capture and which optional parts ran."""
    pcap = tmp / "stacks.pcap"
    ran: dict[str, bool] = {}
    with tcpdump(pcap, f"net {NET}.0/24"):
        telnet_session()
        ftp_sessions(tmp)
        snmp_query(tmp)
        dicom_clear(tmp)
        ran["dicom_tls"] = dicom_tls(tmp)
        tls10(tmp)
        hl7_exchange()
        ran["mqtt"] = mqtt_anonymous()
        http_sessions()
        dicomweb_session()
        smb1_session(tmp)
        tftp_transfer(tmp)
    return pcap, ran
