"""Chain inspection: what ``wirekit tls`` reports about a peer, as data.

:class:`Trust` is the set of roots verdicts are computed against (the system's, or those
in a ``--ca`` file).  :func:`inspect_chain` turns the DER certificates a handshake
delivered into a :class:`~wirekit.tls.verdicts.ChainCheck`; :class:`TLSReport` is the
whole result of a probe with its stable JSON form.  No I/O but reading trust files:
the network part is :mod:`wirekit.net.tlsprobe`.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from wirekit.errors import TLSError, UsageError
from wirekit.tls.certinfo import describe
from wirekit.tls.certs import load_certificates
from wirekit.tls.verdicts import ChainCheck, check_chain

__all__ = ["TLSReport", "Trust", "inspect_chain", "load_trust"]


@dataclass(frozen=True, slots=True)
class Trust:
    """Trusted roots and a phrase naming where they came from (for verdict messages)."""

    roots: tuple[x509.Certificate, ...]
    name: str

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Trust:
        roots = load_certificates(path)
        return cls(tuple(roots), f"the roots in {os.fspath(path)}")

    @classmethod
    def system(cls) -> Trust:
        """The roots OpenSSL would use (honours ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``)."""
        paths = ssl.get_default_verify_paths()
        roots: list[x509.Certificate] = []
        if paths.cafile and Path(paths.cafile).is_file():
            roots += _pem_certificates(Path(paths.cafile))
        elif paths.capath and Path(paths.capath).is_dir():
            for entry in sorted(Path(paths.capath).iterdir()):
                if entry.is_file() and entry.suffix in (".pem", ".crt", ".0"):
                    roots += _pem_certificates(entry)
        return cls(tuple(roots), "the system's trusted roots")


def _pem_certificates(path: Path) -> list[x509.Certificate]:
    # System stores carry a few old roots cryptography warns about (negative serials);
    # they are the system's choice, not the user's problem.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError):
            return []


def load_trust(ca: str | os.PathLike[str] | None = None) -> Trust:
    if ca is None:
        return Trust.system()
    trust = Trust.from_file(ca)
    if not trust.roots:
        raise UsageError(f"{os.fspath(ca)!r} holds no certificate")
    return trust


def inspect_chain(
    chain_der: Sequence[bytes],
    hostname: str | None,
    trust: Trust,
    *,
    now: dt.datetime,
    crls: Sequence[x509.CertificateRevocationList] | None = None,
    protocol: str | None = None,
    purpose: str = "server",
) -> tuple[tuple[x509.Certificate, ...], ChainCheck]:
    """Parse the peer's DER chain (leaf first) and judge it."""
    parsed: list[x509.Certificate] = []
    for i, der in enumerate(chain_der):
        with warnings.catch_warnings():  # e.g. negative serials: judged, not warned about
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                parsed.append(x509.load_der_x509_certificate(der))
            except ValueError as exc:
                raise TLSError(f"certificate #{i} sent by the peer cannot be parsed: "
                               f"{exc}") from exc
    chain = tuple(parsed)
    check = check_chain(chain, hostname, roots=trust.roots, now=now, crls=crls,
                        protocol=protocol, purpose=purpose, roots_name=trust.name)
    return chain, check


@dataclass(frozen=True, slots=True)
class TLSReport:
    """Everything one ``wirekit tls`` probe learned."""

    host: str
    port: int
    peer: str  # the IP address actually connected to
    sni: str | None  # the name sent, or None
    hostname: str  # the name the certificate was checked against
    protocol: str | None
    cipher: str | None
    alpn: str | None
    chain: tuple[x509.Certificate, ...]
    check: ChainCheck
    handshake: tuple[dict[str, Any], ...] | None = None

    @property
    def verified(self) -> bool:
        return self.check.verified

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "address": self.address,
            "peer": self.peer,
            "sni": self.sni,
            "hostname": self.hostname,
            "verified": self.verified,
            "protocol": self.protocol,
            "cipher": self.cipher,
            "alpn": self.alpn,
            "verdicts": [v.to_json() for v in self.check.verdicts],
            "revocation": self.check.revocation,
            "chain": [describe(c).to_json(full=False) for c in self.chain],
            "verified_chain": ([describe(c).to_json(full=False) for c in self.check.path]
                               if self.check.trusted_anchor else []),
        }
        if self.handshake is not None:
            data["handshake"] = list(self.handshake)
        return data
