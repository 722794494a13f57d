"""Admission and draining for every listener (``serve``, ``forward``, tunnels).

A Gate decides whether a new peer may come in (``--allow/--deny``, ``--max-conns``),
counts who is inside, and lets shutdown wait until they have all left (``--grace``).
Connection N+1 over the limit is refused at once; once a slot frees, new ones are served.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from wirekit.net.acl import AccessList

__all__ = ["Gate", "Limits"]

DEFAULT_MAX_CONNS = 1000
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Limits:
    """The limit flags shared by ``serve`` and ``forward``."""

    max_conns: int = DEFAULT_MAX_CONNS
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    grace: float = DEFAULT_GRACE
    acl: AccessList = field(default_factory=AccessList)


class Gate:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.active = 0
        self.accepted = 0
        self.refused = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def refusal(self, peer_host: str) -> str | None:
        """Why a new peer is refused, or None after admitting it (then call :meth:`leave`)."""
        reason = self.limits.acl.refusal(peer_host)
        if reason is None and self.active >= self.limits.max_conns:
            reason = f"at --max-conns {self.limits.max_conns}"
        if reason is not None:
            self.refused += 1
            return reason
        self.active += 1
        self.accepted += 1
        self._idle.clear()
        return None

    def leave(self) -> None:
        self.active -= 1
        if self.active <= 0:
            self.active = 0
            self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every admitted connection to leave."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True
