"""``wirekit tunnel`` against a real OpenSSH ``sshd`` started by the test on a loopback port.

Each server gets its own sshd_config, host key and authorized_keys in tmp_path.  sshd needs
an absolute path, its privilege-separation directory (/run/sshd, created when missing, as
users of sshd must too) and, since the tests run as root, PermitRootLogin.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import hashlib
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import WirekitProcess, free_port, need_module, need_peer, wait_for

asyncssh = need_module("asyncssh")

from wirekit.errors import ForwardRefused  # noqa: E402
from wirekit.ssh.connect import SSHOptions  # noqa: E402
from wirekit.ssh.tunnel import TunnelEvent, tunnel  # noqa: E402

MiB = 1024 * 1024
USER = getpass.getuser()


# -- helpers ------------------------------------------------------------------------------


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wirekit-test",
                    "-f", str(path)], check=True, stdin=subprocess.DEVNULL)


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (sshd forks one process tree per connection)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class OpenSSHServer:
    """One OpenSSH sshd in the foreground (-D -e), restartable on the same port."""

    def __init__(self, root: Path, client_pub: Path, *, config: str = "") -> None:
        self.sshd = need_peer("sshd")
        if not os.path.isabs(self.sshd):
            self.sshd = os.path.realpath(self.sshd)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.host_key = root / "host_ed25519"
        _keygen(self.host_key)
        self.fingerprint = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{self.host_key}.pub"],
            check=True, capture_output=True, text=True).stdout.split()[1]
        (root / "authorized_keys").write_bytes(client_pub.read_bytes())
        self.config = config
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "sshd.log"

    def start(self) -> OpenSSHServer:
        for _ in range(5):
            port = self.port or free_port()
            cfg = self.root / "sshd_config"
            cfg.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
                f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPidFile none\n"
                "UsePAM no\nStrictModes no\nPermitRootLogin yes\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nLogLevel VERBOSE\n" + self.config)
            log = self.log.open("ab")
            self.proc = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(cfg)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
            if self._wait_listening(port):
                self.port = port
                return self
            self.stop()
            if self.port:
                break
        pytest.fail(f"sshd did not start; log:\n{self.log.read_text()}")

    def _wait_listening(self, port: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def kill(self) -> None:
        """SIGKILL the listener and every per-connection process, by PID."""
        if self.proc is None:
            return
        for pid in [*_children(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        self.kill()
        self.proc = None


@pytest.fixture
def client_key(tmp_path: Path) -> Path:
    _keygen(tmp_path / "id")
    return tmp_path / "id"


@pytest.fixture
def servers(tmp_path: Path, client_key: Path) -> Iterator[Callable[..., OpenSSHServer]]:
    started: list[OpenSSHServer] = []

    def start(name: str = "sshd", config: str = "") -> OpenSSHServer:
        server = OpenSSHServer(tmp_path / name, client_key.with_suffix(".pub"), config=config)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def options(tmp_path: Path, client_key: Path, **kw: object) -> SSHOptions:
    base: dict[str, object] = {"identity_files": (str(client_key),), "agent": False,
                               "known_hosts": str(tmp_path / "known_hosts"),
                               "accept_new": True, "connect_timeout": 10.0}
    base.update(kw)
    return SSHOptions(**base)  # type: ignore[arg-type]


async def transfer(port: int, size: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    await _transfer(r, w, size)


async def _transfer(r: asyncio.StreamReader, w: asyncio.StreamWriter, size: int) -> None:
    sent, got = hashlib.sha256(), hashlib.sha256()
    n = 0

    async def send() -> None:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            sent.update(chunk)
            w.write(chunk)
            await w.drain()
            left -= len(chunk)
        w.write_eof()

    sender = asyncio.create_task(send())
    while data := await r.read(262144):
        got.update(data)
        n += len(data)
    await sender
    w.close()
    assert n == size
    assert sent.hexdigest() == got.hexdigest()


async def socks5(port: int, host: str, dport: int) -> tuple[asyncio.StreamReader,
                                                             asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"\x05\x01\x00")
    assert await r.readexactly(2) == b"\x05\x00"
    w.write(b"\x05\x01\x00\x03" + bytes([len(host)]) + host.encode() + struct.pack("!H", dport))
    reply = await r.readexactly(10)
    assert reply[1] == 0, f"SOCKS5 reply {reply[1]}"
    return r, w


def can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(b"x")
            return s.recv(1) == b"x"
    except OSError:
        return False


# -- forwards ------------------------------------------------------------------------------
@pytest.mark.slow
async def test_forwards_64mib_and_20_parallel(servers: Callable[..., OpenSSHServer],
                                              tmp_path: Path, client_key: Path,
                                              echo_port: int) -> None:
    server = servers()
    async with tunnel(f"{USER}@127.0.0.1:{server.port}", local=[f"0:127.0.0.1:{echo_port}"],
                      remote=[f"0:127.0.0.1:{echo_port}"], dynamic=["0"],
                      options=options(tmp_path, client_key)) as t:
        lport, rport, dport = t.local_ports[0], t.remote_ports[0], t.dynamic_ports[0]
        await asyncio.wait_for(transfer(lport, 64 * MiB), 60)
        await asyncio.wait_for(transfer(rport, 64 * MiB), 60)
        r, w = await socks5(dport, "localhost", echo_port)
        await asyncio.wait_for(_transfer(r, w, 64 * MiB), 60)

        async def one(i: int) -> None:
            if i % 3 == 2:
                r, w = await socks5(dport, "127.0.0.1", echo_port)
                await _transfer(r, w, 256 * 1024)
            else:
                await transfer(lport if i % 3 == 0 else rport, 256 * 1024)

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), 60)


async def test_proxyjump_through_a_second_server(servers: Callable[..., OpenSSHServer],
                                                 tmp_path: Path, client_key: Path,
                                                 echo_port: int) -> None:
    jump = servers("jump")
    target = servers("target")
    from wirekit.ssh.spec import parse_target

    opts = options(tmp_path, client_key, jump=(parse_target(f"{USER}@127.0.0.1:{jump.port}"),))
    events = []
    async with tunnel(f"{USER}@127.0.0.1:{target.port}", local=[f"0:127.0.0.1:{echo_port}"],
                      options=opts, on_event=events.append) as t:
        await transfer(t.local_ports[0], MiB)
    accepted = " ".join(e.message for e in events if e.kind == "hostkey")
    assert jump.fingerprint in accepted and target.fingerprint in accepted
    assert "Accepted publickey" in target.log.read_text()


def test_cli_proxyjump_from_ssh_config(servers: Callable[..., OpenSSHServer], tmp_path: Path,
                                       client_key: Path, echo_port: int,
                                       wirekit_proc: Callable[..., WirekitProcess]) -> None:
    jump = servers("jump")
    target = servers("target")
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host labjump\n  HostName 127.0.0.1\n  Port {jump.port}\n  User {USER}\n"
        f"  IdentityFile {client_key}\n"
        f"Host labtarget\n  HostName 127.0.0.1\n  Port {target.port}\n  User {USER}\n"
        f"  IdentityFile {client_key}\n  ProxyJump labjump\n")
    p = wirekit_proc("tunnel", "labtarget", "-F", str(config), "--no-agent", "--known-hosts",
                     str(tmp_path / "known_hosts"), "--accept-new",
                     "-L", f"0:127.0.0.1:{echo_port}")
    m = p.wait_line(rf"forwarding 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:{echo_port} via "
                    rf"ssh://{USER}@127\.0\.0\.1:{target.port}$", timeout=20)
    assert can_connect(int(m.group(1)))
    assert "Accepted publickey" in jump.log.read_text()


async def test_agent_authentication(servers: Callable[..., OpenSSHServer], tmp_path: Path,
                                    client_key: Path, echo_port: int,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    agent_bin = need_peer("ssh-agent")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen([agent_bin, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, 10, "ssh-agent socket")
        subprocess.run(["ssh-add", str(client_key)], check=True, capture_output=True,
                       env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no default keys from the real ~/.ssh
        server = servers()
        opts = options(tmp_path, client_key, identity_files=(), agent=True)
        async with tunnel(f"{USER}@127.0.0.1:{server.port}", local=[f"0:127.0.0.1:{echo_port}"],
                          options=opts) as t:
            await transfer(t.local_ports[0], 4096)
    finally:
        agent.terminate()
        agent.wait(5)


# -- failures that must be explained ---------------------------------------------------------
def test_unknown_and_changed_host_keys(servers: Callable[..., OpenSSHServer], tmp_path: Path,
                                       client_key: Path,
                                       wirekit_proc: Callable[..., WirekitProcess]) -> None:
    server = servers()
    known = tmp_path / "known_hosts"
    args = ["tunnel", f"{USER}@127.0.0.1:{server.port}", "-i", str(client_key), "--no-agent",
            "--known-hosts", str(known), "-L", "0:127.0.0.1:9"]
    p = wirekit_proc(*args)
    assert p.proc.wait(30) == 1
    p.kill()
    assert "unknown" in p.stderr and server.fingerprint in p.stderr

    p = wirekit_proc(*args, "--accept-new")
    p.wait_line(r"^forwarding ")
    p.stop()
    assert known.read_text().startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 ")

    _keygen(tmp_path / "other")  # the "server" now presents another key
    line = (tmp_path / "other.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{server.port} {' '.join(line)}\n")
    p = wirekit_proc(*args, "--accept-new")
    assert p.proc.wait(30) == 1
    p.kill()
    assert "HOST KEY CHANGED" in p.stderr and server.fingerprint in p.stderr


def test_wrong_key_exits_1_with_the_reason(servers: Callable[..., OpenSSHServer],
                                           tmp_path: Path,
                                           wirekit_proc: Callable[..., WirekitProcess]) -> None:
    server = servers()
    _keygen(tmp_path / "wrong")
    p = wirekit_proc("tunnel", f"{USER}@127.0.0.1:{server.port}", "-i", str(tmp_path / "wrong"),
                     "--no-agent", "--known-hosts", str(tmp_path / "known_hosts"),
                     "--accept-new", "-L", "0:127.0.0.1:9")
    assert p.proc.wait(30) == 1
    p.kill()
    assert "authentication failed" in p.stderr and "publickey" in p.stderr
    assert p.stderr.count("error:") == 1


async def test_forwarding_disabled_reason_shown(servers: Callable[..., OpenSSHServer],
                                                tmp_path: Path, client_key: Path,
                                                echo_port: int) -> None:
    server = servers(config="AllowTcpForwarding no\n")
    events = []
    async with tunnel(f"{USER}@127.0.0.1:{server.port}", local=[f"0:127.0.0.1:{echo_port}"],
                      options=options(tmp_path, client_key), on_event=events.append) as t:
        r, w = await asyncio.open_connection("127.0.0.1", t.local_ports[0])
        assert await asyncio.wait_for(r.read(), 10) == b""
        w.close()
        refused = [e.message for e in events if e.kind == "refused"]
        assert refused and "administratively prohibited" in refused[0]
        assert t.is_up
    with pytest.raises(ForwardRefused) as info:
        async with tunnel(f"{USER}@127.0.0.1:{server.port}",
                          remote=[f"0:127.0.0.1:{echo_port}"],
                          options=options(tmp_path, client_key)):
            pass
    assert "administratively prohibited" in str(info.value)


def test_remote_target_refused_per_connection(servers: Callable[..., OpenSSHServer],
                                              tmp_path: Path, client_key: Path, echo_port: int,
                                              wirekit_proc: Callable[..., WirekitProcess]
                                              ) -> None:
    server = servers()
    dead = free_port()
    p = wirekit_proc("tunnel", f"{USER}@127.0.0.1:{server.port}", "-i", str(client_key),
                     "--no-agent", "--known-hosts", str(tmp_path / "known_hosts"),
                     "--accept-new", "-L", f"0:127.0.0.1:{dead}", "-L",
                     f"0:127.0.0.1:{echo_port}")
    bad = int(p.wait_line(rf"forwarding 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:{dead} ").group(1))
    good = int(p.wait_line(rf"forwarding 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:{echo_port} ")
               .group(1))
    assert not can_connect(bad)
    p.wait_line(rf"-> 127\.0\.0\.1:{dead}: the server could not connect: .*[Rr]efused")
    assert can_connect(good)
    assert p.proc.poll() is None


def test_reconnect_after_sshd_is_killed(servers: Callable[..., OpenSSHServer], tmp_path: Path,
                                        client_key: Path, echo_port: int,
                                        wirekit_proc: Callable[..., WirekitProcess]) -> None:
    server = servers()
    p = wirekit_proc("tunnel", f"{USER}@127.0.0.1:{server.port}", "-i", str(client_key),
                     "--no-agent", "--known-hosts", str(tmp_path / "known_hosts"),
                     "--accept-new", "--keepalive", "0.5", "--keepalive-count", "2",
                     "-L", f"0:127.0.0.1:{echo_port}")
    port = int(p.wait_line(r"forwarding 127\.0\.0\.1:(\d+) ->").group(1))
    assert can_connect(port)
    server.kill()
    p.wait_line(r"lost: .*reconnecting", timeout=2 * 0.5 + 3)
    server.start()
    wait_for(lambda: can_connect(port), timeout=5, what="the same local port to work again")
    p.wait_line(r"^reconnected to ssh://")


# -- --record: the SSH connection and the -R target legs, read by tshark ----------------------
async def _ask(port: int, payload: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(payload)
    got = await asyncio.wait_for(r.readexactly(len(payload)), 10)
    w.close()
    await w.wait_closed()
    return got


async def test_record_remote_forward_and_a_reconnect(servers: Callable[..., OpenSSHServer],
                                                     tmp_path: Path, client_key: Path,
                                                     echo_port: int) -> None:
    from test_record_tshark import conversations, tshark

    from conftest import async_wait_for
    from wirekit.capture.recorder import Recorder

    server = servers()
    path = tmp_path / "tunnel.pcapng"
    events: list[TunnelEvent] = []
    with Recorder(path) as rec:
        async with tunnel(f"{USER}@127.0.0.1:{server.port}", remote=[f"0:127.0.0.1:{echo_port}"],
                          options=options(tmp_path, client_key), record=rec,
                          on_event=events.append) as t:
            assert await _ask(t.remote_ports[0], b"first session\n") == b"first session\n"
            server.kill()
            await async_wait_for(lambda: not t.is_up, 10, "the tunnel to notice")
            await asyncio.to_thread(server.start)
            await async_wait_for(lambda: any(e.message.startswith("reconnected")
                                             for e in events), 15, "the reconnect")
            assert await _ask(t.remote_ports[0], b"second session\n") == b"second session\n"
    assert rec.error is None and rec.dropped == 0

    # Each SSH connection (one per reconnect) and each -R target connection is its own
    # conversation, wirekit's socket the client.
    convs = conversations(path)
    ssh_legs = [c for c in convs if ("127.0.0.1", server.port) in c]
    target_legs = [c for c in convs if ("127.0.0.1", echo_port) in c]
    assert len(ssh_legs) == 2 and len(target_legs) == 2 and len(convs) == 4, convs
    text = tshark("-r", str(path), "-d", f"tcp.port=={server.port},ssh", "-Y", "ssh.protocol",
                  "-T", "fields", "-e", "tcp.srcport", "-e", "ssh.protocol")
    banners = [line.split("\t") for line in text.splitlines() if line.strip()]
    theirs = [b for p, b in banners if int(p) == server.port]
    ours = [b for p, b in banners if int(p) != server.port]
    assert len(theirs) == 2 and all(b.startswith("SSH-2.0-OpenSSH") for b in theirs), text
    assert len(ours) == 2 and all(b.startswith("SSH-2.0-AsyncSSH") for b in ours), text
    text = tshark("-r", str(path), "-d", f"tcp.port=={server.port},ssh", "-Y",
                  "ssh.message_code == 20", "-T", "fields", "-e", "tcp.srcport")
    assert len(text.split()) == 4, text  # a KEXINIT each way, twice
    assert tshark("-r", str(path), "-Y", "tcp.analysis.flags") == ""
    # Both SSH connections ended; the first (stream 0) by the killed server, whose kernel
    # closed the socket: its FIN (or RST) comes first.
    ended = tshark("-r", str(path), "-Y", f"tcp.port == {server.port} and "
                   "(tcp.flags.fin == 1 or tcp.flags.reset == 1)", "-T", "fields",
                   "-e", "tcp.stream", "-e", "tcp.srcport")
    rows = [line.split("\t") for line in ended.splitlines() if line.strip()]
    assert len({stream for stream, _ in rows}) == 2, ended
    assert rows[0] == ["0", str(server.port)], ended


async def test_record_through_a_jump_host(servers: Callable[..., OpenSSHServer],
                                          tmp_path: Path, client_key: Path,
                                          echo_port: int) -> None:
    """Only the TCP connection wirekit opens is recorded: the one to the jump host (the
    target's SSH connection travels inside it, encrypted)."""
    from test_record_tshark import conversations

    from wirekit.capture.recorder import Recorder
    from wirekit.ssh.spec import parse_target

    jump = servers("jump")
    target = servers("target")
    opts = options(tmp_path, client_key, jump=(parse_target(f"{USER}@127.0.0.1:{jump.port}"),))
    path = tmp_path / "jump.pcapng"
    with Recorder(path) as rec:
        async with tunnel(f"{USER}@127.0.0.1:{target.port}", local=[f"0:127.0.0.1:{echo_port}"],
                          options=opts, record=rec) as t:
            lport = t.local_ports[0]
            assert await _ask(lport, b"via the jump\n") == b"via the jump\n"
    ports = {p for conv in conversations(path) for _, p in conv}
    assert jump.port in ports and lport in ports and target.port not in ports, ports
