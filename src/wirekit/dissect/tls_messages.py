"""TLS handshake messages, one frozen dataclass each, decoded from a message body.

Some messages differ between TLS 1.2 and 1.3 (Certificate, CertificateRequest,
NewSessionTicket) or depend on the key exchange (ServerKeyExchange, ClientKeyExchange).
``decode_handshake`` takes a ``HandshakeContext`` (what ServerHello chose) and updates it,
so one context shared by both directions of a connection picks the right forms; without
one, the forms are inferred from the bytes.  Every ``to_dict()`` is JSON-ready and starts
with ``{"type": "ClientHello" | ...}``; cipher suites, groups, signature schemes and
versions are IANA names (``tls_names``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

from wirekit.dissect import tls_names as names
from wirekit.dissect.tls_extensions import (
    Extension,
    decode_extensions,
    encode_extensions,
    find_extension,
    label_list,
)
from wirekit.dissect.tls_wire import HRR_RANDOM, Reader
from wirekit.errors import ParseError

__all__ = [
    "Certificate",
    "CertificateEntry",
    "CertificateRequest",
    "CertificateStatus",
    "CertificateVerify",
    "ClientHello",
    "ClientKeyExchange",
    "EmptyMessage",
    "EncryptedExtensions",
    "Finished",
    "HandshakeContext",
    "HandshakeMessage",
    "KeyUpdate",
    "NewSessionTicket",
    "ServerHello",
    "ServerKeyExchange",
    "UnknownHandshake",
    "decode_handshake",
]

_HEX = bytes.hex

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
        return find_extension(self.extensions, ext_type)

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
        r = Reader(body, "ClientHello", base)
        version = r.u16("legacy_version")
        random = r.raw(32, "random")
        session_id = r.vec(1, "legacy_session_id")
        if len(session_id) > 32:
            raise r.fail(f"session id of {len(session_id)} bytes (max 32)")
        suites = r.u16_list(2, "cipher_suites", 2)
        compression = tuple(r.vec(1, "legacy_compression_methods", 1))
        exts = decode_extensions(r, "ClientHello")
        r.done()
        return cls(version, random, session_id, suites, compression, exts)

    def encode(self) -> bytes:
        suites = b"".join(c.to_bytes(2, "big") for c in self.cipher_suites)
        out = (self.legacy_version.to_bytes(2, "big") + self.random
               + bytes((len(self.session_id),)) + self.session_id
               + len(suites).to_bytes(2, "big") + suites
               + bytes((len(self.compression_methods),)) + bytes(self.compression_methods))
        if self.extensions:
            out += encode_extensions(self.extensions)
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
        ext = find_extension(self.extensions, 43)
        if ext is not None and len(ext.data) == 2:
            return int.from_bytes(ext.data, "big")
        return self.legacy_version

    @property
    def cipher_suite_name(self) -> str:
        return names.cipher_suite_name(self.cipher_suite)

    def extension(self, ext_type: int) -> Extension | None:
        return find_extension(self.extensions, ext_type)

    @classmethod
    def decode(cls, body: bytes, base: int = 0) -> ServerHello:
        r = Reader(body, "ServerHello", base)
        version = r.u16("legacy_version")
        random = r.raw(32, "random")
        session_id = r.vec(1, "legacy_session_id_echo")
        if len(session_id) > 32:
            raise r.fail(f"session id of {len(session_id)} bytes (max 32)")
        suite = r.u16("cipher_suite")
        compression = r.u8("legacy_compression_method")
        where = "HelloRetryRequest" if random == HRR_RANDOM else "ServerHello"
        exts = decode_extensions(r, where)
        r.done()
        return cls(version, random, session_id, suite, compression, exts)

    def encode(self) -> bytes:
        out = (self.legacy_version.to_bytes(2, "big") + self.random
               + bytes((len(self.session_id),)) + self.session_id
               + self.cipher_suite.to_bytes(2, "big") + bytes((self.compression_method,)))
        if self.extensions:
            out += encode_extensions(self.extensions)
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
        r = Reader(body, "EncryptedExtensions", base)
        exts = decode_extensions(r, "EncryptedExtensions", optional=False)
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
        r = Reader(body, "Certificate", base)
        context = r.vec(1, "certificate_request_context") if tls13 else b""
        lst = r.sub(3, "certificate_list")
        entries: list[CertificateEntry] = []
        while lst.left():
            der = lst.vec(3, "cert_data", 1)
            exts = decode_extensions(lst, "Certificate", optional=False) if tls13 else ()
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
        r = Reader(body, "CertificateRequest", base)
        if tls13:
            context = r.vec(1, "certificate_request_context")
            exts = decode_extensions(r, "CertificateRequest", optional=False)
            r.done()
            sig = find_extension(exts, 13)
            schemes = () if sig is None else Reader(sig.data, "").u16_list(2, "", 2)
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
            "signature_schemes": label_list(self.signature_schemes, names.signature_scheme_name),
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
        r = Reader(body, "ServerKeyExchange", base)
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


def _signature(r: Reader) -> tuple[int | None, int]:
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
        r = Reader(body, "ClientKeyExchange", base)
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
        r = Reader(body, "CertificateVerify", base)
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
        r = Reader(body, "NewSessionTicket", base)
        lifetime = r.u32("ticket_lifetime")
        if not tls13:
            ticket = r.vec(2, "ticket")
            r.done()
            return cls(lifetime, len(ticket))
        age_add = r.u32("ticket_age_add")
        nonce = r.vec(1, "ticket_nonce")
        ticket = r.vec(2, "ticket", 1)
        exts = decode_extensions(r, "NewSessionTicket", optional=False)
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
        r = Reader(body, "CertificateStatus", base)
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
