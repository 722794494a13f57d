"""TCP (and, given an ``ssl.SSLContext``, TLS) client connections.

``connect`` resolves the name itself and tries each address in turn, so that when every
address fails the user sees the most telling reason ("connection refused by 127.0.0.1:9")
rather than asyncio's "Multiple exceptions: ...".  The whole attempt (resolution, TCP
handshake, TLS handshake) shares one deadline, ``timeout``.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl as _ssl
from collections.abc import Sequence
from typing import Any

from wirekit.address import Address, parse_address
from wirekit.errors import ConnectTimeout, UsageError
from wirekit.net._errors import connect_errors
from wirekit.net.stream import Connection

__all__ = ["DEFAULT_TIMEOUT", "TLS_NOT_AVAILABLE", "connect"]

DEFAULT_TIMEOUT = 10.0
STREAM_LIMIT = 1 << 18  # bytes recv_until may scan for its delimiter

TLS_NOT_AVAILABLE = (
    "tls:// is not available yet (TLS arrives in a later release); "
    "the library accepts connect(..., ssl=CONTEXT) meanwhile"
)


async def connect(
    address: str | Address,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    nodelay: bool = True,
) -> Connection:
    """Connect to ``address`` (``HOST:PORT``, ``:PORT``, ``[v6]:PORT``, ``tcp://``).

    ``tls://`` addresses need an ``ssl`` context (a plain ``tcp://`` address with ``ssl``
    given is wrapped in TLS too).  Raises :class:`~wirekit.errors.ResolveError`,
    :class:`~wirekit.errors.ConnectRefused`, :class:`~wirekit.errors.ConnectTimeout`,
    :class:`~wirekit.errors.NetworkUnreachable` or another
    :class:`~wirekit.errors.ConnectError`, each with a one-line message.
    """
    addr = address if isinstance(address, Address) else parse_address(
        address, schemes=("tcp", "tls")
    )
    if addr.scheme not in ("tcp", "tls"):
        raise UsageError(f"connect() speaks tcp:// and tls://, not {addr.scheme}:// ({addr})")
    if addr.scheme == "tls" and ssl is None:
        raise UsageError(TLS_NOT_AVAILABLE)
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
                sock = await _connect_any(loop, infos)
                try:
                    if nodelay:
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    reader, writer = await asyncio.open_connection(
                        sock=sock,
                        ssl=ssl,
                        server_hostname=server_hostname or (host if ssl is not None else None),
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
    return Connection.from_streams(reader, writer, scheme=addr.scheme)


async def _connect_any(
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

