"""Sans-IO pcap/pcapng codec: ``read``/``CaptureParser`` in, ``PcapngWriter`` out."""

from wirekit.pcapng.blocks import (
    SECRETS_TLS_KEY_LOG,
    Block,
    DecryptionSecrets,
    Interface,
    Packet,
    SectionHeader,
)
from wirekit.pcapng.reader import CaptureParser, Decoder, read
from wirekit.pcapng.writer import PcapngWriter

__all__ = [
    "SECRETS_TLS_KEY_LOG",
    "Block",
    "CaptureParser",
    "Decoder",
    "DecryptionSecrets",
    "Interface",
    "Packet",
    "PcapngWriter",
    "SectionHeader",
    "read",
]
