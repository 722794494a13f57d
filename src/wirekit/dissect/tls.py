"""TLS dissector: records, handshake reassembly, and every handshake message decoded.

Theory of operation
-------------------
One direction of a TLS connection is a byte stream of *records*::

    bytes --> RecordParser.feed() --> Record(content_type, version, fragment)
                                          |
            handshake records (plaintext) v
                          HandshakeReassembler.feed() --> (msg_type, body)
                                                              |
                                    decode_handshake(...) <---+  ClientHello, ServerHello, ...

A record is a 5-byte header (type, version, length) and a fragment.  Handshake messages
(1-byte type, 3-byte length) may span records and several may share one record, so the
reassembler buffers fragments and yields only complete messages.  ``TLSDirection`` ties the
three together for one direction of a capture and knows when a direction turns encrypted
(after its ChangeCipherSpec; in TLS 1.3 everything after ServerHello is an
``application_data`` record anyway), from which point handshake and alert records are
reported as ``EncryptedRecord`` instead of being misread as plaintext.

Some messages are decoded differently in TLS 1.2 and 1.3 (Certificate, CertificateRequest,
NewSessionTicket) or depend on the key exchange (ServerKeyExchange); a shared
``HandshakeContext`` carries what ServerHello chose, for both directions.

Modules: ``tls_wire`` (reading, records, reassembly), ``tls_extensions``, ``tls_messages``
(one dataclass per handshake message, ``decode_handshake``), ``tls_names`` (IANA tables);
this module is the public face (import from here) plus the per-direction driver.

Everything here is pure: bytes in, frozen dataclasses out.  Incomplete input returns an
empty list (or None); malformed input raises ``wirekit.errors.ParseError`` with the offset of
the damage within the bytes fed so far, and never IndexError or struct.error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from wirekit.dissect import tls_names as names
from wirekit.dissect.tls_extensions import Extension
from wirekit.dissect.tls_messages import (
    Certificate,
    CertificateEntry,
    CertificateRequest,
    CertificateStatus,
    CertificateVerify,
    ClientHello,
    ClientKeyExchange,
    EmptyMessage,
    EncryptedExtensions,
    Finished,
    HandshakeContext,
    HandshakeMessage,
    KeyUpdate,
    NewSessionTicket,
    ServerHello,
    ServerKeyExchange,
    UnknownHandshake,
    decode_handshake,
)
from wirekit.dissect.tls_wire import (
    ALERT,
    APPLICATION_DATA,
    CHANGE_CIPHER_SPEC,
    HANDSHAKE,
    HRR_RANDOM,
    MAX_FRAGMENT,
    MAX_HANDSHAKE,
    HandshakeReassembler,
    Record,
    RecordParser,
    encode_handshake,
    encode_record,
    parse_record,
)
from wirekit.errors import ParseError

__all__ = [
    "ALERT",
    "APPLICATION_DATA",
    "CHANGE_CIPHER_SPEC",
    "HANDSHAKE",
    "HRR_RANDOM",
    "MAX_FRAGMENT",
    "MAX_HANDSHAKE",
    "Alert",
    "ApplicationData",
    "Certificate",
    "CertificateEntry",
    "CertificateRequest",
    "CertificateStatus",
    "CertificateVerify",
    "ChangeCipherSpec",
    "ClientHello",
    "ClientKeyExchange",
    "EmptyMessage",
    "EncryptedExtensions",
    "EncryptedRecord",
    "Extension",
    "Finished",
    "HandshakeContext",
    "HandshakeMessage",
    "HandshakeReassembler",
    "KeyUpdate",
    "NewSessionTicket",
    "Record",
    "RecordParser",
    "ServerHello",
    "ServerKeyExchange",
    "TLSDirection",
    "TLSEvent",
    "UnknownHandshake",
    "decode_handshake",
    "encode_handshake",
    "encode_record",
    "parse_client_hello",
    "parse_record",
]


def parse_client_hello(data: bytes) -> ClientHello | None:
    """The ClientHello at the start of a client's byte stream, or None if incomplete.

    Like mitmproxy's ``parse_client_hello``: the hello may span several records.
    """
    records = RecordParser()
    hs = HandshakeReassembler()
    for record in records.feed(data):
        if record.content_type != HANDSHAKE:
            raise ParseError(f"expected a handshake record, got {record.type_name}",
                             offset=record.offset)
        for msg_type, body, offset in hs.feed(record.fragment):
            if msg_type != 1:
                raise ParseError(f"expected ClientHello, got handshake type {msg_type}",
                                 offset=offset)
            return ClientHello.decode(body, offset + 4)
    return None


# ------------------------------------------------------------------ non-handshake records


@dataclass(frozen=True, slots=True)
class Alert:
    type_name: ClassVar[str] = "Alert"

    level: int
    description: int

    @property
    def level_name(self) -> str:
        return names.ALERT_LEVELS.get(self.level, str(self.level))

    @property
    def description_name(self) -> str:
        return names.alert_name(self.description)

    @classmethod
    def decode(cls, fragment: bytes, base: int = 0) -> Alert:
        if len(fragment) != 2:
            raise ParseError(f"alert of {len(fragment)} bytes (must be 2)", offset=base)
        return cls(fragment[0], fragment[1])

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "level": self.level_name,
                "description": self.description_name}


@dataclass(frozen=True, slots=True)
class ChangeCipherSpec:
    type_name: ClassVar[str] = "ChangeCipherSpec"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name}


@dataclass(frozen=True, slots=True)
class ApplicationData:
    type_name: ClassVar[str] = "ApplicationData"

    length: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "length": self.length}


@dataclass(frozen=True, slots=True)
class EncryptedRecord:
    """A handshake or alert record after this direction's ChangeCipherSpec."""

    type_name: ClassVar[str] = "EncryptedRecord"

    content_type: int
    length: int

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name,
                "content_type": names.CONTENT_TYPES.get(self.content_type,
                                                        str(self.content_type)),
                "length": self.length}


TLSEvent = HandshakeMessage | Alert | ChangeCipherSpec | ApplicationData | EncryptedRecord


class TLSDirection:
    """One direction of a TLS connection: bytes in, decoded events out.

    ``feed(data) -> list[TLSEvent]``; share one ``HandshakeContext`` between the client and
    server directions of a connection so each side decodes version-dependent forms right.
    ``records`` counts records by content type name; ``application_bytes`` sums their sizes.
    """

    def __init__(self, context: HandshakeContext | None = None) -> None:
        self.context = context if context is not None else HandshakeContext()
        self.encrypted = False
        self.records: dict[str, int] = {}
        self.application_bytes = 0
        self._records = RecordParser()
        self._handshake = HandshakeReassembler()

    def feed(self, data: bytes) -> list[TLSEvent]:
        events: list[TLSEvent] = []
        for record in self._records.feed(data):
            name = record.type_name
            self.records[name] = self.records.get(name, 0) + 1
            events.extend(self._record(record))
        return events

    def _record(self, record: Record) -> list[TLSEvent]:
        ctype = record.content_type
        body_offset = record.offset + 5
        if ctype == APPLICATION_DATA:
            self.application_bytes += len(record.fragment)
            return [ApplicationData(len(record.fragment))]
        if ctype == CHANGE_CIPHER_SPEC:
            if record.fragment != b"\x01":
                raise ParseError("ChangeCipherSpec must be the single byte 1",
                                 offset=body_offset)
            self.encrypted = True
            return [ChangeCipherSpec()]
        if self.encrypted and ctype in (HANDSHAKE, ALERT):
            return [EncryptedRecord(ctype, len(record.fragment))]
        if ctype == ALERT:
            return [Alert.decode(record.fragment, body_offset)]
        if ctype == HANDSHAKE:
            if not record.fragment:
                raise ParseError("empty handshake record", offset=record.offset + 3)
            base = self._handshake_base(body_offset)
            out: list[TLSEvent] = []
            for msg_type, body, offset in self._handshake.feed(record.fragment):
                out.append(decode_handshake(msg_type, body, self.context, base + offset + 4))
            return out
        return [EncryptedRecord(ctype, len(record.fragment))]  # heartbeat: opaque

    def _handshake_base(self, body_offset: int) -> int:
        # Maps handshake-layer offsets to stream offsets.  Exact inside this record; for a
        # message that began in an earlier record it is off by the record headers between.
        return body_offset - self._handshake.fed
