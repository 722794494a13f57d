"""Running wirekit's coroutines: uvloop when installed, and stop signals."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run", "stop_signals", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(use_uvloop: bool | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop when installed (or asked for), else the stdlib's.

    ``WIREKIT_UVLOOP=0`` in the environment chooses the stdlib loop for every command
    (to compare the two, or to work around a uvloop problem).
    """
    if use_uvloop is None:
        use_uvloop = os.environ.get("WIREKIT_UVLOOP", "1") != "0" and uvloop_available()
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """Run ``main`` to completion on a fresh loop."""
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(main)


class stop_signals:
    """Within the block, SIGINT/SIGTERM set ``stop`` (an asyncio.Event) instead of raising.

    A second signal raises KeyboardInterrupt at once, so a stuck shutdown can be cut short.
    """

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signum: int | None = None
        self._installed: list[int] = []

    def _on_signal(self, signum: int) -> None:
        if self.event.is_set():
            loop = asyncio.get_running_loop()
            for sig in self._installed:
                loop.remove_signal_handler(sig)
            self._installed.clear()
            signal.raise_signal(signal.SIGINT)
            return
        self.signum = signum
        self.event.set()

    async def __aenter__(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread (library use): the caller stops us instead
            self._installed.append(sig)
        return self.event

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()
