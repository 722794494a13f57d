"""``wirekit inspect FILE``: the shell around :class:`wirekit.dissect.summary.Summary`."""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from wirekit.dissect.summary import Summary
from wirekit.errors import ParseError, UsageError, WirekitError
from wirekit.pcapng.reader import open_buffer
from wirekit.report import inspect as render

__all__ = ["inspect"]


@dataclass(frozen=True, slots=True)
class InspectConfig:
    path: Path
    json: bool
    follow: tuple[str, int] | None
    hex: bool
    packets: bool
    quiet: bool
    app: bool = True


def _parse_follow(text: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    proto, _, number = text.rpartition(":")
    proto = proto.lower() or "tcp"
    if proto not in ("tcp", "udp") or not number.isdigit():
        raise UsageError(f"--follow takes a conversation id like 3, tcp:3 or udp:0, not {text!r}")
    return proto, int(number)


def _progress(total: int, enabled: bool) -> tuple[Callable[[int], None] | None,
                                                   Callable[[], None]]:
    if not enabled or total < (8 << 20):
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    progress = Progress("inspecting", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True)
    task = progress.add_task("inspect", total=total)
    progress.start()
    return (lambda done: progress.update(task, completed=done)), progress.stop


def run_inspect(config: InspectConfig) -> None:
    # The dissection allocates millions of short-lived objects while the conversations it
    # keeps grow without cycles; the cyclic collector would rescan them again and again
    # (measured: ~12 % of the CPU time on a 1M-packet capture).  Reference counting frees
    # everything here; the collector is back on when the report is written.
    enabled = gc.isenabled()
    gc.disable()
    try:
        _run_inspect(config)
        if _whole_process():
            # Nothing is left to do but free millions of objects one by one (measured:
            # ~0.13 s CPU on a 1M-packet capture): end the process as main() would, exit 0.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    finally:
        if enabled:
            gc.enable()


def _whole_process() -> bool:
    """True when this process is the ``wirekit`` command (``python -m wirekit`` or the
    console script: their ``__main__`` calls ``cli.main.main``), not a test or a program
    calling ``main()`` itself."""
    from wirekit.cli import main as cli_main

    return getattr(sys.modules.get("__main__"), "main", None) is cli_main.main


def _run_inspect(config: InspectConfig) -> None:
    out = sys.stdout
    on_packet = None
    if config.packets and not config.json:
        def on_packet(line: str) -> None:
            out.write(line + "\n")
    # The compact report (not for a terminal) takes the HTTP exchanges as JSON text.
    compact = config.json and config.follow is None and not out.isatty()
    http = render.HttpJson() if compact else None
    summary = Summary(app=config.app, follow=config.follow, on_packet=on_packet, on_http=http,
                      on_http_json=http.add_text if http is not None else None)
    with open(config.path, "rb") as f:
        buf = open_buffer(f)
        update, stop = _progress(len(buf), sys.stderr.isatty() and not config.quiet)
        try:
            summary.run(buf, update)
        except ParseError:
            pass  # reported below, after everything that was readable
        finally:
            stop()
            if hasattr(buf, "close"):
                buf.close()
    follow = summary.followed
    if config.follow is not None and follow is None:
        raise UsageError(f"no {config.follow[0]} conversation {config.follow[1]} in "
                         f"{config.path} (it has {summary.ids[config.follow[0]]})")
    if compact:
        # The compact report, written without building the document first.
        out.writelines(render.summary_json_text(summary, http))
        out.write("\n")
    elif config.json:
        doc = render.summary_json(summary)
        if follow is not None:
            doc["follow"] = render.follow_json(follow)
        # Compact unless a person is reading: the C encoder is ~10x faster than indent=2.
        if out.isatty():
            out.write(json.dumps(doc, indent=2))
        else:
            out.write(json.dumps(doc, separators=(",", ":")))
        out.write("\n")
    elif follow is not None:
        out.write(render.follow_text(follow, as_hex=config.hex) + "\n")
    else:
        if config.packets:
            out.write("\n")
        out.write(render.summary_text(summary) + "\n")
    out.flush()
    if summary.error is not None:
        # After the report: main() prints this as the one "wirekit: error:" line, exit 1.
        raise WirekitError(f"capture damaged after {summary.packets} packets: "
                           f"{summary.error}", offset=getattr(summary.error, "offset", None))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report on stdout.")
@click.option("--follow", metavar="N", help="Print the byte stream of conversation N "
              "(tcp stream N; udp:N for UDP), direction-tagged.")
@click.option("--hex", "as_hex", is_flag=True, help="With --follow: hexdump instead of text.")
@click.option("--packets", is_flag=True, help="One line per packet (like tshark) first.")
@click.option("--no-app", "no_app", is_flag=True,
              help="Conversations only: skip HTTP/TLS/DNS analysis (faster on huge files).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or status.")
def inspect(file: Path, as_json: bool, follow: str | None, as_hex: bool, packets: bool,
            no_app: bool, quiet: bool) -> None:
    """Dissect a pcap or pcapng capture: conversations, HTTP, TLS handshakes, DNS.

    Conversations are numbered like tshark's tcp.stream / udp.stream.  A truncated or
    corrupt file is reported up to the damage, then one line names the offset (exit 1).

    \b
    Examples:
      wirekit inspect web.pcapng                  # conversations + HTTP/TLS/DNS
      wirekit inspect web.pcapng --packets        # one line per packet first
      wirekit inspect web.pcapng --follow 0       # the bytes of TCP stream 0
      wirekit inspect web.pcapng --follow 0 --hex
      wirekit inspect dns.pcap --follow udp:0
      wirekit inspect big.pcap --json | jq '.conversations[] | select(.closed=="rst")'
      wirekit inspect huge.pcapng --no-app        # conversations only, fastest
    """
    if as_hex and follow is None:
        raise UsageError("--hex only applies with --follow N")
    config = InspectConfig(file, as_json, _parse_follow(follow), as_hex, packets, quiet,
                           app=not no_app)
    run_inspect(config)
