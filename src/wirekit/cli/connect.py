"""``wirekit connect``: a TCP/UDP/TLS client, stdin to the socket and the socket to stdout."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from wirekit.address import Address, parse_address
from wirekit.capture.recorder import Recorder
from wirekit.cli import _record as recording
from wirekit.cli._record import record_option
from wirekit.cli.tlsopts import alpn_list, client_options
from wirekit.errors import UsageError
from wirekit.escapes import unescape
from wirekit.net import session
from wirekit.net.runtime import run
from wirekit.net.stdio import FdReader, open_fd_reader
from wirekit.report.hexdump import chunk_header, hexdump

__all__ = ["connect"]

UDP_TIMEOUT = 2.0
TCP_TIMEOUT = 10.0
NO_STDIN_WAIT = 10.0


@dataclass(frozen=True, slots=True)
class ConnectConfig:
    address: Address
    sends: tuple[session.Payload, ...]
    use_stdin: bool
    interactive: bool
    wait: float | None
    hex: bool
    timeout: float
    retries: int
    quiet: bool
    verbose: bool
    tls: TLSOptions | None = None


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """``wirekit tls``'s client options, for ``connect tls://``."""

    ca: str | None = None
    insecure: bool = False
    cert: str | None = None
    key: str | None = None
    sni: str | None = None
    no_sni: bool = False
    alpn: tuple[str, ...] = ()
    min_version: str | None = None
    max_version: str | None = None
    keylog: str | None = None
    crl: tuple[str, ...] = ()

    def kwargs(self) -> dict[str, object]:
        return {"ca": self.ca, "insecure": self.insecure, "cert": self.cert, "key": self.key,
                "sni": self.sni, "no_sni": self.no_sni, "alpn": self.alpn,
                "min_version": self.min_version, "max_version": self.max_version,
                "keylog": self.keylog, "crl": self.crl or None}


class _Render:
    """Everything the session shows: data to stdout, status and hexdumps to stderr."""

    def __init__(self, config: ConnectConfig) -> None:
        self.config = config
        self.start = time.monotonic()
        self.offsets = {">>": 0, "<<": 0}
        self._out = sys.stdout.buffer

    def status(self, text: str, *, detail: bool = False) -> None:
        if self.config.quiet or (detail and not self.config.verbose):
            return
        click.echo(text, err=True)

    def _hex(self, direction: str, data: bytes) -> None:
        offset = self.offsets[direction]
        self.offsets[direction] = offset + len(data)
        elapsed = time.monotonic() - self.start
        click.echo(chunk_header(direction, offset, len(data), elapsed), err=True)
        click.echo(hexdump(data, offset), err=True)

    def received(self, data: bytes) -> None:
        if self.config.hex:
            self._hex("<<", data)
        self._out.write(data)
        self._out.flush()

    def sent(self, data: bytes) -> None:
        if self.config.hex:
            self._hex(">>", data)

    def prompt(self) -> None:
        sys.stderr.write("> ")
        sys.stderr.flush()

    def retry(self, attempt: int, tries: int) -> None:
        self.status(f"no reply within {self.config.timeout:g}s; resending (try {attempt} of "
                    f"{tries})")


async def _run_tcp(config: ConnectConfig, render: _Render,
                   recorder: Recorder | None = None) -> None:
    from wirekit.net.tcp import connect as tcp_connect

    tls_kwargs = config.tls.kwargs() if config.tls is not None else {}
    conn = await tcp_connect(config.address, timeout=config.timeout, record=recorder,
                             **tls_kwargs)  # type: ignore[arg-type]
    async with conn:
        where = str(config.address)
        if conn.peer.host != config.address.host:
            where += f" ({conn.peer.hostport})"
        render.start = time.monotonic()
        render.status(f"connected to {where}{_tls_summary(conn, config.tls)}")
        render.status(f"local address {conn.local.hostport}", detail=True)
        if config.interactive:
            render.status("type a line and press Enter to send it; Ctrl-D ends, Ctrl-C quits")
        source = await _open_stdin() if config.use_stdin else None
        try:
            result = await session.tcp_session(
                conn,
                sends=config.sends,
                source=source,
                on_data=render.received,
                on_sent=render.sent,
                wait=config.wait,
                prompt=render.prompt if config.interactive else None,
            )
        finally:
            if source is not None:
                await source.aclose()
    render.status(f"closed ({result.ended}): sent {result.sent} bytes, received "
                  f"{result.received} bytes in {result.duration:.3f}s", detail=True)


def _tls_summary(conn: object, tls: TLSOptions | None) -> str:
    """`` (TLSv1.3, TLS_AES_256_GCM_SHA384, certificate verified)`` for the status line."""
    if tls is None:
        return ""
    sslobj = conn.writer.get_extra_info("ssl_object")  # type: ignore[attr-defined]
    if sslobj is None:
        return ""
    cipher = sslobj.cipher()
    parts = [sslobj.version() or "TLS", cipher[0] if cipher else ""]
    if sslobj.selected_alpn_protocol():
        parts.append(f"ALPN {sslobj.selected_alpn_protocol()}")
    parts.append("certificate NOT verified (--insecure)" if tls.insecure
                 else "certificate verified")
    return " (" + ", ".join(p for p in parts if p) + ")"


async def _run_udp(config: ConnectConfig, render: _Render,
                   recorder: Recorder | None = None) -> None:
    from wirekit.net.udp import open_udp

    async with await open_udp(config.address, timeout=TCP_TIMEOUT, record=recorder) as client:
        render.start = time.monotonic()
        render.status(f"sending datagrams to {config.address}")
        render.status(f"local address {client.local.hostport}", detail=True)
        if config.interactive:
            render.status("each line you type is one datagram; Ctrl-D ends, Ctrl-C quits")
        source = await _open_stdin() if config.use_stdin else None
        try:
            result = await session.udp_session(
                client,
                sends=config.sends,
                source=source,
                on_data=render.received,
                on_sent=render.sent,
                on_retry=render.retry,
                timeout=config.timeout,
                retries=config.retries,
                wait=config.wait or 0.0,
                prompt=render.prompt if config.interactive else None,
            )
        finally:
            if source is not None:
                await source.aclose()
    render.status(f"done: sent {result.sent} datagrams, received {result.received} in "
                  f"{result.duration:.3f}s", detail=True)


async def _open_stdin() -> FdReader:
    return await open_fd_reader(sys.stdin.fileno())


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):
        return False


EPILOG = """\b
Examples:
  wirekit connect :12345 --send 'GET TIME'        # the chapter's time client
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | wirekit connect example.org:80
  wirekit connect example.org:80 --no-stdin --send 'GET / HTTP/1.0\\r\\n\\r\\n'
  wirekit connect :9000 < request.bin > reply.bin  # binary-safe, half-closes at EOF
  wirekit connect :9000 --hex --send '\\x00\\x01hello' --no-stdin --wait 1
  wirekit connect udp://:9999 --send ping --retries 5
  wirekit connect :12345                          # interactive when stdin is a terminal
  wirekit connect :8080 --record c.pcapng --send 'GET / HTTP/1.0\\r\\n\\r\\n'  # for Wireshark
  wirekit connect udp://:9999 --send ping --record udp.pcapng   # each datagram, each way
  wirekit connect tls://:8443 --ca ca.pem --record tls.pcapng   # ciphertext+keys, plaintext
  wirekit connect tls://example.org:443 --send 'HEAD / HTTP/1.0\\r\\nHost: example.org\\r\\n\\r\\n'
  wirekit connect tls://localhost:8443 --ca ~/.local/share/wirekit/ca/ca.pem
  wirekit connect tls://10.0.0.5:993 --sni mail.internal --max-version 1.2
  wirekit connect tls://:8443 --cert me.pem --key me-key.pem   # mutual TLS
  wirekit connect tls://internal:443 --ca ca.pem --crl ca.crl  # refuse a revoked certificate

\b
Exit codes: 0 the peer closed (or --wait passed quietly), 1 the connection failed or
was reset, the certificate is not trusted (the reason is printed, as by wirekit tls), or a
UDP request got no reply, 2 bad address or option, 130 Ctrl-C.

\b
TLS and end of input: TLS has no half-close that wirekit can send (close_notify ends the
whole connection for most servers), so at the end of stdin a tls:// session sends nothing
and keeps printing until the server closes, like openssl s_client -quiet (-ign_eof); use
--wait S to stop after S quiet seconds.
"""


@click.command(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("address")
@click.option("--send", "send_texts", multiple=True, metavar="TEXT",
              help=r"Send TEXT first (repeatable; escapes \r \n \t \0 \xNN \\). "
                   "Over UDP each one is a datagram.")
@click.option("--send-file", "send_files", multiple=True, metavar="PATH",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Send the content of PATH after the --send texts (repeatable).")
@click.option("--no-stdin", is_flag=True,
              help="Do not read stdin: send the --send/--send-file data, then print what "
                   "comes back until the peer closes or --wait passes without data.")
@click.option("--wait", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Once everything is sent, stop after S seconds without data. "
                   f"Default: until the peer closes (TCP; {NO_STDIN_WAIT:g}s with --no-stdin), "
                   "exit right after the last reply (UDP).")
@click.option("--hex", "hex_", is_flag=True,
              help="Hexdump both directions to stderr, each chunk tagged >> (sent) or << "
                   "(received) with its offset and time.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help=f"TCP: connect timeout (default {TCP_TIMEOUT:g}). UDP: how long to wait for "
                   f"each reply before resending (default {UDP_TIMEOUT:g}).")
@click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
              metavar="N", help="UDP: resend a datagram up to N times when no reply comes.")
@client_options()
@record_option
@click.option("-q", "--quiet", is_flag=True, help="No status lines on stderr (errors only).")
@click.option("-v", "--verbose", is_flag=True, help="More status: local address, byte counts.")
def connect(
    address: str,
    send_texts: tuple[str, ...],
    send_files: tuple[Path, ...],
    no_stdin: bool,
    wait: float | None,
    hex_: bool,
    timeout: float | None,
    retries: int,
    ca: str | None,
    crl: tuple[str, ...],
    insecure: bool,
    sni: str | None,
    no_sni: bool,
    alpn: tuple[str, ...],
    min_version: str | None,
    max_version: str | None,
    cert: str | None,
    key: str | None,
    keylog: str | None,
    record: str | None,
    quiet: bool,
    verbose: bool,
) -> None:
    """Connect to ADDRESS: stdin goes to the socket, the socket goes to stdout.

    ADDRESS is HOST:PORT, :PORT (127.0.0.1), [V6]:PORT, optionally with tcp:// (default),
    udp:// or tls://.  tls:// verifies the server's certificate and name like wirekit tls
    and, when they are not trusted, fails with the reason.  At the end of stdin the write
    side is shut down (half-close; not over TLS, see below) and output goes on until the
    peer closes.  Over UDP each --send and each stdin line is one
    datagram and replies are printed as they arrive.  When stdin is a terminal the
    session is interactive: type a line, see the reply.
    """
    addr = parse_address(address, schemes=("tcp", "udp", "tls"))
    tls: TLSOptions | None = TLSOptions(ca, insecure, cert, key, sni, no_sni, alpn_list(alpn),
                                        min_version, max_version, keylog, crl)
    if addr.scheme != "tls":
        if tls != TLSOptions():
            raise UsageError(f"TLS options need a tls:// address, not {addr}")
        tls = None
    elif insecure and not quiet:
        click.echo("wirekit: warning: --insecure: the server's certificate is NOT verified; "
                   "anyone on the path can read and change this connection", err=True)
    udp = addr.scheme == "udp"
    sends: list[session.Payload] = [unescape(text) for text in send_texts]
    sends += list(send_files)
    interactive = not no_stdin and _stdin_is_tty()
    if wait is None and no_stdin and not udp:
        wait = NO_STDIN_WAIT
    config = ConnectConfig(
        address=addr,
        sends=tuple(sends),
        use_stdin=not no_stdin,
        interactive=interactive,
        wait=wait,
        hex=hex_,
        timeout=timeout if timeout is not None else (UDP_TIMEOUT if udp else TCP_TIMEOUT),
        retries=retries,
        quiet=quiet,
        verbose=verbose,
        tls=tls,
    )
    render = _Render(config)
    recorder = recording.start(record)
    try:
        run(_run_udp(config, render, recorder) if udp else _run_tcp(config, render, recorder))
    finally:
        recording.finish(recorder, quiet=quiet or not verbose)
