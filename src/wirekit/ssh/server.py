"""``wirekit sshd``: a small SSH server for labs and tests, built on asyncssh.

It authenticates with an authorized_keys file and/or one password, allows local and
remote port forwarding (that is what it is for), and refuses sessions (shells, commands)
unless ``allow_exec``.  Its host key lives in a state directory so that clients' known_hosts
entries stay valid across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from wirekit.errors import BindError, UsageError
from wirekit.net._errors import bind_errors
from wirekit.ssh.hostkeys import fingerprint

__all__ = ["DEFAULT_STATE_DIR", "SSHServer", "load_host_key", "start_sshd"]

DEFAULT_STATE_DIR = Path("~/.local/share/wirekit/sshd")
HOST_KEY_NAME = "ssh_host_ed25519_key"


def load_host_key(state_dir: str | Path) -> Any:
    """The server's host key, generated (ed25519, mode 0600) on first use."""
    directory = Path(state_dir).expanduser()
    path = directory / HOST_KEY_NAME
    if path.is_file():
        return asyncssh.read_private_key(path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    (directory / (HOST_KEY_NAME + ".pub")).write_bytes(key.export_public_key())
    return key


class _Policy(asyncssh.SSHServer):
    def __init__(self, owner: SSHServer) -> None:
        self._owner = owner
        self._peer = "?"

    def connection_made(self, conn: Any) -> None:
        peer = conn.get_extra_info("peername")
        if peer:
            self._peer = f"{peer[0]}:{peer[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._emit(f"client {self._peer} disconnected")

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return self._owner.password is not None

    def validate_password(self, username: str, password: str) -> bool:
        expected = self._owner.password or ""
        ok = self._owner.password is not None and hmac.compare_digest(
            password.encode(), expected.encode())
        self._owner._emit(f"client {self._peer}: password for {username} "
                          f"{'accepted' if ok else 'rejected'}")
        return ok

    def public_key_auth_supported(self) -> bool:
        return self._owner.authorized_keys is not None

    def auth_completed(self) -> None:
        self._owner._emit(f"client {self._peer} authenticated")

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        self._owner._emit(f"client {self._peer}: forward to {dest_host}:{dest_port}")
        return True

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self._owner._emit(f"client {self._peer}: remote listener {listen_host}:{listen_port}")
        return True

    def session_requested(self) -> bool:
        if not self._owner.allow_exec:
            self._owner._emit(f"client {self._peer}: session refused (no --allow-exec)")
        return self._owner.allow_exec


async def _run_command(process: Any) -> None:
    command = process.command or os.environ.get("SHELL", "/bin/sh")
    proc = await asyncio.create_subprocess_shell(
        command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        await process.redirect(stdin=proc.stdin, stdout=proc.stdout, stderr=proc.stderr)
        process.exit(await proc.wait())
    finally:
        if proc.returncode is None:
            proc.kill()


@dataclass(slots=True)
class SSHServer:
    """A running embedded sshd.  ``port`` is the real port; ``fingerprint`` its host key's."""

    host: str
    port: int
    fingerprint: str
    password: str | None
    authorized_keys: Any
    allow_exec: bool
    on_event: Callable[[str], None] | None = None
    _acceptor: Any = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{host}:{self.port}"

    def _emit(self, message: str) -> None:
        if self.on_event is not None:
            self.on_event(message)

    async def aclose(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acceptor.wait_closed(), 1.0)

    async def __aenter__(self) -> SSHServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def start_sshd(
    host: str = "127.0.0.1",
    port: int = 2222,
    *,
    state_dir: str | Path = DEFAULT_STATE_DIR,
    authorized_keys: str | Path | None = None,
    password: str | None = None,
    allow_exec: bool = False,
    on_event: Callable[[str], None] | None = None,
) -> SSHServer:
    """Start the embedded server.  Without a password, an authorized_keys file must exist."""
    keys = None
    keys_path = Path(authorized_keys or "~/.ssh/authorized_keys").expanduser()
    if keys_path.is_file():
        text = keys_path.read_text()
        if text.strip() or password is None:
            try:
                keys = asyncssh.import_authorized_keys(text)
            except (ValueError, asyncssh.KeyImportError) as exc:
                raise UsageError(
                    f"cannot read authorized keys {str(keys_path)!r}: {exc}") from None
    elif authorized_keys is not None:
        raise UsageError(f"authorized keys file {str(authorized_keys)!r} does not exist")
    if keys is None and password is None:
        raise UsageError(f"no way to log in: {keys_path} does not exist and no password was "
                         "given (use --authorized-keys FILE and/or --password-env VAR)")
    host_key = load_host_key(state_dir)
    server = SSHServer(host, port, fingerprint(host_key), password, keys, allow_exec, on_event)
    with bind_errors(host, port):
        acceptor = await asyncssh.listen(
            host, port, server_factory=lambda: _Policy(server), server_host_keys=[host_key],
            authorized_client_keys=keys, process_factory=_run_command if allow_exec else None,
            allow_pty=allow_exec, agent_forwarding=False, x11_forwarding=False,
            reuse_address=True, backlog=1024, config=None)
    sockets = acceptor.sockets if hasattr(acceptor, "sockets") else []
    if not sockets:
        acceptor.close()
        raise BindError(f"cannot listen on {host}:{port}", host=host, port=port)
    server.port = sockets[0].getsockname()[1]
    server._acceptor = acceptor
    return server
