"""Hexdumps, canonical ``hexdump -C`` style, and direction-tagged chunks for the wire view."""

from __future__ import annotations

__all__ = ["chunk_header", "hexdump"]

_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))


def hexdump(data: bytes, offset: int = 0, width: int = 16) -> str:
    """``00000010  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 30 0d 0a  |GET / HTTP/1.0..|``."""
    lines = []
    half = width // 2
    for start in range(0, len(data), width):
        row = data[start : start + width]
        hexes = " ".join(f"{b:02x}" for b in row[:half])
        if len(row) > half:
            hexes += "  " + " ".join(f"{b:02x}" for b in row[half:])
        pad = width * 3 + 1
        lines.append(f"{offset + start:08x}  {hexes:<{pad}} |{row.translate(_PRINTABLE).decode()}|")
    return "\n".join(lines)


def chunk_header(direction: str, offset: int, size: int, elapsed: float) -> str:
    """``>> sent 18 bytes at offset 0 (+0.001s)``; direction is ``>>`` (out) or ``<<`` (in)."""
    verb = "sent" if direction == ">>" else "received"
    return f"{direction} {verb} {size} bytes at offset {offset} (+{elapsed:.3f}s)"
