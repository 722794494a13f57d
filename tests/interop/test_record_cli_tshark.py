"""``--record`` of ``connect`` and ``serve``, read by the real tshark: UDP datagrams, the
plaintext leg of ``tls://`` on the second interface, and handshakes that fail."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path

from test_record_tshark import tls_exchange, tshark

import wirekit
from conftest import async_wait_for, need_peer
from wirekit.capture.recorder import Recorder

UDP_CONV = re.compile(r"^(\S+):(\d+)\s+<->\s+(\S+):(\d+)\s+(\d+)\s+\d+ bytes\s+(\d+)\s")


def udp_conversations(path: Path) -> dict[frozenset[tuple[str, int]], int]:
    """``-z conv,udp``: each conversation's endpoints and its packet count (both ways)."""
    out = {}
    for line in tshark("-r", str(path), "-q", "-z", "conv,udp").splitlines():
        m = UDP_CONV.match(line)
        if m:
            out[frozenset({(m[1], int(m[2])), (m[3], int(m[4]))})] = int(m[5]) + int(m[6])
    return out


def udp_payloads(path: Path) -> list[tuple[int, int, bytes]]:
    """(source port, destination port, payload) of every UDP packet, in file order."""
    rows = tshark("-r", str(path), "-Y", "udp", "-T", "fields", "-e", "udp.srcport", "-e",
                  "udp.dstport", "-e", "udp.payload").splitlines()
    return [(int(a), int(b), bytes.fromhex(p)) for a, b, p in (r.split("\t") for r in rows)]


def udp_echoes(port: int, datagrams: list[bytes]) -> int:
    """Send each datagram to ``127.0.0.1:port`` from one socket, check that each comes
    back as it was; the client's port."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        for datagram in datagrams:
            s.send(datagram)
            assert s.recv(2048) == datagram
        return int(s.getsockname()[1])


def test_connect_udp_record(tmp_path: Path, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """``connect udp:// --record``: each datagram sent and each reply, as UDP packets with
    the client's real port and the server's."""
    need_peer("tshark")
    server = wirekit_proc("serve", "echo", "udp://127.0.0.1:0")
    _, _, port = server.listening()
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(300))
    path = tmp_path / "udp.pcapng"
    proc = subprocess.run(
        [sys.executable, "-m", "wirekit", "connect", f"udp://127.0.0.1:{port}", "--no-stdin",
         "--send", "first", "--send-file", str(blob), "--send", r"\x00last", "-v",
         "--record", str(path)], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    local = re.search(rb"local address 127\.0\.0\.1:(\d+)", proc.stderr)
    assert local, proc.stderr
    cport = int(local[1])
    sent = [b"first", b"\x00last", blob.read_bytes()]  # --send texts, then the files
    assert proc.stdout == b"".join(sent)
    assert udp_conversations(path) == {frozenset({("127.0.0.1", cport), ("127.0.0.1", port)}): 6}
    packets = udp_payloads(path)
    assert [p for s, _, p in packets if s == cport] == sent
    assert [p for s, d, p in packets if s == port and d == cport] == sent


def test_serve_udp_record_one_conversation_per_client(tmp_path: Path,
                                                      wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """``serve echo udp:// --record``: every client is its own conversation with the
    listening address; the payloads are the datagrams each way."""
    need_peer("tshark")
    path = tmp_path / "served-udp.pcapng"
    server = wirekit_proc("serve", "echo", "udp://127.0.0.1:0", "--record", str(path))
    _, _, port = server.listening()
    sent: dict[int, list[bytes]] = {}
    for n in range(2):  # two clients, one after the other
        datagrams = [os.urandom(40 + n) for _ in range(n + 2)]
        sent[udp_echoes(port, datagrams)] = datagrams
    assert server.stop() == 0
    convs = udp_conversations(path)
    assert convs == {frozenset({("127.0.0.1", c), ("127.0.0.1", port)}): 2 * len(d)
                     for c, d in sent.items()}
    packets = udp_payloads(path)
    for cport, datagrams in sent.items():
        assert [p for s, d, p in packets if s == cport and d == port] == datagrams
        assert [p for s, d, p in packets if s == port and d == cport] == datagrams


async def test_tcp_and_udp_listeners_record_into_one_file(tmp_path: Path) -> None:
    """Several ``serve()`` listeners, TCP and UDP, share one recorder and one file."""
    need_peer("tshark")
    path = tmp_path / "both.pcapng"
    rec = Recorder(path)
    tcp = await wirekit.serve("echo", "tcp://127.0.0.1:0", record=rec)
    udp = await wirekit.serve("echo", "udp://127.0.0.1:0", record=rec)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", tcp.address.port)
        w.write(b"over tcp")
        await w.drain()
        w.write_eof()
        assert await asyncio.wait_for(r.read(), 10) == b"over tcp"
        w.close()
        await w.wait_closed()
        uport = await asyncio.to_thread(udp_echoes, udp.address.port, [b"over udp"])
    finally:
        await tcp.aclose(1)
        await udp.aclose(1)
    rec.close()
    assert udp_conversations(path) == {
        frozenset({("127.0.0.1", uport), ("127.0.0.1", udp.address.port)}): 2}
    streams = tshark("-r", str(path), "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.srcport",
                     "-e", "tcp.payload").splitlines()
    assert f"{tcp.address.port}\t{b'over tcp'.hex()}" in streams


def plain_leg(path: Path, port: int) -> tuple[bytes, bytes]:
    """The TCP payload on interface 1 (``wirekit-plain``): (to ``port``, from ``port``)."""
    rows = tshark("-r", str(path), "-Y", "frame.interface_id == 1 and tcp.len > 0", "-T",
                  "fields", "-e", "tcp.dstport", "-e", "tcp.payload").splitlines()
    to = b"".join(bytes.fromhex(p) for d, p in (r.split("\t") for r in rows) if int(d) == port)
    back = b"".join(bytes.fromhex(p) for d, p in (r.split("\t") for r in rows)
                    if int(d) != port)
    return to, back


def decrypted_uris(path: Path) -> list[str]:
    """The HTTP request URIs tshark decrypts on interface 0 (the TLS leg), with the keys
    in the file's Decryption Secrets Block and no key-log file."""
    return tshark("-r", str(path), "-Y", "frame.interface_id == 0 and tls and http.request",
                  "-T", "fields", "-e", "http.request.uri").split()


def interfaces(path: Path) -> list[str]:
    return tshark("-r", str(path), "-T", "fields", "-e", "frame.interface_name").split()


def test_connect_tls_record_has_the_plaintext_on_interface_1(
        tmp_path: Path, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """``connect tls:// --record``: the ciphertext on interface 0 (decrypted by tshark with
    the embedded keys) and the plaintext that went through on interface 1, a connection
    of its own that tshark does not mix with the TLS one."""
    need_peer("tshark")
    server = wirekit_proc("serve", "http", "tls://127.0.0.1:0", "--ca-dir", str(tmp_path / "ca"))
    _, _, port = server.listening()
    path = tmp_path / "connect-tls.pcapng"
    request = b"GET /plain/leg HTTP/1.0\r\nHost: localhost\r\n\r\n"
    proc = subprocess.run(
        [sys.executable, "-m", "wirekit", "connect", f"tls://127.0.0.1:{port}",
         "--ca", str(tmp_path / "ca" / "ca.pem"), "--record", str(path)],
        input=request, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"HTTP/1.0 404")
    assert plain_leg(path, port) == (request, proc.stdout)
    assert decrypted_uris(path) == ["/plain/leg"]
    assert set(interfaces(path)) == {"wirekit", "wirekit-plain"}
    assert tshark("-r", str(path), "-Y", "tcp.analysis.flags") == ""
    streams = tshark("-r", str(path), "-T", "fields", "-e", "frame.interface_id", "-e",
                     "tcp.stream").splitlines()
    assert sorted(set(streams)) == ["0\t0", "1\t1"]  # two connections, one per interface


def test_serve_tls_record_has_the_plaintext_on_interface_1(
        tmp_path: Path, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """``serve SERVICE tls:// --record``: each accepted connection's ciphertext on
    interface 0 and what the service read and wrote on interface 1."""
    need_peer("tshark")
    path = tmp_path / "serve-tls.pcapng"
    server = wirekit_proc("serve", "http", "tls://127.0.0.1:0", "--ca-dir",
                          str(tmp_path / "ca"), "--record", str(path))
    _, _, port = server.listening()
    request = b"GET /served/plain HTTP/1.0\r\nHost: localhost\r\n\r\n"
    reply = tls_exchange(port, tmp_path / "ca" / "ca.pem", request)
    assert reply.startswith(b"HTTP/1.0 404")
    assert server.stop() == 0
    assert plain_leg(path, port) == (request, reply)
    assert decrypted_uris(path) == ["/served/plain"]
    assert set(interfaces(path)) == {"wirekit", "wirekit-plain"}
    assert tshark("-r", str(path), "-Y", "tcp.analysis.flags") == ""


def tls_events(path: Path) -> list[str]:
    """Per TLS packet: ``hello`` for a ClientHello, ``alert:N`` for an alert (N its
    description; decrypted with the file's keys when it is encrypted), in file order; and
    ``fin`` for each FIN."""
    out = []
    rows = tshark("-r", str(path), "-Y", "tls or tcp.flags.fin == 1", "-T", "fields", "-e",
                  "tls.handshake.type", "-e", "tls.alert_message.desc", "-e",
                  "tcp.flags.fin").splitlines()
    for row in rows:
        hs, alert, fin = [*row.split("\t"), "", "", ""][:3]
        if "1" in hs.split(","):
            out.append("hello")
        if alert:
            out.append(f"alert:{alert}")
        if fin in ("1", "True"):
            out.append("fin")
    return out


def has_secrets(path: Path) -> bool:
    from wirekit.pcapng import read

    with open(path, "rb") as f:
        return any(type(b).__name__ == "DecryptionSecrets" for b in read(f))


def failed_handshake(tmp_path: Path, wirekit_proc, serve_args: list[str],  # type: ignore[no-untyped-def]
                     connect_args: list[str]) -> tuple[Path, Path, str, bytes]:
    """``serve echo tls:// --record`` and ``connect tls:// --record`` whose handshake
    fails: (the server's file, the client's, the server's stderr, connect's stderr)."""
    served, client = tmp_path / "served.pcapng", tmp_path / "client.pcapng"
    server = wirekit_proc("serve", "echo", "tls://127.0.0.1:0", *serve_args,
                          "--record", str(served))
    _, _, port = server.listening()
    proc = subprocess.run(
        [sys.executable, "-m", "wirekit", "connect", f"tls://127.0.0.1:{port}", "--no-stdin",
         "--send", "never seen", "--wait", "5", *connect_args, "--record", str(client)],
        capture_output=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    server.wait_line("TLS handshake failed")
    assert server.stop() == 0
    return served, client, server.stderr, proc.stderr


def test_refused_certificate_handshake_is_recorded_on_both_sides(
        tmp_path: Path, pki, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """The client does not trust the server's CA: both recordings hold the ClientHello,
    the server's flight and the client's alert (unknown CA, which connect now sends, so the
    server can say why), then the FINs; nothing on the plaintext interface."""
    need_peer("tshark")
    cert, key = pki.server
    served, client, log, err = failed_handshake(
        tmp_path, wirekit_proc, ["--cert", str(cert), "--key", str(key)],
        ["--ca", str(pki.stranger_root)])
    assert b"not trusted" in err
    assert "unknown ca" in log
    for path in (served, client):
        assert tls_events(path) == ["hello", "alert:48", "fin", "fin"], path
        assert set(interfaces(path)) == {"wirekit"}
        assert tshark("-r", str(path), "-Y", "tls.handshake.type == 2", "-T", "fields",
                      "-e", "frame.number").split()  # the ServerHello
        assert tshark("-r", str(path), "-Y", "tcp.analysis.flags") == ""
        assert b"never seen" not in path.read_bytes()


def test_no_common_version_handshake_is_recorded_without_secrets(
        tmp_path: Path, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """No TLS version in common: ClientHello, the server's protocol_version alert, FINs;
    no keys were made, so no Decryption Secrets Block."""
    need_peer("tshark")
    served, client, log, _ = failed_handshake(
        tmp_path, wirekit_proc, ["--ca-dir", str(tmp_path / "ca"), "--min-version", "1.3"],
        ["--insecure", "--max-version", "1.2"])
    assert "no TLS version in common" in log
    for path in (served, client):
        assert tls_events(path) == ["hello", "alert:70", "fin", "fin"], path
        assert not has_secrets(path)


def test_missing_client_certificate_alert_is_recorded(
        tmp_path: Path, pki, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    """The server requires a client certificate and gets none: its recording holds the
    ClientHello and its certificate_required alert, decrypted with the embedded keys."""
    need_peer("tshark")
    cert, key = pki.server
    served, client, log, err = failed_handshake(
        tmp_path, wirekit_proc, ["--cert", str(cert), "--key", str(key), "--client-ca",
                                 str(pki.ca), "--require-client-cert"],
        ["--ca", str(pki.ca)])
    assert "no client certificate" in log
    assert b"requires a client certificate" in err
    assert tls_events(served) == ["hello", "alert:116", "fin", "fin"]
    assert has_secrets(served)
    assert "alert:116" in tls_events(client)


async def test_forward_tls_listener_failed_handshake_is_recorded(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    """``forward tls://LISTEN TARGET --record``: a client that refuses the listener's
    certificate (a blocking OpenSSL client, which sends its alert) is written: ClientHello,
    the listener's flight, the alert, FINs, and no target leg."""
    need_peer("tshark")
    from wirekit.net.forward_tls import ListenTLS

    cert, key = pki.server
    path = tmp_path / "refused.pcapng"
    rec = Recorder(path)
    events: list[object] = []
    fwd = await wirekit.forward("tls://127.0.0.1:0", "127.0.0.1:9", record=rec,
                                listen_tls=ListenTLS(cert=cert, key=key),
                                on_event=events.append)
    ctx = ssl.create_default_context(cafile=str(pki.stranger_root))

    def refuse() -> str:
        with socket.create_connection(("127.0.0.1", fwd.address.port), timeout=10) as s:
            try:
                ctx.wrap_socket(s, server_hostname="localhost")
            except ssl.SSLCertVerificationError as exc:
                return str(exc.verify_message)
        return "accepted"

    try:
        assert "unable to get local issuer certificate" in await asyncio.to_thread(refuse)
        await async_wait_for(lambda: events, 10, "the forwarder's event for the refusal")
    finally:
        await fwd.aclose(0)
    rec.close()
    assert tls_events(path) == ["hello", "alert:48", "fin", "fin"]
    assert len(tshark("-r", str(path), "-q", "-z", "conv,tcp").split("<->")) == 2  # one leg


async def test_forward_tls_target_failed_handshake_is_recorded(tmp_path: Path, pki) -> None:  # type: ignore[no-untyped-def]
    """``forward LISTEN tls://TARGET --record`` to a target whose certificate the forward
    does not trust: the target leg is written (ClientHello, the target's flight, the
    forward's unknown-CA alert, which it now sends, FINs); the target logs why."""
    need_peer("tshark")
    from wirekit.net.forward_tls import TargetTLS

    cert, key = pki.server
    path = tmp_path / "target-refused.pcapng"
    rec = Recorder(path)
    target_events: list[wirekit.ConnectionEvent] = []
    target = await wirekit.serve("echo", "tls://127.0.0.1:0", cert=cert, key=key,
                                 on_event=target_events.append)
    fwd = await wirekit.forward("127.0.0.1:0", f"tls://127.0.0.1:{target.address.port}",
                                record=rec, target_tls=TargetTLS(ca=pki.stranger_root))
    try:
        r, w = await asyncio.open_connection("127.0.0.1", fwd.address.port)
        w.write(b"never relayed")
        await w.drain()
        with contextlib.suppress(ConnectionResetError):  # the forward gives up on us
            assert await asyncio.wait_for(r.read(), 10) == b""
        w.close()
        await async_wait_for(lambda: target_events, 10, "the target's failed handshake")
    finally:
        await fwd.aclose(0)
        await target.aclose(0)
    rec.close()
    assert target_events[0].ended == "tls failed"
    assert "unknown ca" in target_events[0].detail
    tport = target.address.port
    rows = tshark("-r", str(path), "-Y", f"tcp.port == {tport}", "-T", "fields", "-e",
                  "frame.interface_name").split()
    assert set(rows) == {"wirekit"}  # the TLS leg
    target_only = tmp_path / "target-leg.pcapng"
    tshark("-r", str(path), "-Y", f"tcp.port == {tport}", "-w", str(target_only))
    assert tls_events(target_only) == ["hello", "alert:48", "fin", "fin"]
