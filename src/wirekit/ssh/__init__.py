"""SSH tunnels and the embedded server (the only place that imports asyncssh).

asyncssh is an optional dependency (extra ``ssh``); :func:`require` turns its absence into
one clear usage error, and nothing outside this package imports it.
"""

from __future__ import annotations

import importlib.util

from wirekit.errors import UsageError

__all__ = ["available", "require"]

INSTALL_HINT = "pip install 'wirekit[ssh]'"


def available() -> bool:
    """Whether asyncssh is installed."""
    return importlib.util.find_spec("asyncssh") is not None


def require(what: str) -> None:
    """Raise a one-line :class:`UsageError` naming ``what`` when asyncssh is missing."""
    if not available():
        raise UsageError(f"{what} needs asyncssh: {INSTALL_HINT}")
