"""``wirekit forward``: the port forwarder's command line (a shell over wirekit.net.forward)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import click

from wirekit.cli import _record as recording
from wirekit.cli._record import record_option
from wirekit.cli.tlsopts import CRL_HELP, alpn_list, options
from wirekit.errors import UsageError
from wirekit.net.acl import AccessList
from wirekit.net.forward import ConnectionEnded, Forwarder, Rule, forward_rules
from wirekit.net.forward_config import load_rules, parse_rule_option
from wirekit.net.gate import DEFAULT_GRACE, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNS, Limits
from wirekit.net.runtime import run, stop_signals

__all__ = ["forward"]


class _Output:
    """Status lines to stderr (or JSON lines to stdout with --json)."""

    def __init__(self, *, quiet: bool, verbose: bool, as_json: bool, prefix: str = "") -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.as_json = as_json
        self.prefix = prefix

    def status(self, text: str, **record: object) -> None:
        if self.as_json:
            if record:
                sys.stdout.write(json.dumps(record) + "\n")
                sys.stdout.flush()
            if not self.quiet and text.startswith("listening on"):
                click.echo(self.prefix + text, err=True)
            return
        if not self.quiet:
            click.echo(self.prefix + text, err=True)

    def warn(self, text: str) -> None:
        click.echo(f"wirekit: warning: {text}", err=True)

    def event(self, ev: ConnectionEnded) -> None:
        if self.quiet and not self.as_json:
            return  # -q: no line to print, so no record to build (one per connection)
        detail = f" ({ev.detail})" if ev.detail else ""
        if ev.reason == "rejected":
            text = f"{ev.client} rejected: {ev.detail}"
        else:
            text = (f"{ev.client} -> {ev.target} {ev.reason}{detail}: {ev.bytes_up} B up, "
                    f"{ev.bytes_down} B down, {ev.duration:.3f}s")
        self.status(text, event="connection", **asdict(ev))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("listen", required=False)
@click.argument("target", required=False)
@click.option("-f", "--forward", "rules", multiple=True, metavar="LISTEN=TARGET",
              help="Another forward rule (repeatable), e.g. -f :8081=10.0.0.5:81.")
@click.option("--config", "config", type=click.Path(dir_okay=False), metavar="FILE",
              help="TOML file of [[forward]] rules with optional per-rule settings.")
@click.option("--max-conns", type=click.IntRange(min=1), default=DEFAULT_MAX_CONNS,
              show_default=True, help="Connections (UDP sessions) per rule; more are refused.")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0,
              show_default=True, help="Seconds to reach the target before giving up.")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_IDLE_TIMEOUT, show_default=True,
              help="Close a TCP connection after this many seconds without traffic.")
@click.option("--allow", multiple=True, metavar="CIDR",
              help="Only admit clients from this network (repeatable).")
@click.option("--deny", multiple=True, metavar="CIDR",
              help="Refuse clients from this network (repeatable; deny wins).")
@click.option("--grace", type=click.FloatRange(min=0), default=DEFAULT_GRACE,
              show_default=True,
              help="On SIGINT/SIGTERM stop accepting, let transfers finish this long, "
                   "then close.")
@click.option("--udp-idle", type=click.FloatRange(min=0, min_open=True), default=60.0,
              show_default=True, help="Seconds before an idle UDP session expires.")
@click.option("--workers", type=click.IntRange(min=1, max=256), default=1, show_default=True,
              help="Processes sharing the listening ports (SO_REUSEPORT).")
@click.option("--hexdump", is_flag=True, help="Hexdump the traffic to stderr (>> up, << down).")
@click.option("--splice", is_flag=True,
              help="Zero-copy TCP relay with os.splice (Linux): less CPU; no --hexdump.")
@record_option
@click.option("--stats", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Print totals (open connections, bytes, rates) every S seconds.")
@options(
    cert="tls:// LISTEN: the server's certificate chain (PEM; default: one issued on the "
         "fly by the local CA, see --ca-dir). Only TARGET tls://: the client certificate.",
    key="Private key of --cert.",
    ca_dir="tls:// LISTEN without --cert: the local CA that issues the certificate "
           "(default: wirekit cert's; created when missing).",
    client_ca="tls:// LISTEN: ask clients for a certificate issued by the roots in FILE.",
    require_client_cert="tls:// LISTEN: refuse clients without a valid certificate "
                        "(needs --client-ca).",
    ca="tls:// TARGET: trust the roots in FILE instead of the system's.",
    crl=f"tls:// TARGET: {CRL_HELP}",
    insecure="tls:// TARGET: do not verify its certificate (says so on stderr).",
    sni="tls:// TARGET: name to send as SNI and to check its certificate against "
        "(default: the target host; none for an IP address).",
    target_cert="tls:// TARGET when LISTEN is tls:// too: the client certificate (PEM).",
    target_key="Private key of --target-cert.",
    alpn="TLS (each tls:// side): ALPN protocols, e.g. http/1.1.",
    min_version="TLS (each tls:// side): lowest version.",
    max_version="TLS (each tls:// side): highest version.",
    keylog="TLS: write NSS key-log lines for Wireshark (SSLKEYLOGFILE is honoured).",
    handshake_timeout="TLS: give up on a handshake that takes longer.",
)
@click.option("-q", "--quiet", is_flag=True, help="No status output (errors only).")
@click.option("-v", "--verbose", is_flag=True, help="More detail (a summary at exit).")
@click.option("--json", "as_json", is_flag=True,
              help="Events as JSON lines on stdout: listening, connection, stats, stopped.")
def forward(
    listen: str | None, target: str | None, rules: Sequence[str], config: str | None,
    max_conns: int, connect_timeout: float, idle_timeout: float, allow: Sequence[str],
    deny: Sequence[str], grace: float, udp_idle: float, workers: int, hexdump: bool,
    splice: bool, record: str | None, stats: float | None, quiet: bool, verbose: bool,
    as_json: bool, **tls: Any,
) -> None:
    """Forward connections from LISTEN to TARGET (TCP, or UDP with udp:// on both sides).

    Bytes are relayed both ways unchanged; a half-close (FIN) is passed on as a
    half-close and a reset (RST) as a reset; a client whose target refuses, does not
    resolve or times out is reset at once.  Memory per connection stays bounded: a slow
    reader stalls its sender.  One line is printed per finished connection: client,
    target, how it ended (closed, reset, refused, timeout, idle, shutdown), bytes each way
    and duration.  LISTEN binds 127.0.0.1 unless it names a host.

    \b
    Examples:
      wirekit forward :8080 example.org:80          # 127.0.0.1:8080 -> example.org:80
      wirekit forward 0.0.0.0:8080 10.0.0.5:80      # all interfaces (warns: plaintext)
      wirekit forward udp://:5353 udp://127.0.0.1:53
      wirekit forward -f :8080=127.0.0.1:80 -f :8443=127.0.0.1:443
      wirekit forward --config rules.toml           # [[forward]] listen=":8080" target=...
      wirekit forward :8080 :80 --max-conns 100 --allow 127.0.0.0/8 --idle-timeout 60
      wirekit forward :8080 :80 --hexdump           # show the traffic, >> up, << down
      wirekit forward :8080 :80 --stats 5 --workers 2
      wirekit forward :8080 :80 --splice            # zero-copy, less CPU (Linux)
      wirekit forward tls://0.0.0.0:990 :21 --cert ftp.pem --key ftp-key.pem
      wirekit forward tls://:8443 :8080             # certificate from the local CA
      wirekit forward tls://:8443 :80 --client-ca ca.pem --require-client-cert
      wirekit forward :1143 tls://mail.example.org:993     # verified TLS to the target
      wirekit forward :8080 tls://10.0.0.5:443 --ca ca.pem --sni internal.test
      wirekit forward :8080 tls://internal:443 --ca ca.pem --crl ca.crl  # refuse revoked
      wirekit forward :8080 :80 --record fwd.pcapng # both legs, for Wireshark/tshark

    \b
    TLS (stunnel's two modes): tls://LISTEN terminates TLS in front of a plaintext
    TARGET; tls://TARGET originates TLS, verified like wirekit tls: a target whose
    certificate is not trusted resets the client at once and its connection line says
    why ("tls failed (certificate of ... not trusted: ...)").  A client's failed
    handshake is one "tls failed" line with the reason.  TLS has no half-close here: a
    FIN from a plaintext side becomes close_notify (after what is buffered) and what the
    TLS side sends after that is dropped; a close_notify from a TLS side becomes a FIN,
    then the connection closes.  Resets are passed on as resets.
    """
    limits = Limits(max_conns=max_conns, idle_timeout=idle_timeout, grace=grace,
                    acl=AccessList.from_strings(allow, deny))
    all_rules = _collect_rules(listen, target, rules, config, limits)
    out = _Output(quiet=quiet, verbose=verbose, as_json=as_json)
    listen_tls, target_tls = _tls_settings(all_rules, tls, out)
    for rule in all_rules:
        if not rule.listen.is_loopback and rule.listen.scheme != "tls":
            out.warn(f"listening on {rule.listen.hostport} (not loopback) without encryption: "
                     "anyone who can reach it can use this forward")
    options: dict[str, Any] = {"limits": limits, "connect_timeout": connect_timeout,
                               "udp_idle": udp_idle, "hexdump": sys.stderr if hexdump else None,
                               "splice": splice, "listen_tls": listen_tls,
                               "target_tls": target_tls}
    if splice and hexdump:
        raise UsageError("--splice moves bytes inside the kernel: it cannot --hexdump them")

    if record and (workers > 1 or splice):
        raise UsageError("--record needs one process that sees the bytes: not with "
                         "--workers or --splice")
    if workers == 1:
        recorder = options["record"] = recording.start(record)
        try:
            code = run(_serve(all_rules, options, out, stats=stats, socks=None))
        finally:
            recording.finish(recorder, quiet=quiet, as_json=as_json)
        raise click.exceptions.Exit(code)

    from wirekit.net import workers as wk

    socks = {i: wk.bind(rule.listen) for i, rule in enumerate(all_rules)}
    index, pids = wk.fork_workers(workers)
    if index:
        # A child: its own sockets on the same ports, its own loop; never returns.
        code = 1
        try:
            mine = {i: wk.rebind(s, all_rules[i].listen.scheme) for i, s in socks.items()}
            for s in socks.values():
                s.close()
            child_out = _Output(quiet=quiet, verbose=verbose, as_json=as_json,
                                prefix=f"[worker {index}] ")
            code = run(_serve(all_rules, options, child_out, stats=stats, socks=mine,
                              announce=False))
        except BaseException as exc:
            click.echo(f"wirekit: error: worker {index}: {exc}", err=True)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    try:
        out.status(f"{workers} worker processes (pids {os.getpid()}, "
                   f"{', '.join(map(str, pids))})", event="workers",
                   pids=[os.getpid(), *pids])
        unsignalled = list(pids)
        code = run(_serve(all_rules, options, out, stats=stats, socks=socks,
                          children=unsignalled))
    finally:
        wk.stop_workers(unsignalled)
        wk.reap(pids, grace + 3)
    raise click.exceptions.Exit(code)


def _tls_settings(rules: list[Rule], tls: dict[str, Any], out: _Output) -> tuple[Any, Any]:
    """ListenTLS/TargetTLS from the TLS flags, for the rules with a tls:// side."""
    from wirekit.net.forward_tls import ListenTLS, TargetTLS

    tls_listen = any(r.listen.scheme == "tls" for r in rules)
    tls_target = any(r.target.scheme == "tls" for r in rules)
    timeout = tls.pop("handshake_timeout")
    given = {k for k, v in tls.items() if v}
    listen_only = {"ca_dir", "client_ca", "require_client_cert"}
    target_only = {"ca", "crl", "insecure", "sni", "target_cert", "target_key"}
    if given and not (tls_listen or tls_target):
        raise UsageError("TLS options need a tls:// LISTEN or TARGET (e.g. wirekit forward "
                         "tls://:8443 :8080)")
    if given & listen_only and not tls_listen:
        raise UsageError(f"--{sorted(given & listen_only)[0].replace('_', '-')} is about a "
                         "tls:// LISTEN, and no LISTEN is tls://")
    if given & target_only and not tls_target:
        raise UsageError(f"--{sorted(given & target_only)[0].replace('_', '-')} is about a "
                         "tls:// TARGET, and no TARGET is tls://")
    if (tls["target_cert"] or tls["target_key"]) and not tls_listen:
        raise UsageError("--target-cert/--target-key are for tls:// on both sides; with "
                         "only TARGET tls:// use --cert/--key")
    common = {"alpn": alpn_list(tls["alpn"]), "min_version": tls["min_version"],
              "max_version": tls["max_version"], "keylog": tls["keylog"],
              "handshake_timeout": timeout}
    listen_tls = target_tls = None
    if tls_listen:
        listen_tls = ListenTLS(cert=tls["cert"], key=tls["key"], client_ca=tls["client_ca"],
                               require_client_cert=tls["require_client_cert"],
                               ca_dir=tls["ca_dir"], **common)
    if tls_target:
        cert, key = ((tls["target_cert"], tls["target_key"]) if tls_listen
                     else (tls["cert"], tls["key"]))
        target_tls = TargetTLS(ca=tls["ca"], insecure=tls["insecure"], cert=cert, key=key,
                               sni=tls["sni"], crl=tuple(tls["crl"]), **common)
        if tls["insecure"]:
            out.warn("--insecure: the target's certificate is NOT verified; anyone on the "
                     "path can read and change the forwarded connections")
    return listen_tls, target_tls


def _collect_rules(listen: str | None, target: str | None, rules: Sequence[str],
                   config: str | None, limits: Limits) -> list[Rule]:
    found: list[Rule] = []
    if listen is not None or target is not None:
        if listen is None or target is None:
            raise UsageError("give both LISTEN and TARGET (e.g. wirekit forward :8080 "
                             "example.org:80), or use -f LISTEN=TARGET / --config FILE")
        found.append(Rule.parse(listen, target))
    found.extend(parse_rule_option(text) for text in rules)
    if config is not None:
        found.extend(load_rules(config, limits))
    if not found:
        raise UsageError("nothing to forward: give LISTEN TARGET, -f LISTEN=TARGET or "
                         "--config FILE (see wirekit forward --help)")
    return found


async def _serve(rules: list[Rule], options: dict[str, Any], out: _Output, *,
                 stats: float | None, socks: dict[int, socket.socket] | None,
                 announce: bool = True,
                 children: list[int] | None = None) -> int:
    signals = stop_signals()
    async with signals as stop:
        on_event = None if out.quiet and not out.as_json else out.event  # -q: no hook
        fwds = await forward_rules(rules, on_event=on_event, socks=socks, **options)
        if announce:
            for fwd in fwds:
                out.status(f"listening on {fwd.address} -> {fwd.target}", event="listening",
                           listen=str(fwd.address), target=str(fwd.target))
                _announce_certificate(fwd, out)
        ticker = asyncio.create_task(_stats(fwds, out, stats)) if stats else None
        try:
            await stop.wait()
        finally:
            if children:
                from wirekit.net.workers import stop_workers

                stop_workers(children)
                children.clear()  # signalled once: a second signal would cut their drain
            for fwd in fwds:
                fwd.stop_accepting()
            open_now = sum(f.open for f in fwds)
            grace = float(options["limits"].grace)
            if open_now and announce:
                out.status(f"stopping: {open_now} connection(s) open, waiting up to "
                           f"{grace:g}s for them to finish", event="stopping", open=open_now)
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            await asyncio.gather(*(f.aclose() for f in fwds))
            if out.verbose or out.as_json:
                _summary(fwds, out)
    return 130 if signals.signum == signal.SIGINT else 0


def _announce_certificate(fwd: Forwarder, out: _Output) -> None:
    tls = getattr(fwd, "server_tls", None)
    if tls is None or tls.issued_by is None:
        return
    if tls.created_ca:
        out.status(f"created a local CA in {tls.issued_by.parent} (as wirekit cert init "
                   "does); its key never leaves that directory")
    out.status(f"certificate for {', '.join(tls.names)} issued by the local CA "
               f"{tls.issued_by}; clients trust it with: --ca {tls.issued_by}")


def _summary(fwds: Sequence[Forwarder], out: _Output) -> None:
    conns = sum(f.connections for f in fwds)
    up = sum(f.bytes_up for f in fwds)
    down = sum(f.bytes_down for f in fwds)
    out.status(f"stopped: {conns} connection(s), {up} B up, {down} B down", event="stopped",
               connections=conns, bytes_up=up, bytes_down=down)


async def _stats(fwds: Sequence[Forwarder], out: _Output, every: float) -> None:
    last_up = sum(f.bytes_up for f in fwds)
    last_down = sum(f.bytes_down for f in fwds)
    last = time.monotonic()
    while True:
        await asyncio.sleep(every)
        now = time.monotonic()
        up = sum(f.bytes_up for f in fwds)
        down = sum(f.bytes_down for f in fwds)
        span = max(now - last, 1e-9)
        rate_up, rate_down = (up - last_up) / span, (down - last_down) / span
        open_now = sum(f.open for f in fwds)
        total = sum(f.accepted for f in fwds)
        out.status(
            f"stats: {open_now} open, {total} accepted, up {_size(up)} ({_size(rate_up)}/s), "
            f"down {_size(down)} ({_size(rate_down)}/s)",
            event="stats", open=open_now, accepted=total, bytes_up=up, bytes_down=down,
            rate_up=round(rate_up), rate_down=round(rate_down),
        )
        last_up, last_down, last = up, down, now


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover
