"""``SSHTunnel``: the tunnel for synchronous code, shaped like sshtunnel's SSHTunnelForwarder.

The :class:`~wirekit.ssh.tunnel.Tunnel` runs on its own event loop in a daemon thread.
``start()`` returns once every forward is up (or raises the connect error); ``stop()``
asks the loop to close and joins the thread with a bound, so it never hangs the caller.

    with SSHTunnel(("gw.example.org", 22), ssh_username="bob", ssh_pkey="~/.ssh/id_ed25519",
                   remote_bind_address=("db", 5432)) as t:
        connect_to("127.0.0.1", t.local_bind_port)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from wirekit.errors import NetError, UsageError
from wirekit.net.runtime import loop_factory
from wirekit.ssh.connect import SSHOptions
from wirekit.ssh.spec import Forward, SSHTarget, parse_target
from wirekit.ssh.tunnel import Tunnel, TunnelEvent

__all__ = ["SSHTunnel"]

STOP_TIMEOUT = 3.0


def _local_forward(remote: tuple[str, int], local: tuple[str, int] | None) -> Forward:
    bind_host, bind_port = local or ("127.0.0.1", 0)
    return Forward("L", bind_host or "127.0.0.1", int(bind_port), remote[0], int(remote[1]))


class SSHTunnel:
    """Start/stop an SSH tunnel from synchronous code (see the module docstring)."""

    def __init__(
        self,
        ssh_address_or_host: str | tuple[str, int],
        *,
        ssh_username: str | None = None,
        ssh_port: int | None = None,
        ssh_password: str | None = None,
        ssh_pkey: str | Path | Sequence[str | Path] | None = None,
        remote_bind_address: tuple[str, int] | None = None,
        local_bind_address: tuple[str, int] | None = None,
        remote_bind_addresses: Iterable[tuple[str, int]] = (),
        local_bind_addresses: Iterable[tuple[str, int]] = (),
        local: Iterable[str | Forward] = (),
        remote: Iterable[str | Forward] = (),
        dynamic: Iterable[str | Forward] = (),
        reconnect: bool = True,
        start_timeout: float = 30.0,
        on_event: Any = None,
        **option_fields: Any,
    ) -> None:
        if isinstance(ssh_address_or_host, tuple):
            target = SSHTarget(ssh_address_or_host[0], ssh_username,
                               int(ssh_address_or_host[1]))
        else:
            parsed = parse_target(ssh_address_or_host)
            target = SSHTarget(parsed.host, parsed.user or ssh_username, parsed.port or ssh_port)
        forwards: list[str | Forward] = list(local)
        if remote_bind_address is not None:
            forwards.append(_local_forward(remote_bind_address, local_bind_address))
        remotes, locals_ = list(remote_bind_addresses), list(local_bind_addresses)
        if locals_ and len(locals_) != len(remotes):
            raise UsageError("local_bind_addresses must match remote_bind_addresses one to one")
        for i, addr in enumerate(remotes):
            forwards.append(_local_forward(addr, locals_[i] if locals_ else None))
        keys = option_fields.pop("identity_files", ())
        if ssh_pkey is not None:
            keys = (ssh_pkey,) if isinstance(ssh_pkey, (str, Path)) else tuple(ssh_pkey)
        if ssh_password is not None:
            option_fields["password"] = ssh_password
        if "jump" in option_fields:
            option_fields["jump"] = tuple(
                parse_target(j) if isinstance(j, str) else j for j in option_fields["jump"])
        options = SSHOptions(identity_files=tuple(str(Path(k).expanduser()) for k in keys),
                             **option_fields)
        self.events: list[TunnelEvent] = []
        self._on_event = on_event
        self.tunnel = Tunnel(target, local=forwards, remote=remote, dynamic=dynamic,
                             options=options, reconnect=reconnect, on_event=self._event)
        self._start_timeout = start_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _event(self, event: TunnelEvent) -> None:
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="wirekit-ssh-tunnel",
                                        daemon=True)
        self._thread.start()
        if not self._started.wait(self._start_timeout):
            self.stop()
            raise NetError(f"SSH tunnel did not come up within {self._start_timeout:g}s")
        if self._error is not None:
            self._thread.join(STOP_TIMEOUT)
            raise self._error

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close everything; returns within ``timeout`` seconds whatever the network does."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    close = stop

    def __enter__(self) -> SSHTunnel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = loop_factory()()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            self._started.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.tunnel.start()
        except BaseException as exc:
            self._error = exc
            return
        finally:
            self._started.set()
        stopper = asyncio.create_task(self._stop.wait())
        waiter = asyncio.create_task(self.tunnel.wait())
        try:
            await asyncio.wait({stopper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            waiter.cancel()
            await self.tunnel.aclose()
            await asyncio.wait({stopper, waiter}, timeout=1.0)

    # -- sshtunnel-compatible properties --------------------------------------------------
    @property
    def is_active(self) -> bool:
        return self.tunnel.is_up

    @property
    def local_bind_ports(self) -> list[int]:
        return self.tunnel.local_ports

    @property
    def local_bind_port(self) -> int:
        ports = self.tunnel.local_ports
        if not ports:
            raise UsageError("this tunnel has no local (-L) forward")
        return ports[0]

    @property
    def local_bind_addresses(self) -> list[tuple[str, int]]:
        binds = [f.bind_host for f in self.tunnel.forwards if f.kind == "L"]
        return list(zip(binds, self.tunnel.local_ports, strict=True))

    @property
    def local_bind_address(self) -> tuple[str, int]:
        return self.local_bind_addresses[0]
