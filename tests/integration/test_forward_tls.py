"""``wirekit.forward`` with TLS, in process: terminate (tls:// LISTEN), originate (tls://
TARGET), both chained; mTLS; half-close and reset as documented in
:mod:`wirekit.net.forward_tls`; 1 MiB byte-exact.  Keys are made in the session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator

import pytest

from conftest import PKI
from wirekit.net.forward import ConnectionEnded, Forwarder, forward
from wirekit.net.forward_tls import ListenTLS, TargetTLS

MIB = os.urandom(1 << 20)


class Target:
    """A plaintext TCP server: echo, or record what arrives (and whether EOF came)."""

    def __init__(self, mode: str = "echo", reply: bytes = b"") -> None:
        self.mode = mode
        self.reply = reply
        self.received = bytearray()
        self.eof = asyncio.Event()
        self.reset = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Target:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            if self.mode == "reply-fin":  # send a reply, then FIN, keep reading
                w.write(self.reply)
                await w.drain()
                w.write_eof()
            if self.mode == "rst":
                await r.read(1)
                sock = w.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                w.transport.abort()
                return
            while data := await r.read(1 << 16):
                self.received += data
                if self.mode == "echo":
                    w.write(data)
                    await w.drain()
            self.eof.set()
        except ConnectionResetError:
            self.reset.set()
        finally:
            w.close()


@contextlib.asynccontextmanager
async def forwarders(pki: PKI, target_port: int, *, listen: ListenTLS | None = None,
                     target: TargetTLS | None = None,
                     ) -> AsyncIterator[tuple[Forwarder, Forwarder, list[ConnectionEnded]]]:
    """plaintext client -> originate (:0 -> tls://) -> terminate (tls:// -> target)."""
    events: list[ConnectionEnded] = []
    term = await forward("tls://127.0.0.1:0", f"127.0.0.1:{target_port}",
                         listen_tls=listen or ListenTLS(cert=pki.server[0], key=pki.server[1]),
                         on_event=events.append)
    orig = await forward("127.0.0.1:0", f"tls://127.0.0.1:{term.address.port}",
                         target_tls=target or TargetTLS(ca=pki.ca), on_event=events.append)
    try:
        yield orig, term, events
    finally:
        await orig.aclose(0)
        await term.aclose(0)


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def exchange(port: int, payload: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(payload)
        return await asyncio.wait_for(r.readexactly(len(payload)), 20)
    finally:
        w.close()


async def test_chain_1mib_byte_exact(pki: PKI) -> None:
    async with Target() as echo, forwarders(pki, echo.port) as (orig, _term, events):
        assert await exchange(orig.address.port, MIB) == MIB
        await until(lambda: len(events) == 2, "both connection lines")
    assert {e.reason for e in events} == {"closed"}
    assert all(e.bytes_up == e.bytes_down == len(MIB) for e in events)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_terminate_python_ssl_client(pki: PKI, version: ssl.TLSVersion) -> None:
    async with Target() as echo, forwarders(pki, echo.port) as (_orig, term, _events):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.maximum_version = version
        r, w = await asyncio.open_connection("127.0.0.1", term.address.port, ssl=ctx,
                                             server_hostname="localhost")
        assert w.get_extra_info("ssl_object").version() == version.name.replace("v1_", "v1.")
        w.write(MIB)
        assert await asyncio.wait_for(r.readexactly(len(MIB)), 20) == MIB
        w.close()


async def test_untrusted_target_resets_client_and_names_the_reason(pki: PKI) -> None:
    async with Target() as echo, forwarders(pki, echo.port, target=TargetTLS()) as (
            orig, _term, events):
        r, w = await asyncio.open_connection("127.0.0.1", orig.address.port)
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            w.write(b"secret")
            await asyncio.wait_for(r.readexactly(1), 10)
        w.close()
        await until(lambda: any(e.reason == "tls failed" for e in events), "tls failed")
    failed = next(e for e in events if e.target == f"127.0.0.1:{orig.target.port}")
    assert failed.reason == "tls failed" and failed.bytes_down == 0
    assert "not trusted" in failed.detail and "Test Root" in failed.detail
    assert echo.received == b""  # nothing reached the service


async def test_wrong_name_is_refused(pki: PKI) -> None:
    async with Target() as echo, forwarders(
            pki, echo.port, target=TargetTLS(ca=pki.ca, sni="other.test")) as (orig, _t, events):
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await exchange(orig.address.port, b"x")
        await until(lambda: any(e.reason == "tls failed" for e in events), "tls failed")
    detail = next(e.detail for e in events if e.reason == "tls failed")
    assert "'other.test' is not in the certificate's names" in detail


@pytest.mark.parametrize(("which", "reason"), [
    ("client", None),
    ("client_expired", "expired"),
    ("client_stranger", "Stranger Root"),
    (None, "no client certificate"),
])
async def test_mutual_tls(pki: PKI, which: str | None, reason: str | None) -> None:
    listen = ListenTLS(cert=pki.server[0], key=pki.server[1], client_ca=pki.ca,
                       require_client_cert=True)
    cert = getattr(pki, which) if which else (None, None)
    target = TargetTLS(ca=pki.ca, cert=cert[0], key=cert[1])
    async with Target() as echo, forwarders(pki, echo.port, listen=listen, target=target) as (
            orig, _term, events):
        if reason is None:
            assert await exchange(orig.address.port, b"hello mtls") == b"hello mtls"
            return
        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await exchange(orig.address.port, b"hello mtls")
        await until(lambda: any(e.reason == "tls failed" for e in events), "tls failed")
    failed = next(e for e in events if e.reason == "tls failed")
    assert failed.target == f"127.0.0.1:{echo.port}"  # the terminating side's line
    assert reason in failed.detail
    assert echo.received == b""


async def test_plain_client_on_tls_listener_is_one_event(pki: PKI) -> None:
    async with Target() as echo, forwarders(pki, echo.port) as (_orig, term, events):
        r, w = await asyncio.open_connection("127.0.0.1", term.address.port)
        w.write(b"GET / HTTP/1.0\r\n\r\n")
        assert await asyncio.wait_for(r.read(), 10) == b""
        w.close()
        await until(lambda: bool(events), "an event")
    assert events[0].reason == "tls failed"
    assert "plain HTTP request" in events[0].detail


# -- half-close and reset, as documented in wirekit.net.forward_tls ------------------------


async def test_close_notify_from_tls_client_becomes_fin_to_target(pki: PKI) -> None:
    async with Target("sink") as sink, forwarders(pki, sink.port) as (_orig, term, events):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        _r, w = await asyncio.open_connection("127.0.0.1", term.address.port, ssl=ctx,
                                             server_hostname="localhost")
        w.write(MIB)
        await w.drain()
        w.close()  # close_notify after the data
        await asyncio.wait_for(sink.eof.wait(), 20)
        assert bytes(sink.received) == MIB
        await until(lambda: bool(events), "an event")
    assert events[0].reason == "closed"


async def test_fin_from_plain_target_becomes_close_notify(pki: PKI) -> None:
    async with Target("reply-fin", reply=MIB) as target, forwarders(pki, target.port) as (
            _orig, term, _events):
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        r, w = await asyncio.open_connection("127.0.0.1", term.address.port, ssl=ctx,
                                             server_hostname="localhost")
        got = await asyncio.wait_for(r.read(), 20)  # to a clean EOF (close_notify)
        assert got == MIB
        w.close()


async def test_fin_from_plain_client_is_held_so_the_reply_arrives(pki: PKI) -> None:
    async with Target() as echo, forwarders(pki, echo.port) as (orig, _term, events):
        r, w = await asyncio.open_connection("127.0.0.1", orig.address.port)
        w.write(MIB)
        w.write_eof()  # half-close: the reply must still come back in full
        assert await asyncio.wait_for(r.readexactly(len(MIB)), 20) == MIB
        assert not echo.eof.is_set()  # held: the TLS side was not closed
        w.close()
        await until(lambda: len(events) == 2, "both connection lines")


async def test_reset_from_plain_target_reaches_plain_client(pki: PKI) -> None:
    async with Target("rst") as target, forwarders(pki, target.port) as (orig, _t, events):
        r, w = await asyncio.open_connection("127.0.0.1", orig.address.port)
        w.write(b"x")
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(r.read(), 10)
        w.close()
        await until(lambda: len(events) == 2, "both connection lines")
    assert [e.reason for e in events] == ["reset", "reset"]


async def test_reset_from_plain_client_reaches_plain_target(pki: PKI) -> None:
    async with Target("sink") as sink, forwarders(pki, sink.port) as (orig, _t, events):
        _r, w = await asyncio.open_connection("127.0.0.1", orig.address.port)
        w.write(b"partial")
        await until(lambda: sink.received == b"partial", "data at the target")
        w.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                              struct.pack("ii", 1, 0))
        w.transport.abort()
        await asyncio.wait_for(sink.reset.wait(), 10)
        await until(lambda: len(events) == 2, "both connection lines")
    assert {e.reason for e in events} == {"reset"}


async def test_originate_resumes_sessions(pki: PKI) -> None:
    async with Target() as echo, forwarders(pki, echo.port) as (orig, term, _events):
        for _ in range(3):
            assert await exchange(orig.address.port, b"r") == b"r"
        assert term.server_tls is not None
        stats = term.server_tls.context.session_stats()
    assert stats["accept_good"] == 3 and stats["hits"] >= 1  # the 2nd/3rd were resumed
