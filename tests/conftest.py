"""Shared test machinery: peer tools, wirekit subprocesses, waiting on conditions."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest

REQUIRE_PEERS = os.environ.get("WIREKIT_REQUIRE_PEERS") == "1"
LISTENING = re.compile(r"listening on (\w+)://(\[[^\]]+\]|[^:\s]+):(\d+)")
T = TypeVar("T")


def need_peer(name: str) -> str:
    """Path of the peer tool ``name``; skip the test without it (fail under CI)."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        message = f"peer tool {name!r} is not installed (.ci/run installs it)"
        if REQUIRE_PEERS:
            pytest.fail(message + " and WIREKIT_REQUIRE_PEERS=1")
        pytest.skip(message)
    return path


def require(condition: bool, reason: str) -> None:
    """Skip the test unless ``condition`` holds; fail instead under WIREKIT_REQUIRE_PEERS=1.

    For capabilities CI provides (it runs as root: raw capture, tmpfs mounts, a high
    RLIMIT_NOFILE, IPv6 loopback), so that a missing one there is an error, not a silent skip.
    """
    if condition:
        return
    if REQUIRE_PEERS:
        pytest.fail(reason + " (and WIREKIT_REQUIRE_PEERS=1)")
    pytest.skip(reason)


def need_module(name: str) -> ModuleType:
    """Import an optional dependency (``make`` installs the extras: uvloop, asyncssh, ...).

    Skips without it, also at module level; fails under WIREKIT_REQUIRE_PEERS=1.
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        message = f"Python module {name!r} is not installed ({exc}; make installs the extras)"
        if REQUIRE_PEERS:
            pytest.fail(message + " and WIREKIT_REQUIRE_PEERS=1")
        pytest.skip(message, allow_module_level=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``, for peers that cannot take port 0.

    Racy by nature (another process may take it before the peer binds): callers that can
    detect "address in use" from the peer should retry with a new port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


async def async_wait_for(predicate: Callable[[], T], timeout: float = 10.0,
                         what: str = "condition") -> T:
    """The asyncio twin of :func:`wait_for`: poll without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


class WirekitProcess:
    """``python -m wirekit ARGS`` in a subprocess, with its stderr collected in a thread."""

    def __init__(self, args: list[str], *, stdin: int | None = subprocess.DEVNULL,
                 env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wirekit", *args],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr_lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def wait_line(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in list(self.stderr_lines):
                m = regex.search(line)
                if m:
                    return m
            if self.proc.poll() is not None:
                self._reader.join(1)
                pytest.fail(f"wirekit {' '.join(self.args)} exited {self.proc.returncode} "
                            f"before printing {pattern!r}; stderr:\n{self.stderr}")
            return None

        return wait_for(found, timeout, f"{pattern!r} from wirekit {' '.join(self.args)}")

    def listening(self, timeout: float = 10.0) -> tuple[str, str, int]:
        """Wait for the ``listening on`` line; returns (scheme, host, port)."""
        m = self.wait_line(LISTENING.pattern, timeout)
        return m.group(1), m.group(2).strip("[]"), int(m.group(3))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self._reader.join(1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(1)
        for stream in (self.proc.stdout, self.proc.stdin, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def wirekit_proc() -> Iterator[Callable[..., WirekitProcess]]:
    """Start wirekit subprocesses; every one is killed at the end of the test."""
    started: list[WirekitProcess] = []

    def start(*args: str, **kwargs: object) -> WirekitProcess:
        p = WirekitProcess(list(args), **kwargs)  # type: ignore[arg-type]
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := sock.recv(262144):
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)  # echo everything, then pass the half-close on
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A plain threaded TCP echo server on 127.0.0.1 (a target that is not wirekit)."""
    server = _EchoServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


@dataclass(frozen=True)
class PKI:
    """Certificates for TLS tests, made once per session (keys never committed)."""

    ca: Path
    server: tuple[Path, Path]  # localhost + 127.0.0.1, issued by ``ca``
    wrong_host: tuple[Path, Path]  # other.test only
    self_signed: tuple[Path, Path]
    stranger_server: tuple[Path, Path]  # issued by another root
    stranger_root: Path
    client: tuple[Path, Path]
    client_expired: tuple[Path, Path]
    client_stranger: tuple[Path, Path]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    import datetime as dt

    from wirekit.tls import certs

    d = tmp_path_factory.mktemp("pki")
    now, day = dt.datetime.now(dt.UTC), dt.timedelta(days=1)
    ca = certs.LocalCA.init(d / "ca", common_name="Test Root")
    stranger = certs.LocalCA.init(d / "stranger", common_name="Stranger Root")

    def pair(issued: certs.Issued) -> tuple[Path, Path]:
        return issued.cert_path, issued.key_path

    key = certs.generate_key()
    leaf = certs.new_leaf(["localhost", "127.0.0.1"], key, issuer=None, issuer_key=key)
    return PKI(
        ca=ca.cert_path,
        server=pair(ca.issue(["localhost", "127.0.0.1"], d / "server")),
        wrong_host=pair(ca.issue(["other.test"], d / "wrong")),
        self_signed=(certs.write_certificates(d / "self.pem", [leaf]),
                     certs.write_private_key(d / "self-key.pem", key)),
        stranger_server=pair(stranger.issue(["localhost"], d / "stranger-server")),
        stranger_root=stranger.cert_path,
        client=pair(ca.issue(["alice"], d / "alice", client=True)),
        client_expired=pair(ca.issue(["bob"], d / "bob", client=True,
                                     not_before=now - 30 * day, not_after=now - 3 * day)),
        client_stranger=pair(stranger.issue(["mallory"], d / "mallory", client=True)),
    )


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root: fails under WIREKIT_REQUIRE_PEERS=1 without it): a disk
    that fills up, for the recorders' ENOSPC paths."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    require(proc.returncode == 0,
            f"cannot mount a tiny tmpfs for the disk-full test: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


@pytest.fixture
def wirekit_sshd(tmp_path: Path, wirekit_proc: Callable[..., WirekitProcess]):  # type: ignore[no-untyped-def]
    """``wirekit sshd`` on an ephemeral loopback port with a fresh ed25519 client key:
    ``(port, SSHOptions)`` for :func:`wirekit.ssh.tunnel.tunnel` (the host key trusted on
    first use, into a known_hosts of this test's own)."""
    asyncssh = need_module("asyncssh")
    from wirekit.ssh.connect import SSHOptions

    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(tmp_path / "id"))
    os.chmod(tmp_path / "id", 0o600)
    key.write_public_key(str(tmp_path / "authorized_keys"))
    sshd = wirekit_proc("sshd", "127.0.0.1:0", "--state-dir", str(tmp_path / "state"),
                        "--authorized-keys", str(tmp_path / "authorized_keys"))
    _, _, port = sshd.listening()
    options = SSHOptions(identity_files=(str(tmp_path / "id"),), agent=False,
                         known_hosts=str(tmp_path / "known_hosts"), accept_new=True,
                         connect_timeout=10.0)
    return port, options


@contextlib.asynccontextmanager
async def serving(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                   Awaitable[None]]) -> AsyncIterator[int]:
    """An asyncio server on an ephemeral loopback port running ``handle`` per connection;
    yields the port and closes the server afterwards."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
