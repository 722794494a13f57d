"""The TLS command-line options shared by ``connect``, ``serve`` and ``forward``.

One definition per flag (name, type, metavar); a command passes its own help wording
where the flag means something slightly different for it (``--cert`` is the client's
certificate for ``connect`` and the server's for ``serve``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from wirekit.net.tls_server import DEFAULT_HANDSHAKE_TIMEOUT

__all__ = ["alpn_list", "client_options", "options", "server_options"]

F = TypeVar("F", bound=Callable[..., Any])

VERSIONS = click.Choice(["1.2", "1.3"])


def _file(name: str, help: str, *decls: str) -> Callable[[F], F]:
    return click.option(name, *decls, metavar="FILE", type=click.Path(dir_okay=False),
                        help=help)


# name -> (help, factory taking the help text)
_FACTORIES: dict[str, Callable[[str], Callable[[F], F]]] = {
    "ca": lambda h: _file("--ca", h),
    "insecure": lambda h: click.option("--insecure", is_flag=True, help=h),
    "sni": lambda h: click.option("--sni", metavar="NAME", help=h),
    "no_sni": lambda h: click.option("--no-sni", is_flag=True, help=h),
    "alpn": lambda h: click.option("--alpn", metavar="PROTO[,PROTO]", multiple=True, help=h),
    "min_version": lambda h: click.option("--min-version", type=VERSIONS, help=h),
    "max_version": lambda h: click.option("--max-version", type=VERSIONS, help=h),
    "cert": lambda h: _file("--cert", h),
    "key": lambda h: _file("--key", h),
    "keylog": lambda h: _file("--keylog", h),
    "crl": lambda h: click.option("--crl", metavar="FILE", multiple=True,
                                  type=click.Path(dir_okay=False), help=h),
    "ca_dir": lambda h: click.option("--ca-dir", metavar="DIR",
                                     type=click.Path(file_okay=False), help=h),
    "client_ca": lambda h: _file("--client-ca", h),
    "require_client_cert": lambda h: click.option("--require-client-cert", is_flag=True,
                                                  help=h),
    "handshake_timeout": lambda h: click.option(
        "--handshake-timeout", type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_HANDSHAKE_TIMEOUT, show_default=True, metavar="S", help=h),
    "target_cert": lambda h: _file("--target-cert", h),
    "target_key": lambda h: _file("--target-key", h),
}


CRL_HELP = ("check revocation against the CRLs in FILE (PEM or DER; repeatable), as "
            "wirekit tls --crl does: a certificate of the chain listed by a CRL from its "
            "issuer fails the handshake (revoked); a certificate whose issuer has no CRL "
            "given is not checked.")


def options(**helps: str) -> Callable[[F], F]:
    """Decorate a command with the named TLS options (in the order given), each with its
    help text: ``@options(ca="...", insecure="...")``."""
    decorators = [_FACTORIES[name](text) for name, text in helps.items()]

    def apply(f: F) -> F:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f

    return apply


def client_options(p: str = "TLS: ") -> Callable[[F], F]:
    """The TLS client's options (``connect``, ``tls``): verification, SNI, ALPN, versions,
    client certificate, key log."""
    return options(
        ca=f"{p}trust the roots in FILE instead of the system's.",
        crl=f"{p}{CRL_HELP}",
        insecure=f"{p}do not verify the certificate (says so on stderr).",
        sni=f"{p}name to send as SNI and to check the certificate against "
            "(default: the host; none for an IP address).",
        no_sni=f"{p}send no SNI (the host is still checked).",
        alpn=f"{p}offer ALPN protocols, e.g. h2,http/1.1.",
        min_version=f"{p}lowest version.",
        max_version=f"{p}highest version.",
        cert=f"{p}client certificate (PEM, may include the key).",
        key=f"{p}private key of the client certificate.",
        keylog=f"{p}write NSS key-log lines for Wireshark (SSLKEYLOGFILE is honoured).",
    )


def server_options(p: str = "tls://: ") -> Callable[[F], F]:
    """The TLS server's options (``serve``)."""
    return options(
        cert=f"{p}certificate chain (PEM, leaf first; may include the key). "
             "Default: one issued on the fly by the local CA (see --ca-dir).",
        key=f"{p}private key of --cert.",
        ca_dir=f"{p.removesuffix(': ')} without --cert: the local CA that issues the "
               "certificate (default: wirekit cert's; created when missing).",
        client_ca=f"{p}ask clients for a certificate issued by the roots in FILE.",
        require_client_cert=f"{p}refuse clients without a valid certificate "
                            "(needs --client-ca).",
        alpn=f"{p}ALPN protocols to accept, e.g. http/1.1.",
        min_version=f"{p}lowest version.",
        max_version=f"{p}highest version.",
        keylog=f"{p}write NSS key-log lines for Wireshark (SSLKEYLOGFILE is honoured).",
        handshake_timeout=f"{p}close a connection whose TLS handshake takes longer.",
    )


def alpn_list(values: Iterable[str]) -> tuple[str, ...]:
    """``--alpn h2,http/1.1 --alpn x`` -> ("h2", "http/1.1", "x")."""
    return tuple(p.strip() for item in values for p in item.split(",") if p.strip())
