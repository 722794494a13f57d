"""One exception tree for all of wirekit.

Every error carries a human message (``str(exc)``) fit to print as the single line a user
sees, plus structured fields.  Network errors also derive from the matching builtin, so
``except TimeoutError`` or ``except ConnectionRefusedError`` still catches ours.

    WirekitError
    ├── UsageError (ValueError)            exit code 2: bad address, bad flag value
    │   └── AddressError
    ├── ParseError (ValueError)            malformed bytes in a parser (has .offset)
    └── NetError (OSError)                 exit code 1: the operation failed
        ├── ConnectError                   could not establish a connection (.host, .port)
        │   ├── ResolveError               name does not resolve
        │   ├── ConnectRefused (ConnectionRefusedError)
        │   ├── ConnectTimeout (TimeoutError)
        │   └── NetworkUnreachable
        ├── ConnectionReset (ConnectionResetError)
        ├── PeerClosed (EOFError)          the peer closed before the bytes we needed
        ├── ReadTimeout (TimeoutError)
        ├── NoReply (TimeoutError)         UDP request unanswered after every retry
        ├── BindError                      could not listen on an address
        ├── TLSError                       handshake or verification failed
        │   └── CertificateError           the peer's certificate is not trusted (.verdicts)
        └── SSHError                       an SSH session failed
            ├── AuthError (PermissionError) authentication failed (.methods tried)
            ├── HostKeyError               host key unknown (.fingerprint) or changed
            │   ├── HostKeyUnknown
            │   └── HostKeyChanged
            └── ForwardRefused             the server refused a forward (.reason)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AddressError",
    "AuthError",
    "BindError",
    "CertificateError",
    "ConnectError",
    "ConnectRefused",
    "ConnectTimeout",
    "ConnectionReset",
    "ForwardRefused",
    "HostKeyChanged",
    "HostKeyError",
    "HostKeyUnknown",
    "NetError",
    "NetworkUnreachable",
    "NoReply",
    "ParseError",
    "PeerClosed",
    "ReadTimeout",
    "ResolveError",
    "SSHError",
    "TLSError",
    "UsageError",
    "WirekitError",
]


class WirekitError(Exception):
    """Root of every wirekit error.  ``str(exc)`` is a one-line human message."""

    exit_code = 1

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for name, value in fields.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return self.message


class UsageError(WirekitError, ValueError):
    """The user asked for something malformed (exit code 2)."""

    exit_code = 2


class AddressError(UsageError):
    """An address string does not follow wirekit's address syntax."""

    def __init__(self, message: str, *, text: str = "") -> None:
        super().__init__(message, text=text)


class ParseError(WirekitError, ValueError):
    """Bytes that cannot be what the parser expects.  ``offset`` locates the damage."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        if offset is not None:
            message = f"{message} (at offset {offset})"
        super().__init__(message, offset=offset)


class NetError(WirekitError, OSError):
    """A network operation failed (exit code 1)."""

    def __init__(self, message: str, **fields: Any) -> None:
        # OSError's own __init__ would interpret positional args as (errno, strerror).
        OSError.__init__(self, message)
        self.message = message
        for name, value in fields.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        return self.message


class ConnectError(NetError):
    """Could not connect to ``host:port``."""

    def __init__(self, message: str, *, host: str = "", port: int = 0, **fields: Any) -> None:
        super().__init__(message, host=host, port=port, **fields)


class ResolveError(ConnectError):
    """A host name does not resolve."""


class ConnectRefused(ConnectError, ConnectionRefusedError):
    """The peer actively refused the connection."""


class ConnectTimeout(ConnectError, TimeoutError):
    """The connection was not established in time."""


class NetworkUnreachable(ConnectError):
    """No route to the peer's network or host."""


class ConnectionReset(NetError, ConnectionResetError):
    """The peer reset an established connection."""


class PeerClosed(NetError, EOFError):
    """The peer closed the connection before the expected bytes arrived.

    ``partial`` holds what did arrive.
    """

    def __init__(self, message: str, *, partial: bytes = b"", **fields: Any) -> None:
        super().__init__(message, partial=partial, **fields)


class ReadTimeout(NetError, TimeoutError):
    """No data arrived in time."""


class NoReply(NetError, TimeoutError):
    """A UDP request got no reply after every retry."""


class BindError(NetError):
    """Could not listen on an address (in use, not permitted, not local)."""


class TLSError(NetError):
    """A TLS handshake failed."""


class CertificateError(TLSError):
    """The peer's certificate is not trusted.  ``verdicts`` lists why."""

    def __init__(self, message: str, *, verdicts: tuple[Any, ...] = (), **fields: Any) -> None:
        super().__init__(message, verdicts=verdicts, **fields)


class SSHError(NetError):
    """An SSH session could not be established or broke."""


class AuthError(SSHError, PermissionError):
    """The SSH server rejected every credential offered.  ``methods`` lists what was tried."""

    def __init__(self, message: str, *, methods: tuple[str, ...] = (), **fields: Any) -> None:
        super().__init__(message, methods=methods, **fields)


class HostKeyError(SSHError):
    """The server's host key is not trusted.  ``fingerprint`` is its SHA256 fingerprint."""

    def __init__(self, message: str, *, fingerprint: str = "", **fields: Any) -> None:
        super().__init__(message, fingerprint=fingerprint, **fields)


class HostKeyUnknown(HostKeyError):
    """The host has no entry in known_hosts (and trust on first use was not asked for)."""


class HostKeyChanged(HostKeyError):
    """known_hosts holds a different key for this host: possibly an attack."""


class ForwardRefused(SSHError):
    """The SSH server refused a port forward (``administratively prohibited`` etc.)."""
