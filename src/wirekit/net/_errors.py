"""The one boundary where OS, socket and ssl exceptions become wirekit errors."""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

from wirekit.errors import (
    BindError,
    ConnectError,
    ConnectionReset,
    ConnectRefused,
    ConnectTimeout,
    NetError,
    NetworkUnreachable,
    ResolveError,
    TLSError,
    WirekitError,
)

__all__ = ["bind_errors", "connect_errors", "io_errors"]

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL}


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextmanager
def connect_errors(host: str, port: int, timeout: float | None = None) -> Iterator[None]:
    """Translate failures while establishing a connection to ``host:port``."""
    where = _where(host, port)
    try:
        yield
    except WirekitError:
        raise
    except socket.gaierror as exc:
        raise ResolveError(f"could not resolve {host!r}", host=host, port=port) from exc
    except ConnectionRefusedError as exc:
        raise ConnectRefused(f"connection refused by {where}", host=host, port=port) from exc
    except TimeoutError as exc:
        after = f" after {timeout:g}s" if timeout is not None else ""
        raise ConnectTimeout(
            f"timed out connecting to {where}{after}", host=host, port=port
        ) from exc
    except ssl.SSLError as exc:
        raise TLSError(f"TLS handshake with {where} failed: {_ssl_reason(exc)}",
                       host=host, port=port) from exc
    except ConnectionResetError as exc:
        raise ConnectionReset(f"connection reset by {where}", host=host, port=port) from exc
    except OSError as exc:
        if exc.errno in _UNREACHABLE:
            raise NetworkUnreachable(
                f"network unreachable: cannot reach {where} ({exc.strerror})", host=host, port=port
            ) from exc
        reason = exc.strerror or str(exc)
        raise ConnectError(f"could not connect to {where}: {reason}",
                           host=host, port=port) from exc


@contextmanager
def io_errors(host: str, port: int) -> Iterator[None]:
    """Translate failures on an established connection with ``host:port``."""
    where = _where(host, port)
    try:
        yield
    except WirekitError:
        raise
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
        raise ConnectionReset(f"connection reset by {where}", host=host, port=port) from exc
    except ssl.SSLError as exc:
        raise TLSError(f"TLS error with {where}: {_ssl_reason(exc)}", host=host, port=port) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise NetError(f"connection with {where} failed: {reason}", host=host, port=port) from exc


@contextmanager
def bind_errors(host: str, port: int) -> Iterator[None]:
    """Translate failures while binding a listener on ``host:port``."""
    where = _where(host, port)
    try:
        yield
    except WirekitError:
        raise
    except socket.gaierror as exc:
        raise ResolveError(f"could not resolve {host!r}", host=host, port=port) from exc
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use"
        elif exc.errno == errno.EACCES:
            reason = "permission denied (ports below 1024 need privileges)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "that address is not on this machine"
        else:
            reason = exc.strerror or str(exc)
        raise BindError(f"cannot listen on {where}: {reason}", host=host, port=port) from exc


def _ssl_reason(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)
