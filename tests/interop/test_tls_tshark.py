"""wirekit.dissect.tls against tshark, the reference dissector.

Real ClientHellos (Python's ssl via MemoryBIO, ``openssl s_client``) and a real TLS 1.2
conversation are wrapped in minimal IPv4/TCP frames and written to a classic pcap file in
the test (no capture privileges needed); ``tshark -r FILE -d tcp.port==PORT,tls`` reads it.
tshark prints cipher suites as hex codes with ``-T fields``: compared numerically.  Names
are compared with tshark's verbose output ("Cipher Suite: NAME (0x1301)").
"""

from __future__ import annotations

import contextlib
import datetime
import re
import socket
import ssl
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import need_peer
from wirekit.dissect import tls
from wirekit.dissect import tls_names as names

PORT = 4433
TIMEOUT = 15.0
CLIENT, SERVER = ("127.0.0.1", 40000), ("127.0.0.2", PORT)

# ------------------------------------------------------------------------ pcap writing


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _frame(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int,
           payload: bytes) -> bytes:
    """A raw IPv4 packet (LINKTYPE_RAW) carrying one TCP segment, checksums correct."""
    s_ip, d_ip = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = s_ip + d_ip + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    tcp = tcp[:16] + struct.pack("!H", _checksum(pseudo + tcp + payload)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64,
                     6, 0, s_ip, d_ip)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + tcp + payload


def write_pcap(path: Path, flights: list[tuple[str, bytes]]) -> None:
    """Handshake SYN/SYN-ACK/ACK, then each (sender, bytes) flight as segments <= 60000."""
    seq = {"client": 1000, "server": 5000}
    ends = {"client": (CLIENT, SERVER), "server": (SERVER, CLIENT)}
    frames = [
        _frame(CLIENT, SERVER, 999, 0, 0x02, b""),
        _frame(SERVER, CLIENT, 4999, 1000, 0x12, b""),
        _frame(CLIENT, SERVER, 1000, 5000, 0x10, b""),
    ]
    for sender, data in flights:
        other = "server" if sender == "client" else "client"
        for i in range(0, len(data), 60000):
            chunk = data[i : i + 60000]
            frames.append(_frame(*ends[sender], seq[sender], seq[other], 0x18, chunk))
            seq[sender] += len(chunk)
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    for n, frame in enumerate(frames):
        out += struct.pack("<IIII", 1_700_000_000 + n, 0, len(frame), len(frame)) + frame
    path.write_bytes(out)


def tshark(pcap: Path, *args: str) -> str:
    exe = need_peer("tshark")
    proc = subprocess.run(
        [exe, "-r", str(pcap), "-d", f"tcp.port=={PORT},tls", *args],
        capture_output=True, timeout=TIMEOUT, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


def tshark_fields(pcap: Path, *fields: str, display_filter: str = "tls") -> list[list[str]]:
    args = ["-Y", display_filter, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    rows = tshark(pcap, *args).splitlines()
    return [row.split("|") for row in rows if row.strip()]


def hex_list(value: str) -> list[int]:
    return [int(v, 16) if v.startswith("0x") else int(v) for v in value.split(",") if v]


# ----------------------------------------------------------------- real ClientHellos


def python_client_hello(**options: object) -> bytes:
    """The first bytes a real ssl client writes: MemoryBIO, no socket at all."""
    ctx = ssl.create_default_context()
    if options.get("alpn"):
        ctx.set_alpn_protocols(options["alpn"])  # type: ignore[arg-type]
    if options.get("max12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="example.test")
    with contextlib.suppress(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def openssl_client_hello(*extra: str) -> bytes:
    """What ``openssl s_client`` sends to a loopback listener that never answers."""
    openssl = need_peer("openssl")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)
    port = listener.getsockname()[1]
    received: list[bytes] = []

    def accept() -> None:
        conn, _ = listener.accept()
        conn.settimeout(TIMEOUT)
        data = b""
        with conn:
            while tls.parse_client_hello(data) is None:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        received.append(data)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    proc = subprocess.Popen(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "example.test",
         *extra],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        thread.join(TIMEOUT)
    finally:
        proc.kill()
        proc.wait(TIMEOUT)
        assert proc.stdin is not None
        proc.stdin.close()
        listener.close()
    assert received and received[0], "openssl s_client sent nothing"
    return received[0]


HELLOS = {
    "python-tls13": lambda: python_client_hello(alpn=["h2", "http/1.1"]),
    "python-tls12": lambda: python_client_hello(max12=True),
    "openssl": lambda: openssl_client_hello(),
    "openssl-all-suites": lambda: openssl_client_hello(
        "-tls1_2", "-cipher", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"),
}


@pytest.mark.parametrize("source", list(HELLOS))
def test_client_hello_matches_tshark(source: str, tmp_path: Path) -> None:
    data = HELLOS[source]()
    hello = tls.parse_client_hello(data)
    assert hello is not None
    pcap = tmp_path / "hello.pcap"
    write_pcap(pcap, [("client", data)])
    rows = tshark_fields(
        pcap, "tls.handshake.ciphersuite", "tls.handshake.extension.type",
        "tls.handshake.extensions_server_name", "tls.handshake.extensions_supported_group",
        "tls.handshake.sig_hash_alg", display_filter="tls.handshake.type == 1",
    )
    assert len(rows) == 1, rows
    suites, ext_types, sni, groups, sig_algs = rows[0]
    assert hex_list(suites) == list(hello.cipher_suites)
    assert hex_list(ext_types) == [e.type for e in hello.extensions]
    assert sni == hello.sni == "example.test"
    ours = hello.extension(10)
    assert ours is not None
    assert [names.group_name(g) for g in hex_list(groups)] == ours.info["groups"]
    sig = hello.extension(13)
    assert sig is not None
    assert [names.signature_scheme_name(s) for s in hex_list(sig_algs)] == sig.info["schemes"]
    # Names: every suite tshark names is named identically by us (IANA names).
    verbose = tshark(pcap, "-V", "-Y", "tls.handshake.type == 1")
    named = re.findall(r"Cipher Suite: (\S+) \(0x([0-9a-f]{4})\)", verbose)
    assert [int(code, 16) for _, code in named] == list(hello.cipher_suites)
    for name, code in named:
        value = int(code, 16)
        if value in names.CIPHER_SUITES:
            assert names.cipher_suite_name(value) == name
        else:
            assert names.is_grease(value) or value not in names.CIPHER_SUITES
    if source == "openssl-all-suites":
        assert len(hello.cipher_suites) > 50


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tshark")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "example.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("example.test")]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def conversation(cert: tuple[Path, Path], version: ssl.TLSVersion) -> list[tuple[str, bytes]]:
    """A real handshake and one exchange over MemoryBIOs, as (sender, flight) pairs."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*cert)
    cctx = ssl.create_default_context(cafile=str(cert[0]))
    cctx.maximum_version = version
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(c_in, c_out, server_hostname="example.test")
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    flights: list[tuple[str, bytes]] = []

    def pump() -> None:
        for sender, out, into in (("client", c_out, s_in), ("server", s_out, c_in)):
            data = out.read()
            if data:
                flights.append((sender, data))
                into.write(data)

    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        pump()
    client.write(b"GET / HTTP/1.0\r\n\r\n")
    pump()
    assert server.read() == b"GET / HTTP/1.0\r\n\r\n"
    server.write(b"HTTP/1.0 200 OK\r\n\r\n")
    pump()
    return flights


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls12", "tls13"])
def test_conversation_matches_tshark(cert, version: ssl.TLSVersion, tmp_path: Path) -> None:
    flights = conversation(cert, version)
    pcap = tmp_path / "conv.pcap"
    write_pcap(pcap, flights)
    ctx = tls.HandshakeContext()
    directions = {"client": tls.TLSDirection(ctx), "server": tls.TLSDirection(ctx)}
    ours_types: list[int] = []
    ours_records: list[int] = []
    chosen = None
    for sender, data in flights:
        for event in directions[sender].feed(data):
            msg_type = getattr(event, "msg_type", None)
            if isinstance(msg_type, int):
                ours_types.append(msg_type)
            if isinstance(event, tls.ServerHello):
                chosen = event
    for d in directions.values():
        ours_records.append(sum(d.records.values()))
    rows = tshark_fields(pcap, "tls.record.content_type", "tls.handshake.type",
                         "tls.handshake.ciphersuite", "tls.record.opaque_type")
    theirs_types = [t for row in rows for t in hex_list(row[1])]
    # TLS 1.3 protected records show as opaque_type, the others as content_type.
    theirs_records = sum(len(hex_list(row[0])) + len(hex_list(row[3])) for row in rows)
    assert theirs_types == ours_types
    assert theirs_records == sum(ours_records)
    assert chosen is not None
    sh_row = next(row for row in rows if 2 in hex_list(row[1]))
    # ServerHello row: the ClientHello is in another frame, so the suite is the chosen one.
    assert hex_list(sh_row[2]) == [chosen.cipher_suite]
    expected_version = 0x0304 if version == ssl.TLSVersion.TLSv1_3 else 0x0303
    assert chosen.version == expected_version
