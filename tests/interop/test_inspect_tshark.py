"""``tshark`` as the oracle for the pcapng writer and ``wirekit inspect``.

1. Files our writer makes are read by ``tshark -r``: its TCP conversation list, per-stream
   frame and byte counts, and ``follow,tcp,raw`` bytes equal ours.
2. Captures that ``dumpcap`` itself made of loopback traffic generated here (HTTP, a reset
   connection, TLS 1.2 and 1.3, a ClientHello split over two segments, two TLS records in
   one segment, a DNS-like UDP exchange) give the same conversations, URIs,
   SNI, offered and chosen cipher suites from ``wirekit inspect`` as from ``tshark -T fields``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import need_peer, require, wait_for
from wirekit.dissect.dns import build_query
from wirekit.errors import ParseError
from wirekit.pcapng import CaptureParser, Packet, PcapngWriter
from wirekit.pcapng.synth import TcpFlow, udp_frame

CONV_LINE = re.compile(r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(\d+)\s+\S+ \S+\s+(\d+)\s")


def inspect_json(path: Path, *extra: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "wirekit", "inspect", "--json", str(path),
                           *extra], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def tshark(*args: str) -> str:
    proc = subprocess.run([need_peer("tshark"), *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def tshark_fields(path: Path, *fields: str, display_filter: str = "") -> list[list[str]]:
    args = ["-r", str(path), "-T", "fields", "-E", "separator=|"]
    if display_filter:
        args += ["-Y", display_filter]
    for f in fields:
        args += ["-e", f]
    return [line.split("|") for line in tshark(*args).splitlines()]


def tshark_streams(path: Path) -> dict[int, dict]:
    """Per tcp.stream: endpoint pair, frames and frame bytes each way (exact)."""
    streams: dict[int, dict] = {}
    rows = tshark_fields(path, "tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst",
                         "ipv6.dst", "tcp.dstport", "frame.len", display_filter="tcp")
    for stream, s4, s6, sport, d4, d6, dport, length in rows:
        src, dst = f"{s4 or s6}:{sport}", f"{d4 or d6}:{dport}"
        st = streams.setdefault(int(stream), {"first": src, "frames": defaultdict(int),
                                              "bytes": defaultdict(int)})
        st["frames"][src] += 1
        st["bytes"][src] += int(length)
        st.setdefault("endpoints", {src, dst})
    return streams


def our_endpoint(text: str) -> str:
    return text.replace("[", "").replace("]", "")


def assert_conversations_match(path: Path, doc: dict) -> None:
    theirs = tshark_streams(path)
    ours = {c["id"]: c for c in doc["conversations"] if c["proto"] == "tcp"}
    assert sorted(ours) == sorted(theirs)
    for sid, st in theirs.items():
        c = ours[sid]
        client, server = our_endpoint(c["client"]), our_endpoint(c["server"])
        assert {client, server} == st["endpoints"], sid
        assert c["packets"]["client_to_server"] == st["frames"][client]
        assert c["packets"]["server_to_client"] == st["frames"][server]
        assert c["bytes"]["client_to_server"] == st["bytes"][client]
        assert c["bytes"]["server_to_client"] == st["bytes"][server]
    # The conversation table itself (-z conv,tcp) lists the same pairs and frame totals.
    table = {}
    for line in tshark("-r", str(path), "-q", "-z", "conv,tcp").splitlines():
        m = CONV_LINE.match(line)
        if m:
            a, b = f"{m[1]}:{m[2]}", f"{m[3]}:{m[4]}"
            key = frozenset((a, b))
            table.setdefault(key, []).append(int(m[5]) + int(m[6]))
    mine: dict[frozenset, list[int]] = {}
    for c in ours.values():
        key = frozenset((our_endpoint(c["client"]), our_endpoint(c["server"])))
        mine.setdefault(key, []).append(c["packets"]["total"])
    assert {k: sorted(v) for k, v in table.items()} == {k: sorted(v) for k, v in mine.items()}


def follow_raw(path: Path, stream: int) -> tuple[bytes, bytes]:
    out = tshark("-r", str(path), "-q", "-z", f"follow,tcp,raw,{stream}")
    a, b = bytearray(), bytearray()
    body = out.split("Node 1:", 1)[1].splitlines()[1:]
    for line in body:
        if line.startswith("===="):
            break
        if line.startswith("\t"):
            b += bytes.fromhex(line.strip())
        elif line.strip():
            a += bytes.fromhex(line.strip())
    return bytes(a), bytes(b)


# ------------------------------------------------------------------ 1. our writer -> tshark


def written_capture(path: Path) -> None:
    frames = []
    flows = []
    for i in range(3):
        flow = TcpFlow(("127.0.0.1", 41000 + i), ("127.0.0.1", 8080), client_isn=1000 + i)
        body = f"GET /page/{i} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        frames += flow.handshake() + flow.send("c", body)
        flows.append(flow)
    big = bytes(range(256)) * 20  # several MSS-sized segments
    frames += flows[0].send("s", b"HTTP/1.1 200 OK\r\nContent-Length: 5120\r\n\r\n" + big)
    frames += flows[1].reset("s")
    frames += flows[0].close() + flows[2].close()
    again = TcpFlow(("127.0.0.1", 41000), ("127.0.0.1", 8080), client_isn=777_777)
    frames += again.handshake() + again.send("c", b"second use of the ports") + again.close()
    v6 = TcpFlow(("::1", 42000), ("::1", 443))
    frames += v6.handshake() + v6.send("c", b"x" * 3000) + v6.close()
    frames.append(udp_frame(("127.0.0.1", 5000), ("127.0.0.1", 53), build_query(1, "a.b")))
    with open(path, "wb") as f:
        w = PcapngWriter(f)
        w.add_interface(name="lo")
        w.write_secrets(b"# no secrets\n")
        for i, frame in enumerate(frames):
            w.write_packet(0, frame, 1_700_000_000_000_000_000 + i * 1_000_000)


def test_tshark_reads_our_file_and_agrees(tmp_path: Path) -> None:
    path = tmp_path / "ours.pcapng"
    written_capture(path)
    doc = inspect_json(path)
    assert_conversations_match(path, doc)
    assert len([c for c in doc["conversations"] if c["proto"] == "tcp"]) == 5
    uris = sorted(u for (u,) in tshark_fields(path, "http.request.uri",
                                              display_filter="http.request"))
    assert sorted(h["uri"] for h in doc["http"]) == uris == ["/page/0", "/page/1", "/page/2"]
    for stream in (0, 3, 4):
        follow = inspect_json(path, "--follow", str(stream))["follow"]
        mine = [b"".join(bytes.fromhex(ch["data"]) for ch in follow["chunks"]
                         if ch["direction"] == d)
                for d in ("client_to_server", "server_to_client")]
        assert tuple(mine) == follow_raw(path, stream), stream


def test_tshark_checksums_of_synthesized_frames_are_good(tmp_path: Path) -> None:
    path = tmp_path / "sums.pcapng"
    written_capture(path)
    args = ["-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
            "-o", "udp.check_checksum:TRUE", "-T", "fields", "-e", "tcp.checksum.status",
            "-e", "udp.checksum.status"]
    rows = [line.split("\t") for line in tshark(*args).splitlines()]
    statuses = {v for row in rows for v in row if v}
    assert statuses == {"1"}  # 1 = good


# ------------------------------------------------- 2. dumpcap's captures -> wirekit inspect


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inspect.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("inspect.test")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Servers:
    """An HTTP-ish server, a TLS server and a UDP echo, each on an ephemeral port."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.http = socket.create_server(("127.0.0.1", 0))
        self.tls = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.threads = [threading.Thread(target=self._serve_http, daemon=True),
                        threading.Thread(target=self._serve_tls, daemon=True),
                        threading.Thread(target=self._serve_udp, daemon=True)]
        for t in self.threads:
            t.start()

    def ports(self) -> list[int]:
        return [s.getsockname()[1] for s in (self.http, self.tls, self.udp)]

    def _serve_http(self) -> None:
        while True:
            try:
                conn, _ = self.http.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"RESET"):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    continue
                body = b"hello from the test\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n"
                             b"\r\n" % len(body) + body)

    def _serve_tls(self) -> None:
        while True:
            try:
                raw, _ = self.tls.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(10)
                    data = b""
                    while not data.endswith(b"ping"):  # one record, or several
                        chunk = conn.recv(100)
                        if not chunk:
                            break
                        data += chunk
                    conn.sendall(b"pong")
            except (OSError, ssl.SSLError):
                pass

    def _serve_udp(self) -> None:
        while True:
            try:
                data, peer = self.udp.recvfrom(2048)
            except OSError:
                return
            reply = bytearray(data)
            reply[2] |= 0x80
            self.udp.sendto(bytes(reply), peer)

    def close(self) -> None:
        for s in (self.http, self.tls, self.udp):
            s.close()


def _traffic(http_port: int, tls_port: int, udp_port: int) -> None:
    for path in ("/one", "/two?x=1"):
        with socket.create_connection(("127.0.0.1", http_port), timeout=10) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            while s.recv(4096):
                pass
    with socket.create_connection(("127.0.0.1", http_port), timeout=10) as s:
        s.sendall(b"RESET / HTTP/1.1\r\n\r\n")
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="inspect.test") as s:
            s.sendall(b"ping")
            s.recv(100)
    _tls_by_hand(tls_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(10)
        u.sendto(build_query(0x77, "example.test"), ("127.0.0.1", udp_port))
        u.recvfrom(2048)


def _tls_by_hand(tls_port: int) -> None:
    """A TLS 1.3 connection whose ClientHello goes out in two TCP segments and whose
    two application data records share one segment (what reassembly must get right)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="split.test")
    with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = True
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            out = outgoing.read()
            if first:  # the ClientHello: 60 bytes, the server's ACK, then the rest
                first = False
                raw.sendall(out[:60])
                time.sleep(0.05)  # not synchronisation: lets the first segment leave alone
                out = out[60:]
            if out:
                raw.sendall(out)
            if done:
                break
            data = raw.recv(65536)
            assert data, "the server closed during the handshake"
            incoming.write(data)
        tls.write(b"pi")
        tls.write(b"ng")
        raw.sendall(outgoing.read())  # two records, one send, one segment (TCP_NODELAY)
        while True:
            try:
                if tls.read(100):
                    break
            except ssl.SSLWantReadError:
                data = raw.recv(65536)
                assert data, "the server closed before answering"
                incoming.write(data)


def _packets_in(path: Path) -> list[Packet]:
    parser = CaptureParser()
    try:
        parser.feed(path.read_bytes())
        return [e for e in parser.events() if isinstance(e, Packet)]
    except ParseError:  # read while dumpcap was mid-block: not complete yet
        return []


@pytest.fixture
def live_capture(tmp_path: Path):
    dumpcap = need_peer("dumpcap")
    need_peer("tshark")
    cert, key = _self_signed(tmp_path)
    servers = Servers(cert, key)
    http_port, tls_port, udp_port = servers.ports()
    sentinel = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sentinel.bind(("127.0.0.1", 0))
    sport = sentinel.getsockname()[1]
    path = tmp_path / "live.pcapng"
    bpf = (f"tcp port {http_port} or tcp port {tls_port} or udp port {udp_port} "
           f"or udp port {sport}")
    reader = None
    proc = subprocess.Popen([dumpcap, "-q", "-i", "lo", "-f", bpf, "-w", str(path),
                             "-a", "duration:60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        started = threading.Event()
        lines: list[str] = []

        def read_err() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                lines.append(raw.decode(errors="replace"))
                if "File:" in lines[-1] or "Capturing on" in lines[-1]:
                    started.set()
        reader = threading.Thread(target=read_err, daemon=True)
        reader.start()
        wait_for(lambda: started.is_set() or proc.poll() is not None, 20, "dumpcap to start")
        require(proc.poll() is None,
                f"dumpcap cannot capture on lo here: {''.join(lines)[-300:]}")
        wait_for(lambda: path.exists() and path.stat().st_size > 0, 20, "capture file")
        _traffic(http_port, tls_port, udp_port)

        # Everything before the sentinel datagram is in the file once the sentinel is.
        def sentinel_seen() -> bool:
            sentinel.sendto(b"sentinel", ("127.0.0.1", sport))
            return any(p.data.endswith(b"sentinel") for p in _packets_in(path))
        wait_for(sentinel_seen, 30, "the capture to reach the sentinel")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
        servers.close()
        sentinel.close()
    return path


def _client_port(doc: dict, stream: int) -> int:
    conv = next(c for c in doc["conversations"] if c["proto"] == "tcp" and c["id"] == stream)
    return int(conv["client"].rsplit(":", 1)[1])


def test_inspect_agrees_with_tshark_on_a_dumpcap_capture(live_capture) -> None:
    path = live_capture
    doc = inspect_json(path)
    assert doc["error"] is None
    assert_conversations_match(path, doc)
    # HTTP request URIs
    uris = sorted(u for (u,) in tshark_fields(path, "http.request.uri",
                                              display_filter="http.request"))
    assert sorted(h["uri"] for h in doc["http"] if h["method"] == "GET") == uris
    assert {"/one", "/two?x=1"} <= set(uris)
    # the reset connection
    resets = [c for c in doc["conversations"] if c["closed"] == "rst"]
    assert len(resets) == 1 and resets[0]["opened"] == "handshake"
    rst_streams = {int(s) for (s,) in tshark_fields(path, "tcp.stream",
                                                     display_filter="tcp.flags.reset==1")}
    assert {resets[0]["id"]} == rst_streams
    # TLS: SNI, offered suites, chosen suite, per conversation
    rows = tshark_fields(path, "tcp.stream", "tls.handshake.type",
                         "tls.handshake.extensions_server_name", "tls.handshake.ciphersuite",
                         display_filter="tls.handshake.type==1 || tls.handshake.type==2",
                         )
    sni_by_stream, offered, chosen = {}, {}, {}
    for stream, types, sni, suites in rows:
        sid = int(stream)
        if "1" in types.split(","):
            sni_by_stream[sid] = sni
            offered[sid] = [int(x, 16) if x.startswith("0x") else int(x)
                            for x in suites.split(",")]
        if "2" in types.split(","):
            chosen[sid] = int(suites.split(",")[-1], 0)
    tls_entries = {t["conversation"]: t for t in doc["tls"]}
    assert sorted(tls_entries) == sorted(sni_by_stream) and len(tls_entries) == 3
    from wirekit.dissect.tls_names import cipher_suite_name
    for sid, entry in tls_entries.items():
        assert entry["client_hello"]["sni"] == sni_by_stream[sid]
        assert entry["client_hello"]["cipher_suites"] == [cipher_suite_name(s)
                                                          for s in offered[sid]]
        assert entry["server_hello"]["cipher_suite"] == cipher_suite_name(chosen[sid])
    assert sorted(sni_by_stream.values()) == ["inspect.test", "inspect.test", "split.test"]
    versions = sorted(t["server_hello"]["version"] for t in tls_entries.values())
    assert versions == ["TLS 1.2", "TLS 1.3", "TLS 1.3"]
    # the split ClientHello really was split, and two records really shared a segment
    split = next(sid for sid, sni in sni_by_stream.items() if sni == "split.test")
    hello_frames = tshark_fields(path, "frame.number", "tcp.len",
                                 display_filter=f"tcp.stream=={split} && tcp.len>0")
    assert int(hello_frames[0][1]) == 60 and int(hello_frames[1][1]) > 60
    types = tshark_fields(path, "tls.record.content_type", "tls.record.opaque_type",
                          display_filter=f"tcp.stream=={split} && tls"
                                         f" && tcp.srcport=={_client_port(doc, split)}")
    # TLS 1.3 hides the real type: an encrypted record shows opaque_type 23
    per_segment = [[x for x in (plain + "," + opaque).split(",") if x == "23"]
                   for plain, opaque in types]
    assert any(len(seg) >= 2 for seg in per_segment), per_segment
    # wirekit counts the client's application data records as tshark does (encrypted
    # handshake messages in TLS 1.3 are application_data records too)
    theirs = sum(seg.count("23") for seg in per_segment)
    assert tls_entries[split]["records"][0].get("application_data") == theirs
    # the DNS-like UDP exchange
    assert [(d["response"], d["questions"][0]["name"]) for d in doc["dns"]] == [
        (False, "example.test"), (True, "example.test")]
