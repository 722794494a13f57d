"""TLS for ``connect`` and ``serve``: contexts from options, and reasons for failures.

Theory of operation
-------------------
The ssl module verifies, with wirekit's defaults (:mod:`wirekit.tls.context`); wirekit
only *explains*.  OpenSSL's refusal says little ("certificate verify failed: unable to get
local issuer certificate") and, once the handshake failed, asyncio's transport is gone
together with the peer's chain.  So every context made here uses :class:`_Explaining` as
its ``sslobject_class`` (asyncio and uvloop create their SSLObject through it): when its
handshake fails, it attaches the chain the peer sent to the exception (``wk_chain``), and
:func:`explain_client_failure` judges that chain with :mod:`wirekit.tls.verdicts`, as
``wirekit tls`` does, so the error names the reason (``self_signed``, ``expired``, ...).

A server does not keep a client's chain after refusing it (OpenSSL stores it only once it
is verified), so a server context that asks for client certificates also records the
client's Certificate message through the ssl module's message callback and the refusal
is judged from that (:func:`explain_server_failure`): "no client certificate", "client
certificate expired 3 days ago", "client certificate ... issued by 'Other CA', which is
not in the roots in ca.pem" are distinct reasons in the server's log.

Revocation (``crl``): the ssl module's own CRL check is not used, because OpenSSL's flags
do not say what ``wirekit tls --crl`` says.  ``VERIFY_CRL_CHECK`` refuses a leaf whose
issuer has no CRL in the file, ``VERIFY_CRL_CHECK_CHAIN`` also every CA without one, and
a stale CRL (past its nextUpdate) fails every connection; ``wirekit tls`` judges each
certificate of the chain against the CRLs given *for its issuer* (signature checked) and
only reports revocation as "partial" for the others.  So the client judges the chain as
``wirekit tls`` does, with :func:`~wirekit.tls.inspect.inspect_chain` and the same CRLs,
inside the handshake: :class:`_Explaining` does it right after OpenSSL verified the
chain, and a ``revoked`` verdict fails the handshake with an
``ssl.SSLCertVerificationError`` (verify code 23, "certificate revoked") before asyncio
hands out the connection, so neither ``connect`` nor ``forward`` sends a byte to a
revoked server.  (A resumed session is not judged again; it was when it was made.)

Client with ``no_sni``: the ssl module cannot check a name it did not send, so its host
name check is off and the name is checked after the handshake (verification of the chain
itself stays on).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from wirekit.errors import CertificateError, TLSError, UsageError, WirekitError
from wirekit.tls.context import client_context, server_hostname
from wirekit.tls.handshake import HANDSHAKE, Handshake

__all__ = [
    "ClientTLS",
    "client_tls",
    "explain_alert",
    "explain_client_failure",
    "explain_server_failure",
    "handshaking",
    "prepare_context",
    "wants_client_certificate",
]

_HANDSHAKE, _CERTIFICATE = 22, b"\x0b"


class _Explaining(ssl.SSLObject):
    """An SSLObject that keeps what explains a failed handshake (see the module doc)."""

    _wk_certificate: bytes | None = None  # the peer's Certificate message (servers)
    _wk_outgoing: ssl.MemoryBIO | None = None

    @classmethod
    def _create(cls, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                *args: Any, **kwargs: Any) -> _Explaining:
        obj = super()._create(incoming, outgoing, *args, **kwargs)  # type: ignore[misc]
        obj._wk_outgoing = outgoing
        return obj  # type: ignore[no-any-return]

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            exc.wk_chain = _peer_chain(self)  # type: ignore[attr-defined]
            exc.wk_certificate_seen = self._wk_certificate is not None  # type: ignore[attr-defined]
            if self._wk_outgoing is not None:
                # The alert OpenSSL queued; the transport drops it, so the TLS listener
                # (or connect(), refusing a server) sends it itself.
                exc.wk_alert = self._wk_outgoing.read()  # type: ignore[attr-defined]
            raise
        self._wk_certificate = None  # verified: no longer needed (memory per connection)
        revocation = getattr(self.context, "_wk_revocation", None)
        if revocation is not None and not self.server_side:
            revocation.check(self)



@contextlib.contextmanager
def handshaking(sock: socket.socket, *, server_side: bool) -> Iterator[Handshake]:
    """Around a TLS handshake on the connected ``sock``: sets :data:`HANDSHAKE`; when the
    handshake fails, sends the alert OpenSSL queued and the transport dropped
    (``exc.wk_alert``, as ``openssl s_client`` and ``s_server`` would send it; through a
    duplicate of the descriptor, since the transport closes ``sock``), then calls the
    ``on_failure`` callbacks."""
    handshake = Handshake.of(sock, server_side=server_side)
    token = HANDSHAKE.set(handshake)  # this task's context: seen by its callbacks only
    fd = -1
    with contextlib.suppress(OSError):
        fd = os.dup(sock.fileno())
    try:
        yield handshake
    except BaseException as exc:
        alert = getattr(exc, "wk_alert", b"")
        if alert and fd >= 0:
            with contextlib.suppress(OSError):
                os.write(fd, alert)
        handshake.failed()
        raise
    finally:
        HANDSHAKE.reset(token)
        if fd >= 0:
            os.close(fd)


X509_V_ERR_CERT_REVOKED = 23


@dataclass(frozen=True, slots=True)
class _Revocation:
    """The CRLs a client checks the server's chain against (see the module doc)."""

    crls: tuple[Any, ...]  # x509.CertificateRevocationList
    trust: Any  # wirekit.tls.inspect.Trust

    def check(self, obj: _Explaining) -> None:
        from wirekit.tls.inspect import inspect_chain

        chain = _peer_chain(obj)
        if not chain:
            return  # a resumed session: judged when it was made
        try:
            _, check = inspect_chain(chain, None, self.trust, now=dt.datetime.now(dt.UTC),
                                     crls=self.crls)
        except TLSError:
            return  # unparsable: OpenSSL accepted it; nothing to say about revocation
        revoked = [v for v in check.verdicts if v.code == "revoked"]
        if not revoked:
            return
        exc = ssl.SSLCertVerificationError(
            1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
               f"certificate revoked ({revoked[0].message})")
        exc.verify_code = X509_V_ERR_CERT_REVOKED
        exc.verify_message = "certificate revoked"
        exc.reason = "CERTIFICATE_VERIFY_FAILED"
        exc.library = "SSL"
        exc.wk_chain = chain  # type: ignore[attr-defined]
        raise exc


def _peer_chain(obj: _Explaining) -> list[bytes]:
    from wirekit.net.tlsprobe import unverified_chain

    try:
        chain = unverified_chain(obj)
    except (ssl.SSLError, ValueError, AttributeError):
        chain = []
    if chain or obj._wk_certificate is None:
        return chain
    from wirekit.dissect import tls as dtls
    from wirekit.errors import ParseError

    try:
        return dtls.Certificate.decode(obj._wk_certificate[4:]).certificates
    except ParseError:
        return []


def _record_certificate(conn: Any, direction: str, version: Any, content_type: int,
                        msg_type: Any, data: bytes) -> None:
    if content_type == _HANDSHAKE and direction == "read" and data[:1] == _CERTIFICATE:
        conn._wk_certificate = bytes(data)


def prepare_context(ctx: ssl.SSLContext, *, record_peer_certificate: bool = False) -> None:
    """Make failures on ``ctx`` explainable (a context wirekit made; never a user's)."""
    ctx.sslobject_class = _Explaining
    if record_peer_certificate:
        ctx._msg_callback = _record_certificate  # type: ignore[attr-defined]


def wants_client_certificate(ctx: ssl.SSLContext) -> bool:
    return ctx.verify_mode != ssl.CERT_NONE


# -- client -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """What ``connect`` needs for a TLS client connection."""

    context: ssl.SSLContext
    server_hostname: str | None  # passed to the ssl module (SNI and its host name check)
    checked_name: str  # the name the certificate must carry
    ca: str | os.PathLike[str] | None
    insecure: bool
    check_after: bool  # the ssl module does not check the name: check it after the handshake
    crls: tuple[Any, ...] | None = None  # x509.CertificateRevocationList, when --crl


CRLFiles = str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None


def load_crl_files(crl: CRLFiles) -> tuple[Any, ...] | None:
    """Every CRL in ``crl`` (one path or several; PEM or DER), or None for none given."""
    if crl is None:
        return None
    from wirekit.tls.certs import load_crls

    paths = [crl] if isinstance(crl, str | os.PathLike) else list(crl)
    if not paths:
        return None
    return tuple(c for path in paths for c in load_crls(path))


def client_tls(
    host: str,
    *,
    ca: str | os.PathLike[str] | None = None,
    insecure: bool = False,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    sni: str | None = None,
    no_sni: bool = False,
    alpn: Iterable[str] = (),
    min_version: str | None = None,
    max_version: str | None = None,
    keylog: str | os.PathLike[str] | None = None,
    crl: CRLFiles = None,
) -> ClientTLS:
    """A verifying client context for ``host`` (``insecure`` is the only way not to).

    ``crl``: a CRL file (PEM or DER, PEM may hold several) or several; a certificate of
    the server's chain that a CRL from its issuer lists fails the handshake (``revoked``),
    as ``wirekit tls --crl`` judges it."""
    if sni and no_sni:
        raise UsageError("--sni and --no-sni contradict each other")
    crls = load_crl_files(crl)
    if crls is not None and insecure:
        raise UsageError("--crl needs verification: drop --insecure")
    ctx = client_context(ca=ca, insecure=insecure, cert=cert, key=key, alpn=alpn,
                         min_version=min_version, max_version=max_version, keylog=keylog)
    prepare_context(ctx)
    if crls is not None:
        from wirekit.tls.inspect import load_trust

        ctx._wk_revocation = _Revocation(crls, load_trust(ca))  # type: ignore[attr-defined]
    send = server_hostname(host, sni=sni, no_sni=no_sni)
    check_after = False
    if send is None and not insecure:
        ctx.check_hostname = False  # the chain is still verified; the name is checked after
        check_after = True
    return ClientTLS(ctx, send, sni or host, ca, insecure, check_after, crls)


def check_name_after(tls: ClientTLS, ssl_object: ssl.SSLObject | None, where: str) -> None:
    """With ``--no-sni``: the certificate must still carry the name (else CertificateError)."""
    if not tls.check_after or ssl_object is None:
        return
    from cryptography import x509

    from wirekit.tls.verdicts import hostname_matches

    der = ssl_object.getpeercert(binary_form=True)
    if der and hostname_matches(x509.load_der_x509_certificate(der), tls.checked_name):
        return
    from wirekit.net.tlsprobe import unverified_chain

    raise _judged(unverified_chain(ssl_object) or ([der] if der else []), tls.checked_name,
                  tls.ca, where, "server", None)


def explain_client_failure(exc: ssl.SSLError, tls: ClientTLS, where: str) -> WirekitError | None:
    """The wirekit error for a refused server certificate, or None (not about certificates)."""
    if not isinstance(exc, ssl.SSLCertVerificationError):
        return None
    chain = getattr(exc, "wk_chain", None) or []
    return _judged(chain, tls.checked_name, tls.ca, where, "server", exc, tls.crls)


def _judged(chain: list[bytes], name: str | None, ca: str | os.PathLike[str] | None,
            where: str, purpose: str, exc: ssl.SSLError | None,
            crls: tuple[Any, ...] | None = None) -> WirekitError:
    from wirekit.tls.inspect import inspect_chain, load_trust
    from wirekit.tls.verdicts import certificate_error

    openssl = getattr(exc, "verify_message", None) or (exc.reason if exc else None) or "refused"
    if chain:
        try:
            _, check = inspect_chain(chain, name, load_trust(ca), now=dt.datetime.now(dt.UTC),
                                     crls=crls, purpose=purpose)
        except (TLSError, UsageError):
            check = None
        if check is not None and check.errors:
            return certificate_error(check, where)
    # Our checks found nothing OpenSSL did (or there was no chain): say what OpenSSL said.
    return CertificateError(f"certificate of {where} not trusted: {openssl}")


# Alerts a server sends after a TLS 1.3 client finished its handshake (so they arrive with
# the first read): what they mean for the client, in words.
_ALERTS = {
    "CERTIFICATE_REQUIRED": "the server requires a client certificate (give --cert/--key)",
    "CERTIFICATE_EXPIRED": "the server refused our client certificate: it has expired",
    "UNKNOWN_CA": "the server refused our client certificate: it does not trust its issuer",
    "BAD_CERTIFICATE": "the server refused our client certificate (bad certificate)",
    "UNSUPPORTED_CERTIFICATE": "the server refused our client certificate (unsupported)",
    "CERTIFICATE_REVOKED": "the server refused our client certificate: it is revoked",
    "ACCESS_DENIED": "the server denied access",
}


def explain_alert(exc: TLSError) -> TLSError:
    """``exc`` reworded when it carries a TLS alert from the peer (else ``exc`` itself)."""
    cause = exc.__cause__
    # The ssl module's reason, e.g. TLSV13_ALERT_CERTIFICATE_REQUIRED, which io_errors also
    # put at the end of the message (the cause may have been dropped on the way up).
    reason = getattr(cause, "reason", None) or str(exc).rsplit(": ", 1)[-1]
    if "ALERT_" not in reason or not reason.replace("_", "").isalnum():
        return exc
    alert = reason.split("ALERT_", 1)[1]
    text = _ALERTS.get(alert, f"the peer sent the alert {alert.replace('_', ' ').lower()}")
    host, port = getattr(exc, "host", ""), getattr(exc, "port", 0)
    where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return TLSError(f"TLS error with {where}: {text}", host=host, port=port)


# -- server -----------------------------------------------------------------------------


def explain_server_failure(exc: BaseException, ctx: ssl.SSLContext,
                           client_ca: str | os.PathLike[str] | None) -> str:
    """Why a client's handshake failed, one line for the server's log."""
    if isinstance(exc, TimeoutError) or "taking longer" in str(exc):
        return "the handshake timed out"
    if not isinstance(exc, ssl.SSLError):
        if isinstance(exc, OSError):
            return f"the connection failed during the handshake: {exc.strerror or exc}"
        return f"{type(exc).__name__}: {exc}"
    reason = exc.reason or ""
    if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE" or (
            wants_client_certificate(ctx) and isinstance(exc, ssl.SSLCertVerificationError)
            and not getattr(exc, "wk_certificate_seen", True)):
        return "no client certificate (one is required)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        chain = getattr(exc, "wk_chain", None) or []
        err = _judged(chain, None, client_ca, "the client", "client", exc)
        return str(err).replace("certificate of the client not trusted: ",
                                "client certificate not trusted: ")
    if reason == "HTTP_REQUEST":
        return "the client sent a plain HTTP request, not TLS"
    if reason == "WRONG_VERSION_NUMBER":
        return "the client does not speak TLS (wrong version number)"
    if reason in ("UNSUPPORTED_PROTOCOL", "VERSION_TOO_LOW", "NO_PROTOCOLS_AVAILABLE"):
        return f"no TLS version in common with the client ({reason.replace('_', ' ').lower()})"
    return reason.replace("_", " ").lower() if reason else str(exc)
