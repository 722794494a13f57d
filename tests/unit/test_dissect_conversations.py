"""Conversation summary (the fast path) on synthesized captures."""

from __future__ import annotations

import io
import struct

import pytest

from wirekit.dissect.dns import build_query
from wirekit.dissect.summary import Summary
from wirekit.errors import ParseError
from wirekit.pcapng import PcapngWriter
from wirekit.pcapng.synth import ACK, PSH, RST, SYN, TcpFlow, ip_packet, tcp_frame, udp_frame

C, S = ("127.0.0.1", 40000), ("127.0.0.1", 8080)
GET = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nworld"


def capture(frames: list[bytes], linktype: int = 1) -> bytes:
    f = io.BytesIO()
    w = PcapngWriter(f, flush=False)
    w.add_interface(linktype)
    for i, frame in enumerate(frames):
        w.write_packet(0, frame, 1_000_000_000 + i * 1_000_000)
    return f.getvalue()


def summarize(data: bytes, **kw) -> Summary:
    s = Summary(**kw)
    s.run(data)
    return s


def http_flow(client=C, server=S, isn=1000) -> list[bytes]:
    flow = TcpFlow(client, server, client_isn=isn)
    return flow.handshake() + flow.send("c", GET) + flow.send("s", OK) + flow.close()


def test_http_conversation() -> None:
    frames = http_flow()
    s = summarize(capture(frames), follow=("tcp", 0))
    assert s.packets == len(frames) == 10
    (c,) = s.conversations
    assert (c.proto, c.client_text, c.server_text) == ("tcp", "127.0.0.1:40000", "127.0.0.1:8080")
    assert c.packets == [6, 4]
    assert sum(c.bytes) == sum(len(f) for f in frames)
    assert (c.opened_state, c.closed_state, c.retransmissions, c.app) == (
        "handshake", "fin", 0, "http")
    assert [(h["method"], h["uri"], h["status"], h["response_body_size"]) for h in s.http] == [
        ("GET", "/hello", 200, 5)]
    assert c.stream(0) == GET and c.stream(1) == OK
    assert s.followed is c


def test_reset_midstream_and_retransmission() -> None:
    flow = TcpFlow(C, S)
    frames = flow.handshake() + flow.send("c", b"abc", ack=False)
    frames.append(flow.segment("c", b"abc", seq=1001))  # retransmitted
    frames += flow.send("c", b"def", ack=False) + flow.reset("s")
    mid = tcp_frame(("127.0.0.1", 1), ("127.0.0.1", 2), seq=5, ack=6, flags=PSH | ACK,
                    payload=b"zz")
    s = summarize(capture([*frames, mid]), follow=("tcp", 0))
    a, b = s.conversations
    assert (a.closed_state, a.retransmissions, a.stream(0)) == ("rst", 1, b"abcdef")
    assert (b.opened_state, b.closed_state, b.id) == ("midstream", "open", 1)


def test_same_ports_after_close_is_a_new_conversation() -> None:
    frames = http_flow(isn=1000) + http_flow(isn=900_000)
    frames.insert(3, tcp_frame(C, S, seq=1000, flags=SYN))  # a retransmitted SYN: same conv
    s = summarize(capture(frames))
    assert [c.id for c in s.conversations] == [0, 1]
    assert [c.packets[0] + c.packets[1] for c in s.conversations] == [11, 10]
    assert s.conversations[0].retransmissions == 1
    assert len(s.http) == 2 and {h["conversation"] for h in s.http} == {0, 1}


def test_syn_ack_first_makes_its_receiver_the_client() -> None:
    flow = TcpFlow(C, S)
    frames = flow.handshake()[1:]
    s = summarize(capture(frames))
    (c,) = s.conversations
    assert c.client_text == "127.0.0.1:40000" and c.opened_state == "partial"


def test_udp_dns_and_other_data() -> None:
    q = build_query(0x42, "example.test")
    r = bytearray(q)
    r[2] |= 0x80
    frames = [udp_frame(("::1", 5000), ("::1", 53), q), udp_frame(("::1", 53), ("::1", 5000),
                                                                  bytes(r)),
              udp_frame(("127.0.0.1", 7), ("127.0.0.1", 9), b"\x00\x01binary")]
    s = summarize(capture(frames))
    dns, other = s.conversations
    assert (dns.proto, dns.app, dns.packets, dns.client_text) == ("udp", "dns", [1, 1],
                                                                   "[::1]:5000")
    assert [(d["response"], d["questions"][0]["name"]) for d in s.dns] == [
        (False, "example.test"), (True, "example.test")]
    assert other.app == "data" and other.app_detail["client"].startswith("0001")


def _tls_client_hello() -> bytes:
    from wirekit.dissect import tls

    sni = b"\x00\x0b\x00\x00\x08tls.test"
    alpn = b"\x00\x03\x02h2"
    hello = tls.ClientHello(0x0303, bytes(32), b"", (0x1301, 0xC02F), (0,),
                            (tls.Extension(0, sni), tls.Extension(16, alpn)))
    return tls.encode_record(22, 0x0301, tls.encode_handshake(1, hello.encode()))


def test_tls_client_hello_split_over_segments() -> None:
    record = _tls_client_hello()
    flow = TcpFlow(C, ("127.0.0.1", 443))
    frames = flow.handshake() + flow.send("c", record[:20]) + flow.send("c", record[20:])
    s = summarize(capture(frames))
    (entry,) = s.tls
    ch = entry["client_hello"]
    assert ch["sni"] == "tls.test" and ch["alpn"] == ["h2"]
    assert ch["cipher_suites"][0] == "TLS_AES_128_GCM_SHA256"
    assert s.conversations[0].app == "tls"


@pytest.mark.parametrize(("linktype", "strip"), [(101, 14), (228, 14), (113, None),
                                                 (276, None), (0, None)])
def test_link_types_through_the_fast_path(linktype: int, strip: int | None) -> None:
    frames = []
    for f in http_flow():
        packet = f[14:]
        if linktype == 113:
            packet = b"\0\0\0\x01\0\x06" + b"\0" * 8 + b"\x08\x00" + packet
        elif linktype == 276:
            packet = b"\x08\x00" + b"\0" * 18 + packet
        elif linktype == 0:
            packet = struct.pack("<I", 2) + packet
        frames.append(packet)
    s = summarize(capture(frames, linktype))
    assert len(s.conversations) == 1 and s.http[0]["uri"] == "/hello"


def test_ipv6_extension_header_in_fast_path() -> None:
    seg_frame = tcp_frame(("::1", 1), ("::1", 2), seq=1, flags=SYN)
    packet = seg_frame[14:]
    body = packet[40:]
    hop = bytes([6, 0]) + b"\x01\x04\0\0\0\0"
    head = bytearray(packet[:40])
    head[6] = 0
    struct.pack_into("!H", head, 4, len(hop) + len(body))
    s = summarize(capture([bytes(head) + hop + body], 229))
    assert s.conversations[0].client_text == "[::1]:1"


def test_truncated_capture_reports_what_was_read() -> None:
    data = capture(http_flow())
    s = Summary()
    with pytest.raises(ParseError) as info:
        s.run(data[:-30])
    assert s.packets == 9 and s.error is info.value and info.value.offset is not None
    assert s.http[0]["uri"] == "/hello"  # analysed although the FIN never came


def test_packet_lines() -> None:
    lines: list[str] = []
    summarize(capture(http_flow()), on_packet=lines.append)
    assert len(lines) == 10
    assert "40000 → 8080 [SYN] Seq=0" in lines[0]
    assert "[SYN, ACK] Seq=0 Ack=1" in lines[1]
    assert "Len=" + str(len(GET)) in lines[3]


def test_non_ip_and_other_protocols_are_counted() -> None:
    arp = b"\xff" * 6 + b"\2" * 6 + b"\x08\x06" + b"\0" * 28
    icmp, et = ip_packet("127.0.0.1", "127.0.0.1", 1, b"\x08\0\0\0\0\0\0\0")
    icmp_frame = b"\2" * 12 + struct.pack("!H", et) + icmp
    rst = tcp_frame(C, S, seq=1, flags=RST)
    s = summarize(capture([arp, icmp_frame, rst]))
    assert s.packets == 3 and s.non_ip == 1 and len(s.conversations) == 1


def test_tls12_several_records_in_one_segment() -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from wirekit.dissect import tls

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "records.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    hello = tls.ServerHello(0x0303, bytes(range(32)), b"", 0xC02F, 0, ())
    cert_body = (len(der) + 3).to_bytes(3, "big") + len(der).to_bytes(3, "big") + der
    flight = (tls.encode_record(22, 0x0303, tls.encode_handshake(2, hello.encode()))
              + tls.encode_record(22, 0x0303, tls.encode_handshake(11, cert_body))
              + tls.encode_record(22, 0x0303, tls.encode_handshake(14, b"")))
    ticket = tls.encode_record(22, 0x0303, tls.encode_handshake(
        4, (7200).to_bytes(4, "big") + (4).to_bytes(2, "big") + b"tick"))
    flow = TcpFlow(C, ("127.0.0.1", 443))
    frames = (flow.handshake() + flow.send("c", _tls_client_hello()) + flow.send("s", flight)
              + flow.send("s", ticket + tls.encode_record(20, 0x0303, b"\x01"))
              + flow.send("s", tls.encode_record(23, 0x0303, b"\x00" * 40)))
    s = summarize(capture(frames))
    (entry,) = s.tls
    assert entry["server_hello"]["cipher_suite"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert entry["server_hello"]["version"] == "TLS 1.2"
    assert entry["certificates"][0]["subject"] == "CN=records.test"
    assert entry["new_session_ticket"]["lifetime"] == 7200
    assert entry["messages"][1][:3] == ["ServerHello", "Certificate", "ServerHelloDone"]
    assert entry["application_bytes"] == [0, 40]
