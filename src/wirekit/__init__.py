"""wirekit: the socket toolkit for Python.

    import wirekit

    async with await wirekit.connect("127.0.0.1:12345") as conn:
        await conn.send(b"GET TIME")
        print(await conn.recv())

The public API is listed in ``__all__``; names are imported on first use so that
``import wirekit`` stays fast and optional dependencies (asyncssh) load only when needed.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from wirekit import errors
from wirekit.address import Address, parse_address

_LAZY = {
    "connect": "wirekit.net.tcp",
    "Connection": "wirekit.net.stream",
    "Remote": "wirekit.net.sync",
    "serve": "wirekit.net.server",
    "Server": "wirekit.net.server",
    "udp_request": "wirekit.net.udp",
    "forward": "wirekit.net.forward",
    "Forwarder": "wirekit.net.forward",
    "tunnel": "wirekit.ssh.tunnel",
    "SSHTunnel": "wirekit.ssh.sync",
    "Recorder": "wirekit.capture.recorder",
}

__all__ = ["Address", "__version__", "errors", "parse_address", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wirekit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
