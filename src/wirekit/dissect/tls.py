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

Everything here is pure: bytes in, frozen dataclasses out.  Incomplete input returns an
empty list (or None); malformed input raises ``wirekit.errors.ParseError`` with the offset of
the damage within the bytes fed so far, and never IndexError or struct.error.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

from wirekit.dissect import tls_names as names
from wirekit.errors import ParseError

__all__ = [
    "HRR_RANDOM",
    "MAX_FRAGMENT",
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

CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24

#: Largest record fragment allowed on the wire (TLSCiphertext: 2^14 + 2048, RFC 5246 6.2.3).
MAX_FRAGMENT = 2**14 + 2048
#: Largest handshake message the reassembler buffers before calling the stream garbage.
MAX_HANDSHAKE = 2**18

#: ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3): SHA-256("HelloRetryRequest").
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

_HEX = bytes.hex


# --------------------------------------------------------------------------------- reading


class _Reader:
    """Bounds-checked reads over ``data``; errors name ``base + position``."""

    __slots__ = ("base", "data", "end", "pos", "what")

    def __init__(self, data: bytes, what: str, base: int = 0) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.base = base
        self.what = what

    def fail(self, message: str) -> ParseError:
        return ParseError(f"{self.what}: {message}", offset=self.base + self.pos)

    def need(self, n: int, field_name: str) -> None:
        if self.pos + n > self.end:
            raise self.fail(f"{field_name} needs {n} bytes, {self.end - self.pos} left")

    def u8(self, field_name: str) -> int:
        self.need(1, field_name)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self, field_name: str) -> int:
        pos = self.pos
        if pos + 2 > self.end:
            self.need(2, field_name)
        data = self.data
        self.pos = pos + 2
        return (data[pos] << 8) | data[pos + 1]

    def u24(self, field_name: str) -> int:
        self.need(3, field_name)
        v = int.from_bytes(self.data[self.pos : self.pos + 3], "big")
        self.pos += 3
        return v

    def u32(self, field_name: str) -> int:
        self.need(4, field_name)
        v = int.from_bytes(self.data[self.pos : self.pos + 4], "big")
        self.pos += 4
        return v

    def raw(self, n: int, field_name: str) -> bytes:
        self.need(n, field_name)
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def vec(self, length_size: int, field_name: str, minimum: int = 0) -> bytes:
        """A length-prefixed opaque vector (``opaque x<minimum..2^(8*length_size)-1>``)."""
        n = int.from_bytes(self.raw(length_size, field_name + " length"), "big")
        if n < minimum:
            self.pos -= length_size
            raise self.fail(f"{field_name} shorter than {minimum} bytes")
        return self.raw(n, field_name)

    def sub(self, length_size: int, field_name: str, minimum: int = 0) -> _Reader:
        start = self.base + self.pos + length_size
        return _Reader(self.vec(length_size, field_name, minimum), self.what, start)

    def u16_list(self, length_size: int, field_name: str, minimum: int = 0) -> tuple[int, ...]:
        r = self.sub(length_size, field_name, minimum)
        if r.end % 2:
            raise r.fail(f"{field_name} has an odd length {r.end}")
        # Length checked just above, so unpack_from cannot raise struct.error.
        return struct.unpack_from(f">{r.end // 2}H", r.data)

    def left(self) -> int:
        return self.end - self.pos

    def rest(self) -> bytes:
        return self.raw(self.left(), "rest")

    def done(self) -> None:
        if self.pos != self.end:
            raise self.fail(f"{self.end - self.pos} unexpected trailing bytes")


# --------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Record:
    """One TLS record.  ``offset`` is where its header starts in the stream fed so far."""

    content_type: int
    version: int
    fragment: bytes
    offset: int = 0

    @property
    def type_name(self) -> str:
        return names.CONTENT_TYPES.get(self.content_type, str(self.content_type))

    @property
    def version_name(self) -> str:
        return names.version_name(self.version)

    def encode(self) -> bytes:
        return encode_record(self.content_type, self.version, self.fragment)


def encode_record(content_type: int, version: int, fragment: bytes) -> bytes:
    """The bytes of one record (no fragmentation: ``fragment`` must fit in one)."""
    if len(fragment) > 0xFFFF:
        raise ValueError("record fragment longer than 65535 bytes")
    return bytes((content_type, version >> 8, version & 0xFF)) + len(fragment).to_bytes(
        2, "big"
    ) + fragment


def _check_header(data: bytes | bytearray, pos: int, base: int) -> int:
    """Validate the 5-byte record header at ``pos``; return the fragment length."""
    content_type = data[pos]
    if content_type not in names.CONTENT_TYPES:
        raise ParseError(f"not a TLS record: content type {content_type}", offset=base + pos)
    if data[pos + 1] != 3 or data[pos + 2] > 4:
        version = int.from_bytes(data[pos + 1 : pos + 3], "big")
        at = base + pos + (1 if data[pos + 1] != 3 else 2)
        raise ParseError(f"not a TLS record: version 0x{version:04x}", offset=at)
    length = int.from_bytes(data[pos + 3 : pos + 5], "big")
    if length > MAX_FRAGMENT:
        raise ParseError(
            f"TLS record length {length} exceeds {MAX_FRAGMENT}", offset=base + pos + 3
        )
    return length


def parse_record(data: bytes, offset: int = 0) -> tuple[Record, int] | None:
    """The record at ``data[offset:]`` and the offset after it, or None if incomplete."""
    if len(data) - offset < 5:
        if len(data) > offset:
            # Reject garbage early: the first bytes alone can show it is not TLS.
            _check_prefix(data[offset:], offset)
        return None
    length = _check_header(data, offset, 0)
    end = offset + 5 + length
    if len(data) < end:
        return None
    version = int.from_bytes(data[offset + 1 : offset + 3], "big")
    return Record(data[offset], version, bytes(data[offset + 5 : end]), offset), end


def _check_prefix(prefix: bytes, base: int) -> None:
    if prefix[0] not in names.CONTENT_TYPES:
        raise ParseError(f"not a TLS record: content type {prefix[0]}", offset=base)
    if len(prefix) > 1 and prefix[1] != 3:
        raise ParseError(f"not a TLS record: version major {prefix[1]}", offset=base + 1)
    if len(prefix) > 2 and prefix[2] > 4:
        raise ParseError(f"not a TLS record: version minor {prefix[2]}", offset=base + 2)


class RecordParser:
    """Incremental record parser for one direction: ``feed(bytes) -> list[Record]``.

    After a ParseError the parser is broken and keeps raising (a byte stream cannot be
    resynchronised reliably).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._consumed = 0  # stream offset of _buf[0]
        self._error: ParseError | None = None

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet returned in a record."""
        return self._consumed

    @property
    def pending(self) -> int:
        """Bytes buffered waiting for the rest of a record."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Record]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[Record] = []
        buf = self._buf
        pos = 0
        try:
            while True:
                avail = len(buf) - pos
                if avail < 5:
                    if avail:
                        _check_prefix(bytes(buf[pos:]), self._consumed + pos)
                    break
                length = _check_header(buf, pos, self._consumed)
                end = pos + 5 + length
                if end > len(buf):
                    break
                version = (buf[pos + 1] << 8) | buf[pos + 2]
                out.append(Record(buf[pos], version, bytes(buf[pos + 5 : end]),
                                  self._consumed + pos))
                pos = end
        except ParseError as exc:
            self._error = exc
            raise
        finally:
            del buf[:pos]
            self._consumed += pos
        return out


class HandshakeReassembler:
    """Handshake-record fragments in, complete ``(msg_type, body, offset)`` triples out.

    ``offset`` counts handshake-layer bytes (the concatenation of fragments).
    """

    def __init__(self, max_message: int = MAX_HANDSHAKE) -> None:
        self._buf = bytearray()
        self._consumed = 0
        self._max = max_message

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def fed(self) -> int:
        """Handshake-layer bytes fed so far."""
        return self._consumed + len(self._buf)

    def feed(self, fragment: bytes) -> list[tuple[int, bytes, int]]:
        self._buf += fragment
        buf = self._buf
        out: list[tuple[int, bytes, int]] = []
        pos = 0
        try:
            while len(buf) - pos >= 4:
                length = int.from_bytes(buf[pos + 1 : pos + 4], "big")
                if length > self._max:
                    raise ParseError(
                        f"handshake message length {length} exceeds {self._max}",
                        offset=self._consumed + pos + 1,
                    )
                end = pos + 4 + length
                if end > len(buf):
                    break
                out.append((buf[pos], bytes(buf[pos + 4 : end]), self._consumed + pos))
                pos = end
        finally:
            del buf[:pos]
            self._consumed += pos
        return out


def encode_handshake(msg_type: int, body: bytes) -> bytes:
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


# ------------------------------------------------------------------------------ extensions


def _names(values: tuple[int, ...], lookup: Any) -> list[str]:
    return [lookup(v) for v in values]


# Extensions whose data can never be empty; every other one may be (flags, acknowledgements).
_NEEDS_DATA = frozenset({1, 10, 11, 13, 16, 27, 28, 41, 43, 44, 45, 50, 51, 0xFF01})


def _decode_extension(ext_type: int, data: bytes, where: str, base: int) -> dict[str, Any]:
    """Decoded content of one extension, as JSON-ready fields (may be empty)."""
    r = _Reader(data, f"{names.extension_name(ext_type)} extension", base)
    info: dict[str, Any] = {}
    if names.is_grease(ext_type) or (not data and ext_type not in _NEEDS_DATA):
        return info
    if ext_type == 0:  # server_name
        if not data:
            return info  # the server's empty acknowledgement
        lst = r.sub(2, "server_name_list", 1)
        hosts: list[str] = []
        while lst.left():
            name_type = lst.u8("name_type")
            host = lst.vec(2, "host_name", 1)
            if name_type == 0:
                hosts.append(host.decode("ascii", errors="replace"))
        info["server_name"] = hosts[0] if hosts else None
        if len(hosts) > 1:
            info["server_names"] = hosts
    elif ext_type == 16:  # ALPN
        lst = r.sub(2, "protocol_name_list", 2)
        protos: list[str] = []
        while lst.left():
            protos.append(lst.vec(1, "protocol_name", 1).decode("ascii", errors="replace"))
        info["protocols"] = protos
    elif ext_type == 43:  # supported_versions
        if where == "ClientHello":
            info["versions"] = _names(r.u16_list(1, "versions", 2), names.version_name)
        else:
            info["version"] = names.version_name(r.u16("selected_version"))
    elif ext_type == 10:  # supported_groups
        info["groups"] = _names(r.u16_list(2, "named_group_list", 2), names.group_name)
    elif ext_type == 51:  # key_share
        if where == "ClientHello":
            lst = r.sub(2, "client_shares")
            shares: list[dict[str, Any]] = []
            while lst.left():
                group = lst.u16("group")
                key = lst.vec(2, "key_exchange", 1)
                shares.append({"group": names.group_name(group), "key_length": len(key)})
            info["groups"] = [s["group"] for s in shares]
            info["shares"] = shares
        elif where == "HelloRetryRequest":
            info["selected_group"] = names.group_name(r.u16("selected_group"))
        else:
            info["group"] = names.group_name(r.u16("group"))
            info["key_length"] = len(r.vec(2, "key_exchange", 1))
    elif ext_type in (13, 50):  # signature_algorithms(_cert)
        info["schemes"] = _names(
            r.u16_list(2, "supported_signature_algorithms", 2), names.signature_scheme_name
        )
    elif ext_type == 35:  # session_ticket
        info["ticket_length"] = r.left()
        r.rest()
    elif ext_type == 45:  # psk_key_exchange_modes
        modes = r.vec(1, "ke_modes", 1)
        info["modes"] = [{0: "psk_ke", 1: "psk_dhe_ke"}.get(m, str(m)) for m in modes]
    elif ext_type == 11:  # ec_point_formats
        fmts = r.vec(1, "ec_point_format_list", 1)
        info["formats"] = [
            {0: "uncompressed", 1: "ansiX962_compressed_prime",
             2: "ansiX962_compressed_char2"}.get(f, str(f)) for f in fmts
        ]
    elif ext_type == 0xFF01:  # renegotiation_info
        info["renegotiated_connection_length"] = len(r.vec(1, "renegotiated_connection"))
    elif ext_type == 5:  # status_request
        if where in ("ClientHello", "CertificateRequest"):
            status_type = r.u8("status_type")
            info["status_type"] = "ocsp" if status_type == 1 else str(status_type)
            r.rest()
        else:  # in a TLS 1.3 Certificate entry: the OCSP response itself
            info["response_length"] = r.left()
            r.rest()
    elif ext_type == 21:  # padding
        info["padding_length"] = r.left()
        r.rest()
    elif ext_type == 41:  # pre_shared_key
        if where == "ClientHello":
            ids = r.sub(2, "identities", 7)
            identities: list[dict[str, Any]] = []
            while ids.left():
                ident = ids.vec(2, "identity", 1)
                age = ids.u32("obfuscated_ticket_age")
                identities.append({"identity_length": len(ident), "obfuscated_ticket_age": age})
            binders = r.sub(2, "binders", 33)
            count = 0
            while binders.left():
                binders.vec(1, "binder", 32)
                count += 1
            info["identities"] = identities
            info["binders"] = count
        else:
            info["selected_identity"] = r.u16("selected_identity")
    elif ext_type == 42:  # early_data
        if where == "NewSessionTicket":
            info["max_early_data_size"] = r.u32("max_early_data_size")
    elif ext_type == 28:  # record_size_limit
        info["limit"] = r.u16("record_size_limit")
    elif ext_type == 27:  # compress_certificate
        algs = r.vec(1, "algorithms", 2)
        if len(algs) % 2:
            raise r.fail("algorithms has an odd length")
        info["algorithms"] = [
            {1: "zlib", 2: "brotli", 3: "zstd"}.get(a, str(a))
            for a in (int.from_bytes(algs[i : i + 2], "big") for i in range(0, len(algs), 2))
        ]
    elif ext_type == 44:  # cookie
        info["cookie_length"] = len(r.vec(2, "cookie", 1))
    elif ext_type == 1:  # max_fragment_length
        code = r.u8("max_fragment_length")
        info["max_fragment_length"] = {1: 512, 2: 1024, 3: 2048, 4: 4096}.get(code, code)
    elif ext_type == 47:  # certificate_authorities
        lst = r.sub(2, "authorities", 3)
        count = 0
        while lst.left():
            lst.vec(2, "DistinguishedName", 1)
            count += 1
        info["authorities"] = count
    elif ext_type in (18, 0xFE0D, 57, 52):  # sct, ECH, QUIC params, transparency: opaque
        r.rest()
    else:
        return info  # unknown or no-content extension: nothing further to decode
    r.done()
    return info


@dataclass(frozen=True, slots=True)
class Extension:
    """One extension: ``type`` and raw ``data``, plus ``info`` decoded from it."""

    type: int
    data: bytes
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        if names.is_grease(self.type):
            return "grease"
        return names.EXTENSIONS.get(self.type, f"unknown_{self.type}")

    def encode(self) -> bytes:
        return self.type.to_bytes(2, "big") + len(self.data).to_bytes(2, "big") + self.data

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "length": len(self.data)}
        out.update(self.info)
        return out


def _extensions(r: _Reader, where: str, *, optional: bool = True) -> tuple[Extension, ...]:
    if optional and not r.left():
        return ()
    lst = r.sub(2, "extensions")
    exts: list[Extension] = []
    seen: set[int] = set()
    while lst.left():
        start = lst.base + lst.pos
        ext_type = lst.u16("extension_type")
        data = lst.vec(2, "extension_data")
        if ext_type in seen:
            raise ParseError(
                f"{where}: duplicate {names.extension_name(ext_type)} extension", offset=start
            )
        seen.add(ext_type)
        exts.append(Extension(ext_type, data, _decode_extension(ext_type, data, where, start + 4)))
    return tuple(exts)


def _encode_extensions(exts: tuple[Extension, ...]) -> bytes:
    body = b"".join(e.encode() for e in exts)
    return len(body).to_bytes(2, "big") + body


def _find(exts: tuple[Extension, ...], ext_type: int) -> Extension | None:
    return next((e for e in exts if e.type == ext_type), None)


# -------------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class ClientHello:
    msg_type: ClassVar[int] = 1
    type_name: ClassVar[str] = "ClientHello"

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...]
    extensions: tuple[Extension, ...] = ()

    @property
    def cipher_suite_names(self) -> list[str]:
        return [names.cipher_suite_name(c) for c in self.cipher_suites]

    def extension(self, ext_type: int) -> Extension | None:
        return _find(self.extensions, ext_type)

    @property
    def sni(self) -> str | None:
        ext = self.extension(0)
        return None if ext is None else ext.info.get("server_name")

    @property
    def alpn(self) -> list[str]:
        ext = self.extension(16)
        return [] if ext is None else list(ext.info.get("protocols", []))

    @property
    def supported_versions(self) -> list[str]:
        ext = self.extension(43)
        return [] if ext is None else list(ext.info.get("versions", []))

    @classmethod
    def decode(cls, body: bytes, base: int = 0) -> ClientHello:
        r = _Reader(body, "ClientHello", base)
        version = r.u16("legacy_version")
        random = r.raw(32, "random")
        session_id = r.vec(1, "legacy_session_id")
        if len(session_id) > 32:
            raise r.fail(f"session id of {len(session_id)} bytes (max 32)")
        suites = r.u16_list(2, "cipher_suites", 2)
        compression = tuple(r.vec(1, "legacy_compression_methods", 1))
        exts = _extensions(r, "ClientHello")
        r.done()
        return cls(version, random, session_id, suites, compression, exts)

    def encode(self) -> bytes:
        suites = b"".join(c.to_bytes(2, "big") for c in self.cipher_suites)
        out = (self.legacy_version.to_bytes(2, "big") + self.random
               + bytes((len(self.session_id),)) + self.session_id
               + len(suites).to_bytes(2, "big") + suites
               + bytes((len(self.compression_methods),)) + bytes(self.compression_methods))
        if self.extensions:
            out += _encode_extensions(self.extensions)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "version": names.version_name(self.legacy_version),
            "random": _HEX(self.random),
            "session_id": _HEX(self.session_id),
            "sni": self.sni,
            "alpn": self.alpn,
            "supported_versions": self.supported_versions,
            "cipher_suites": self.cipher_suite_names,
            "compression_methods": list(self.compression_methods),
            "extensions": [e.to_dict() for e in self.extensions],
        }


@dataclass(frozen=True, slots=True)
class ServerHello:
    """ServerHello, or a HelloRetryRequest (same wire type, special random)."""

    msg_type: ClassVar[int] = 2

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[Extension, ...] = ()

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HRR_RANDOM

    @property
    def type_name(self) -> str:
        return "HelloRetryRequest" if self.is_hello_retry_request else "ServerHello"

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions overrides legacy_version (TLS 1.3)."""
        ext = _find(self.extensions, 43)
        if ext is not None and len(ext.data) == 2:
            return int.from_bytes(ext.data, "big")
        return self.legacy_version

    @property
    def cipher_suite_name(self) -> str:
        return names.cipher_suite_name(self.cipher_suite)

    def extension(self, ext_type: int) -> Extension | None:
        return _find(self.extensions, ext_type)

    @classmethod
    def decode(cls, body: bytes, base: int = 0) -> ServerHello:
        r = _Reader(body, "ServerHello", base)
        version = r.u16("legacy_version")
        random = r.raw(32, "random")
        session_id = r.vec(1, "legacy_session_id_echo")
        if len(session_id) > 32:
            raise r.fail(f"session id of {len(session_id)} bytes (max 32)")
        suite = r.u16("cipher_suite")
        compression = r.u8("legacy_compression_method")
        where = "HelloRetryRequest" if random == HRR_RANDOM else "ServerHello"
        exts = _extensions(r, where)
        r.done()
        return cls(version, random, session_id, suite, compression, exts)

    def encode(self) -> bytes:
        out = (self.legacy_version.to_bytes(2, "big") + self.random
               + bytes((len(self.session_id),)) + self.session_id
               + self.cipher_suite.to_bytes(2, "big") + bytes((self.compression_method,)))
        if self.extensions:
            out += _encode_extensions(self.extensions)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "version": names.version_name(self.version),
            "legacy_version": names.version_name(self.legacy_version),
            "random": _HEX(self.random),
            "session_id": _HEX(self.session_id),
            "cipher_suite": self.cipher_suite_name,
            "compression_method": self.compression_method,
            "extensions": [e.to_dict() for e in self.extensions],
        }


@dataclass(frozen=True, slots=True)
class EncryptedExtensions:
    msg_type: ClassVar[int] = 8
    type_name: ClassVar[str] = "EncryptedExtensions"

    extensions: tuple[Extension, ...]

    @classmethod
    def decode(cls, body: bytes, base: int = 0) -> EncryptedExtensions:
        r = _Reader(body, "EncryptedExtensions", base)
        exts = _extensions(r, "EncryptedExtensions", optional=False)
        r.done()
        return cls(exts)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "extensions": [e.to_dict() for e in self.extensions]}


@dataclass(frozen=True, slots=True)
class CertificateEntry:
    der: bytes
    extensions: tuple[Extension, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"length": len(self.der)}
        out.update(_x509_names(self.der))
        if self.extensions:
            out["extensions"] = [e.to_dict() for e in self.extensions]
        return out


def _x509_names(der: bytes) -> dict[str, Any]:
    """Subject and issuer of a DER certificate, if ``cryptography`` can read it (pure)."""
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - cryptography is a dependency
        return {}
    try:
        with warnings.catch_warnings():
            # e.g. "serial number which wasn't positive": worth showing, not worth a warning
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            return {"subject": cert.subject.rfc4514_string(),
                    "issuer": cert.issuer.rfc4514_string()}
    except Exception:  # any malformed DER: report it without names
        return {"subject": None, "issuer": None}


@dataclass(frozen=True, slots=True)
class Certificate:
    """Certificate message.  ``tls13`` selects the form (context byte, per-entry extensions)."""

    msg_type: ClassVar[int] = 11
    type_name: ClassVar[str] = "Certificate"

    entries: tuple[CertificateEntry, ...]
    tls13: bool = False
    request_context: bytes = b""

    @property
    def certificates(self) -> list[bytes]:
        return [e.der for e in self.entries]

    @classmethod
    def decode(cls, body: bytes, base: int = 0, *, tls13: bool | None = None) -> Certificate:
        if tls13 is None:
            tls13 = _looks_like_tls13_certificate(body)
        r = _Reader(body, "Certificate", base)
        context = r.vec(1, "certificate_request_context") if tls13 else b""
        lst = r.sub(3, "certificate_list")
        entries: list[CertificateEntry] = []
        while lst.left():
            der = lst.vec(3, "cert_data", 1)
            exts = _extensions(lst, "Certificate", optional=False) if tls13 else ()
            entries.append(CertificateEntry(der, exts))
        r.done()
        return cls(tuple(entries), tls13, context)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "certificates": [e.to_dict() for e in self.entries]}


def _looks_like_tls13_certificate(body: bytes) -> bool:
    """Without context: TLS 1.2's 3-byte list length covers the body exactly."""
    return not (len(body) >= 3 and int.from_bytes(body[:3], "big") == len(body) - 3)


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    msg_type: ClassVar[int] = 13
    type_name: ClassVar[str] = "CertificateRequest"

    tls13: bool
    certificate_types: tuple[int, ...] = ()
    signature_schemes: tuple[int, ...] = ()
    authorities: int = 0
    request_context: bytes = b""
    extensions: tuple[Extension, ...] = ()

    @classmethod
    def decode(cls, body: bytes, base: int = 0, *, tls13: bool = False) -> CertificateRequest:
        r = _Reader(body, "CertificateRequest", base)
        if tls13:
            context = r.vec(1, "certificate_request_context")
            exts = _extensions(r, "CertificateRequest", optional=False)
            r.done()
            sig = _find(exts, 13)
            schemes = () if sig is None else _Reader(sig.data, "").u16_list(2, "", 2)
            return cls(True, (), schemes, 0, context, exts)
        types = tuple(r.vec(1, "certificate_types", 1))
        schemes = r.u16_list(2, "supported_signature_algorithms", 2) if r.left() > 2 else ()
        cas = r.sub(2, "certificate_authorities")
        count = 0
        while cas.left():
            cas.vec(2, "DistinguishedName", 1)
            count += 1
        r.done()
        return cls(False, types, schemes, count)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type_name,
            "signature_schemes": _names(self.signature_schemes, names.signature_scheme_name),
        }
        if self.tls13:
            out["extensions"] = [e.to_dict() for e in self.extensions]
        else:
            out["certificate_types"] = list(self.certificate_types)
            out["authorities"] = self.authorities
        return out


@dataclass(frozen=True, slots=True)
class ServerKeyExchange:
    """ServerKeyExchange (TLS <= 1.2).  ``kex``: "ecdhe", "dhe", or "unknown"."""

    msg_type: ClassVar[int] = 12
    type_name: ClassVar[str] = "ServerKeyExchange"

    kex: str
    length: int
    group: int | None = None
    public_key_length: int = 0
    dh_prime_bits: int = 0
    signature_scheme: int | None = None
    signature_length: int = 0

    @classmethod
    def decode(cls, body: bytes, base: int = 0, *, kex: str | None = None) -> ServerKeyExchange:
        if kex is None:
            kex = "ecdhe" if body[:1] == b"\x03" else "unknown"
        r = _Reader(body, "ServerKeyExchange", base)
        if kex == "ecdhe":
            curve_type = r.u8("curve_type")
            if curve_type != 3:
                raise ParseError(f"ServerKeyExchange: curve_type {curve_type} is not "
                                 "named_curve", offset=base)
            group = r.u16("namedcurve")
            point = r.vec(1, "public", 1)
            scheme, sig_len = _signature(r)
            return cls(kex, len(body), group, len(point), 0, scheme, sig_len)
        if kex == "dhe":
            p = r.vec(2, "dh_p", 1)
            r.vec(2, "dh_g", 1)
            ys = r.vec(2, "dh_Ys", 1)
            scheme, sig_len = _signature(r)
            bits = int.from_bytes(p, "big").bit_length()
            return cls(kex, len(body), None, len(ys), bits, scheme, sig_len)
        return cls(kex, len(body))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type_name, "kex": self.kex, "length": self.length}
        if self.group is not None:
            out["group"] = names.group_name(self.group)
        if self.dh_prime_bits:
            out["dh_prime_bits"] = self.dh_prime_bits
        if self.kex != "unknown":
            out["public_key_length"] = self.public_key_length
        if self.signature_scheme is not None:
            out["signature_scheme"] = names.signature_scheme_name(self.signature_scheme)
            out["signature_length"] = self.signature_length
        return out


def _signature(r: _Reader) -> tuple[int | None, int]:
    """A TLS 1.2 digitally-signed struct (scheme + signature), or none at all (anon)."""
    if not r.left():
        return None, 0
    scheme = r.u16("signature_algorithm")
    sig = r.vec(2, "signature", 1)
    r.done()
    return scheme, len(sig)


@dataclass(frozen=True, slots=True)
class ClientKeyExchange:
    msg_type: ClassVar[int] = 16
    type_name: ClassVar[str] = "ClientKeyExchange"

    length: int
    public_key_length: int | None = None

    @classmethod
    def decode(cls, body: bytes, base: int = 0, *, kex: str | None = None) -> ClientKeyExchange:
        r = _Reader(body, "ClientKeyExchange", base)
        if kex == "ecdhe":
            n = len(r.vec(1, "ecdh_Yc", 1))
            r.done()
            return cls(len(body), n)
        if kex in ("dhe", "rsa"):
            n = len(r.vec(2, "exchange_keys", 1))
            r.done()
            return cls(len(body), n)
        return cls(len(body))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type_name, "length": self.length}
        if self.public_key_length is not None:
            out["public_key_length"] = self.public_key_length
        return out


@dataclass(frozen=True, slots=True)
class CertificateVerify:
    msg_type: ClassVar[int] = 15
    type_name: ClassVar[str] = "CertificateVerify"

    signature_scheme: int
    signature_length: int

    @classmethod
    def decode(cls, body: bytes, base: int = 0) -> CertificateVerify:
        r = _Reader(body, "CertificateVerify", base)
        scheme = r.u16("algorithm")
        sig = r.vec(2, "signature", 1)
        r.done()
        return cls(scheme, len(sig))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name,
                "signature_scheme": names.signature_scheme_name(self.signature_scheme),
                "signature_length": self.signature_length}


@dataclass(frozen=True, slots=True)
class Finished:
    msg_type: ClassVar[int] = 20
    type_name: ClassVar[str] = "Finished"

    verify_data: bytes

    @classmethod
    def decode(cls, body: bytes, base: int = 0) -> Finished:
        if len(body) < 12:
            raise ParseError(f"Finished: verify_data of {len(body)} bytes (min 12)", offset=base)
        return cls(body)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "verify_data_length": len(self.verify_data)}


@dataclass(frozen=True, slots=True)
class NewSessionTicket:
    msg_type: ClassVar[int] = 4
    type_name: ClassVar[str] = "NewSessionTicket"

    lifetime: int
    ticket_length: int
    tls13: bool = False
    age_add: int | None = None
    nonce: bytes = b""
    extensions: tuple[Extension, ...] = ()

    @classmethod
    def decode(cls, body: bytes, base: int = 0, *, tls13: bool | None = None
               ) -> NewSessionTicket:
        if tls13 is None:
            # TLS 1.2: lifetime(4) + ticket<0..2^16-1> and nothing else.
            tls13 = not (len(body) >= 6 and int.from_bytes(body[4:6], "big") == len(body) - 6)
        r = _Reader(body, "NewSessionTicket", base)
        lifetime = r.u32("ticket_lifetime")
        if not tls13:
            ticket = r.vec(2, "ticket")
            r.done()
            return cls(lifetime, len(ticket))
        age_add = r.u32("ticket_age_add")
        nonce = r.vec(1, "ticket_nonce")
        ticket = r.vec(2, "ticket", 1)
        exts = _extensions(r, "NewSessionTicket", optional=False)
        r.done()
        return cls(lifetime, len(ticket), True, age_add, nonce, exts)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type_name, "lifetime": self.lifetime,
                               "ticket_length": self.ticket_length}
        if self.tls13:
            out["age_add"] = self.age_add
            out["nonce"] = _HEX(self.nonce)
            out["extensions"] = [e.to_dict() for e in self.extensions]
        return out


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    msg_type: ClassVar[int] = 24
    type_name: ClassVar[str] = "KeyUpdate"

    update_requested: bool

    @classmethod
    def decode(cls, body: bytes, base: int = 0) -> KeyUpdate:
        if len(body) != 1 or body[0] > 1:
            raise ParseError("KeyUpdate: request_update must be one byte, 0 or 1", offset=base)
        return cls(body[0] == 1)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "update_requested": self.update_requested}


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    msg_type: ClassVar[int] = 22
    type_name: ClassVar[str] = "CertificateStatus"

    status_type: int
    response_length: int

    @classmethod
    def decode(cls, body: bytes, base: int = 0) -> CertificateStatus:
        r = _Reader(body, "CertificateStatus", base)
        status_type = r.u8("status_type")
        response = r.vec(3, "response", 1)
        r.done()
        return cls(status_type, len(response))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name,
                "status_type": "ocsp" if self.status_type == 1 else self.status_type,
                "response_length": self.response_length}


@dataclass(frozen=True, slots=True)
class EmptyMessage:
    """A message with an empty body: ServerHelloDone, HelloRequest, EndOfEarlyData."""

    msg_type: int

    @property
    def type_name(self) -> str:
        return names.HANDSHAKE_TYPES[self.msg_type]

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name}


@dataclass(frozen=True, slots=True)
class UnknownHandshake:
    msg_type: int
    body: bytes

    @property
    def type_name(self) -> str:
        return names.HANDSHAKE_TYPES.get(self.msg_type, f"unknown_{self.msg_type}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type_name, "msg_type": self.msg_type, "length": len(self.body)}


HandshakeMessage = (
    ClientHello | ServerHello | EncryptedExtensions | Certificate | CertificateRequest
    | ServerKeyExchange | ClientKeyExchange | CertificateVerify | Finished | NewSessionTicket
    | KeyUpdate | CertificateStatus | EmptyMessage | UnknownHandshake
)


@dataclass(slots=True)
class HandshakeContext:
    """What both directions of one connection learn from ServerHello (mutable, shared)."""

    version: int | None = None
    cipher_suite: int | None = None

    @property
    def tls13(self) -> bool | None:
        return None if self.version is None else self.version >= 0x0304

    @property
    def kex(self) -> str | None:
        if self.cipher_suite is None:
            return None
        name = names.cipher_suite_name(self.cipher_suite)
        if "_ECDHE_" in name:
            return "ecdhe"
        if "_DHE_" in name:
            return "dhe"
        if name.startswith("TLS_RSA_WITH_"):
            return "rsa"
        return "unknown"

    def learn(self, message: HandshakeMessage) -> None:
        if isinstance(message, ServerHello) and not message.is_hello_retry_request:
            self.version = message.version
            self.cipher_suite = message.cipher_suite
        elif isinstance(message, ServerHello):
            self.version = message.version


def decode_handshake(msg_type: int, body: bytes, context: HandshakeContext | None = None,
                     base: int = 0) -> HandshakeMessage:
    """Decode one handshake message body; ``context`` (updated) picks version forms."""
    ctx = context if context is not None else HandshakeContext()
    message: HandshakeMessage
    if msg_type == 1:
        message = ClientHello.decode(body, base)
    elif msg_type == 2:
        message = ServerHello.decode(body, base)
    elif msg_type == 8:
        message = EncryptedExtensions.decode(body, base)
    elif msg_type == 11:
        message = Certificate.decode(body, base, tls13=ctx.tls13)
    elif msg_type == 13:
        message = CertificateRequest.decode(body, base, tls13=bool(ctx.tls13))
    elif msg_type == 12:
        message = ServerKeyExchange.decode(body, base, kex=ctx.kex)
    elif msg_type == 16:
        message = ClientKeyExchange.decode(body, base, kex=ctx.kex)
    elif msg_type == 15:
        message = CertificateVerify.decode(body, base)
    elif msg_type == 20:
        message = Finished.decode(body, base)
    elif msg_type == 4:
        message = NewSessionTicket.decode(body, base, tls13=ctx.tls13)
    elif msg_type == 24:
        message = KeyUpdate.decode(body, base)
    elif msg_type == 22:
        message = CertificateStatus.decode(body, base)
    elif msg_type in (0, 5, 14):
        if body:
            raise ParseError(f"{names.HANDSHAKE_TYPES[msg_type]}: body must be empty",
                             offset=base)
        message = EmptyMessage(msg_type)
    else:
        message = UnknownHandshake(msg_type, body)
    ctx.learn(message)
    return message


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
