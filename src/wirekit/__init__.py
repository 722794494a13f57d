"""wirekit: the socket toolkit for Python.

    >>> import wirekit
    >>> async with await wirekit.connect("127.0.0.1:12345") as conn:   # doctest: +SKIP
    ...     await conn.send(b"GET TIME")
    ...     print(await conn.recv())
"""

from __future__ import annotations

__version__ = "0.1.0"

from wirekit import errors
from wirekit.address import Address, parse_address

__all__ = ["Address", "__version__", "errors", "parse_address"]
