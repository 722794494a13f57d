"""SSLContext factories with wirekit's secure defaults.

Every TLS endpoint in wirekit (``tls``, ``connect tls://``, ``serve``, ``forward``) gets its
context here, so the defaults live in one place:

- TLS 1.2 minimum (``min_version``/``max_version`` can narrow it to ``1.2`` or ``1.3``).
- TLS 1.2 suites: exactly Mozilla's "intermediate" list of guidelines 6.0 (ECDHE + AEAD
  only; 5.7 also had three DHE suites, 6.0 dropped them).  TLS 1.3 suites are OpenSSL's
  defaults, which are the three Mozilla lists.  The cipher string pins ``@SECLEVEL=2``
  because setting a cipher list would otherwise fall back to OpenSSL's built-in level.
- No compression, no renegotiation.
- Clients verify the certificate chain and the host name (IP literals against IP SANs, and
  no SNI is sent for them); system roots unless ``ca`` names the roots to trust instead.
  ``insecure=True`` is the only way to turn verification off.
- Key logging (NSS format, for Wireshark): ``keylog`` starts a fresh file (an old one is
  deleted first); without it ``SSLKEYLOGFILE`` is honoured and appended to, as browsers do.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path

from wirekit.errors import UsageError

__all__ = [
    "MOZILLA_INTERMEDIATE_TLS12",
    "MOZILLA_TLS13",
    "VERSIONS",
    "client_context",
    "is_ip_literal",
    "parse_version",
    "server_context",
    "server_hostname",
]

# Mozilla server-side TLS guidelines 6.0, "intermediate", ciphers.openssl (in its order).
MOZILLA_INTERMEDIATE_TLS12 = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
)
MOZILLA_TLS13 = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
SECURITY_LEVEL = 2
CIPHER_STRING = ":".join(MOZILLA_INTERMEDIATE_TLS12) + f":@SECLEVEL={SECURITY_LEVEL}"

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

# Mozilla 6.0: server_preferred_order false (every listed suite is strong; clients know
# whether they have AES hardware).
_OPTIONS = ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION


def parse_version(text: str | None) -> ssl.TLSVersion | None:
    """``"1.2"`` / ``"1.3"`` (or ``None``) to an :class:`ssl.TLSVersion`."""
    if text is None:
        return None
    version = VERSIONS.get(text.strip().lower().removeprefix("tlsv").removeprefix("tls"))
    if version is None:
        raise UsageError(f"unsupported TLS version {text!r} (use 1.2 or 1.3)")
    return version


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def server_hostname(host: str, *, sni: str | None = None, no_sni: bool = False) -> str | None:
    """The name to pass as ``server_hostname``: what is sent as SNI (``None``: nothing).

    The name the certificate is checked against is ``sni or host`` in every case; an IP
    literal is never sent as SNI (RFC 6066) but is checked against the IP SANs.
    """
    if no_sni:
        return None
    return sni or host


def client_context(
    *,
    ca: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    alpn: Iterable[str] = (),
    min_version: str | None = None,
    max_version: str | None = None,
    keylog: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ssl.SSLContext:
    """A client context: verification and host name check on, unless ``insecure``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _common(ctx, alpn=alpn, min_version=min_version, max_version=max_version,
            keylog=keylog, environ=environ)
    # Python 3.13's defaults: reject malformed certificates, and let an intermediate given
    # with --ca act as a trust anchor (what a user who hands us a CA file means).
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN
    if ca is not None:
        _load(ctx.load_verify_locations, ca, "CA file")
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None:
        _load_chain(ctx, cert, key)
    elif key is not None:
        raise UsageError("--key needs --cert")
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def server_context(
    *,
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str] | None = None,
    client_ca: str | os.PathLike[str] | None = None,
    require_client_cert: bool = False,
    alpn: Iterable[str] = (),
    min_version: str | None = None,
    max_version: str | None = None,
    keylog: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ssl.SSLContext:
    """A server context.  ``client_ca`` asks for client certificates and verifies them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(ctx, alpn=alpn, min_version=min_version, max_version=max_version,
            keylog=keylog, environ=environ)
    _load_chain(ctx, cert, key)
    if require_client_cert and client_ca is None:
        raise UsageError("--require-client-cert needs --client-ca FILE")
    if client_ca is not None:
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        _load(ctx.load_verify_locations, client_ca, "client CA file")
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _common(
    ctx: ssl.SSLContext,
    *,
    alpn: Iterable[str],
    min_version: str | None,
    max_version: str | None,
    keylog: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None,
) -> None:
    ctx.set_ciphers(CIPHER_STRING)
    ctx.options |= _OPTIONS
    low = parse_version(min_version) or ssl.TLSVersion.TLSv1_2
    high = parse_version(max_version) or ssl.TLSVersion.MAXIMUM_SUPPORTED
    if high is not ssl.TLSVersion.MAXIMUM_SUPPORTED and high < low:
        raise UsageError(
            f"--max-version {max_version} is below --min-version {min_version or '1.2'}")
    ctx.minimum_version = low
    ctx.maximum_version = high
    protocols = [p for p in alpn if p]
    if protocols:
        ctx.set_alpn_protocols(protocols)
    env = os.environ if environ is None else environ
    if keylog is not None:
        _fresh_private_file(Path(keylog))
        ctx.keylog_filename = os.fspath(keylog)
    elif env.get("SSLKEYLOGFILE"):
        ctx.keylog_filename = env["SSLKEYLOGFILE"]


def _fresh_private_file(path: Path) -> None:
    """Delete an old key log and create an empty one only we can read (it holds secrets)."""
    try:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except OSError as exc:
        raise UsageError(f"cannot write key log {os.fspath(path)!r}: {exc.strerror}") from exc


def _load_chain(ctx: ssl.SSLContext, cert: str | os.PathLike[str],
                key: str | os.PathLike[str] | None) -> None:
    # load_cert_chain's FileNotFoundError names no file: say which one is missing.
    for what, path in (("certificate", cert), ("key", key)):
        if path is not None and not os.path.exists(path):
            raise UsageError(f"cannot read {what} {os.fspath(path)!r}: no such file")
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise UsageError(f"cannot read {exc.filename!r}: no such file") from exc
    except (ssl.SSLError, OSError) as exc:
        which = f"{os.fspath(cert)!r}" + (f" / {os.fspath(key)!r}" if key else "")
        raise UsageError(f"cannot load certificate and key from {which}: "
                         f"{getattr(exc, 'reason', None) or exc}") from exc


def _load(load: object, path: str | os.PathLike[str], what: str) -> None:
    try:
        load(cafile=path)  # type: ignore[operator]
    except FileNotFoundError as exc:
        raise UsageError(f"cannot read {what} {os.fspath(path)!r}: no such file") from exc
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(f"cannot load {what} {os.fspath(path)!r}: "
                         f"{getattr(exc, 'reason', None) or exc}") from exc
