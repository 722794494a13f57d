"""pcap/pcapng block types, constants and the events the reader yields.

Every event is a frozen, slotted dataclass.  Packets carry the link type of the interface they
were captured on and a timestamp in integer nanoseconds since the epoch (exact for the usual
resolutions; other resolutions are converted with integer arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BLOCK_DSB",
    "BLOCK_EPB",
    "BLOCK_IDB",
    "BLOCK_SHB",
    "BLOCK_SPB",
    "BYTE_ORDER_MAGIC",
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_LOOP",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "OPT_COMMENT",
    "OPT_END",
    "OPT_IF_DESCRIPTION",
    "OPT_IF_NAME",
    "OPT_IF_TSOFFSET",
    "OPT_IF_TSRESOL",
    "SECRETS_TLS_KEY_LOG",
    "Block",
    "DecryptionSecrets",
    "Interface",
    "Packet",
    "SectionHeader",
    "option_value",
]

BLOCK_SHB = 0x0A0D0D0A
BLOCK_IDB = 0x00000001
BLOCK_SPB = 0x00000003
BLOCK_EPB = 0x00000006
BLOCK_DSB = 0x0000000A
BYTE_ORDER_MAGIC = 0x1A2B3C4D

SECRETS_TLS_KEY_LOG = 0x544C534B  # "TLSK"

OPT_END = 0
OPT_COMMENT = 1
OPT_IF_NAME = 2
OPT_IF_DESCRIPTION = 3
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

Options = tuple[tuple[int, bytes], ...]


def option_value(options: Options, code: int) -> bytes | None:
    """The first value of option ``code``, or None."""
    for c, v in options:
        if c == code:
            return v
    return None


@dataclass(frozen=True, slots=True)
class SectionHeader:
    """A pcapng Section Header Block (or the global header of a classic pcap file)."""

    offset: int
    byte_order: str  # "<" little endian, ">" big endian
    version: tuple[int, int]
    section_length: int = -1
    options: Options = ()
    pcap: bool = False  # True for a classic pcap file header


@dataclass(frozen=True, slots=True)
class Interface:
    """An Interface Description Block.  ``tsresol`` is in ticks per second."""

    offset: int
    index: int
    linktype: int
    snaplen: int
    tsresol: int = 1_000_000
    tsoffset: int = 0
    options: Options = ()

    @property
    def name(self) -> str | None:
        value = option_value(self.options, OPT_IF_NAME)
        return value.decode("utf-8", "replace") if value is not None else None


@dataclass(frozen=True, slots=True)
class Packet:
    """A captured frame: from an Enhanced Packet, Simple Packet or pcap record."""

    offset: int
    interface: int
    linktype: int
    timestamp_ns: int
    data: bytes
    original_length: int
    options: Options = ()

    @property
    def timestamp(self) -> float:
        return self.timestamp_ns / 1e9


@dataclass(frozen=True, slots=True)
class DecryptionSecrets:
    """A Decryption Secrets Block; ``secrets_type`` 0x544c534b is an NSS TLS key log."""

    offset: int
    secrets_type: int
    data: bytes
    options: Options = ()


@dataclass(frozen=True, slots=True)
class Block:
    """Any other block, passed through undecoded."""

    offset: int
    block_type: int
    body: bytes
