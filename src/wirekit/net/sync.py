"""``Remote``: the TCP client for plain synchronous scripts (pwntools' ``remote`` style).

Each Remote owns a private event loop running in one background thread; every method
submits a coroutine to it and waits for the result.  That works even when the caller is
itself inside a running event loop (a notebook), where ``run_until_complete`` would not.
``close()`` stops the loop and joins the thread, so nothing outlives the Remote.

    with wirekit.Remote("127.0.0.1:12345") as r:
        r.send(b"GET TIME")
        print(r.recvline())
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from wirekit.address import Address
from wirekit.errors import UsageError
from wirekit.net.runtime import loop_factory
from wirekit.net.stream import DEFAULT_CHUNK, Connection
from wirekit.net.tcp import DEFAULT_TIMEOUT, connect

__all__ = ["Remote"]

T = TypeVar("T")
_DEFAULT: Any = object()  # "use the Remote's timeout"


class Remote:
    """A synchronous TCP connection.

    ``timeout`` bounds the connect and is the default for every receive; pass
    ``timeout=None`` to a receive to wait for as long as it takes.
    """

    def __init__(
        self, address: str | Address, *, timeout: float | None = DEFAULT_TIMEOUT, **kwargs: Any
    ) -> None:
        self.timeout = timeout
        self._loop = loop_factory()()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"wirekit-remote-{address}", daemon=True
        )
        self._thread.start()
        self._conn: Connection | None = None
        try:
            self._conn = self._call(
                connect(address, timeout=timeout or DEFAULT_TIMEOUT, **kwargs)
            )
        except BaseException:
            self._stop_loop()
            raise

    # -- plumbing ------------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if not self._thread.is_alive():
            coro.close()
            raise UsageError("this Remote is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. Ctrl-C while waiting: do not leave the read running
            raise

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise UsageError("this Remote is closed")
        return self._conn

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is _DEFAULT else timeout

    @property
    def peer(self) -> Address:
        return self.connection.peer

    @property
    def local(self) -> Address:
        return self.connection.local

    # -- sending -------------------------------------------------------------------------
    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        self._call(self.connection.send(data))

    def sendline(self, data: bytes | str) -> None:
        self._call(self.connection.sendline(data))

    def shutdown_write(self) -> None:
        """Half-close: the peer sees end of input; receiving goes on."""
        self._call(self.connection.shutdown_write())

    # -- receiving -----------------------------------------------------------------------
    def recv(self, max_bytes: int = DEFAULT_CHUNK, *, timeout: float | None = _DEFAULT) -> bytes:
        """Up to ``max_bytes`` as soon as any arrive; ``b""`` once the peer has closed."""
        return self._call(self.connection.recv(max_bytes, timeout=self._timeout(timeout)))

    def recv_exactly(self, n: int, *, timeout: float | None = _DEFAULT) -> bytes:
        return self._call(self.connection.recv_exactly(n, timeout=self._timeout(timeout)))

    def recv_until(self, delimiter: bytes | str, *, timeout: float | None = _DEFAULT) -> bytes:
        if isinstance(delimiter, str):
            delimiter = delimiter.encode()
        return self._call(
            self.connection.recv_until(delimiter, timeout=self._timeout(timeout))
        )

    def recvline(self, *, timeout: float | None = _DEFAULT) -> bytes:
        return self._call(self.connection.recvline(timeout=self._timeout(timeout)))

    def recv_all(self, *, timeout: float | None = _DEFAULT) -> bytes:
        """Everything until the peer closes."""
        return self._call(self.connection.recv_all(timeout=self._timeout(timeout)))

    # pwntools spellings
    recvuntil = recv_until
    recvn = recv_exactly
    recvall = recv_all

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection and stop the private loop (safe to call twice)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._thread.is_alive():
            try:
                self._call(conn.aclose())
            finally:
                self._stop_loop()
        else:
            self._stop_loop()

    def _stop_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._thread.is_alive() and not self._loop.is_closed():
            self._loop.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def __enter__(self) -> Remote:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else f"{self._conn.local.hostport} -> {self.peer}"
        return f"<Remote {state}>"
