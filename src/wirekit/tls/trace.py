"""Handshake trace from wirekit's own endpoint, via the ssl module's message callback.

Theory of operation
-------------------
``SSLContext._msg_callback`` (CPython >= 3.8, undocumented but stable; see ``ssl.py``) is
called by OpenSSL for every TLS protocol message a connection made from that context sends
or receives, *after* decryption: ``fn(conn, direction, version, content_type, msg_type,
data)``.  For handshake messages ``data`` is the whole message (4-byte header + body), so
TLS 1.3's EncryptedExtensions, Certificate, CertificateVerify, Finished and
NewSessionTicket are visible although they crossed the wire encrypted.  Record headers
(content types 0x100/0x101) are skipped, except that a ChangeCipherSpec is taken from its
record header (OpenSSL reports a received one no other way); application data never
reaches the callback.

Each message is decoded with ``wirekit.dissect.tls`` into ``{"direction": "client" |
"server", "type": ..., ...fields}``.  ``direction`` is the sender: a "write" on a client
connection is the client speaking.  A decoding failure never disturbs the connection (the
ssl module would re-raise it from the handshake): it is recorded as an entry with ``error``.

Usage::

    trace = HandshakeTrace.attach(ctx)      # before wrapping a socket / SSLObject
    ... handshake, then read once so TLS 1.3 NewSessionTickets are processed ...
    trace.messages                          # list of dicts in order
    trace.detach()

The callback lives on the context: every connection made from it is traced, each entry
tagged with a ``connection`` index (0 for the first); the trace keeps a reference to each
connection (so indexes stay unique) and at most ``limit`` entries, so attach it to a
context made for the connections to trace, not to a long-lived server context.
NewSessionTicket in TLS 1.3 arrives after the handshake and is only seen once the client
reads from the connection.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wirekit.dissect import tls as dtls
from wirekit.dissect import tls_names as names
from wirekit.errors import ParseError

__all__ = ["HandshakeTrace", "TraceEntry"]

_HANDSHAKE = 22
_ALERT = 21
_CHANGE_CIPHER_SPEC = 20
_RECORD_HEADER = 0x100


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One traced message: its sender, the decoded message (or the error), raw bytes."""

    direction: str
    connection: int
    content_type: int
    data: bytes
    message: dtls.TLSEvent | None
    error: str | None = None

    @property
    def type_name(self) -> str:
        if self.message is not None:
            return self.message.type_name
        if self.content_type == _HANDSHAKE and self.data:
            return names.HANDSHAKE_TYPES.get(self.data[0], f"unknown_{self.data[0]}")
        return names.CONTENT_TYPES.get(self.content_type, str(self.content_type))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"direction": self.direction}
        if self.message is not None:
            out.update(self.message.to_dict())
        else:
            out["type"] = self.type_name
            out["error"] = self.error
            out["length"] = len(self.data)
        return out


class HandshakeTrace:
    """Records every TLS message of connections made from one ``SSLContext``."""

    def __init__(self, limit: int = 10_000) -> None:
        self.entries: list[TraceEntry] = []
        self.limit = limit
        self.dropped = 0  # messages not recorded because ``limit`` was reached
        self._lock = threading.Lock()
        self._conns: dict[int, tuple[int, dtls.HandshakeContext, object]] = {}
        self._ctx: ssl.SSLContext | None = None
        self._previous: Callable[..., Any] | None = None

    @classmethod
    def attach(cls, ctx: ssl.SSLContext, limit: int = 10_000) -> HandshakeTrace:
        """Start tracing ``ctx`` (chains any callback already set on it).

        At most ``limit`` messages are kept (memory stays bounded on a busy context).
        """
        trace = cls(limit)
        trace._ctx = ctx
        trace._previous = getattr(ctx, "_msg_callback", None)
        ctx._msg_callback = trace._callback  # type: ignore[attr-defined]
        return trace

    def detach(self) -> None:
        """Stop tracing; restore the callback the context had before."""
        if self._ctx is not None:
            self._ctx._msg_callback = self._previous  # type: ignore[attr-defined]
            self._ctx = None

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The trace as JSON-ready dicts, in order (``connection`` added if several)."""
        with self._lock:
            entries = list(self.entries)
        several = len({e.connection for e in entries}) > 1
        out = []
        for entry in entries:
            d = entry.to_dict()
            if several:
                d["connection"] = entry.connection
            out.append(d)
        return out

    def types(self, direction: str | None = None) -> list[str]:
        """Message type names in order, optionally of one sender only."""
        return [e.type_name for e in list(self.entries)
                if direction is None or e.direction == direction]

    def _callback(self, conn: object, direction: str, version: object, content_type: object,
                  msg_type: object, data: bytes) -> None:
        if self._previous is not None:
            self._previous(conn, direction, version, content_type, msg_type, data)
        ctype = int(content_type)  # type: ignore[call-overload]
        if ctype == _RECORD_HEADER and data[:1] == b"\x14":
            # OpenSSL 3 reports a *received* ChangeCipherSpec only by its record header, a
            # sent one by both: take it from the header in both directions.
            ctype = _CHANGE_CIPHER_SPEC
        elif ctype not in (_HANDSHAKE, _ALERT):
            return  # other record headers, inner content types, CCS bodies: skip
        server_side = bool(getattr(conn, "server_side", False))
        sender = "server" if (direction == "write") == server_side else "client"
        with self._lock:
            if len(self.entries) >= self.limit:
                self.dropped += 1
                return
            index, hs_ctx, _ = self._conns.setdefault(
                id(conn), (len(self._conns), dtls.HandshakeContext(), conn)
            )
            self.entries.append(self._decode(sender, index, ctype, bytes(data), hs_ctx))

    @staticmethod
    def _decode(sender: str, index: int, ctype: int, data: bytes,
                hs_ctx: dtls.HandshakeContext) -> TraceEntry:
        try:
            message: dtls.TLSEvent
            if ctype == _HANDSHAKE:
                if len(data) < 4 or int.from_bytes(data[1:4], "big") != len(data) - 4:
                    raise ParseError("handshake message length does not match", offset=1)
                message = dtls.decode_handshake(data[0], data[4:], hs_ctx, 4)
            elif ctype == _ALERT:
                message = dtls.Alert.decode(data)
            else:
                message = dtls.ChangeCipherSpec()
            return TraceEntry(sender, index, ctype, data, message)
        except Exception as exc:  # never let a decoding problem break the connection
            return TraceEntry(sender, index, ctype, data, None, str(exc))
