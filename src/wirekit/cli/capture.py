"""``wirekit capture``: the shell around :func:`wirekit.capture.sniffer.capture`."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import click

from wirekit.capture import sniffer as live
from wirekit.capture.sniffer import CaptureConfig, CapturedPacket, CaptureStats, Sniffer
from wirekit.report.capture import PacketLines

__all__ = ["capture", "run_capture"]


@contextmanager
def _stop_on_signals(flag: list[bool]) -> Iterator[None]:
    """SIGINT and SIGTERM end the capture cleanly (the file is complete, exit 0), like
    tcpdump; a second Ctrl-C still interrupts at once."""
    def handler(signum: int, frame: FrameType | None) -> None:
        if flag[0] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag[0] = True

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _final_text(stats: CaptureStats) -> str:
    return (f"{stats.packets} packet{'s' if stats.packets != 1 else ''} captured to "
            f"{stats.path}; {stats.kernel_received} received by filter, "
            f"{stats.kernel_dropped} dropped by kernel")


def run_capture(config: CaptureConfig, *, quiet: bool = False,
                as_json: bool = False) -> CaptureStats:
    err = sys.stderr
    stop = [False]
    lines: list[PacketLines] = []

    def emit(text: str) -> None:
        err.write(text + "\n")

    def ready(sniffer: Sniffer) -> None:
        if not quiet:
            lines.append(PacketLines(sniffer.linktype, emit))
            shown = f" (filter: {config.filter})" if config.filter else ""
            err.write(f"capturing on {sniffer.interface}{shown}, writing {config.path}\n")
            err.flush()

    def show(packet: CapturedPacket) -> None:
        lines[0].add(packet.timestamp_ns, packet.data, packet.original_length)

    with _stop_on_signals(stop):
        stats = live.capture(config, on_packet=None if quiet else show,
                        should_stop=lambda: stop[0], on_ready=ready)
    if as_json:
        sys.stdout.write(json.dumps(stats.as_json()) + "\n")
        sys.stdout.flush()
    if not quiet or stats.kernel_dropped:
        err.write(_final_text(stats) + "\n")
        err.flush()
    return stats


@click.command("capture", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-i", "--interface", default="lo", show_default=True,
              help="Network interface to capture on.")
@click.option("-f", "--filter", "filter_", default="", metavar="FILTER",
              help="tcpdump filter expression, run in the kernel (e.g. 'tcp port 8080').")
@click.option("-w", "--write", "path", required=True, metavar="FILE.pcapng",
              type=click.Path(dir_okay=False, path_type=Path),
              help="pcapng file to write (each packet is on disk as it is captured).")
@click.option("-c", "--count", type=click.IntRange(min=1), default=None,
              help="Stop after N packets.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="S", help="Stop after S seconds.")
@click.option("-s", "--snaplen", type=click.IntRange(1, 262144), default=262144,
              show_default=True, help="Keep at most N bytes of each packet.")
@click.option("-B", "--buffer-size", type=click.IntRange(256, 1 << 20), default=4096,
              show_default=True, metavar="KIB",
              help="Kernel receive ring in KiB (like tcpdump -B): packets wait here; when "
                   "it is full the kernel drops them.")
@click.option("-q", "--quiet", is_flag=True,
              help="No per-packet lines or status (kernel drops are still reported).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the final counts as JSON on stdout.")
def capture_command(interface: str, filter_: str, path: Path, count: int | None,
                    duration: float | None, snaplen: int, buffer_size: int, quiet: bool,
                    as_json: bool) -> None:
    """Capture live packets into a pcapng file that Wireshark and tshark open.

    An AF_PACKET socket with a 4 MiB receive ring (-B); the filter (tcpdump syntax, compiled by
    libpcap through the optional pcapy-ng: pip install 'wirekit[capture]', or by tcpdump if
    installed) runs in the kernel.  On loopback each packet is recorded once, not twice.
    One line per packet on stderr (like tshark) unless -q; at the end the packets captured
    and the kernel's own counts (received by filter, dropped).  Ctrl-C or SIGTERM stops
    cleanly.  Needs CAP_NET_RAW (root).

    JSON (--json): {"interface", "linktype", "filter", "file", "packets",
    "kernel": {"received", "dropped"}, "buffer_size", "duration"}.

    \b
    Examples:
      sudo wirekit capture -w lo.pcapng                       # everything on lo, Ctrl-C stops
      sudo wirekit capture -f 'tcp port 8080' -w web.pcapng -c 100
      sudo wirekit capture -i eth0 -f 'udp port 53' -w dns.pcapng --duration 30 -q
      sudo wirekit capture -f 'host 127.0.0.1 and port 443' -w tls.pcapng --snaplen 128
      sudo wirekit capture -f udp -w flood.pcapng -B 32768 -q   # 32 MiB ring for bursts
      wirekit inspect web.pcapng                              # then dissect it
    """
    config = CaptureConfig(path, interface=interface, filter=filter_, count=count,
                           duration=duration, snaplen=snaplen, buffer_size=buffer_size << 10)
    run_capture(config, quiet=quiet, as_json=as_json)


capture = capture_command
