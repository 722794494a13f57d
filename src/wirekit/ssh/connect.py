"""Opening an SSH session: ssh_config, jump hosts, credentials, host keys, and the one place
where asyncssh's exceptions become wirekit errors with a reason a person can act on.

Recording (``tunnel --record``): the TCP connection to the SSH server (the first jump host
when there are jumps; later hops travel inside its channels) is opened by
:class:`_RecordedTCP`, handed to asyncssh as its ``tunnel=`` connector, so the bytes that
crossed the wire (banners, KEXINIT, key exchange, encrypted packets) go to the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from wirekit.errors import (
    AuthError,
    ConnectError,
    HostKeyError,
    SSHError,
    UsageError,
    WirekitError,
)
from wirekit.net._errors import connect_errors
from wirekit.ssh.config import HostConfig, resolve_host
from wirekit.ssh.hostkeys import DEFAULT_KNOWN_HOSTS, HostKeyPolicy
from wirekit.ssh.quietlog import install as _install_quiet_logging
from wirekit.ssh.spec import SSHTarget

if TYPE_CHECKING:
    from wirekit.capture.recorder import Recorder

_install_quiet_logging()

__all__ = ["SSHOptions", "Session", "open_session"]

PasswordPrompt = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class SSHOptions:
    """How to authenticate and what to trust; shared by the target and every jump host."""

    identity_files: tuple[str, ...] = ()
    agent: bool = True
    password: str | None = None
    password_prompt: PasswordPrompt | None = None  # called in a thread with the prompt text
    config_file: str | None = None
    jump: tuple[SSHTarget, ...] = ()
    known_hosts: str | None = None
    accept_new: bool = False
    keepalive: float = 15.0
    keepalive_count: int = 3
    connect_timeout: float = 15.0
    ciphers: tuple[str, ...] = ()  # preference order; empty: AES-GCM first (see below)

    @property
    def known_hosts_path(self) -> Path:
        return Path(self.known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()


@dataclass(slots=True)
class Session:
    """A connected, authenticated SSH connection and the jump connections under it."""

    conn: asyncssh.SSHClientConnection
    host: HostConfig
    hops: list[asyncssh.SSHClientConnection] = field(default_factory=list)
    accepted_keys: list[str] = field(default_factory=list)
    client: _Client | None = None

    def lost_reason(self) -> str:
        exc = self.client.lost if self.client is not None else None
        if exc is None:
            return ""
        return str(getattr(exc, "reason", "") or exc or type(exc).__name__)

    @property
    def url(self) -> str:
        return self.host.url

    def close(self) -> None:
        self.conn.close()
        for hop in reversed(self.hops):
            hop.close()

    def abort(self) -> None:
        for c in (self.conn, *self.hops):
            c.abort()

    async def wait_closed(self, timeout: float = 1.0) -> None:
        conns = [self.conn, *self.hops]
        try:
            await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in conns)), timeout)
        except (TimeoutError, Exception):  # closing is best effort; never hang on it
            for c in conns:
                c.abort()


class _Client(asyncssh.SSHClient):
    def __init__(self, policy: HostKeyPolicy, prompt: Callable[[], Awaitable[str | None]] | None):
        self._policy = policy
        self._prompt = prompt
        self.lost: Exception | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc

    def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
        return self._policy.check(host, addr, port, key)

    def password_auth_requested(self) -> Any:
        return self._prompt() if self._prompt is not None else None


class _RecordedTCP:
    """asyncssh's ``tunnel=`` connector for a plain TCP connection that ``rec`` records
    (asyncssh awaits ``create_connection(factory, host, port)`` and wants its own protocol
    back; the tap only queues events, it never blocks the connection)."""

    def __init__(self, rec: Recorder) -> None:
        self._rec = rec

    async def create_connection(self, protocol_factory: Callable[[], Any], host: str,
                                port: int) -> tuple[Any, Any]:
        from wirekit.capture.protocol_tap import recording_client_factory

        loop = asyncio.get_running_loop()
        transport, tapped = await loop.create_connection(
            recording_client_factory(protocol_factory, self._rec), host, port)
        return transport, tapped.inner


def _remember(clients: list[_Client], client: _Client) -> _Client:
    clients.append(client)
    return client


def _load_keys(options: SSHOptions, host: HostConfig) -> list[Any] | tuple[()]:
    keys: list[Any] = []
    for path in options.identity_files:
        try:
            keys.append(asyncssh.read_private_key(path))
        except FileNotFoundError:
            raise UsageError(f"identity file {path!r} does not exist") from None
        except asyncssh.KeyImportError as exc:
            hint = " (add it to ssh-agent first)" if "assphrase" in str(exc) else ""
            raise UsageError(f"cannot use identity file {path!r}: {exc}{hint}") from None
        except OSError as exc:
            raise UsageError(f"cannot read identity file {path!r}: {exc.strerror}") from None
    for path in host.identity_files:  # from ssh_config: missing or locked ones are skipped
        try:
            keys.append(asyncssh.read_private_key(path))
        except (OSError, asyncssh.KeyImportError):
            continue
    return keys or ()


def _methods(options: SSHOptions, keys: list[Any] | tuple[()], prompt: bool) -> tuple[str, ...]:
    tried = []
    if keys:
        tried.append(f"publickey ({len(keys)} key{'s' if len(keys) != 1 else ''})")
    else:
        tried.append("publickey (default keys in ~/.ssh)")
    if options.agent and os.environ.get("SSH_AUTH_SOCK"):
        tried.append("agent")
    if options.password is not None or prompt:
        tried.append("password")
    return tuple(tried)


async def _connect_one(host: HostConfig, options: SSHOptions,
                       tunnel: asyncssh.SSHClientConnection | _RecordedTCP | None,
                       accepted: list[str], clients: list[_Client]) -> asyncssh.SSHClientConnection:
    policy = HostKeyPolicy(options.known_hosts_path, options.accept_new)
    keys = _load_keys(options, host)
    prompt_fn = options.password_prompt
    prompt = None
    if options.password is None and prompt_fn is not None:
        text = f"{host.user}@{host.host}'s password: "

        async def prompt() -> str | None:
            return await asyncio.to_thread(prompt_fn, text)

    kwargs: dict[str, Any] = {
        "username": host.user,
        "known_hosts": policy.load(),
        "client_factory": lambda: _remember(clients, _Client(policy, prompt)),
        "client_keys": keys,
        "agent_path": () if options.agent else None,
        "keepalive_interval": options.keepalive,
        "keepalive_count_max": options.keepalive_count,
        "connect_timeout": options.connect_timeout,
        "config": None,
        "x509_trusted_certs": None,
        "ignore_encrypted": True,
        "encryption_algs": list(options.ciphers) or _cipher_preference(),
    }
    if options.password is not None:
        kwargs["password"] = options.password
    if tunnel is not None:
        kwargs["tunnel"] = tunnel
    where = f"{host.user}@{host.host}:{host.port}"
    try:
        with connect_errors(host.host, host.port, options.connect_timeout):
            conn = await asyncssh.connect(host.host, host.port, **kwargs)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise policy.failure or HostKeyError(f"host key of {where} not trusted: {exc.reason}",
                                             host=host.host, port=host.port) from None
    except asyncssh.PermissionDenied:
        methods = _methods(options, keys, prompt is not None)
        raise AuthError(f"authentication failed for {where} (tried {', '.join(methods)})",
                        methods=methods, host=host.host, port=host.port) from None
    except asyncssh.ChannelOpenError as exc:
        raise ConnectError(f"the jump host could not reach {host.host}:{host.port}: "
                           f"{exc.reason}", host=host.host, port=host.port) from None
    except ValueError as exc:  # asyncssh rejects an option value (e.g. an unknown cipher)
        raise UsageError(f"cannot connect to {where}: {exc}") from None
    except asyncssh.DisconnectError as exc:
        raise SSHError(f"ssh session with {where} failed: {exc.reason}",
                       host=host.host, port=host.port) from None
    if policy.accepted:
        accepted.append(f"{host.host}:{host.port} {policy.accepted}")
    return conn


async def open_session(target: SSHTarget | str, options: SSHOptions, *,
                       record: Recorder | None = None) -> Session:
    """Connect (through jump hosts if asked) and authenticate; raises wirekit errors only.
    ``record``: the TCP connection wirekit opens (to the first hop) is written to it."""
    if isinstance(target, str):
        from wirekit.ssh.spec import parse_target

        target = parse_target(target)
    host = resolve_host(target, options.config_file)
    jumps = options.jump or host.proxy_jump
    hops: list[asyncssh.SSHClientConnection] = []
    accepted: list[str] = []
    try:
        tunnel: asyncssh.SSHClientConnection | _RecordedTCP | None = None
        if record is not None and record.active:
            tunnel = _RecordedTCP(record)
        for jump in jumps:
            tunnel = await _connect_one(resolve_host(jump, options.config_file), options,
                                        tunnel, accepted, [])
            hops.append(tunnel)
        clients: list[_Client] = []
        conn = await _connect_one(host, options, tunnel, accepted, clients)
    except BaseException as exc:
        for hop in reversed(hops):
            hop.abort()
        if isinstance(exc, (WirekitError, asyncio.CancelledError, KeyboardInterrupt)):
            raise
        if isinstance(exc, (OSError, asyncssh.Error)):
            raise SSHError(f"ssh to {host.url} failed: {exc}") from exc
        raise
    _nodelay(conn)
    _ack_quickly(conn)
    return Session(conn, host, hops, accepted, clients[-1] if clients else None)


def _ack_quickly(conn: asyncssh.SSHClientConnection) -> None:
    """ACK every read from the SSH server at once instead of after the delayed-ACK timer.

    OpenSSH's sshd leaves Nagle on for non-interactive sessions.  Every ~96 KiB of our data
    it sends a small WINDOW_ADJUST, and the next data packet waits in its Nagle queue until
    that one is ACKed, which our kernel delays by up to 40 ms: the ~41 ms p99 of small
    request/response exchanges through every SSH tunnel.  TCP_QUICKACK (Linux; not sticky,
    hence after every read) sends the pending ACK now.  The hook wraps the connection's
    data_received; set_protocol makes the transport (uvloop caches it) pick it up.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    sock = conn.get_extra_info("socket")
    transport = getattr(conn, "_transport", None)
    # uvloop hands out a socket-like object, not a socket.socket
    if quickack is None or not hasattr(sock, "setsockopt") or \
            not hasattr(transport, "set_protocol"):
        return
    receive = conn.data_received

    def data_received(data: bytes, *args: Any) -> None:
        receive(data, *args)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)

    conn.data_received = data_received  # type: ignore[method-assign,assignment]
    if transport.get_protocol() is conn:  # type: ignore[union-attr]
        transport.set_protocol(conn)  # type: ignore[union-attr]
    # else a recording tap is the transport's protocol: it looks conn.data_received up on
    # every read, so it already calls the hook (and it must stay in place)


def _cipher_preference() -> list[str]:
    """asyncssh's defaults with AES-GCM first: with OpenSSL's AES-NI it moves ~1.7x the bytes
    per CPU second of asyncssh's ChaCha20-Poly1305 (measured on loopback; see bench/ssh.py)."""
    from asyncssh.encryption import get_default_encryption_algs

    defaults = [alg.decode() for alg in get_default_encryption_algs()]
    fast = [alg for alg in ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
            if alg in defaults]
    return fast + [alg for alg in defaults if alg not in fast]


def _nodelay(conn: asyncssh.SSHClientConnection) -> None:
    sock = conn.get_extra_info("socket")
    if hasattr(sock, "setsockopt") and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
