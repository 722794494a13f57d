"""Certificates: a persistent local CA, leaf certificates, and what ``cert show`` prints.

The builders (``new_ca``, ``new_leaf``, ``new_crl``) are pure functions over
``cryptography`` objects, so tests can craft any certificate (expired, wrong usage,
self-signed, weak key) in memory.  :class:`LocalCA` adds the files:

    DIR/ca.pem  DIR/ca-key.pem                       root, made by ``init``
    DIR/intermediate.pem  DIR/intermediate-key.pem   made on the first ``issue --intermediate``
    PREFIX.pem (leaf, then any intermediate)  PREFIX-key.pem

Private keys are created with O_EXCL and mode 0600 (umask cannot widen that), and are
never replaced unless ``force``; CA keys are only ever read from DIR.  Every non-empty
subject comes with a non-critical SAN, which strict verifiers require.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wirekit.errors import UsageError, WirekitError
from wirekit.tls.certinfo import CertInfo, describe

__all__ = [
    "DEFAULT_CA_DAYS",
    "DEFAULT_LEAF_DAYS",
    "CertInfo",
    "KeySpec",
    "LocalCA",
    "PrivateKey",
    "default_ca_dir",
    "describe",
    "generate_key",
    "legacy_signed",
    "load_certificates",
    "load_crls",
    "new_ca",
    "new_crl",
    "new_leaf",
    "parse_key_spec",
    "write_certificates",
    "write_private_key",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 365  # below the 398 days browsers accept for a leaf
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between machines
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1,
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_ca_dir() -> Path:
    """``$XDG_DATA_HOME/wirekit/ca``, else ``~/.local/share/wirekit/ca``."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "wirekit" / "ca"


# -- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeySpec:
    """``ec`` (P-256), ``ec:p384``, ``rsa`` (2048), ``rsa:BITS``, ``ed25519``."""

    kind: str
    size: int | str

    def __str__(self) -> str:
        return f"{self.kind}:{self.size}" if self.kind != "ed25519" else self.kind


def parse_key_spec(text: str) -> KeySpec:
    kind, _, arg = text.strip().lower().partition(":")
    if kind == "ec":
        curve = arg or "p256"
        if curve not in _CURVES:
            raise UsageError(f"unknown curve {arg!r} in --key {text!r} (use p256, p384, p521)")
        return KeySpec("ec", curve)
    if kind == "rsa":
        if arg and not arg.isdigit():
            raise UsageError(f"RSA key size {arg!r} in --key {text!r} is not a number")
        bits = int(arg or 2048)
        if not 1024 <= bits <= 16384:
            raise UsageError(f"RSA key size {bits} is out of range (1024-16384; 2048+ is safe)")
        return KeySpec("rsa", bits)
    if kind == "ed25519" and not arg:
        return KeySpec("ed25519", 256)
    raise UsageError(f"unknown key type {text!r} (use ec, ec:p384, rsa:2048, rsa:4096, ed25519)")


def generate_key(spec: KeySpec | str = "ec") -> PrivateKey:
    if isinstance(spec, str):
        spec = parse_key_spec(spec)
    if spec.kind == "ec":
        return ec.generate_private_key(_CURVES[str(spec.size)]())
    if spec.kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(spec.size))
    return ed25519.Ed25519PrivateKey.generate()


def _hash_for(key: PrivateKey) -> hashes.HashAlgorithm | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


# -- builders (pure) ----------------------------------------------------------------------


def _validity(
    days: int | None, not_before: dt.datetime | None, not_after: dt.datetime | None,
    default_days: int,
) -> tuple[dt.datetime, dt.datetime]:
    length = dt.timedelta(days=days or default_days)
    if not_before is None and not_after is not None and not_after <= _now():
        not_before = not_after - length  # a deliberately expired certificate
    start = not_before or (_now() - _BACKDATE)
    end = not_after or start + length + _BACKDATE
    if end <= start:
        raise UsageError(f"not after ({end:%Y-%m-%d %H:%M}) must be later than "
                         f"not before ({start:%Y-%m-%d %H:%M})")
    return start, end


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
    ])


def new_ca(
    key: PrivateKey,
    *,
    common_name: str = "wirekit local CA",
    issuer: x509.Certificate | None = None,
    issuer_key: PrivateKey | None = None,
    days: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    path_length: int | None = None,
) -> x509.Certificate:
    """A root CA (self-signed) or, with ``issuer``/``issuer_key``, an intermediate."""
    start, end = _validity(days, not_before, not_after, DEFAULT_CA_DAYS)
    subject = _name(common_name, "wirekit development CA")
    signer = issuer_key or key
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(_aki(issuer), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    return builder.sign(signer, _hash_for(signer))  # type: ignore[arg-type]


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.public_key())  # type: ignore[arg-type]


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name.strip("[]"))))
        except ValueError:
            if not name or any(c.isspace() for c in name):
                raise UsageError(f"{name!r} is not a DNS name or IP address") from None
            out.append(x509.DNSName(name.lower().rstrip(".")))
    return out


def new_leaf(
    names: Sequence[str],
    key: PrivateKey,
    *,
    issuer: x509.Certificate | None,
    issuer_key: PrivateKey,
    client: bool = False,
    usages: Sequence[x509.ObjectIdentifier] | None = None,
    days: int | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> x509.Certificate:
    """A leaf for DNS names / IPs.  ``issuer=None`` makes it self-signed (for tests).

    ``usages`` overrides the EKU (default serverAuth; clientAuth with ``client``).
    """
    if not names:
        raise UsageError("a certificate needs at least one name (DNS name or IP address)")
    start, end = _validity(days, not_before, not_after, DEFAULT_LEAF_DAYS)
    subject = _name(names[0], "wirekit development certificate")
    if usages is None:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=rsa_key,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        # Non-critical because the subject is not empty (RFC 5280 4.2.1.6).
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(_aki(issuer), critical=False)
    return builder.sign(issuer_key, hash_algorithm or _hash_for(issuer_key))  # type: ignore[arg-type]


def new_crl(
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    revoked_serials: Iterable[int],
    *,
    last_update: dt.datetime | None = None,
    next_update: dt.datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL from ``issuer`` listing ``revoked_serials``."""
    start = last_update or (_now() - _BACKDATE)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(start)
        .next_update(next_update or start + dt.timedelta(days=7))
        .add_extension(_aki(issuer), critical=False)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(start).build())
    return builder.sign(issuer_key, _hash_for(issuer_key))  # type: ignore[arg-type]


def legacy_signed(
    cert: x509.Certificate, issuer_key: PrivateKey, algorithm: str = "sha1"
) -> x509.Certificate:
    """``cert`` re-signed by ``issuer_key`` with SHA-1 (or MD5, RSA only): for tests only.

    ``cryptography`` refuses to create such signatures, and a client must be shown one to
    prove it reports ``weak_signature``; so this swaps the AlgorithmIdentifier in the
    to-be-signed DER and signs it with the hazmat primitives, which still allow it.
    """
    from cryptography.hazmat.primitives.asymmetric import padding

    digest: hashes.HashAlgorithm = hashes.SHA1() if algorithm == "sha1" else hashes.MD5()
    new_oid = {
        ("rsa", "sha1"): "1.2.840.113549.1.1.5", ("rsa", "md5"): "1.2.840.113549.1.1.4",
        ("ec", "sha1"): "1.2.840.10045.4.1",
    }.get(("rsa" if isinstance(issuer_key, rsa.RSAPrivateKey) else "ec", algorithm))
    usable = isinstance(issuer_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    if new_oid is None or not usable:
        raise UsageError(f"cannot make a {algorithm} signature with this key type")
    old_alg = _der_algorithm(cert.signature_algorithm_oid.dotted_string,
                             isinstance(issuer_key, rsa.RSAPrivateKey))
    new_alg = _der_algorithm(new_oid, isinstance(issuer_key, rsa.RSAPrivateKey))
    tbs = cert.tbs_certificate_bytes
    if old_alg not in tbs:
        raise UsageError("unexpected certificate layout")
    body = _der_content(tbs).replace(old_alg, new_alg, 1)
    tbs = _der(0x30, body)
    if isinstance(issuer_key, rsa.RSAPrivateKey):
        sig = issuer_key.sign(tbs, padding.PKCS1v15(), digest)
    elif isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        sig = issuer_key.sign(tbs, ec.ECDSA(digest))
    else:
        raise UsageError(f"cannot make a {algorithm} signature with this key type")
    der = _der(0x30, tbs + new_alg + _der(0x03, b"\x00" + sig))
    return x509.load_der_x509_certificate(der)


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _der_content(tlv: bytes) -> bytes:
    first = tlv[1]
    if first < 0x80:
        return tlv[2:2 + first]
    width = first & 0x7F
    n = int.from_bytes(tlv[2:2 + width], "big")
    return tlv[2 + width:2 + width + n]


def _der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


def _der_algorithm(dotted: str, rsa_params: bool) -> bytes:
    # RSA AlgorithmIdentifiers carry an explicit NULL parameter; ECDSA ones carry none.
    return _der(0x30, _der_oid(dotted) + (b"\x05\x00" if rsa_params else b""))


# -- files --------------------------------------------------------------------------------


def _create(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write ``data`` to a new file with exactly ``mode``; refuse to replace unless ``force``.

    O_EXCL also refuses to follow a planted symlink; ``force`` unlinks first, then creates.
    """
    if force:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise WirekitError(f"{os.fspath(path)} already exists (use --force to replace it)",
                           path=path) from None
    except OSError as exc:
        raise WirekitError(f"cannot create {os.fspath(path)}: {exc.strerror}",
                           path=path) from exc
    try:
        os.fchmod(fd, mode)  # umask can only have narrowed it; make it exact
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def write_private_key(path: str | os.PathLike[str], key: PrivateKey, *,
                      force: bool = False) -> Path:
    """PEM (PKCS#8, unencrypted) at ``path``, created 0600 with O_EXCL."""
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    _create(Path(path), pem, 0o600, force)
    return Path(path)


def write_certificates(path: str | os.PathLike[str], certs: Sequence[x509.Certificate], *,
                       force: bool = False) -> Path:
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    _create(Path(path), pem, 0o644, force)
    return Path(path)


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"cannot read {what} {os.fspath(path)!r}: no such file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {os.fspath(path)!r}: {exc.strerror}") from exc


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """Every certificate in a PEM file (or the one in a DER file)."""
    data = _read(path, "certificate file")
    pem = b"-----BEGIN" in data
    try:
        if pem:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        what = "no PEM certificate (BEGIN CERTIFICATE)" if pem else "no PEM or DER certificate"
        raise UsageError(f"{os.fspath(path)!r} holds {what}") from exc


def load_crls(path: str | os.PathLike[str]) -> list[x509.CertificateRevocationList]:
    """Every CRL in a PEM file (or the one in a DER file)."""
    data = _read(path, "CRL file")
    try:
        if b"-----BEGIN" not in data:
            return [x509.load_der_x509_crl(data)]
        marker = b"-----BEGIN X509 CRL-----"
        blocks = [marker + part for part in data.split(marker)[1:]]
        crls = [x509.load_pem_x509_crl(block) for block in blocks]
    except ValueError as exc:
        raise UsageError(f"{os.fspath(path)!r} holds no readable CRL: {exc}") from exc
    if not crls:
        raise UsageError(f"{os.fspath(path)!r} holds no CRL")
    return crls


def _load_key(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path, "private key"), password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"cannot load private key {os.fspath(path)!r}: {exc}") from exc
    return key  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Issued:
    """What ``LocalCA.issue`` wrote."""

    cert_path: Path
    key_path: Path
    chain: tuple[x509.Certificate, ...]


class LocalCA:
    """A CA kept in a directory.  Create with :meth:`init`, open with :meth:`open`."""

    CERT, KEY = "ca.pem", "ca-key.pem"
    INTER, INTER_KEY = "intermediate.pem", "intermediate-key.pem"

    def __init__(self, directory: Path, cert: x509.Certificate, key: PrivateKey) -> None:
        self.directory = directory
        self.cert = cert
        self._key = key  # never written anywhere but DIR

    @property
    def cert_path(self) -> Path:
        return self.directory / self.CERT

    @classmethod
    def init(cls, directory: str | os.PathLike[str] | None = None, *, key: str = "ec",
             days: int | None = None, common_name: str | None = None,
             force: bool = False) -> LocalCA:
        d = Path(directory) if directory is not None else default_ca_dir()
        try:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise WirekitError(f"cannot create {os.fspath(d)}: {exc.strerror}") from exc
        if not force and ((d / cls.KEY).exists() or (d / cls.CERT).exists()):
            raise WirekitError(f"a CA already exists in {os.fspath(d)} (use --force to "
                               "replace it; certificates it issued will stop verifying)")
        private = generate_key(key)
        cert = new_ca(private, common_name=common_name or _default_ca_name(), days=days)
        write_private_key(d / cls.KEY, private, force=force)
        write_certificates(d / cls.CERT, [cert], force=force)
        for stale in (cls.INTER, cls.INTER_KEY):  # signed by the old root
            if force:
                with contextlib.suppress(FileNotFoundError):
                    (d / stale).unlink()
        return cls(d, cert, private)

    @classmethod
    def open(cls, directory: str | os.PathLike[str] | None = None) -> LocalCA:
        d = Path(directory) if directory is not None else default_ca_dir()
        if not (d / cls.CERT).exists():
            raise UsageError(f"no CA in {os.fspath(d)} (run: wirekit cert init --dir {d})")
        return cls(d, load_certificates(d / cls.CERT)[0], _load_key(d / cls.KEY))

    def intermediate(self) -> tuple[x509.Certificate, PrivateKey]:
        """The intermediate CA in DIR, created (and signed by the root) on first use."""
        cert_path, key_path = self.directory / self.INTER, self.directory / self.INTER_KEY
        if cert_path.exists():
            return load_certificates(cert_path)[0], _load_key(key_path)
        private = generate_key("ec")
        cert = new_ca(private, common_name=f"{_cn(self.cert)} intermediate", issuer=self.cert,
                      issuer_key=self._key, days=DEFAULT_CA_DAYS // 2, path_length=0)
        write_private_key(key_path, private)
        write_certificates(cert_path, [cert])
        return cert, private

    def issue(
        self,
        names: Sequence[str],
        out: str | os.PathLike[str],
        *,
        client: bool = False,
        key: str = "ec",
        days: int | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        intermediate: bool = False,
        force: bool = False,
    ) -> Issued:
        """Write ``OUT.pem`` (leaf, then any intermediate) and ``OUT-key.pem``."""
        prefix = os.fspath(out)
        for suffix in (".pem", "-key.pem"):
            prefix = prefix.removesuffix(suffix) if prefix.endswith(suffix) else prefix
        cert_path, key_path = Path(prefix + ".pem"), Path(prefix + "-key.pem")
        own = {(self.directory / n).resolve()
               for n in (self.CERT, self.KEY, self.INTER, self.INTER_KEY)}
        if {cert_path.resolve(), key_path.resolve()} & own:
            raise UsageError(f"--out {out} would overwrite the CA's own files")
        if not force:
            for p in (cert_path, key_path):
                if p.exists():
                    raise WirekitError(f"{p} already exists (use --force to replace it)")
        issuer, issuer_key = (self.intermediate() if intermediate else (self.cert, self._key))
        private = generate_key(key)
        leaf = new_leaf(names, private, issuer=issuer, issuer_key=issuer_key, client=client,
                        days=days, not_before=not_before, not_after=not_after)
        chain = (leaf, issuer) if intermediate else (leaf,)
        write_private_key(key_path, private, force=force)
        write_certificates(cert_path, chain, force=force)
        return Issued(cert_path, key_path, chain)


def _default_ca_name() -> str:
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER", "user")
    return f"wirekit local CA ({user}@{os.uname().nodename})"


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()
