"""``wirekit tls HOST[:PORT]``: handshake, show the chain, and say why it is (not) trusted."""

from __future__ import annotations

import json
from dataclasses import dataclass

import click
from rich.console import Console

from wirekit.address import parse_address
from wirekit.errors import UsageError
from wirekit.net.tlsprobe import DEFAULT_TIMEOUT, probe
from wirekit.report.chain import render_report
from wirekit.tls.certs import load_crls
from wirekit.tls.verdicts import certificate_error

__all__ = ["tls"]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    host: str
    port: int
    sni: str | None
    no_sni: bool
    alpn: tuple[str, ...]
    min_version: str | None
    max_version: str | None
    ca: str | None
    crl: tuple[str, ...]
    cert: str | None
    key: str | None
    timeout: float
    insecure: bool
    keylog: str | None
    handshake: bool
    json: bool
    quiet: bool
    verbose: bool


EXAMPLES = """
\b
Examples:
  wirekit tls example.org                  # port 443, system roots
  wirekit tls localhost:8443 --ca ~/.local/share/wirekit/ca/ca.pem
  wirekit tls 127.0.0.1:8443 --sni www.test --alpn h2,http/1.1
  wirekit tls example.org --max-version 1.2 --json | jq .verdicts
  wirekit tls example.org --handshake -v    # every handshake message, decoded
  wirekit tls internal:443 --crl ca.crl --keylog keys.log

\b
Exit codes: 0 verified (host name included), 1 not verified or no handshake, 2 usage.
Verdict codes: expired, not_yet_valid, hostname_mismatch, self_signed, untrusted_root,
incomplete_chain, weak_key, weak_signature, wrong_usage, revoked, invalid_chain (errors);
expires_soon (warning); legacy_protocol (an error: a server with nothing newer than TLS 1.1
is reported from a report-only legacy handshake; wirekit never uses TLS 1.0/1.1).
"""


@click.command("tls", epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("address")
@click.option("--sni", metavar="NAME", help="Name to send as SNI and to check the certificate "
              "against (default: the host; none for an IP address, which is checked "
              "against the IP SANs).")
@click.option("--no-sni", is_flag=True, help="Send no SNI (the host is still checked).")
@click.option("--alpn", metavar="PROTO[,PROTO]", multiple=True,
              help="Offer ALPN protocols, e.g. h2,http/1.1.")
@click.option("--min-version", type=click.Choice(["1.2", "1.3"]), help="Lowest TLS version.")
@click.option("--max-version", type=click.Choice(["1.2", "1.3"]), help="Highest TLS version.")
@click.option("--ca", metavar="FILE", type=click.Path(dir_okay=False),
              help="Trust the roots in FILE instead of the system's.")
@click.option("--crl", metavar="FILE", multiple=True, type=click.Path(dir_okay=False),
              help="Check revocation against the CRLs in FILE (PEM or DER; repeatable).")
@click.option("--cert", metavar="FILE", type=click.Path(dir_okay=False),
              help="Client certificate (PEM, may include the key).")
@click.option("--key", metavar="FILE", type=click.Path(dir_okay=False),
              help="Private key of the client certificate.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT,
              show_default=True, help="Seconds for connect and handshake.")
@click.option("--insecure", is_flag=True, help="Report, but exit 0 even when the certificate "
              "is not trusted (like curl -k).  Says so on stderr.")
@click.option("--keylog", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write NSS key-log lines for Wireshark (SSLKEYLOGFILE is honoured too).")
@click.option("--handshake", is_flag=True, help="Show every handshake message (TLS 1.3 ones "
              "decrypted): ClientHello's suites and extensions, ServerHello's choice, ...")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No status on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Show every certificate of the verified path.")
def tls(address: str, sni: str | None, no_sni: bool, alpn: tuple[str, ...],
        min_version: str | None, max_version: str | None, ca: str | None, crl: tuple[str, ...],
        cert: str | None, key: str | None, timeout: float, insecure: bool, keylog: str | None,
        handshake: bool, as_json: bool, quiet: bool, verbose: bool) -> None:
    """Connect to HOST[:PORT] (443), handshake, and report the certificate chain and verdict.

    Verification is done by wirekit itself so that every reason is reported, not only the
    first one OpenSSL meets.
    """
    if sni and no_sni:
        raise UsageError("--sni and --no-sni contradict each other")
    addr = parse_address(address, default_scheme="tls", default_port=443,
                         schemes=("tcp", "tls"))
    protocols = tuple(p.strip() for item in alpn for p in item.split(",") if p.strip())
    config = TLSConfig(addr.host, addr.port, sni, no_sni, protocols, min_version, max_version,
                       ca, crl, cert, key, timeout, insecure, keylog, handshake, as_json, quiet,
                       verbose)
    run(config)


def run(config: TLSConfig) -> None:
    """Probe and render; an untrusted chain raises CertificateError (exit 1) after the report."""
    err = Console(stderr=True, quiet=config.quiet, highlight=False)
    if config.insecure:
        err.print("[yellow]wirekit: warning: --insecure: an untrusted certificate will not "
                  "fail this command[/]")
    crls = [c for path in config.crl for c in load_crls(path)] if config.crl else None
    report = probe(
        config.host, config.port, sni=config.sni, no_sni=config.no_sni, alpn=config.alpn,
        min_version=config.min_version, max_version=config.max_version, ca=config.ca,
        crls=crls, cert=config.cert, key=config.key, keylog=config.keylog,
        timeout=config.timeout, handshake=config.handshake,
    )
    if config.json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        Console(highlight=False, soft_wrap=False).print(render_report(report,
                                                                      verbose=config.verbose))
    if report.verified:
        return
    if config.insecure:
        err.print("[yellow]wirekit: warning: certificate NOT verified; exiting 0 because of "
                  "--insecure[/]")
        return
    raise certificate_error(report.check, report.address)
