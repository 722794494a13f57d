"""``wirekit``: the command.  Subcommands live in their own modules, imported on demand."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence

import click

from wirekit import __version__
from wirekit.errors import WirekitError

__all__ = ["main"]

# name -> "module:attribute"; each module holds one click command.
COMMANDS = {
    "connect": "wirekit.cli.connect:connect",
    "serve": "wirekit.cli.serve:serve",
    "forward": "wirekit.cli.forward:forward",
    "tunnel": "wirekit.cli.tunnel:tunnel",
    "sshd": "wirekit.cli.sshd:sshd",
    "tls": "wirekit.cli.tls:tls",
    "cert": "wirekit.cli.cert:cert",
    "capture": "wirekit.cli.capture:capture",
    "inspect": "wirekit.cli.inspect:inspect",
    "tour": "wirekit.cli.tour:tour",
}


def _available(name: str) -> bool:
    module = COMMANDS[name].split(":", 1)[0]
    return importlib.util.find_spec(module) is not None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS or not _available(cmd_name):
            return None
        module, attr = COMMANDS[cmd_name].split(":", 1)
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="wirekit")
def cli() -> None:
    """wirekit: connect, serve, forward, tunnel, secure and record network traffic.

    \b
    Examples:
      wirekit serve time                 # the chapter's time server on 127.0.0.1:12345
      wirekit connect :12345 --send 'GET TIME'
      wirekit serve echo udp://:9999
      wirekit tour                       # every scenario, live on loopback

    Addresses everywhere: HOST:PORT, :PORT (loopback), [::1]:PORT, with an optional
    scheme tcp://, udp://, tls://.  Exit codes: 0 ok, 1 failed, 2 usage error, 130 Ctrl-C.
    """


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI and turn every wirekit error into one line and an exit code."""
    try:
        # Without standalone mode click returns a command's exit code instead of exiting.
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="wirekit",
                          standalone_mode=False)
    except WirekitError as exc:
        click.echo(f"wirekit: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.UsageError as exc:
        # One line, like wirekit's own usage errors, instead of click's usage block.
        where = exc.ctx.command_path if exc.ctx is not None else "wirekit"
        message = " ".join(exc.format_message().split())
        click.echo(f"wirekit: error: {message} (see '{where} --help')", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("wirekit: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("wirekit: interrupted", err=True)
        return 130
    except BrokenPipeError:
        # stdout went away (e.g. `| head`); nothing more to say to anyone.
        sys.stderr.close()
        return 1
    return result if isinstance(result, int) else 0


def exit_with(code: int) -> None:
    """Let a command end the process with ``code`` through ``main``'s handling."""
    raise click.exceptions.Exit(code)
