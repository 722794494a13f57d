"""``wirekit sshd``: an embedded SSH server for labs, tests and the tour."""

from __future__ import annotations

import os

import click

from wirekit import ssh as wirekit_ssh
from wirekit.address import parse_address
from wirekit.errors import UsageError
from wirekit.net.runtime import run, stop_signals

__all__ = ["sshd"]

EXAMPLES = """
\b
Examples:
  wirekit sshd                                   # 127.0.0.1:2222, keys from ~/.ssh/authorized_keys
  wirekit sshd :0 --authorized-keys lab/authorized_keys --state-dir lab/sshd
  LAB_PW=secret wirekit sshd :2222 --password-env LAB_PW
  wirekit tunnel root@127.0.0.1:2222 --accept-new -L 0:127.0.0.1:12345
"""


@click.command(epilog=EXAMPLES)
@click.argument("address", default="127.0.0.1:2222", metavar="[ADDRESS]")
@click.option("--state-dir", metavar="DIR", default=None,
              help="Where the host key lives (default ~/.local/share/wirekit/sshd).")
@click.option("--authorized-keys", metavar="FILE",
              help="Public keys allowed to log in (default ~/.ssh/authorized_keys).")
@click.option("--password-env", metavar="VAR",
              help="Also accept the password in environment variable VAR (any user name).")
@click.option("--allow-exec", is_flag=True,
              help="Allow shells and commands (off: only port forwarding is served).")
@click.option("-q", "--quiet", is_flag=True, help="Only the listening line and errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log logins and forward requests.")
def sshd(address: str, state_dir: str | None, authorized_keys: str | None,
         password_env: str | None, allow_exec: bool, quiet: bool, verbose: bool) -> None:
    """An SSH server for labs and tests: port forwarding on, shells off.

    Prints `listening on ssh://HOST:PORT` (the real port when :0 is asked) and the
    host key's SHA256 fingerprint, which clients compare on first connection.  The host
    key is generated once and kept in the state directory.
    """
    wirekit_ssh.require("wirekit sshd")
    from wirekit.ssh.server import DEFAULT_STATE_DIR, start_sshd

    addr = parse_address(address, default_port=2222, schemes=("tcp",))
    password = None
    if password_env is not None:
        password = os.environ.get(password_env)
        if password is None:
            raise UsageError(f"environment variable {password_env} is not set")

    def log(message: str) -> None:
        if verbose and not quiet:
            click.echo(message, err=True)

    async def serve() -> int:
        signals = stop_signals()
        async with signals as stop:
            server = await start_sshd(
                addr.host, addr.port, state_dir=state_dir or DEFAULT_STATE_DIR,
                authorized_keys=authorized_keys, password=password, allow_exec=allow_exec,
                on_event=log)
            async with server:
                click.echo(f"listening on {server.url}", err=True)
                if not quiet:
                    click.echo(f"host key {server.fingerprint}", err=True)
                    if not addr.is_loopback:
                        click.echo(f"warning: {server.url} is reachable from other machines; "
                                   "this server is meant for labs", err=True)
                await stop.wait()
        return 130 if signals.signum == 2 else 0

    code = run(serve())
    if code:
        raise click.exceptions.Exit(code)
