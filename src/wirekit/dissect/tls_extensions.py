"""TLS extensions: every registered extension decoded into JSON-ready fields.

``Extension`` keeps the raw ``data`` (so a message re-encodes byte for byte) and ``info``,
the decoded content, which depends on the message carrying it (``where``): key_share is a
list of shares in a ClientHello, one share in a ServerHello, a group in a
HelloRetryRequest.  Unknown extensions keep their number and length; GREASE ones are named
"grease".  A malformed known extension raises ``ParseError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wirekit.dissect import tls_names as names
from wirekit.dissect.tls_wire import Reader
from wirekit.errors import ParseError

__all__ = ["Extension", "decode_extensions", "encode_extensions", "find_extension",
           "label_list"]

def label_list(values: tuple[int, ...], lookup: Any) -> list[str]:
    return [lookup(v) for v in values]


# Extensions whose data can never be empty; every other one may be (flags, acknowledgements).
_NEEDS_DATA = frozenset({1, 10, 11, 13, 16, 27, 28, 41, 43, 44, 45, 50, 51, 0xFF01})


def _decode_extension(ext_type: int, data: bytes, where: str, base: int) -> dict[str, Any]:
    """Decoded content of one extension, as JSON-ready fields (may be empty)."""
    r = Reader(data, f"{names.extension_name(ext_type)} extension", base)
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
            info["versions"] = label_list(r.u16_list(1, "versions", 2), names.version_name)
        else:
            info["version"] = names.version_name(r.u16("selected_version"))
    elif ext_type == 10:  # supported_groups
        info["groups"] = label_list(r.u16_list(2, "named_group_list", 2), names.group_name)
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
        info["schemes"] = label_list(
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


def decode_extensions(r: Reader, where: str, *, optional: bool = True) -> tuple[Extension, ...]:
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


def encode_extensions(exts: tuple[Extension, ...]) -> bytes:
    body = b"".join(e.encode() for e in exts)
    return len(body).to_bytes(2, "big") + body


def find_extension(exts: tuple[Extension, ...], ext_type: int) -> Extension | None:
    return next((e for e in exts if e.type == ext_type), None)
