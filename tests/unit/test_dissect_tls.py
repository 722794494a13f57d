"""wirekit.dissect.tls: records, reassembly, every handshake message, IANA names.

Real handshakes come from Python's ssl over MemoryBIO (sans-IO, no sockets): the bytes a
client and a server really write, fed to the dissector whole, one byte at a time, and with
trailing bytes.  Synthetic messages come from the dissector's own encoders and builders here.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from wirekit.dissect import tls
from wirekit.dissect import tls_names as names
from wirekit.errors import ParseError

# ------------------------------------------------------------------------------ fixtures


def make_cert(directory: Path, host: str = "localhost") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("tls"))


def memory_handshake(cert: tuple[Path, Path], version: ssl.TLSVersion
                     ) -> tuple[bytes, bytes]:
    """Run a full handshake + one echo over MemoryBIOs; return (client bytes, server bytes)."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*cert)
    cctx = ssl.create_default_context(cafile=str(cert[0]))
    cctx.maximum_version = version
    cctx.set_alpn_protocols(["h2", "http/1.1"])
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = cctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    sent_c, sent_s = bytearray(), bytearray()

    def pump() -> None:
        data = c_out.read()
        sent_c.extend(data)
        s_in.write(data)
        data = s_out.read()
        sent_s.extend(data)
        c_in.write(data)

    for _ in range(10):
        for end in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
        pump()
    client.write(b"ping")
    pump()
    assert server.read() == b"ping"
    server.write(b"pong")
    pump()
    assert client.read() == b"pong"
    return bytes(sent_c), bytes(sent_s)


@pytest.fixture(scope="module")
def tls13(cert: tuple[Path, Path]) -> tuple[bytes, bytes]:
    return memory_handshake(cert, ssl.TLSVersion.TLSv1_3)


@pytest.fixture(scope="module")
def tls12(cert: tuple[Path, Path]) -> tuple[bytes, bytes]:
    return memory_handshake(cert, ssl.TLSVersion.TLSv1_2)


@pytest.fixture(scope="module")
def client_hello_bytes(tls13: tuple[bytes, bytes]) -> bytes:
    """The first record(s) a real Python client writes: its ClientHello."""
    data = tls13[0]
    end = 5 + int.from_bytes(data[3:5], "big")
    return data[:end]


# ------------------------------------------------------------------ three ways of feeding


def feed_whole(parser: tls.TLSDirection | tls.RecordParser, data: bytes) -> list[object]:
    return list(parser.feed(data))


def feed_bytewise(parser: tls.TLSDirection | tls.RecordParser, data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        out.extend(parser.feed(data[i : i + 1]))
    return out


# A partial next record: a valid header prefix that must stay buffered as "need more".
TRAILING = b"\x17\x03\x03\x00\x10abc"


def feed_trailing(parser: tls.TLSDirection | tls.RecordParser, data: bytes) -> list[object]:
    return list(parser.feed(data + TRAILING))


FEEDERS = [feed_whole, feed_bytewise, feed_trailing]


def dicts(events: list[object]) -> list[dict[str, object]]:
    return [e.to_dict() for e in events]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------- records


@pytest.mark.parametrize("feed", FEEDERS)
def test_record_parser_three_ways(feed, tls12) -> None:
    client, _server = tls12
    reference = tls.RecordParser().feed(client)
    assert [r.type_name for r in reference][:3] == ["handshake", "handshake",
                                                     "change_cipher_spec"]
    parser = tls.RecordParser()
    records = feed(parser, client)
    assert records == reference
    assert b"".join(r.encode() for r in records) == client
    assert parser.pending == (len(TRAILING) if feed is feed_trailing else 0)
    assert parser.offset == len(client)


def test_parse_record_need_more_and_offsets() -> None:
    data = tls.encode_record(22, 0x0303, b"abc") + tls.encode_record(23, 0x0303, b"")
    first = tls.parse_record(data)
    assert first is not None
    record, end = first
    assert (record.content_type, record.version, record.fragment, end) == (22, 0x0303, b"abc", 8)
    second = tls.parse_record(data, end)
    assert second is not None and second[0].offset == 8 and second[1] == len(data)
    for cut in range(len(data[:8])):
        assert tls.parse_record(data[:cut]) is None


@pytest.mark.parametrize(
    ("data", "offset", "message"),
    [
        (b"\x00\x03\x03\x00\x01x", 0, "content type 0"),
        (b"GET / HTTP/1.1\r\n", 0, "content type 71"),
        (b"\x16\x02\x00\x00\x01x", 1, "version"),
        (b"\x16\x03\x05\x00\x01x", 2, "version"),
        (b"\x17\x03\x03\xff\xff", 3, "exceeds"),
    ],
)
def test_record_errors_name_offset(data: bytes, offset: int, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        tls.RecordParser().feed(b"\x17\x03\x03\x00\x00" + data)
    assert info.value.offset == 5 + offset  # type: ignore[attr-defined]


def test_record_parser_stays_broken_after_error() -> None:
    parser = tls.RecordParser()
    with pytest.raises(ParseError):
        parser.feed(b"\x99")
    with pytest.raises(ParseError):
        parser.feed(b"")


@given(st.sampled_from([20, 21, 22, 23, 24]), st.sampled_from([0x0301, 0x0302, 0x0303]),
       st.lists(st.binary(max_size=300), max_size=5), st.data())
@settings(max_examples=60, deadline=None)
def test_records_round_trip(ctype: int, version: int, fragments: list[bytes], data) -> None:
    stream = b"".join(tls.encode_record(ctype, version, f) for f in fragments)
    parser = tls.RecordParser()
    out: list[tls.Record] = []
    pos = 0
    while pos < len(stream):
        step = data.draw(st.integers(1, 64))
        out.extend(parser.feed(stream[pos : pos + step]))
        pos += step
    assert [(r.content_type, r.version, r.fragment) for r in out] == [
        (ctype, version, f) for f in fragments
    ]


# ------------------------------------------------------------------------- reassembly


def test_handshake_messages_span_records_and_share_them() -> None:
    m1 = tls.encode_handshake(14, b"")
    m2 = tls.encode_handshake(20, b"v" * 12)
    m3 = tls.encode_handshake(24, b"\x01")
    layer = m1 + m2 + m3
    hs = tls.HandshakeReassembler()
    out = []
    for chunk in (layer[:2], layer[2:9], layer[9:], b""):
        out.extend(hs.feed(chunk))
    assert [(t, b) for t, b, _ in out] == [(14, b""), (20, b"v" * 12), (24, b"\x01")]
    assert [o for _, _, o in out] == [0, 4, 20]
    assert hs.pending == 0


def test_handshake_oversize_is_rejected_before_buffering() -> None:
    hs = tls.HandshakeReassembler(max_message=1000)
    with pytest.raises(ParseError, match="exceeds 1000"):
        hs.feed(b"\x0b\x00\x10\x00")


# ------------------------------------------------------------------ real handshakes


def direction_types(data: bytes, ctx: tls.HandshakeContext) -> list[str]:
    return [e.type_name for e in tls.TLSDirection(ctx).feed(data)]


def test_tls12_full_handshake_decoded(tls12) -> None:
    client, server = tls12
    ctx = tls.HandshakeContext()
    # ServerHello sets the shared context; the client direction is decoded after it.
    server_events = tls.TLSDirection(ctx).feed(server)
    client_events = tls.TLSDirection(ctx).feed(client)
    s_types = [e.type_name for e in server_events]
    c_types = [e.type_name for e in client_events]
    assert s_types[:4] == ["ServerHello", "Certificate", "ServerKeyExchange", "ServerHelloDone"]
    assert s_types[4:7] == ["NewSessionTicket", "ChangeCipherSpec", "EncryptedRecord"]
    assert c_types[:4] == ["ClientHello", "ClientKeyExchange", "ChangeCipherSpec",
                           "EncryptedRecord"]
    assert c_types[-1] == s_types[-1] == "ApplicationData"
    sh = server_events[0]
    assert isinstance(sh, tls.ServerHello)
    assert sh.version == 0x0303 and sh.cipher_suite_name.startswith("TLS_ECDHE_ECDSA_WITH_")
    cert = server_events[1]
    assert isinstance(cert, tls.Certificate) and not cert.tls13
    assert cert.to_dict()["certificates"][0]["subject"] == "CN=localhost"
    ske = server_events[2].to_dict()
    assert ske["kex"] == "ecdhe" and ske["group"] in names.NAMED_GROUPS.values()
    assert ske["signature_scheme"] == "ecdsa_secp256r1_sha256"
    nst = server_events[4]
    assert isinstance(nst, tls.NewSessionTicket) and not nst.tls13 and nst.ticket_length > 0


def test_tls13_visible_part_decoded(tls13) -> None:
    client, server = tls13
    ctx = tls.HandshakeContext()
    s_events = tls.TLSDirection(ctx).feed(server)
    assert [e.type_name for e in s_events[:3]] == ["ServerHello", "ChangeCipherSpec",
                                                    "ApplicationData"]
    sh = s_events[0]
    assert isinstance(sh, tls.ServerHello)
    assert sh.version == 0x0304 and sh.legacy_version == 0x0303
    assert sh.to_dict()["version"] == "TLS 1.3"
    assert sh.to_dict()["cipher_suite"] in ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256",
                                            "TLS_CHACHA20_POLY1305_SHA256")
    assert {e["name"] for e in sh.to_dict()["extensions"]} == {"supported_versions",
                                                                "key_share"}
    direction = tls.TLSDirection(ctx)
    direction.feed(client)
    assert direction.records["application_data"] >= 2
    assert direction.application_bytes > 0


@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("version", ["tls12", "tls13"])
def test_direction_three_ways(feed, version, request) -> None:
    client, server = request.getfixturevalue(version)
    for data in (client, server):
        reference = dicts(tls.TLSDirection().feed(data))
        got = dicts(feed(tls.TLSDirection(), data))
        assert got == reference
        assert len(reference) >= 3


def test_real_client_hello(client_hello_bytes: bytes) -> None:
    hello = tls.parse_client_hello(client_hello_bytes)
    assert hello is not None
    d = hello.to_dict()
    assert d["type"] == "ClientHello" and d["version"] == "TLS 1.2"
    assert d["sni"] == "localhost" and d["alpn"] == ["h2", "http/1.1"]
    # The TLS 1.3 suites come first, in the order ssl reports them (OpenSSL names for
    # TLS 1.3 suites are the IANA names), then the TLS 1.2 ones, then the SCSV.
    offered = ssl.create_default_context().get_ciphers()
    tls13_names = [c["name"] for c in offered if c["protocol"] == "TLSv1.3"]
    assert tls13_names and d["cipher_suites"][: len(tls13_names)] == tls13_names
    assert d["cipher_suites"][-1] == "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"
    assert len(hello.cipher_suites) == len(offered) + 1
    exts = {e["name"]: e for e in d["extensions"]}
    assert exts["server_name"]["server_name"] == "localhost"
    assert exts["supported_versions"]["versions"][0] == "TLS 1.3"
    assert "x25519" in exts["supported_groups"]["groups"]
    assert exts["key_share"]["groups"] == ["x25519"]
    assert exts["key_share"]["shares"] == [{"group": "x25519", "key_length": 32}]
    assert "rsa_pss_rsae_sha256" in exts["signature_algorithms"]["schemes"]
    assert exts["psk_key_exchange_modes"]["modes"] == ["psk_dhe_ke"]
    assert exts["ec_point_formats"]["formats"][0] == "uncompressed"
    assert {"session_ticket", "extended_master_secret", "encrypt_then_mac",
            "application_layer_protocol_negotiation"} <= set(exts)
    assert hello.supported_versions[0] == "TLS 1.3"


@pytest.mark.parametrize("feed", FEEDERS)
def test_client_hello_three_ways(feed, client_hello_bytes: bytes) -> None:
    reference = tls.parse_client_hello(client_hello_bytes)
    assert reference is not None
    if feed is feed_bytewise:
        for i in range(len(client_hello_bytes)):
            assert tls.parse_client_hello(client_hello_bytes[:i]) is None
    extra = TRAILING if feed is feed_trailing else b""
    assert tls.parse_client_hello(client_hello_bytes + extra) == reference


def test_every_prefix_of_a_real_client_hello(client_hello_bytes: bytes) -> None:
    """Record layer: only "need more"; handshake body: only ParseError or a valid hello."""
    for i in range(len(client_hello_bytes)):
        assert tls.parse_client_hello(client_hello_bytes[:i]) is None
    body = client_hello_bytes[9:]
    valid = 0
    for i in range(len(body)):
        try:
            tls.ClientHello.decode(body[:i])
            valid += 1
        except ParseError:
            pass
    assert valid <= 1  # only the cut right before the extensions block is a valid hello


def mutants(data: bytes, count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        buf = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 3))):
            pos = rng.randrange(len(buf))
            flip = buf[pos] ^ (1 << rng.randrange(8))
            buf[pos] = rng.randrange(256) if rng.random() < 0.5 else flip
        out.append(bytes(buf))
    return out


@pytest.mark.parametrize("which", ["client_hello", "tls12_server", "tls12_client"])
def test_byte_flip_mutants_only_parse_error(which, client_hello_bytes, tls12) -> None:
    sample = {"client_hello": client_hello_bytes, "tls12_server": tls12[1],
              "tls12_client": tls12[0]}[which]
    outcomes = {"ok": 0, "error": 0}
    for mutant in mutants(sample, 1000, seed=len(which)):
        try:
            events = tls.TLSDirection().feed(mutant)
            dicts(events)
            outcomes["ok"] += 1
        except ParseError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["ok"] > 0


# ---------------------------------------------------------------- synthetic messages


def ext(ext_type: int, data: bytes) -> tls.Extension:
    return tls.Extension(ext_type, data)


def u16s(*values: int, prefix: int = 2) -> bytes:
    body = b"".join(v.to_bytes(2, "big") for v in values)
    return len(body).to_bytes(prefix, "big") + body


def test_grease_and_unknown_values() -> None:
    hello = tls.ClientHello(
        0x0303, bytes(32), b"", (0x1A1A, 0x1301, 0xFFFF), (0,),
        (ext(0x2A2A, b""), ext(12345, b"xyz"), ext(43, u16s(0x7A7A, 0x0304, prefix=1)),
         ext(10, u16s(0x3A3A, 29, 0x9999))),
    )
    decoded = tls.ClientHello.decode(hello.encode())
    d = decoded.to_dict()
    assert d["cipher_suites"] == ["0x1a1a", "TLS_AES_128_GCM_SHA256", "0xffff"]
    assert d["extensions"][0] == {"name": "grease", "type": 0x2A2A, "length": 0}
    assert d["extensions"][1] == {"name": "unknown_12345", "type": 12345, "length": 3}
    assert d["extensions"][2]["versions"] == ["0x7a7a", "TLS 1.3"]
    assert d["extensions"][3]["groups"] == ["0x3a3a", "x25519", "0x9999"]
    assert names.is_grease(0xFAFA) and not names.is_grease(0x1A2A) and not names.is_grease(0x0A1A)


def test_client_hello_extension_catalogue() -> None:
    psk = ((9).to_bytes(2, "big") + (3).to_bytes(2, "big") + b"abc"
           + (99).to_bytes(4, "big") + (33).to_bytes(2, "big") + b"\x20" + bytes(32))
    exts = (
        ext(5, b"\x01\x00\x00\x00\x00"),
        ext(0xFF01, b"\x00"),
        ext(21, bytes(17)),
        ext(28, (16385).to_bytes(2, "big")),
        ext(27, b"\x04\x00\x02\x00\x01"),
        ext(44, b"\x00\x03abc"),
        ext(1, b"\x02"),
        ext(42, b""),
        ext(41, psk),
    )
    hello = tls.ClientHello(0x0303, bytes(32), bytes(32), (0x1301,), (0,), exts)
    d = {e["name"]: e for e in tls.ClientHello.decode(hello.encode()).to_dict()["extensions"]}
    assert d["status_request"]["status_type"] == "ocsp"
    assert d["renegotiation_info"]["renegotiated_connection_length"] == 0
    assert d["padding"]["padding_length"] == 17
    assert d["record_size_limit"]["limit"] == 16385
    assert d["compress_certificate"]["algorithms"] == ["brotli", "zlib"]
    assert d["cookie"]["cookie_length"] == 3
    assert d["max_fragment_length"]["max_fragment_length"] == 1024
    assert d["early_data"] == {"name": "early_data", "type": 42, "length": 0}
    assert d["pre_shared_key"]["identities"] == [{"identity_length": 3,
                                                  "obfuscated_ticket_age": 99}]
    assert d["pre_shared_key"]["binders"] == 1


@pytest.mark.parametrize(
    ("ext_type", "data"),
    [
        (0, b"\x00\x05\x00\x00\x09ab"),  # host_name longer than the list
        (16, b"\x00\x03\x02h2\x00"),  # trailing byte after the list
        (43, b"\x03\x03\x04\x03"),  # odd versions length
        (10, b""),  # supported_groups cannot be empty
        (51, b"\x00\x04\x00\x1d\x00\x05"),  # key share longer than its list
    ],
)
def test_malformed_extensions_raise(ext_type: int, data: bytes) -> None:
    hello = tls.ClientHello(0x0303, bytes(32), b"", (0x1301,), (0,), (ext(ext_type, data),))
    with pytest.raises(ParseError) as info:
        tls.ClientHello.decode(hello.encode(), base=100)
    assert info.value.offset is not None and info.value.offset >= 100 + 2 + 32 + 1


def test_duplicate_extension_raises() -> None:
    hello = tls.ClientHello(0x0303, bytes(32), b"", (0x1301,), (0,),
                            (ext(23, b""), ext(23, b"")))
    with pytest.raises(ParseError, match="duplicate extended_master_secret"):
        tls.ClientHello.decode(hello.encode())


def test_server_hello_versions_and_hello_retry_request() -> None:
    sh = tls.ServerHello(0x0303, bytes(range(32)), b"", 0x1302, 0,
                         (ext(43, b"\x03\x04"), ext(51, b"\x00\x1d\x00\x02ab")))
    decoded = tls.ServerHello.decode(sh.encode())
    assert decoded == sh
    d = decoded.to_dict()
    assert d["type"] == "ServerHello" and d["version"] == "TLS 1.3"
    assert d["cipher_suite"] == "TLS_AES_256_GCM_SHA384"
    assert d["extensions"][1]["group"] == "x25519" and d["extensions"][1]["key_length"] == 2
    hrr = tls.ServerHello(0x0303, tls.HRR_RANDOM, b"", 0x1301, 0,
                          (ext(43, b"\x03\x04"), ext(51, b"\x00\x17")))
    decoded_hrr = tls.ServerHello.decode(hrr.encode())
    assert decoded_hrr.is_hello_retry_request
    assert decoded_hrr.to_dict()["type"] == "HelloRetryRequest"
    assert decoded_hrr.to_dict()["extensions"][1]["selected_group"] == "secp256r1"
    legacy = tls.ServerHello.decode(tls.ServerHello(0x0301, bytes(32), b"", 0x2F, 0).encode())
    assert legacy.to_dict()["version"] == "TLS 1.0" and legacy.extensions == ()


def test_tls13_messages() -> None:
    ctx = tls.HandshakeContext(version=0x0304, cipher_suite=0x1301)
    entry = (3).to_bytes(3, "big") + b"DER" + u16s(prefix=2)
    cert_body = b"\x00" + len(entry).to_bytes(3, "big") + entry
    cert = tls.decode_handshake(11, cert_body, ctx)
    assert isinstance(cert, tls.Certificate) and cert.tls13 and cert.certificates == [b"DER"]
    assert cert.to_dict()["certificates"] == [{"length": 3, "subject": None, "issuer": None}]
    early = (42).to_bytes(2, "big") + (4).to_bytes(2, "big") + (16384).to_bytes(4, "big")
    nst_exts = len(early).to_bytes(2, "big") + early
    nst_body = ((300).to_bytes(4, "big") + (7).to_bytes(4, "big") + b"\x01\x00"
                + b"\x00\x04tick" + nst_exts)
    nst = tls.decode_handshake(4, nst_body, ctx).to_dict()
    assert nst == {"type": "NewSessionTicket", "lifetime": 300, "ticket_length": 4,
                   "age_add": 7, "nonce": "00",
                   "extensions": [{"name": "early_data", "type": 42, "length": 4,
                                   "max_early_data_size": 16384}]}
    sig = (13).to_bytes(2, "big") + (4).to_bytes(2, "big") + u16s(0x0804)
    creq = tls.decode_handshake(13, b"\x00" + len(sig).to_bytes(2, "big") + sig, ctx)
    assert creq.to_dict()["signature_schemes"] == ["rsa_pss_rsae_sha256"]
    ee = tls.decode_handshake(8, b"\x00\x00", ctx)
    assert ee.to_dict() == {"type": "EncryptedExtensions", "extensions": []}
    cv = tls.decode_handshake(15, b"\x08\x07\x00\x03sig", ctx).to_dict()
    assert cv == {"type": "CertificateVerify", "signature_scheme": "ed25519",
                  "signature_length": 3}
    assert tls.decode_handshake(24, b"\x01", ctx).to_dict()["update_requested"] is True
    with pytest.raises(ParseError):
        tls.decode_handshake(24, b"\x02", ctx)
    assert tls.decode_handshake(20, bytes(32), ctx).to_dict()["verify_data_length"] == 32


def test_tls12_messages() -> None:
    dhe = tls.HandshakeContext(version=0x0303, cipher_suite=0x009E)  # DHE_RSA
    p = (1 << 2047 | 1).to_bytes(256, "big")
    ske_body = (len(p).to_bytes(2, "big") + p + b"\x00\x01\x02" + b"\x00\x02yy"
                + b"\x04\x01\x00\x02ss")
    ske = tls.decode_handshake(12, ske_body, dhe).to_dict()
    assert ske["kex"] == "dhe" and ske["dh_prime_bits"] == 2048
    assert ske["signature_scheme"] == "rsa_pkcs1_sha256"
    cke = tls.decode_handshake(16, b"\x00\x02yy", dhe).to_dict()
    assert cke == {"type": "ClientKeyExchange", "length": 4, "public_key_length": 2}
    creq_body = b"\x02\x01\x40" + u16s(0x0401, 0x0403) + b"\x00\x05\x00\x03abc"
    creq = tls.decode_handshake(13, creq_body, dhe).to_dict()
    assert creq["certificate_types"] == [1, 64] and creq["authorities"] == 1
    assert creq["signature_schemes"] == ["rsa_pkcs1_sha256", "ecdsa_secp256r1_sha256"]
    status = tls.decode_handshake(22, b"\x01\x00\x00\x02ok", dhe).to_dict()
    assert status == {"type": "CertificateStatus", "status_type": "ocsp", "response_length": 2}
    assert tls.decode_handshake(14, b"", dhe).to_dict() == {"type": "ServerHelloDone"}
    with pytest.raises(ParseError, match="must be empty"):
        tls.decode_handshake(14, b"x", dhe)
    assert tls.decode_handshake(99, b"zz", dhe).to_dict() == {"type": "unknown_99",
                                                             "msg_type": 99, "length": 2}
    with pytest.raises(ParseError, match="Finished"):
        tls.decode_handshake(20, b"short", dhe)


def test_certificate_form_guessed_without_context() -> None:
    der = b"\x30\x03abc"
    v12 = (len(der) + 3).to_bytes(3, "big") + len(der).to_bytes(3, "big") + der
    assert not tls.Certificate.decode(v12).tls13
    entry = len(der).to_bytes(3, "big") + der + b"\x00\x00"
    v13 = b"\x00" + len(entry).to_bytes(3, "big") + entry
    assert tls.Certificate.decode(v13).tls13


def test_alerts_and_change_cipher_spec() -> None:
    stream = (tls.encode_record(21, 0x0303, b"\x02\x28")
              + tls.encode_record(21, 0x0303, b"\x01\x00")
              + tls.encode_record(20, 0x0303, b"\x01")
              + tls.encode_record(21, 0x0303, b"\xaa\xbb\xcc"))
    events = dicts(tls.TLSDirection().feed(stream))
    assert events == [
        {"type": "Alert", "level": "fatal", "description": "handshake_failure"},
        {"type": "Alert", "level": "warning", "description": "close_notify"},
        {"type": "ChangeCipherSpec"},
        {"type": "EncryptedRecord", "content_type": "alert", "length": 3},
    ]
    with pytest.raises(ParseError, match="alert of 3 bytes") as info:
        tls.TLSDirection().feed(tls.encode_record(21, 0x0303, b"abc"))
    assert info.value.offset == 5  # type: ignore[attr-defined]
    with pytest.raises(ParseError, match="ChangeCipherSpec"):
        tls.TLSDirection().feed(tls.encode_record(20, 0x0303, b"\x02"))
    with pytest.raises(ParseError, match="empty handshake record"):
        tls.TLSDirection().feed(tls.encode_record(22, 0x0303, b""))


def test_parse_client_hello_rejects_other_first_messages() -> None:
    with pytest.raises(ParseError, match="expected a handshake record"):
        tls.parse_client_hello(tls.encode_record(23, 0x0303, b"x"))
    with pytest.raises(ParseError, match="expected ClientHello"):
        tls.parse_client_hello(tls.encode_record(22, 0x0303, tls.encode_handshake(2, b"")))


# ---------------------------------------------------------------- hypothesis round trips

KNOWN_EXTENSIONS = st.sampled_from([
    ext(0, b"\x00\x0c\x00\x00\x09localhost"),
    ext(16, b"\x00\x0c\x02h2\x08http/1.1"),
    ext(43, u16s(0x0304, 0x0303, prefix=1)),
    ext(10, u16s(29, 23, 24)),
    ext(13, u16s(0x0403, 0x0804)),
    ext(51, b"\x00\x06\x00\x1d\x00\x02ab"),
    ext(45, b"\x01\x01"),
    ext(11, b"\x01\x00"),
    ext(23, b""),
    ext(35, b"ticket"),
])


@st.composite
def client_hellos(draw) -> tls.ClientHello:
    suites = tuple(draw(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=40)))
    unknown = draw(st.lists(st.tuples(st.integers(0xA000, 0xEFFF), st.binary(max_size=40)),
                            max_size=4, unique_by=lambda t: t[0]))
    known = draw(st.lists(KNOWN_EXTENSIONS, max_size=10, unique_by=lambda e: e.type))
    exts = tuple(known) + tuple(ext(t, d) for t, d in unknown if not names.is_grease(t))
    return tls.ClientHello(
        draw(st.sampled_from([0x0301, 0x0303])),
        draw(st.binary(min_size=32, max_size=32)),
        draw(st.binary(max_size=32)),
        suites,
        tuple(draw(st.lists(st.integers(0, 255), min_size=1, max_size=3))),
        tuple(draw(st.permutations(exts))),
    )


@given(client_hellos(), st.integers(1, 600), st.data())
@settings(max_examples=80, deadline=None)
def test_client_hello_round_trip(hello: tls.ClientHello, record_size: int, data) -> None:
    """Encode, split over records of ``record_size``, feed in random chunks, decode."""
    layer = tls.encode_handshake(1, hello.encode())
    stream = b"".join(tls.encode_record(22, 0x0301, layer[i : i + record_size])
                      for i in range(0, len(layer), record_size))
    direction = tls.TLSDirection()
    events: list[object] = []
    pos = 0
    while pos < len(stream):
        step = data.draw(st.integers(1, 200))
        events.extend(direction.feed(stream[pos : pos + step]))
        pos += step
    assert events == [hello]
    assert tls.parse_client_hello(stream) == hello
    d = hello.to_dict()
    assert len(d["cipher_suites"]) == len(hello.cipher_suites)
    assert [e["name"] for e in d["extensions"]] == [e.name for e in hello.extensions]


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=32), st.integers(0, 0xFFFF),
       st.lists(KNOWN_EXTENSIONS, max_size=3, unique_by=lambda e: e.type))
@settings(max_examples=40, deadline=None)
def test_server_hello_round_trip(random_: bytes, sid: bytes, suite: int, exts) -> None:
    exts = tuple(e for e in exts if e.type in (23, 11, 35))  # server-side forms
    sh = tls.ServerHello(0x0303, random_, sid, suite, 0, exts)
    assert tls.ServerHello.decode(sh.encode()) == sh


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None)
def test_random_bytes_only_parse_error(blob: bytes) -> None:
    for body_type in (1, 2, 4, 8, 11, 12, 13, 15, 16, 22):
        with contextlib.suppress(ParseError):
            tls.decode_handshake(body_type, blob).to_dict()
    with contextlib.suppress(ParseError):
        dicts(tls.TLSDirection().feed(tls.encode_record(22, 0x0303, blob)))


# ------------------------------------------------------------------------------ names


def test_iana_names() -> None:
    assert names.cipher_suite_name(0x1301) == "TLS_AES_128_GCM_SHA256"
    assert names.cipher_suite_name(0xC02F) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert names.cipher_suite_name(0xCCA8) == "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
    assert names.cipher_suite_name(0x5600) == "TLS_FALLBACK_SCSV"
    assert names.cipher_suite_name(0x0A0A) == "0x0a0a"
    assert len(names.CIPHER_SUITES) > 340
    assert all(n.startswith("TLS_") for n in names.CIPHER_SUITES.values())
    assert len(set(names.CIPHER_SUITES.values())) == len(names.CIPHER_SUITES)
    assert names.extension_name(0xFF01) == "renegotiation_info"
    assert names.group_name(0x11EC) == "X25519MLKEM768"
    assert names.signature_scheme_name(0x0807) == "ed25519"
    assert names.alert_name(48) == "unknown_ca" and names.alert_name(200) == "200"
    assert names.version_name(0x0304) == "TLS 1.3" and names.version_name(0x7F1C) == "0x7f1c"


def test_certificate_names_survive_a_zero_serial() -> None:
    """cryptography warns about a non-positive serial; the names are still reported."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zero.test")])
    now = datetime.datetime.now(datetime.UTC)
    der = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    )
    marker = b"\xa0\x03\x02\x01\x02\x02\x01\x01"
    assert marker in der
    der = der.replace(marker, marker[:-1] + b"\x00", 1)
    entry = tls.CertificateEntry(der).to_dict()
    assert entry["subject"] == entry["issuer"] == "CN=zero.test"
