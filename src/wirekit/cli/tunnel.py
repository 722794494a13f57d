"""``wirekit tunnel``: SSH port forwarding (-L/-R/-D) that reconnects and explains failures."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Callable

import click

from wirekit import ssh as wirekit_ssh
from wirekit.cli import _record as recording
from wirekit.cli._record import record_option
from wirekit.errors import UsageError
from wirekit.net.runtime import run, stop_signals

__all__ = ["tunnel"]

EXAMPLES = """
\b
Examples:
  wirekit tunnel bob@db.example.org -L 5432:localhost:5432
  wirekit tunnel gw -L 0:intranet:80 -D 1080        # port 0: the real port is printed
  wirekit tunnel bob@gw -R 8080:127.0.0.1:3000      # expose a local app on gw:8080
  wirekit tunnel -J jump1,alice@jump2 target -L 8000:127.0.0.1:80
  wirekit tunnel lab -p 2222 -i ~/.ssh/lab_ed25519 --accept-new -L 9000:127.0.0.1:12345
  PW=secret wirekit tunnel bob@host --password-env PW -L 8080:web:80
  wirekit tunnel gw -L 8080:web:80 -R 9000:127.0.0.1:3000 --record tunnel.pcapng
  tshark -r tunnel.pcapng -d tcp.port==2222,ssh -Y ssh   # SSH on a port other than 22
"""


@click.command(epilog=EXAMPLES)
@click.argument("target", metavar="[USER@]HOST[:PORT]")
@click.option("-L", "local", multiple=True, metavar="[BIND:]PORT:HOST:HOSTPORT",
              help="Local forward: listen here (127.0.0.1 by default), connect from the server.")
@click.option("-R", "remote", multiple=True, metavar="[BIND:]PORT:HOST:HOSTPORT",
              help="Remote forward: listen on the server, connect from here.")
@click.option("-D", "dynamic", multiple=True, metavar="[BIND:]PORT",
              help="Dynamic forward: a local SOCKS5/SOCKS4a proxy through the server.")
@click.option("-p", "--port", "port", type=int, help="SSH port (default: ssh_config, else 22).")
@click.option("-l", "--user", "user", help="Login name (default: ssh_config, else yours).")
@click.option("-i", "identity", multiple=True, metavar="KEY",
              help="Private key file (repeatable).  The SSH agent is used too.")
@click.option("-J", "jump", multiple=True, metavar="[USER@]HOST[:PORT]",
              help="Jump host(s), in order; comma-separated or repeated (like ProxyJump).")
@click.option("-F", "config_file", metavar="FILE", help="ssh_config file instead of ~/.ssh/config.")
@click.option("--password-env", metavar="VAR",
              help="Read the password from environment variable VAR (never from the command line).")
@click.option("--no-agent", is_flag=True, help="Do not use the SSH agent.")
@click.option("-c", "ciphers", metavar="CIPHER[,CIPHER...]",
              help="Cipher preference (default: aes128-gcm@openssh.com first).")
@click.option("--known-hosts", metavar="FILE",
              help="known_hosts file (default ~/.ssh/known_hosts).")
@click.option("--accept-new", is_flag=True,
              help="Trust an unknown host key on first use and record it (never a changed one).")
@click.option("--keepalive", type=click.FloatRange(min=0), default=15.0, show_default=True,
              metavar="S", help="Seconds between keepalives (0: off).")
@click.option("--keepalive-count", type=click.IntRange(min=1), default=3, show_default=True,
              metavar="N", help="Unanswered keepalives before the server counts as dead.")
@click.option("--connect-timeout", type=click.FloatRange(min=0.1), default=15.0,
              show_default=True, metavar="S", help="Timeout for connecting and logging in.")
@click.option("--no-reconnect", is_flag=True, help="Exit 1 when the connection drops.")
@click.option("--stats", is_flag=True, help="Print connection and byte counts when stopping.")
@click.option("--json", "as_json", is_flag=True, help="Status as JSON lines on stdout.")
@record_option
@click.option("-q", "--quiet", is_flag=True, help="No status output (errors still go to stderr).")
@click.option("-v", "--verbose", is_flag=True, help="Also print reconnect attempts.")
@click.option("-N", "no_command", is_flag=True, hidden=True,
              help="Accepted for OpenSSH habits; wirekit tunnel never runs a command.")
def tunnel(target: str, local: tuple[str, ...], remote: tuple[str, ...],
           dynamic: tuple[str, ...], port: int | None, user: str | None,
           identity: tuple[str, ...], jump: tuple[str, ...], config_file: str | None,
           password_env: str | None, no_agent: bool, ciphers: str | None, known_hosts: str | None,
           accept_new: bool, keepalive: float, keepalive_count: int, connect_timeout: float,
           no_reconnect: bool, stats: bool, as_json: bool, record: str | None, quiet: bool,
           verbose: bool, no_command: bool) -> None:
    """SSH tunnels with OpenSSH's -L / -R / -D spelling that stay up.

    Host keys are checked against known_hosts: an unknown host is refused with its
    fingerprint (unless --accept-new), a changed key is always refused.  When the
    connection drops, wirekit reconnects with backoff (up to 30 s) and the forwards come
    back on the same local ports; authentication and host-key failures exit 1 at once.
    Ctrl-C or SIGTERM stops within 2 seconds.

    --record writes every TCP connection the tunnel carries: the clients of the -L/-D
    listeners, wirekit's connections to the -R targets, and the SSH connection itself as
    it crossed the wire (version banners, KEXINIT with the offered algorithms, the key
    exchange, then encrypted packets), a new one per reconnect; through -J only the
    connection to the first jump host (the rest travels inside it).
    """
    wirekit_ssh.require("wirekit tunnel")
    from wirekit.ssh.connect import SSHOptions
    from wirekit.ssh.spec import SSHTarget, parse_target
    from wirekit.ssh.tunnel import Tunnel, TunnelEvent

    if not (local or remote or dynamic):
        raise UsageError("nothing to forward: give at least one -L, -R or -D")
    parsed = parse_target(target)
    if port is not None or user is not None:
        parsed = SSHTarget(parsed.host, parsed.user or user, parsed.port or port)
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise UsageError(f"environment variable {password_env} is not set")
    options = SSHOptions(
        identity_files=identity,
        agent=not no_agent,
        password=password,
        password_prompt=_prompt() if password is None and sys.stdin.isatty() else None,
        config_file=config_file,
        jump=tuple(parse_target(j) for spec in jump for j in spec.split(",") if j),
        known_hosts=known_hosts,
        accept_new=accept_new,
        keepalive=keepalive,
        keepalive_count=keepalive_count,
        connect_timeout=connect_timeout,
        ciphers=tuple(c for c in (ciphers or "").split(",") if c),
    )

    def on_event(event: TunnelEvent) -> None:
        if quiet:
            return
        if event.kind == "retry" and not verbose:
            return
        if as_json:
            click.echo(json.dumps(event.as_dict()), nl=True)
            sys.stdout.flush()
        else:
            click.echo(event.message, err=True)

    recorder = recording.start(record)
    t = Tunnel(parsed, local=local, remote=remote, dynamic=dynamic, options=options,
               reconnect=not no_reconnect, on_event=None if quiet else on_event,
               record=recorder)
    for fwd in t.forwards:
        if fwd.kind != "R" and not quiet and not _is_loopback(fwd.bind_host):
            click.echo(f"warning: -{fwd.kind} {fwd.spec} listens on a non-loopback address: "
                       "anyone who can reach it can use the tunnel, unencrypted up to here",
                       err=True)
    try:
        code = run(_serve(t))
    finally:
        recording.finish(recorder, quiet=quiet, as_json=as_json)
    if stats and not quiet:
        s = t.stats
        line = (f"stats: {s.connections} connections ({s.refused} refused), "
                f"{s.bytes_sent} bytes sent, {s.bytes_received} bytes received, "
                f"{s.reconnects} reconnects")
        if as_json:
            click.echo(json.dumps({"event": "stats", "message": line, "connections":
                                   s.connections, "refused": s.refused, "sent": s.bytes_sent,
                                   "received": s.bytes_received, "reconnects": s.reconnects}))
        else:
            click.echo(line, err=True)
    if code:
        raise click.exceptions.Exit(code)


def _prompt() -> Callable[[str], str | None]:
    """Ask for the password on the terminal (stdin, echo off; the prompt on stderr), once."""
    lock = threading.Lock()
    cached: list[str] = []

    def prompt(text: str) -> str | None:
        with lock:
            if not cached:
                try:
                    cached.append(_read_password(text))
                except (EOFError, KeyboardInterrupt, OSError):
                    return None
            return cached[0]

    return prompt


def _read_password(text: str) -> str:
    import termios

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    quiet = old[:]
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)  # keep what was typed ahead
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
        line = sys.stdin.readline()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
        sys.stderr.write("\n")
        sys.stderr.flush()
    if not line:
        raise EOFError
    return line.rstrip("\n")


async def _serve(t) -> int:  # type: ignore[no-untyped-def]
    """Run the tunnel until it fails (raise) or a stop signal arrives (exit code)."""
    signals = stop_signals()
    async with signals as stop:
        starter = asyncio.create_task(t.start())
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({starter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not starter.done():
                starter.cancel()
                await asyncio.wait({starter}, timeout=1.0)
                await t.aclose()
                return _stop_code(signals)
            starter.result()  # raises the connect error
            waiter = asyncio.create_task(t.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter.done():
                await t.aclose()
                waiter.result()  # raises why the tunnel failed
                return 1
            waiter.cancel()
            await t.aclose()
            return _stop_code(signals)
        finally:
            stopper.cancel()


def _stop_code(stop: stop_signals) -> int:
    return 130 if stop.signum == signal.SIGINT else 0



def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() in ("localhost", "localhost.")
