"""``wirekit.forward``: a TCP (or UDP) port forwarder built on the relay core.

    fwd = await wirekit.forward(":8080", "example.org:80")
    print(fwd.address, fwd.open, fwd.bytes_up, fwd.bytes_down)
    await fwd.aclose()          # stop accepting, drain for limits.grace, then close

Each accepted client is admitted by a :class:`~wirekit.net.gate.Gate` (ACL, max-conns),
then joined to a fresh connection to the target by a :class:`~wirekit.net.relay.Relay`.
The only task per connection is the connect attempt, and it runs the loop's own
``create_connection`` (no coroutine of ours, no ``asyncio.timeout``): its done-callback
joins or fails the relay, and one timer per forwarder (not per connection) enforces the
connect timeout.  An established pair costs no task.  One sweeper task per forwarder
closes connections idle for ``limits.idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from wirekit.address import Address, parse_address
from wirekit.errors import ConnectTimeout, NetError, UsageError
from wirekit.net._errors import bind_errors, connect_errors
from wirekit.net.gate import Gate, Limits
from wirekit.net.relay import DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, UPSTREAM, Relay, Tap

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder

if TYPE_CHECKING:
    from wirekit.net.forward_tls import ListenTLS, TargetTLS

__all__ = ["ConnInfo", "ConnectionEnded", "Forwarder", "Rule", "forward", "forward_rules"]

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_UDP_IDLE = 60.0
RESOLVE_TTL = 10.0  # seconds a target name's address is reused without resolving it again
SCHEMES = ("tcp", "udp", "tls")


@dataclass(frozen=True, slots=True)
class ConnInfo:
    """Who is being forwarded where (given to a tap factory).  ``local``: the address the
    client reached (the accepted socket's own; differs from ``listen`` on a wildcard
    listener), None where it is not known (UDP)."""

    proto: str
    client: Address
    listen: Address
    target: Address
    local: Address | None = None


def local_address(sockname: object) -> Address | None:
    """The accepted socket's own address as an :class:`Address` (None if unknown)."""
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return None
    return Address("tcp", str(sockname[0]), int(sockname[1]))


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """One finished forwarded connection (or UDP session).

    ``reason``: closed (both sides finished), reset (a side sent RST or failed),
    refused (the target refused or did not resolve), timeout (connecting took too long),
    idle (no traffic for the idle timeout), rejected (ACL or max-conns), shutdown.
    """

    proto: str
    client: str
    target: str
    bytes_up: int
    bytes_down: int
    duration: float
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """One forwarding rule with its own settings (``--config`` or ``-f``)."""

    listen: Address
    target: Address
    limits: Limits | None = None
    connect_timeout: float | None = None
    udp_idle: float | None = None

    @classmethod
    def parse(cls, listen: str, target: str, **settings: object) -> Rule:
        lst = parse_address(listen, schemes=SCHEMES)
        tgt = parse_address(target, default_scheme="udp" if lst.scheme == "udp" else "tcp",
                            schemes=SCHEMES)
        if (lst.scheme == "udp") != (tgt.scheme == "udp"):
            raise UsageError(
                f"cannot forward {lst.scheme}:// to {tgt.scheme}:// ({listen} -> {target}): "
                "both sides must be tcp:// or both udp:// (tls:// counts as tcp://)"
            )
        if tgt.port == 0:
            raise UsageError(f"target {target!r} needs a port other than 0")
        return cls(lst, tgt, **settings)  # type: ignore[arg-type]


EventHook = Callable[[ConnectionEnded], None]
TapFactory = Callable[[ConnInfo], Tap | None]


class Forwarder:
    """A running forwarder (one rule).  Counters are live; :meth:`aclose` stops it."""

    def __init__(
        self,
        listen: Address,
        target: Address,
        *,
        limits: Limits,
        connect_timeout: float,
        on_event: EventHook | None,
        tap: TapFactory | None,
        high_water: int,
        low_water: int,
    ) -> None:
        self.listen = listen
        self.target = target
        self.limits = limits
        self.gate = Gate(limits)
        self.connect_timeout = connect_timeout
        self.on_event = on_event
        self._tap = tap
        self._high, self._low = high_water, low_water
        self.address: Address = listen
        self.connections = 0  # finished
        self.failed = 0  # target refused / unresolved / timed out
        self._bytes_up = 0
        self._bytes_down = 0
        self._relays: set[Relay] = set()
        self._connecting: dict[Relay, asyncio.Task[Any]] = {}
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        self._accepting = True
        self._target_label = target.hostport
        self._loop: asyncio.AbstractEventLoop  # set by _start
        self._watch: asyncio.TimerHandle | None = None
        self._tick = max(0.01, min(connect_timeout / 10, 0.5))  # connect-timeout precision
        self._literal = _is_ip(target.host)
        self._cached: tuple[str, float] | None = None  # (address, expiry) for a target name

    # -- counters ---------------------------------------------------------------------
    @property
    def open(self) -> int:
        """Connections currently forwarded (or connecting)."""
        return len(self._relays)

    @property
    def bytes_up(self) -> int:
        """Bytes from clients to the target, finished and live connections."""
        return self._bytes_up + sum(r.bytes_up for r in self._relays)

    @property
    def bytes_down(self) -> int:
        return self._bytes_down + sum(r.bytes_down for r in self._relays)

    @property
    def accepted(self) -> int:
        return self.gate.accepted

    @property
    def rejected(self) -> int:
        return self.gate.refused

    # -- lifecycle --------------------------------------------------------------------
    async def _start(self, sock: socket.socket | None, reuse_port: bool) -> None:
        loop = self._loop = asyncio.get_running_loop()
        with bind_errors(self.listen.host, self.listen.port):
            if sock is not None:
                server = await loop.create_server(self._accept, sock=sock, backlog=1024)
            else:
                server = await loop.create_server(
                    self._accept, self.listen.host, self.listen.port,
                    reuse_address=True, reuse_port=reuse_port or None, backlog=1024,
                )
        self._server = server
        name = server.sockets[0].getsockname()
        self.address = Address(self.listen.scheme, str(name[0]), int(name[1]))
        self._start_sweeper()

    def _start_sweeper(self) -> None:
        idle = self.limits.idle_timeout
        if idle is not None and idle > 0:
            self._sweeper = asyncio.create_task(self._sweep(idle))

    def _accept(self) -> asyncio.Protocol:
        relay = Relay(target=self._target_label, on_done=self._relay_done,
                      on_start=self._admit, high=self._high, low=self._low)
        return relay.client_protocol()

    def _admit(self, relay: Relay, transport: asyncio.Transport) -> None:
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else ""
        port = int(peer[1]) if peer else 0
        if self._closed or not self._accepting:
            refusal: str | None = "shutting down"
        else:
            refusal = self.gate.refusal(host)
        if self.on_event is not None or refusal is not None:  # the label is for reports
            relay.client = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if refusal is not None:
            relay.on_done = None
            relay.fail("rejected", refusal)
            self._emit(ConnectionEnded("tcp", relay.client, self._target_label, 0, 0, 0.0,
                                       "rejected", refusal))
            return
        if self._tap is not None:
            client = Address("tcp", host, port)
            relay.tap = self._tap(ConnInfo("tcp", client, self.address, self.target,
                                           local_address(transport.get_extra_info("sockname"))))
        self._relays.add(relay)
        self._dial(relay)

    # -- reaching the target (the hot path of new connections) -------------------------
    def _dial(self, relay: Relay) -> None:
        # A target given by name is resolved by the loop (in a thread) only when the cached
        # address of the last successful connect is older than RESOLVE_TTL; an IP literal is
        # never resolved.  A connect to a cached address that fails is retried once by name.
        loop = self._loop
        host = self.target.host
        cached = self._cached
        if cached is not None and cached[1] > loop.time():
            host = cached[0]
        else:
            cached = None
        task = loop.create_task(loop.create_connection(relay.target_protocol, host,
                                                       self.target.port))
        task.add_done_callback(functools.partial(self._dialled, relay, cached is not None))
        self._connecting[relay] = task
        if self._watch is None:
            self._watch = loop.call_later(self._tick, self._watch_connects)

    def _dialled(self, relay: Relay, via_cache: bool, task: asyncio.Task[Any]) -> None:
        if self._connecting.get(relay) is task:
            del self._connecting[relay]
        if task.cancelled():
            relay.target_gone()
            return
        exc = task.exception()
        if exc is None:
            transport = task.result()[0]
            if not self._literal and not via_cache:
                peer = transport.get_extra_info("peername")
                if peer and not (len(peer) > 2 and peer[3]):  # no IPv6 scope id to lose
                    self._cached = (str(peer[0]), self._loop.time() + RESOLVE_TTL)
            connected = getattr(relay.tap, "target_connected", None)  # a recording tap
            if connected is not None:
                connected(transport)
            return
        if via_cache:
            self._cached = None
            if not relay.reason and relay in self._relays:
                self._dial(relay)  # by name this time
                return
        host, port = self.target.host, self.target.port
        try:
            with connect_errors(host, port, self.connect_timeout):
                raise exc
        except ConnectTimeout as err:
            self.failed += 1
            relay.fail("timeout", str(err))
        except NetError as err:
            self.failed += 1
            relay.fail("refused", str(err))
        finally:
            relay.target_gone()

    def _watch_connects(self) -> None:
        self._watch = None
        limit = time.monotonic() - self.connect_timeout
        expired = [(relay, task) for relay, task in self._connecting.items()
                   if relay.started <= limit]
        for relay, task in expired:
            del self._connecting[relay]
            task.cancel()
            try:
                with connect_errors(self.target.host, self.target.port, self.connect_timeout):
                    raise TimeoutError
            except ConnectTimeout as err:
                self.failed += 1
                relay.fail("timeout", str(err))
        if self._connecting and not self._closed:
            self._watch = self._loop.call_later(self._tick, self._watch_connects)

    async def _connect(self, relay: Relay) -> None:
        # The coroutine form (TLS forwarders use it; plain TCP uses _dial).
        loop = asyncio.get_running_loop()
        host, port = self.target.host, self.target.port
        try:
            with connect_errors(host, port, self.connect_timeout):
                async with asyncio.timeout(self.connect_timeout):
                    transport, _ = await loop.create_connection(relay.target_protocol, host,
                                                                port)
            connected = getattr(relay.tap, "target_connected", None)  # a recording tap
            if connected is not None:
                connected(transport)
        except ConnectTimeout as exc:
            self.failed += 1
            relay.fail("timeout", str(exc))
        except NetError as exc:
            self.failed += 1
            relay.fail("refused", str(exc))
        finally:
            self._connecting.pop(relay, None)
            relay.target_gone()

    def _relay_done(self, relay: Relay) -> None:
        if relay not in self._relays:
            return
        self._relays.discard(relay)
        task = self._connecting.pop(relay, None)
        if task is not None:
            task.cancel()
        self.gate.leave()
        self.connections += 1
        self._bytes_up += relay.bytes_up
        self._bytes_down += relay.bytes_down
        if self.on_event is not None:  # no hook (wirekit forward -q): no record to build
            self.on_event(ConnectionEnded("tcp", relay.client, relay.target, relay.bytes_up,
                                          relay.bytes_down, relay.duration, relay.reason,
                                          relay.detail))

    def _emit(self, event: ConnectionEnded) -> None:
        if self.on_event is not None:
            self.on_event(event)

    async def _sweep(self, idle: float) -> None:
        # Idle detection without per-chunk cost: compare each relay's byte counter with the
        # value seen at the previous sweep.
        interval = max(0.05, min(idle / 4, 5.0))
        seen: dict[Relay, tuple[int, float]] = {}
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            fresh: dict[Relay, tuple[int, float]] = {}
            for relay in list(self._relays):
                if not relay.connected:
                    continue
                activity = relay.activity
                last = seen.get(relay)
                if last is None or last[0] != activity:
                    fresh[relay] = (activity, now)
                elif now - last[1] >= idle:
                    relay.close("idle")
                else:
                    fresh[relay] = last
            seen = fresh

    def stop_accepting(self) -> None:
        """Close the listener at once; open connections carry on (see :meth:`aclose`)."""
        self._accepting = False
        if self._server is not None:
            self._server.close()

    async def aclose(self, grace: float | None = None) -> None:
        """Stop accepting now, let open connections finish for ``grace`` seconds, then
        close the rest (``limits.grace`` by default)."""
        if self._closed:
            return
        self._closed = True
        if grace is None:
            grace = self.limits.grace
        self.stop_accepting()
        if self._relays and grace > 0:
            await self.gate.drained(grace)
        for relay in list(self._relays):
            relay.abort("shutdown") if not relay.connected else relay.close("shutdown")
        for task in list(self._connecting.values()):
            task.cancel()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        # Closing flushes; give the transports a moment, then force whatever is left.
        if self._relays:
            await self.gate.drained(1.0)
        for relay in list(self._relays):
            relay.abort("shutdown")
        if self._relays:
            await self.gate.drained(1.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def __aenter__(self) -> Forwarder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Forwarder {self.address} -> {self.target} open={self.open}>"


async def forward(
    listen: str | Address,
    target: str | Address,
    *,
    limits: Limits | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    udp_idle: float = DEFAULT_UDP_IDLE,
    hexdump: TextIO | bool | None = None,
    on_event: EventHook | None = None,
    tap: TapFactory | None = None,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
    high_water: int = DEFAULT_HIGH_WATER,
    low_water: int = DEFAULT_LOW_WATER,
    splice: bool = False,
    record: Recorder | None = None,
    listen_tls: ListenTLS | None = None,
    target_tls: TargetTLS | None = None,
) -> Forwarder:
    """Start forwarding ``listen`` to ``target`` and return the running forwarder.

    ``tap`` is a factory called once per connection with its :class:`ConnInfo`; it
    returns a ``tap(direction, data, timestamp)`` callback (or None) that sees every
    chunk, see :mod:`wirekit.net.relay`.  ``hexdump`` (a text stream, or True for
    stderr) prints the traffic with direction tags.  ``splice=True`` (Linux, TCP) moves
    the bytes with ``os.splice`` instead, zero-copy (no tap then), see
    :mod:`wirekit.net.splice_relay`.  ``on_event`` gets a
    :class:`ConnectionEnded` for every finished (or rejected) connection.  ``record`` (a
    :class:`wirekit.capture.recorder.Recorder`) writes every connection to a pcapng file.

    A ``tls://`` LISTEN terminates TLS (``listen_tls``: certificate, client CA...; by
    default a certificate issued on the fly by the local CA) and a ``tls://`` TARGET
    originates verified TLS (``target_tls``: --ca, --sni, --insecure...), see
    :mod:`wirekit.net.forward_tls`.  A failed handshake ends with reason ``tls failed``.
    """
    rule = _rule(listen, target)
    limits = limits or Limits()
    if hexdump:
        stream = sys.stderr if hexdump is True else hexdump
        tap = _with_hexdump(tap, stream)
    if record is not None:
        tap, on_event = record.forward_hooks(tap, on_event,
                                             tls_client=rule.listen.scheme == "tls",
                                             tls_target=rule.target.scheme == "tls")
    if rule.listen.scheme == "udp":
        from wirekit.net.udp_relay import UdpForwarder

        udp = UdpForwarder(rule.listen, rule.target, limits=limits, idle=udp_idle,
                           on_event=on_event, tap=tap)
        await udp._start(sock, reuse_port)
        return udp  # type: ignore[return-value]
    if connect_timeout is None or connect_timeout <= 0:
        raise UsageError("the connect timeout must be a positive number of seconds")
    if "tls" in (rule.listen.scheme, rule.target.scheme):
        from wirekit.net.forward_tls import ListenTLS, TargetTLS, TLSForwarder

        if splice:
            raise UsageError("splice forwarding cannot carry TLS (the bytes never reach "
                             "wirekit to be encrypted)")
        tls_fwd = TLSForwarder(
            rule.listen, rule.target, limits=limits, connect_timeout=connect_timeout,
            on_event=on_event, tap=tap, high_water=high_water, low_water=low_water,
            listen_tls=(listen_tls or ListenTLS()) if rule.listen.scheme == "tls" else None,
            target_tls=(target_tls or TargetTLS()) if rule.target.scheme == "tls" else None)
        if record is not None:  # a TLS side is recorded as its ciphertext, keys included
            from wirekit.capture.tls_record import record_context

            if tls_fwd._server_tls is not None:
                record_context(tls_fwd._server_tls.context, record, server_side=True)
            if tls_fwd._client_tls is not None:
                record_context(tls_fwd._client_tls.context, record)
        await tls_fwd._start(sock, reuse_port)
        return tls_fwd
    if listen_tls is not None or target_tls is not None:
        raise UsageError(f"TLS settings need a tls:// side ({rule.listen} -> {rule.target})")
    cls = Forwarder
    if splice:
        # Zero-copy (Linux): bytes never reach Python, so there is no tap or hexdump.
        from wirekit.net.splice_relay import SpliceForwarder, splice_available

        if tap is not None:
            raise UsageError("splice forwarding cannot tap or hexdump the traffic")
        if not splice_available():
            raise UsageError("splice forwarding needs Linux (os.splice)")
        cls = SpliceForwarder
    fwd = cls(rule.listen, rule.target, limits=limits, connect_timeout=connect_timeout,
              on_event=on_event, tap=tap, high_water=high_water, low_water=low_water)
    await fwd._start(sock, reuse_port)
    return fwd


async def forward_rules(
    rules: Iterable[Rule],
    *,
    limits: Limits | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    udp_idle: float = DEFAULT_UDP_IDLE,
    socks: dict[int, socket.socket] | None = None,
    **options: object,
) -> list[Forwarder]:
    """Start one forwarder per rule (rule settings override the shared ones).

    If one cannot start, the ones already started are closed and the error raised.
    """
    started: list[Forwarder] = []
    try:
        for i, rule in enumerate(rules):
            per_rule = dict(options)  # TLS settings go to the rules with a tls:// side
            if rule.listen.scheme != "tls":
                per_rule.pop("listen_tls", None)
            if rule.target.scheme != "tls":
                per_rule.pop("target_tls", None)
            started.append(await forward(
                rule.listen, rule.target,
                limits=rule.limits or limits,
                connect_timeout=rule.connect_timeout or connect_timeout,
                udp_idle=rule.udp_idle or udp_idle,
                sock=(socks or {}).get(i),
                **per_rule,  # type: ignore[arg-type]
            ))
    except BaseException:
        for fwd in started:
            await fwd.aclose(0)
        raise
    return started


def _rule(listen: str | Address, target: str | Address) -> Rule:
    if isinstance(listen, Address) and isinstance(target, Address):
        if ((listen.scheme == "udp") != (target.scheme == "udp")
                or listen.scheme not in SCHEMES or target.scheme not in SCHEMES):
            raise UsageError(f"cannot forward {listen} to {target}")
        return Rule(listen, target)
    return Rule.parse(str(listen), str(target))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _with_hexdump(tap: TapFactory | None, stream: TextIO) -> TapFactory:
    from wirekit.report.hexdump import hexdump as render

    def factory(info: ConnInfo) -> Tap:
        inner = tap(info) if tap is not None else None
        offsets = {"up": 0, "down": 0}
        label = f"{info.client.hostport} {{}} {info.target.hostport}"

        def dump(direction: str, data: bytes, ts: float) -> None:
            if inner is not None:
                inner(direction, data, ts)
            arrow = ">>" if direction == UPSTREAM else "<<"
            offset = offsets[direction]
            if data:
                stream.write(f"{label.format(arrow)} {len(data)} bytes at offset {offset}\n"
                             f"{render(data, offset)}\n")
                offsets[direction] = offset + len(data)
            else:
                stream.write(f"{label.format(arrow)} EOF after {offset} bytes\n")
            stream.flush()

        return dump

    return factory
