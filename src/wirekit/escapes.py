"""Backslash escapes for ``--send TEXT``: ``\\r \\n \\t \\0 \\xNN \\\\``.

Pure: text in, bytes out.  Characters other than escapes are encoded as UTF-8.
"""

from __future__ import annotations

from wirekit.errors import UsageError

__all__ = ["unescape"]

_SIMPLE = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}
_HEX = "0123456789abcdefABCDEF"


def unescape(text: str) -> bytes:
    """Turn ``GET / HTTP/1.0\\r\\n\\r\\n`` into the bytes it stands for.

    Raises :class:`UsageError` naming the bad escape and its position.
    """
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        if i + 1 >= len(text):
            raise UsageError(f"dangling backslash at the end of {text!r} (write \\\\ for one)")
        code = text[i + 1]
        if code in _SIMPLE:
            out += _SIMPLE[code]
            i += 2
        elif code == "x":
            digits = text[i + 2 : i + 4]
            if len(digits) != 2 or any(d not in _HEX for d in digits):
                raise UsageError(
                    f"bad escape \\x{digits} at position {i} in {text!r} (need two hex digits)"
                )
            out.append(int(digits, 16))
            i += 4
        else:
            raise UsageError(
                f"unknown escape \\{code} at position {i} in {text!r} "
                "(known: \\r \\n \\t \\0 \\xNN \\\\)"
            )
    return bytes(out)
