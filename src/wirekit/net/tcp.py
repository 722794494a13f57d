"""TCP and TLS client connections.

``connect`` resolves the name itself and tries each address in turn, so that when every
address fails the user sees the most telling reason ("connection refused by 127.0.0.1:9")
rather than asyncio's "Multiple exceptions: ...".  The whole attempt (resolution, TCP
handshake, TLS handshake) shares one deadline, ``timeout``.

``tls://`` verifies like ``wirekit tls``: the ssl module verifies with wirekit's secure
defaults, and a refused certificate becomes a :class:`~wirekit.errors.CertificateError`
whose message names the reason (see :mod:`wirekit.net.tls`).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl as _ssl
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from wirekit.address import Address, parse_address
from wirekit.errors import ConnectTimeout, UsageError
from wirekit.net._errors import connect_errors
from wirekit.net.stream import Connection, RecordedConnection

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder

__all__ = ["DEFAULT_TIMEOUT", "connect", "connect_any"]

DEFAULT_TIMEOUT = 10.0
STREAM_LIMIT = 1 << 18  # bytes recv_until may scan for its delimiter



async def connect(
    address: str | Address,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    nodelay: bool = True,
    ca: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    sni: str | None = None,
    no_sni: bool = False,
    alpn: Iterable[str] = (),
    min_version: str | None = None,
    max_version: str | None = None,
    keylog: str | os.PathLike[str] | None = None,
    crl: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    tls_hook: Callable[[_ssl.SSLContext], None] | None = None,
    record: Recorder | None = None,
) -> Connection:
    """Connect to ``address`` (``HOST:PORT``, ``:PORT``, ``[v6]:PORT``, ``tcp://``, ``tls://``).

    ``tls://`` verifies the server's certificate and name with wirekit's defaults; the
    keyword arguments are ``wirekit tls``'s options (``ca``: trust these roots instead of
    the system's; ``insecure``: do not verify; ``cert``/``key``: client certificate;
    ``sni``/``no_sni``; ``alpn``; ``min_version``/``max_version`` ``"1.2"``/``"1.3"``;
    ``keylog``; ``crl``: a CRL file or several, PEM or DER, against which every certificate
    of the server's chain is checked as ``wirekit tls --crl`` does: a revoked one fails
    the handshake with a ``revoked`` verdict).  Or pass your own ``ssl`` context (and
    ``server_hostname``), which is used as it is, also for a ``tcp://`` address.
    ``tls_hook(context)`` may adjust the context wirekit made for ``tls://`` before it is
    used.
    ``record`` (a :class:`wirekit.capture.recorder.Recorder`) writes the connection to its
    pcapng file as it goes: the handshake, each chunk as it is handed to the transport or
    arrives from it (read or not), our FIN at ``shutdown_write`` (TCP), the peer's when it
    arrives, the rest of the FINs on close, an RST when the connection is reset (ours after
    ``abort()``).  A
    ``tls://`` connection is written as the ciphertext that crossed the wire with its keys
    in a Decryption Secrets Block (tshark and Wireshark decrypt it; a failed handshake is
    written too), and its plaintext on the recorder's second interface (``wirekit-plain``).
    ``record`` cannot record a connection over your own ``ssl`` context.
    Raises :class:`~wirekit.errors.ResolveError`,
    :class:`~wirekit.errors.ConnectRefused`, :class:`~wirekit.errors.ConnectTimeout`,
    :class:`~wirekit.errors.NetworkUnreachable`, :class:`~wirekit.errors.CertificateError`
    (``.verdicts`` says why), :class:`~wirekit.errors.TLSError` or another
    :class:`~wirekit.errors.ConnectError`, each with a one-line message.
    """
    addr = address if isinstance(address, Address) else parse_address(
        address, schemes=("tcp", "tls")
    )
    if addr.scheme not in ("tcp", "tls"):
        raise UsageError(f"connect() speaks tcp:// and tls://, not {addr.scheme}:// ({addr})")
    if record is not None and ssl is not None:
        raise UsageError("connect(record=) records the TLS that wirekit sets up (tls:// with "
                         "ca=, cert=, ...), not a connection over your own ssl= context")
    cipher = None
    if record is not None and addr.scheme == "tls":  # the ciphertext and keys
        from wirekit.capture.tls_record import TlsLegTap

        cipher = TlsLegTap(record)
        tls_hook = _hooks(tls_hook, cipher.context_hook)
    try:
        reader, writer = await _open(
            addr, timeout=timeout, ssl=ssl, server_hostname=server_hostname, nodelay=nodelay,
            ca=ca, insecure=insecure, cert=cert, key=key, sni=sni, no_sni=no_sni, alpn=alpn,
            min_version=min_version, max_version=max_version, keylog=keylog, crl=crl,
            tls_hook=tls_hook)
    except BaseException:
        if cipher is not None:  # a failed handshake is written already; the key log goes
            cipher.failed()
        raise
    if record is None:
        return Connection.from_streams(reader, writer, scheme=addr.scheme)
    from wirekit.capture.stream_tap import StreamLeg

    conn = RecordedConnection.from_streams(reader, writer, scheme=addr.scheme)
    # The plaintext: the connection itself, or TLS's on the second interface.
    conn.record_legs(StreamLeg(record, conn.local, conn.peer, plain=cipher is not None),
                     cipher)
    return conn


def _hooks(first: Callable[[_ssl.SSLContext], None] | None,
           then: Callable[[_ssl.SSLContext], None]) -> Callable[[_ssl.SSLContext], None]:
    if first is None:
        return then

    def both(ctx: _ssl.SSLContext) -> None:
        first(ctx)
        then(ctx)
    return both


async def _open(
    addr: Address,
    *,
    timeout: float,
    ssl: _ssl.SSLContext | None,
    server_hostname: str | None,
    nodelay: bool,
    ca: str | os.PathLike[str] | None,
    insecure: bool,
    cert: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None,
    sni: str | None,
    no_sni: bool,
    alpn: Iterable[str],
    min_version: str | None,
    max_version: str | None,
    keylog: str | os.PathLike[str] | None,
    crl: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
    tls_hook: Callable[[_ssl.SSLContext], None] | None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    tls_options = (ca is not None or insecure or cert is not None or key is not None
                   or sni is not None or no_sni or bool(tuple(alpn)) or min_version is not None
                   or max_version is not None or keylog is not None or crl is not None)
    client = None
    if ssl is not None and tls_options:
        raise UsageError("give connect() either ssl=CONTEXT or TLS options (ca=, cert=, ...), "
                         "not both")
    if addr.scheme == "tls" and ssl is None:
        from wirekit.net.tls import client_tls

        client = client_tls(addr.host, ca=ca, insecure=insecure, cert=cert, key=key, sni=sni,
                            no_sni=no_sni, alpn=alpn, min_version=min_version,
                            max_version=max_version, keylog=keylog, crl=crl)
        ssl, server_hostname = client.context, client.server_hostname
        if tls_hook is not None:
            tls_hook(ssl)
    elif tls_options:
        raise UsageError(f"TLS options need a tls:// address, not {addr}")
    if timeout is None or timeout <= 0:
        raise UsageError(f"connect timeout must be a positive number of seconds, not {timeout}")
    host, port = addr.host, addr.port
    loop = asyncio.get_running_loop()

    resolving = True
    try:
        with connect_errors(host, port, timeout):
            async with asyncio.timeout(timeout):
                infos = await loop.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
                resolving = False
                sock = await connect_any(loop, infos)
                try:
                    if nodelay:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    if client is not None:
                        reader, writer = await _open_tls(sock, client, host, port)
                    else:
                        reader, writer = await asyncio.open_connection(
                            sock=sock,
                            ssl=ssl,
                            server_hostname=server_hostname
                            or (host if ssl is not None else None),
                            limit=STREAM_LIMIT,
                        )
                except BaseException:
                    sock.close()
                    raise
    except ConnectTimeout:
        if resolving:
            raise ConnectTimeout(
                f"timed out resolving {host!r} after {timeout:g}s", host=host, port=port
            ) from None
        raise
    return reader, writer


async def _open_tls(sock: socket.socket, client: Any, host: str,
                    port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    from wirekit.net.tls import check_name_after, explain_client_failure, handshaking

    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with handshaking(sock, server_side=False):  # tells the server why it failed
            reader, writer = await asyncio.open_connection(
                # "" tells asyncio "no name" (it insists on one otherwise)
                sock=sock, ssl=client.context, server_hostname=client.server_hostname or "",
                limit=STREAM_LIMIT)
    except _ssl.SSLError as exc:
        explained = explain_client_failure(exc, client, where)
        if explained is None:
            raise
        raise explained from exc
    try:
        check_name_after(client, writer.get_extra_info("ssl_object"), where)
    except BaseException:
        writer.transport.abort()  # at once: the caller closes the socket next
        raise
    return reader, writer


async def connect_any(
    loop: asyncio.AbstractEventLoop,
    infos: Sequence[tuple[int, int, int, str, Any]],
) -> socket.socket:
    """The first address that accepts; otherwise raise the most telling failure."""
    failures: list[OSError] = []
    for family, type_, proto, _, sockaddr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            failures.append(exc)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    if not failures:  # getaddrinfo returned nothing usable
        raise socket.gaierror(socket.EAI_NONAME, "no addresses")
    # "refused" says more than "unreachable" (e.g. localhost -> ::1 without IPv6, then v4).
    for failure in failures:
        if isinstance(failure, ConnectionRefusedError) or failure.errno == errno.ECONNREFUSED:
            raise failure
    raise failures[0]

