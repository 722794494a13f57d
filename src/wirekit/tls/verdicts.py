"""Why a certificate chain is (not) trusted: every reason, each with the facts.

Pure: certificates, a time, a host name and the trusted roots in; verdicts out.  No
sockets, no clock (``now`` is a parameter), no files.

Theory of operation.  OpenSSL stops at the first problem and names it with a terse code;
we want every problem, said in words.  So :func:`check_chain`

1. builds the path itself: from the leaf, through the certificates the peer sent, to a
   trusted root (matching names *and* signatures), noting where and why it stops:
   a self-signed leaf (``self_signed``), a root we do not trust (``untrusted_root``), or
   an issuer nobody sent (``incomplete_chain``);
2. checks every certificate on that path for time (``expired``, ``not_yet_valid``,
   ``expires_soon``), key size (``weak_key``), signature hash (``weak_signature``) and,
   with CRLs, revocation (``revoked``); the leaf for its names (``hostname_mismatch``) and
   extended key usage (``wrong_usage``); the protocol for ``legacy_protocol``;
3. asks ``cryptography.x509.verification`` (a strict RFC 5280 / CA-B Forum verifier) for
   its opinion.  If it refuses a chain none of our checks faulted, its reason becomes an
   ``invalid_chain`` verdict, so "not verified" always comes with a reason.

A chain is verified when no verdict is an error; warnings do not fail it.  Severities are
fixed per code (``CODES``), with one exception: :mod:`wirekit.net.tlsprobe` raises
``legacy_protocol`` to an error when TLS 1.0/1.1 was all the server offered.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from wirekit.errors import CertificateError
from wirekit.tls.certinfo import (
    LEGACY_SIGNATURES,
    extended_key_usage,
    is_self_signed,
    issued_by,
    san_names,
)

__all__ = [
    "CODES",
    "ERROR",
    "WARNING",
    "ChainCheck",
    "Verdict",
    "certificate_error",
    "check_chain",
    "hostname_matches",
]

ERROR, WARNING = "error", "warning"
CODES = {
    "expired": ERROR,
    "not_yet_valid": ERROR,
    "hostname_mismatch": ERROR,
    "self_signed": ERROR,
    "untrusted_root": ERROR,
    "incomplete_chain": ERROR,
    "weak_key": ERROR,
    "weak_signature": ERROR,
    "wrong_usage": ERROR,
    "revoked": ERROR,
    "invalid_chain": ERROR,
    "expires_soon": WARNING,
    "legacy_protocol": WARNING,
}
EXPIRES_SOON = dt.timedelta(days=14)
MIN_RSA_BITS = 2048
MIN_EC_BITS = 224
_LEGACY = {"SSLv2": "SSL 2.0", "SSLv3": "SSL 3.0", "TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1"}
_MAX_DEPTH = 10


@dataclass(frozen=True, slots=True)
class Verdict:
    """One reason, stable ``code`` for scripts and a one-line ``message`` for people."""

    code: str
    severity: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


def _verdict(code: str, message: str) -> Verdict:
    return Verdict(code, CODES[code], message)


@dataclass(frozen=True, slots=True)
class ChainCheck:
    """The verdicts on a chain and the path they were computed on (leaf first)."""

    verdicts: tuple[Verdict, ...]
    path: tuple[x509.Certificate, ...]
    trusted_anchor: bool
    revocation: str  # "not_checked" | "checked" | "partial" (some certificate had no CRL)

    @property
    def verified(self) -> bool:
        return not any(v.severity == ERROR for v in self.verdicts)

    @property
    def errors(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.severity == ERROR)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(v.code for v in self.verdicts)


def certificate_error(check: ChainCheck, where: str) -> CertificateError:
    """The exception for an unverified chain: the first reason in the message, all attached."""
    errors = check.errors
    if not errors:
        raise ValueError("the chain is verified; there is no certificate error")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return CertificateError(f"certificate of {where} not trusted: {errors[0].message}{more}",
                            verdicts=check.verdicts)


def check_chain(
    chain: Sequence[x509.Certificate],
    hostname: str | None,
    *,
    roots: Sequence[x509.Certificate],
    now: dt.datetime,
    crls: Sequence[x509.CertificateRevocationList] | None = None,
    protocol: str | None = None,
    purpose: str = "server",
    roots_name: str = "the trusted roots",
) -> ChainCheck:
    """Every verdict on ``chain`` (as the peer sent it, leaf first) for ``hostname``.

    ``purpose`` is ``"server"`` (EKU serverAuth) or ``"client"`` (clientAuth, for mutual
    TLS; pass ``hostname=None``).  ``crls`` enables the revocation check.
    """
    if not chain:
        raise ValueError("empty certificate chain")
    leaf = chain[0]
    out: list[Verdict] = []
    path, anchored, trust = _build_path(chain, roots, roots_name)
    out += trust
    for i, cert in enumerate(path):
        out += _time_verdicts(cert, i, now)
        out += _key_verdicts(cert, i)
        anchor = anchored and i == len(path) - 1
        if not anchor and not (i == 0 and is_self_signed(cert)):
            out += _signature_verdicts(cert, i)
    if hostname is not None:
        out += _hostname_verdicts(leaf, hostname)
    out += _usage_verdicts(leaf, purpose)
    revocation = "not_checked"
    if crls is not None:
        found, revocation = _revocation_verdicts(path, anchored, crls)
        out += found
    if protocol in _LEGACY:
        out.append(_verdict("legacy_protocol", f"{_LEGACY[protocol]} was negotiated; it is "
                            "deprecated (RFC 8996): the server should offer TLS 1.2 or 1.3"))
    if not any(v.severity == ERROR for v in out):
        reason = _strict_verifier(chain, hostname, roots, now, purpose)
        if reason:
            out.append(_verdict("invalid_chain", reason))
    return ChainCheck(tuple(_dedupe(out)), tuple(path), anchored, revocation)


def _dedupe(verdicts: list[Verdict]) -> list[Verdict]:
    out: list[Verdict] = []
    for v in verdicts:
        if v not in out:
            out.append(v)
    return out


# -- path ---------------------------------------------------------------------------------


def _name(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.subject.rfc4514_string() or "(empty subject)"


def _issuer_name(cert: x509.Certificate) -> str:
    cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.issuer.rfc4514_string() or "(empty issuer)"


def _build_path(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], roots_name: str
) -> tuple[list[x509.Certificate], bool, list[Verdict]]:
    leaf = chain[0]
    path = [leaf]
    pool = list(chain[1:])
    cur = leaf
    while len(path) <= _MAX_DEPTH:
        if cur in roots:
            return path, True, []
        root = next((r for r in roots if issued_by(cur, r)), None)
        if root is not None:
            path.append(root)
            return path, True, []
        if is_self_signed(cur):
            if cur is leaf:
                return path, False, [_verdict(
                    "self_signed", f"the certificate is self-signed ('{_name(cur)}') and is "
                    f"not in {roots_name}")]
            return path, False, [_verdict(
                "untrusted_root", f"the chain ends at root '{_name(cur)}', which is not in "
                f"{roots_name}")]
        parent = next((c for c in pool if c not in path and issued_by(cur, c)), None)
        if parent is None:
            break
        path.append(parent)
        cur = parent
    if len(path) > _MAX_DEPTH:
        return path, False, [_verdict("invalid_chain",
                                      f"the chain is longer than {_MAX_DEPTH} certificates")]
    if cur is leaf:
        return path, False, [_verdict(
            "incomplete_chain", f"the issuer '{_issuer_name(leaf)}' was not sent by the peer "
            f"and is not in {roots_name} (a missing intermediate certificate, or a CA that "
            "is not trusted)")]
    return path, False, [_verdict(
        "untrusted_root", f"'{_name(cur)}' was issued by '{_issuer_name(cur)}', which is not "
        f"in {roots_name}")]


# -- per-certificate checks ---------------------------------------------------------------


def _which(cert: x509.Certificate, index: int) -> str:
    return "certificate" if index == 0 else f"CA certificate '{_name(cert)}'"


def _span(delta: dt.timedelta) -> str:
    seconds = abs(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "less than a minute"


def _date(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d") if moment.time() == dt.time() else \
        moment.strftime("%Y-%m-%d %H:%M UTC")


def _time_verdicts(cert: x509.Certificate, index: int, now: dt.datetime) -> list[Verdict]:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    what = _which(cert, index)
    if now > end:
        return [_verdict("expired", f"{what} expired {_span(now - end)} ago "
                         f"(not after {_date(end)})")]
    if now < start:
        return [_verdict("not_yet_valid", f"{what} is not valid yet: it starts in "
                         f"{_span(start - now)} (not before {_date(start)})")]
    if end - now < EXPIRES_SOON:
        return [_verdict("expires_soon", f"{what} expires in {_span(end - now)} "
                         f"(not after {_date(end)})")]
    return []


def _key_verdicts(cert: x509.Certificate, index: int) -> list[Verdict]:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return []
    what = _which(cert, index)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        return [_verdict("weak_key", f"{what} has a {key.key_size}-bit RSA key "
                         f"(at least {MIN_RSA_BITS} bits are needed)")]
    if isinstance(key, dsa.DSAPublicKey):
        return [_verdict("weak_key", f"{what} has a DSA key (DSA is no longer accepted)")]
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        return [_verdict("weak_key", f"{what} has a {key.curve.key_size}-bit EC key "
                         f"({key.curve.name}; at least {MIN_EC_BITS} bits are needed)")]
    return []


def _signature_verdicts(cert: x509.Certificate, index: int) -> list[Verdict]:
    weak = LEGACY_SIGNATURES.get(cert.signature_algorithm_oid)
    if weak is None:
        return []
    algorithm = getattr(cert.signature_algorithm_oid, "_name", weak)
    return [_verdict("weak_signature", f"{_which(cert, index)} is signed with {weak} "
                     f"({algorithm}), which can be forged")]


def _hostname_verdicts(leaf: x509.Certificate, hostname: str) -> list[Verdict]:
    if hostname_matches(leaf, hostname):
        return []
    names = san_names(leaf)
    if not names:
        return [_verdict("hostname_mismatch", f"'{hostname}' is not in the certificate's names: "
                         "it has no subjectAltName (the CN alone is not accepted)")]
    return [_verdict("hostname_mismatch",
                     f"'{hostname}' is not in the certificate's names: {', '.join(names)}")]


def hostname_matches(cert: x509.Certificate, hostname: str) -> bool:
    """RFC 6125: DNS names (one leftmost ``*`` label) or, for an IP literal, IP SANs only."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    host = hostname.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in san.get_values_for_type(x509.IPAddress)
    host = host.rstrip(".").lower()
    return any(_dns_match(str(name).rstrip(".").lower(), host)
               for name in san.get_values_for_type(x509.DNSName))


_LABEL = re.compile(r"^[a-z0-9_-]+$|^xn--")


def _dns_match(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    rest = pattern[2:]
    if "*" in rest or rest.count(".") < 1:  # no "*.com"-style wildcards
        return False
    label, _, parent = host.partition(".")
    return bool(label) and parent == rest and bool(_LABEL.match(label))


def _usage_verdicts(leaf: x509.Certificate, purpose: str) -> list[Verdict]:
    usages = extended_key_usage(leaf)
    if usages is None:  # no EKU extension: any usage (RFC 5280 4.2.1.12)
        return []
    wanted_name = "serverAuth" if purpose == "server" else "clientAuth"
    if wanted_name in usages or "anyExtendedKeyUsage" in usages:
        return []
    role = "a TLS server" if purpose == "server" else "a TLS client"
    listed = ", ".join(usages) or "nothing"
    return [_verdict("wrong_usage", f"the certificate may be used for {listed}, not for "
                     f"{role} (its extended key usage lacks {wanted_name})")]


def _revocation_verdicts(
    path: Sequence[x509.Certificate], anchored: bool,
    crls: Sequence[x509.CertificateRevocationList],
) -> tuple[list[Verdict], str]:
    out: list[Verdict] = []
    covered = True
    checked = path[:-1] if anchored else path
    for i, cert in enumerate(checked):
        issuer = path[i + 1] if i + 1 < len(path) else None
        usable = [crl for crl in crls
                  if crl.issuer == cert.issuer and _crl_signed_by(crl, issuer)]
        if not usable:
            covered = False
            continue
        for crl in usable:
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is not None:
                when = entry.revocation_date_utc
                out.append(_verdict(
                    "revoked", f"{_which(cert, i)} (serial {cert.serial_number:x}) was revoked "
                    f"on {_date(when)} by '{_issuer_name(cert)}'"))
                break
    return out, "checked" if covered else "partial"


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate | None) -> bool:
    if issuer is None:
        return False  # cannot check who signed it; do not believe it
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (UnsupportedAlgorithm, TypeError, ValueError):
        return False


def _strict_verifier(
    chain: Sequence[x509.Certificate], hostname: str | None,
    roots: Sequence[x509.Certificate], now: dt.datetime, purpose: str,
) -> str | None:
    """``cryptography``'s reason for refusing the chain, or None when it accepts it."""
    if not roots:
        return "there are no trusted roots to verify against"
    builder = verification.PolicyBuilder().store(verification.Store(list(roots))).time(now)
    try:
        if purpose == "client":
            builder.build_client_verifier().verify(chain[0], list(chain[1:]))
            return None
        if hostname is None:
            return None  # nothing to name the server by; our own checks stand
        host = hostname.strip("[]").split("%", 1)[0].rstrip(".")
        try:
            subject: verification.Subject = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            try:
                subject = x509.DNSName(host)
            except ValueError:
                return None
        builder.build_server_verifier(subject).verify(chain[0], list(chain[1:]))
    except verification.VerificationError as exc:
        text = re.sub(r"\s*\(encountered processing <.*$", "", str(exc), flags=re.S)
        return f"the chain fails strict verification: {text.removeprefix('validation failed: ')}"
    return None
