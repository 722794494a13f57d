"""``wirekit serve SERVICE [ADDRESS]``: the shell around :func:`wirekit.net.server.serve`."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import click

from wirekit.address import Address, parse_address
from wirekit.capture.recorder import Recorder
from wirekit.cli import _record as recording
from wirekit.cli._record import record_option
from wirekit.cli.tlsopts import alpn_list, server_options
from wirekit.errors import UsageError
from wirekit.net.acl import AccessList
from wirekit.net.gate import DEFAULT_GRACE, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNS, Limits
from wirekit.net.runtime import run, stop_signals, uvloop_available
from wirekit.net.server import DEFAULT_PORT, ConnectionEvent, raise_nofile_limit
from wirekit.net.server import serve as serve_api
from wirekit.net.services import SERVICES, get_service

__all__ = ["serve"]

_SERVICE_LIST = "\n".join(f"  {name:<8} {s.summary}" + ("" if s.udp else " (TCP only)")
                          for name, s in SERVICES.items())


@dataclass(frozen=True, slots=True)
class ServeConfig:
    service: str
    address: Address
    limits: Limits
    quiet: bool
    verbose: bool
    json: bool
    tls: dict[str, object] | None = None  # serve()'s TLS keyword arguments, for tls://


def _format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


class Reporter:
    """Renders server events: human lines on stderr, or JSON objects on stdout."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config

    def status(self, text: str, *, detail: bool = False) -> None:
        if self.config.quiet or (detail and not self.config.verbose):
            return
        click.echo(text, err=True)

    def emit(self, obj: dict[str, object]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def event(self, ev: ConnectionEvent) -> None:
        if self.config.json:
            self.emit(ev.to_dict())
            return
        if self.config.quiet:
            return
        if ev.ended == "refused":
            click.echo(f"{ev.peer.hostport} refused: {ev.detail}", err=True)
            return
        if ev.ended == "tls failed":
            click.echo(f"{ev.peer.hostport} TLS handshake failed: {ev.detail}", err=True)
            return
        if ev.ended == "datagram":
            if self.config.verbose:
                click.echo(f"{ev.peer} datagram: in {_format_bytes(ev.bytes_in)}, "
                           f"out {_format_bytes(ev.bytes_out)}", err=True)
            return
        detail = f" ({ev.detail})" if ev.detail else ""
        click.echo(f"{ev.peer.hostport} {ev.ended}{detail}: in {_format_bytes(ev.bytes_in)}, "
                   f"out {_format_bytes(ev.bytes_out)}, {ev.duration:.3f}s", err=True)


async def _serve(config: ServeConfig, reporter: Reporter, recorder: Recorder | None = None,
                 ) -> None:
    wants_events = config.json or not config.quiet  # -q alone: skip building events at all
    server = await serve_api(config.service, config.address, limits=config.limits,
                             on_event=reporter.event if wants_events else None,
                             record=recorder,
                             **(config.tls or {}))  # type: ignore[arg-type]
    issued_by = server.tls.issued_by if server.tls is not None else None
    async with stop_signals() as stop:
        if config.json:
            listening: dict[str, object] = {"event": "listening", "service": server.service,
                                            "address": str(server.address)}
            if issued_by is not None:
                listening["ca"] = str(issued_by)
            reporter.emit(listening)
        # The one line scripts and tests wait for, even with -q (port 0 needs it).
        click.echo(f"wirekit serve {server.service}: listening on {server.address}", err=True)
        if issued_by is not None and server.tls is not None:
            if server.tls.created_ca:
                reporter.status(f"created a local CA in {issued_by.parent} (as wirekit cert "
                                "init does); its key never leaves that directory")
            reporter.status(f"certificate for {', '.join(server.tls.names)} issued by the local "
                            f"CA {issued_by}; clients trust it with: --ca {issued_by}")
        if not server.address.is_loopback and server.tls is None:
            reporter.status(f"warning: {server.service} is plaintext and listening on "
                            f"{server.address.hostport}, which other machines may reach; "
                            "use --allow to restrict who may connect")
        reporter.status(f"limits: --max-conns {config.limits.max_conns}, --idle-timeout "
                        f"{config.limits.idle_timeout:g}s, event loop: "
                        f"{'uvloop' if uvloop_available() else 'asyncio'}", detail=True)
        try:
            await stop.wait()
        finally:
            server.close()  # stop accepting at once, then report and drain
            open_now = server.active
            if open_now:
                reporter.status(f"stopping: waiting up to {config.limits.grace:g}s for "
                                f"{open_now} open connection(s)")
            await server.aclose()
    reporter.status(f"stopped: {server.accepted} connection(s) served, "
                    f"{server.refused} refused", detail=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               epilog="\b\nServices:\n" + _SERVICE_LIST)
@click.argument("service", metavar="SERVICE")
@click.argument("address", required=False, default="tcp://127.0.0.1:12345")
@click.option("--max-conns", type=click.IntRange(min=1), default=DEFAULT_MAX_CONNS,
              show_default=True, help="Connections open at once; more are refused at once.")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_IDLE_TIMEOUT, show_default=True, metavar="S",
              help="Close a connection with no traffic either way for S seconds.")
@click.option("--grace", type=click.FloatRange(min=0), default=DEFAULT_GRACE,
              show_default=True, metavar="S",
              help="On Ctrl-C/SIGTERM, let open connections finish for up to S seconds.")
@click.option("--allow", "allow", multiple=True, metavar="CIDR",
              help="Admit only peers in CIDR (repeatable; IPv4 or IPv6).")
@click.option("--deny", "deny", multiple=True, metavar="CIDR",
              help="Refuse peers in CIDR (repeatable; deny wins over --allow).")
@server_options()
@record_option
@click.option("-q", "--quiet", is_flag=True, help="Print only the 'listening on' line.")
@click.option("-v", "--verbose", is_flag=True, help="Also print limits, datagrams, a summary.")
@click.option("--json", "as_json", is_flag=True,
              help="Events as JSON objects, one per line, on stdout.")
def serve(service: str, address: str, max_conns: int, idle_timeout: float, grace: float,
          allow: tuple[str, ...], deny: tuple[str, ...], cert: str | None, key: str | None,
          ca_dir: str | None, client_ca: str | None, require_client_cert: bool,
          alpn: tuple[str, ...], min_version: str | None, max_version: str | None,
          keylog: str | None, handshake_timeout: float, record: str | None, quiet: bool,
          verbose: bool, as_json: bool) -> None:
    """Serve a built-in SERVICE on ADDRESS (default tcp://127.0.0.1:12345; also udp://, tls://).

    Prints "listening on SCHEME://HOST:PORT" once bound (port 0 picks a free port), then
    one line per finished connection: peer, bytes each way, duration, how it ended.
    tls:// serves the service over TLS (TLS 1.2+, wirekit's defaults); each failed
    handshake is logged with its reason (no client certificate, expired, unknown CA...).
    Ctrl-C or SIGTERM stops accepting at once and lets open connections finish for up to
    --grace seconds.

    \b
    Examples:
      wirekit serve time                      # the chapter's time server on :12345
      wirekit serve echo :0                   # echo on a free loopback port
      wirekit serve echo udp://:9999          # UDP echo
      wirekit serve http :8080                # then: curl http://127.0.0.1:8080/
      wirekit serve chargen 0.0.0.0:1900 --allow 10.0.0.0/8 --max-conns 50
      wirekit serve daytime [::1]:1300 --json
      wirekit serve echo tls://:8443          # certificate from the local CA, on the fly
      wirekit serve http tls://:8443 --cert site.pem --key site-key.pem
      wirekit serve echo tls://:8443 --client-ca ca.pem --require-client-cert   # mutual TLS
      wirekit serve http :8080 --record http.pcapng   # every connection, for Wireshark
      wirekit serve echo udp://:9999 --record udp.pcapng   # every datagram, each way
      wirekit serve http tls://:8443 --record tls.pcapng   # tshark decrypts it, no key log
    """
    addr = parse_address(address, default_port=DEFAULT_PORT, schemes=("tcp", "udp", "tls"))
    protocols = alpn_list(alpn)
    tls_options = {"cert": cert, "key": key, "ca_dir": ca_dir, "client_ca": client_ca,
                   "require_client_cert": require_client_cert, "alpn": protocols,
                   "min_version": min_version, "max_version": max_version, "keylog": keylog}
    if addr.scheme != "tls" and any(tls_options.values()):
        raise UsageError(f"TLS options need a tls:// address, not {addr}")
    config = ServeConfig(
        service=get_service(service).name,
        address=addr,
        limits=Limits(max_conns=max_conns, idle_timeout=idle_timeout, grace=grace,
                      acl=AccessList.from_strings(allow, deny)),
        quiet=quiet, verbose=verbose, json=as_json,
        tls={**tls_options, "handshake_timeout": handshake_timeout}
        if addr.scheme == "tls" else None,
    )
    raise_nofile_limit()
    recorder = recording.start(record)
    try:
        run(_serve(config, Reporter(config), recorder))
    finally:
        recording.finish(recorder, quiet=quiet, as_json=as_json)
