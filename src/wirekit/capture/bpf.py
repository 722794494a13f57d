"""tcpdump filter syntax -> classic BPF instructions for ``SO_ATTACH_FILTER``.

The compiler is libpcap's, reached through pcapy-ng (the optional extra ``[capture]``) or,
when that is not installed, through ``tcpdump -ddd`` (which prints the same program in
decimal).  Without either, a filter cannot be compiled and the error says how to get one.
An empty filter needs no compiler: the program is a single "accept ``snaplen`` bytes".

Two things are added around the compiled program:

* on a loopback interface a two-instruction prefix rejects ``PACKET_OUTGOING`` in the
  kernel (every loopback packet passes the tap twice, once leaving, once arriving), so
  duplicates never take space in the socket's receive queue;
* the accept value of an empty filter is the snap length, so the kernel truncates.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Sequence

from wirekit.errors import UsageError

__all__ = ["Instruction", "compile_filter", "pack_program", "reject_outgoing"]

Instruction = tuple[int, int, int, int]  # (code, jt, jf, k) as in struct sock_filter

_DLT = {1: 1, 101: 12}  # pcapng LINKTYPE -> libpcap DLT for pcap_compile (LINKTYPE_RAW=DLT_RAW)
_TCPDUMP_LINK = {1: "EN10MB", 101: "RAW"}
_BPF_RET_K = 0x06
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4  # SKF_AD_OFF + SKF_AD_PKTTYPE
_PACKET_OUTGOING = 4
INSTALL_HINT = ("install the optional compiler: pip install 'wirekit[capture]' "
                "(pcapy-ng), or install tcpdump")


def compile_filter(expression: str, *, linktype: int = 1, snaplen: int = 262144,
                   iface: str = "lo") -> list[Instruction]:
    """Compile a tcpdump filter expression; raises ``UsageError`` with the compiler's
    message for a bad expression or when no compiler is available."""
    if not expression.strip():
        return [(_BPF_RET_K, 0, 0, snaplen)]
    try:
        import pcapy  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _compile_tcpdump(expression, linktype, snaplen, iface)
    try:
        program = pcapy.compile(_DLT.get(linktype, linktype), snaplen, expression, 1,
                                0xFFFFFFFF)
    except pcapy.PcapError as exc:
        raise UsageError(f"bad filter {expression!r}: {exc}") from exc
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in program.get_bpf()]


def _compile_tcpdump(expression: str, linktype: int, snaplen: int,
                     iface: str) -> list[Instruction]:
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise UsageError(f"cannot compile the filter {expression!r}: {INSTALL_HINT}")
    cmd = [tcpdump, "-ddd", "-s", str(snaplen), "-y", _TCPDUMP_LINK.get(linktype, "EN10MB"),
           "-i", iface, "--", expression]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot compile the filter with {tcpdump}: {exc}") from exc
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines()
                 if line.strip() and "data link type" not in line]
        message = lines[0] if lines else f"tcpdump exited with {proc.returncode}"
        raise UsageError(f"bad filter {expression!r}: {message.removeprefix('tcpdump: ')}")
    return parse_ddd(proc.stdout)


def parse_ddd(text: str) -> list[Instruction]:
    """The output of ``tcpdump -ddd``: a count line, then ``code jt jf k`` per line."""
    lines = [line.split() for line in text.strip().splitlines()]
    try:
        count = int(lines[0][0])
        program = [(int(a), int(b), int(c), int(d)) for a, b, c, d in lines[1:]]
    except (IndexError, ValueError) as exc:
        raise UsageError(f"unexpected output from tcpdump -ddd: {text[:80]!r}") from exc
    if count != len(program) or not program:
        raise UsageError(f"tcpdump -ddd announced {count} instructions, printed "
                         f"{len(program)}")
    return program


def reject_outgoing(program: Sequence[Instruction]) -> list[Instruction]:
    """``program`` behind a prefix that drops packets the host sends (jumps are relative,
    so the program itself is unchanged)."""
    return [(_BPF_LD_W_ABS, 0, 0, _SKF_AD_PKTTYPE),
            (_BPF_JEQ_K, 0, 1, _PACKET_OUTGOING),
            (_BPF_RET_K, 0, 0, 0),
            *program]


def pack_program(program: Sequence[Instruction]) -> bytes:
    """The instructions as an array of ``struct sock_filter``."""
    if not 0 < len(program) <= 4096:
        raise UsageError(f"filter program has {len(program)} instructions (1..4096 allowed)")
    return b"".join(struct.pack("=HBBI", *ins) for ins in program)
