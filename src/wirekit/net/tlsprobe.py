"""``wirekit tls``'s network half: connect, handshake, fetch the chain as sent.

The handshake runs with verification OFF at the ssl layer, on purpose: OpenSSL stops at
its first complaint and then hands us no chain at all, while we want the whole chain and
every reason it is (not) trusted.  The verdicts are computed afterwards, from the chain,
by :mod:`wirekit.tls.verdicts`; a probe is never "verified" unless those say so.  Every
other default stays: same protocol floor, same cipher suites, same security level.
(OpenSSL's security level only refuses weak peer certificates during verification, which
is off here, so a 1024-bit or SHA-1 certificate still arrives and is reported as
``weak_key`` / ``weak_signature`` without lowering anything.)

One exception, for reporting only: a server that refuses TLS 1.2 and 1.3 gets a second,
legacy handshake (TLS 1.0/1.1, OpenSSL security level 0) that fetches its chain; nothing
is sent over it and the report is never "verified" (``legacy_protocol`` becomes an error).

This is a blocking one-shot probe (a socket with a timeout): it serves a command that makes
one connection, and keeps asyncio out of the one place where the raw ssl object is needed.
"""

from __future__ import annotations

import datetime as dt
import os
import select
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from cryptography import x509

from wirekit.errors import ConnectError, TLSError
from wirekit.net._errors import connect_errors
from wirekit.tls.context import client_context, is_ip_literal, server_hostname
from wirekit.tls.inspect import TLSReport, Trust, inspect_chain, load_trust
from wirekit.tls.verdicts import ERROR, ChainCheck, Verdict

__all__ = ["DEFAULT_TIMEOUT", "probe", "unverified_chain"]

DEFAULT_TIMEOUT = 10.0
# TLS 1.3 servers send NewSessionTicket after the handshake; a trace waits this long (at
# most) for it.  Only with --handshake: a plain probe never waits.
TICKET_WAIT = 0.5
TICKET_GAP = 0.05


def probe(
    host: str,
    port: int = 443,
    *,
    sni: str | None = None,
    no_sni: bool = False,
    alpn: Iterable[str] = (),
    min_version: str | None = None,
    max_version: str | None = None,
    ca: str | os.PathLike[str] | None = None,
    trust: Trust | None = None,
    crls: Sequence[x509.CertificateRevocationList] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    keylog: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    prepare: Callable[[ssl.SSLContext], None] | None = None,
    handshake: bool = False,
    now: dt.datetime | None = None,
) -> TLSReport:
    """Handshake with ``host:port`` and report the chain and every verdict.

    ``prepare`` sees the context before the handshake; ``handshake=True`` records every
    handshake message (``report.handshake``) with :class:`wirekit.tls.trace.HandshakeTrace`.
    Raises a :class:`~wirekit.errors.ConnectError` / :class:`TLSError` when no handshake
    happens; an untrusted certificate is *not* an exception here, it is a report.
    """
    trust = trust or load_trust(ca)
    ctx = client_context(ca=ca, cert=cert, key=key, alpn=alpn, min_version=min_version,
                         max_version=max_version, keylog=keylog)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # verdicts come after the handshake, see module doc
    if prepare is not None:
        prepare(ctx)
    tracer = None
    if handshake:
        from wirekit.tls.trace import HandshakeTrace

        tracer = HandshakeTrace.attach(ctx)
    checked_name = sni or host
    send_name = server_hostname(host, sni=sni, no_sni=no_sni)
    legacy = False
    try:
        shook = _handshake(ctx, host, port, send_name, timeout, tracer is not None)
    except TLSError as exc:
        if min_version is not None or not _version_refused(exc):
            raise
        try:
            shook = _handshake(_legacy_context(), host, port, send_name, timeout, False)
        except (TLSError, ConnectError):
            raise exc from None
        legacy = True
    peer, chain_der, protocol, suite, alpn_chosen = shook
    if not chain_der:
        raise TLSError(f"{host}:{port} sent no certificate", host=host, port=port)
    chain, check = inspect_chain(chain_der, checked_name, trust,
                                 now=now or dt.datetime.now(dt.UTC), crls=crls,
                                 protocol=protocol)
    if legacy:
        check = _refuse_legacy(check, protocol)
    return TLSReport(
        host=host, port=port, peer=peer,
        sni=send_name if send_name and not is_ip_literal(send_name) else None,
        hostname=checked_name, protocol=protocol, cipher=suite[0] if suite else None,
        alpn=alpn_chosen, chain=chain, check=check,
        handshake=tuple(tracer.messages) if tracer is not None else None,
    )


_Handshake = tuple[str, list[bytes], str | None, tuple[str, str, int] | None, str | None]


def _handshake(ctx: ssl.SSLContext, host: str, port: int, send_name: str | None,
               timeout: float, tickets: bool) -> _Handshake:
    with connect_errors(host, port, timeout):
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            with ctx.wrap_socket(raw, server_hostname=send_name) as tls:
                result = (tls.getpeername()[0], unverified_chain(tls), tls.version(),
                          tls.cipher(), tls.selected_alpn_protocol())
                if tickets and result[2] == "TLSv1.3":
                    _collect_tickets(tls, min(timeout, TICKET_WAIT))
                return result
        finally:
            raw.close()


# A server that only speaks TLS 1.0/1.1 fails our handshake with one of these.  The probe
# then retries once with a legacy context, only to fetch the chain for the report: nothing
# is sent over it, and the report is "not verified" (legacy_protocol as an error).
_VERSION_REFUSED = {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "WRONG_SSL_VERSION",
                    "NO_PROTOCOLS_AVAILABLE", "VERSION_TOO_LOW"}


def _version_refused(exc: TLSError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, ssl.SSLError) and cause.reason in _VERSION_REFUSED


def _legacy_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # the ssl module rightly deprecates these versions
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 needs level 0 for TLS 1.0/1.1
    return ctx


def _refuse_legacy(check: ChainCheck, protocol: str | None) -> ChainCheck:
    name = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1"}.get(protocol or "", protocol)
    refused = Verdict("legacy_protocol", ERROR, f"only {name} could be negotiated (deprecated "
                      "by RFC 8996); wirekit refuses it (TLS 1.2 minimum) and fetched this "
                      "chain with a report-only legacy handshake")
    others = tuple(v for v in check.verdicts if v.code != "legacy_protocol")
    return replace(check, verdicts=(*others, refused))


def unverified_chain(tls: ssl.SSLSocket | ssl.SSLObject) -> list[bytes]:
    """The chain exactly as the peer sent it, DER, leaf first.

    Works on an ``SSLSocket`` and on the ``SSLObject`` of an asyncio/uvloop transport
    (``transport.get_extra_info("ssl_object")``), so connect/serve can explain a failed
    verification with :func:`wirekit.tls.verdicts.check_chain`.
    """
    public = getattr(tls, "get_unverified_chain", None)  # Python >= 3.13
    if public is not None:
        return [bytes(c) for c in public() or []]
    sslobj = getattr(tls, "_sslobj")  # noqa: B009  # 3.11/3.12: private, see DESIGN.md
    certs = sslobj.get_unverified_chain() or []
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in certs]  # type: ignore[attr-defined]


def _collect_tickets(tls: ssl.SSLSocket, wait: float) -> None:
    """Let OpenSSL process post-handshake messages already sent by the server."""
    deadline = time.monotonic() + wait
    got_one = False
    tls.setblocking(False)
    try:
        while (left := deadline - time.monotonic()) > 0:
            # Tickets come in a burst: once one arrived, only wait briefly for the rest.
            readable, _, _ = select.select([tls], [], [], min(left, TICKET_GAP) if got_one
                                           else left)
            if not readable:
                return
            try:
                if not tls.recv(1):
                    return  # the server closed
            except ssl.SSLWantReadError:
                got_one = True  # a record without application data (a ticket) was consumed
                continue
            except (ssl.SSLError, OSError):
                return
            else:
                return  # application data: the handshake is long over
    finally:
        tls.settimeout(None)
