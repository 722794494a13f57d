"""``wirekit tunnel`` (library and CLI) against ``wirekit sshd`` in a subprocess, on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import WirekitProcess, need_module, wait_for

asyncssh = need_module("asyncssh")

from wirekit.errors import AuthError, HostKeyChanged, HostKeyUnknown  # noqa: E402
from wirekit.ssh.connect import SSHOptions  # noqa: E402
from wirekit.ssh.sync import SSHTunnel  # noqa: E402
from wirekit.ssh.tunnel import tunnel  # noqa: E402

MiB = 1024 * 1024


# -- helpers (the echo target is conftest.echo_port) -------------------------------------
@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """A client key, its authorized_keys, and a second (unauthorized) key."""
    out = {}
    for name in ("id", "wrong"):
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(tmp_path / name))
        os.chmod(tmp_path / name, 0o600)
        key.write_public_key(str(tmp_path / f"{name}.pub"))
        out[name] = tmp_path / name
    (tmp_path / "authorized_keys").write_bytes((tmp_path / "id.pub").read_bytes())
    out["authorized_keys"] = tmp_path / "authorized_keys"
    out["known_hosts"] = tmp_path / "known_hosts"
    return out


class Sshd:
    """``wirekit sshd`` in a subprocess; restartable on the same port with the same host key."""

    def __init__(self, start: Callable[..., WirekitProcess], tmp: Path, keys: dict[str, Path],
                 *extra: str, env: dict[str, str] | None = None) -> None:
        self._start = start
        self.state = tmp / "sshd-state"
        self.keys = keys
        self.extra = extra
        self.env = env
        self.port = 0
        self.fingerprint = ""
        self.proc: WirekitProcess | None = None

    def start(self) -> Sshd:
        self.proc = self._start("sshd", f"127.0.0.1:{self.port}", "--state-dir", str(self.state),
                                "--authorized-keys", str(self.keys["authorized_keys"]),
                                *self.extra, env=self.env)
        _, _, self.port = self.proc.listening()
        self.fingerprint = self.proc.wait_line(r"host key (SHA256:\S+)").group(1)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.proc.send_signal(signal.SIGKILL)
        self.proc.proc.wait(5)


@pytest.fixture
def sshd(wirekit_proc: Callable[..., WirekitProcess], tmp_path: Path,
         keys: dict[str, Path]) -> Sshd:
    return Sshd(wirekit_proc, tmp_path, keys).start()


def options(keys: dict[str, Path], **kw: object) -> SSHOptions:
    base: dict[str, object] = {"identity_files": (str(keys["id"]),), "agent": False,
                               "known_hosts": str(keys["known_hosts"]), "accept_new": True,
                               "connect_timeout": 10.0}
    base.update(kw)
    return SSHOptions(**base)  # type: ignore[arg-type]


def tunnel_args(sshd: Sshd, *forwards: str, key: str = "id") -> list[str]:
    return ["tunnel", f"root@127.0.0.1:{sshd.port}", "-i", str(sshd.keys[key]), "--no-agent",
            "--known-hosts", str(sshd.keys["known_hosts"]), "--accept-new", *forwards]


async def transfer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   size: int) -> tuple[str, str, int]:
    """Send ``size`` random bytes, read the echo back; (sent sha256, received sha256, n)."""
    sent, got = hashlib.sha256(), hashlib.sha256()
    received = 0

    async def send() -> None:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            sent.update(chunk)
            writer.write(chunk)
            await writer.drain()
            left -= len(chunk)
        writer.write_eof()

    sender = asyncio.create_task(send())
    while data := await reader.read(262144):
        got.update(data)
        received += len(data)
    await sender
    writer.close()
    return sent.hexdigest(), got.hexdigest(), received


async def check_roundtrip(port: int, size: int) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    a, b, n = await asyncio.wait_for(transfer(r, w, size), 60)
    assert n == size
    assert a == b


async def socks_open(port: int, host: str, dport: int, version: int = 5):  # type: ignore[no-untyped-def]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    if version == 5:
        w.write(b"\x05\x01\x00")
        assert await r.readexactly(2) == b"\x05\x00"
        name = host.encode()
        w.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", dport))
        reply = await r.readexactly(10)
        ok = reply[1] == 0
    else:  # SOCKS4a
        w.write(b"\x04\x01" + struct.pack("!H", dport) + b"\0\0\0\x01user\0" + host.encode()
                + b"\0")
        reply = await r.readexactly(8)
        ok = reply[1] == 0x5A
    return r, w, ok


def can_connect(port: int) -> bool:
    """Whether one byte makes it through ``port`` to the echo server and back."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(b"x")
            return s.recv(1) == b"x"
    except OSError:
        return False


# -- the server itself --------------------------------------------------------------------
def test_sshd_keeps_its_host_key(wirekit_proc: Callable[..., WirekitProcess], tmp_path: Path,
                                 keys: dict[str, Path]) -> None:
    first = Sshd(wirekit_proc, tmp_path, keys).start()
    assert first.fingerprint.startswith("SHA256:")
    assert (first.state / "ssh_host_ed25519_key").stat().st_mode & 0o077 == 0
    first.kill()
    again = Sshd(wirekit_proc, tmp_path, keys).start()
    assert again.fingerprint == first.fingerprint


def test_sshd_needs_a_way_to_log_in(wirekit_proc: Callable[..., WirekitProcess],
                                    tmp_path: Path) -> None:
    p = wirekit_proc("sshd", ":0", "--state-dir", str(tmp_path / "s"), "--authorized-keys",
                     str(tmp_path / "missing"))
    assert p.proc.wait(20) == 2
    p.kill()
    assert "does not exist" in p.stderr


async def test_sshd_refuses_shells(sshd: Sshd, keys: dict[str, Path]) -> None:
    async with asyncssh.connect("127.0.0.1", sshd.port, username="root",
                                client_keys=[str(keys["id"])], known_hosts=None,
                                agent_path=None, config=None) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.run("echo hi", check=True)


# -- forwards, library ---------------------------------------------------------------------
@pytest.mark.slow
async def test_local_remote_dynamic_64mib_and_parallel(sshd: Sshd, keys: dict[str, Path],
                                                       echo_port: int) -> None:
    async with tunnel(f"root@127.0.0.1:{sshd.port}", local=[f"0:127.0.0.1:{echo_port}"],
                      remote=[f"0:127.0.0.1:{echo_port}"], dynamic=["0"],
                      options=options(keys)) as t:
        lport, rport, dport = t.local_ports[0], t.remote_ports[0], t.dynamic_ports[0]
        assert lport and rport and dport
        await check_roundtrip(lport, 64 * MiB)                       # -L
        await check_roundtrip(rport, 64 * MiB)                       # -R
        r, w, ok = await socks_open(dport, "127.0.0.1", echo_port)   # -D, SOCKS5 by name
        assert ok
        a, b, n = await asyncio.wait_for(transfer(r, w, 64 * MiB), 60)
        assert (a, n) == (b, 64 * MiB)

        async def one(i: int) -> None:
            if i % 3 == 0:
                await check_roundtrip(lport, 256 * 1024)
            elif i % 3 == 1:
                await check_roundtrip(rport, 256 * 1024)
            else:
                r, w, ok = await socks_open(dport, "127.0.0.1", echo_port, 4 if i % 2 else 5)
                assert ok
                a, b, _ = await transfer(r, w, 256 * 1024)
                assert a == b

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), 60)
        assert t.stats.refused == 0


async def test_socks_target_refused_and_tunnel_stays_up(sshd: Sshd, keys: dict[str, Path],
                                                        echo_port: int) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()
    events = []
    async with tunnel(f"root@127.0.0.1:{sshd.port}", dynamic=["0"],
                      local=[f"0:127.0.0.1:{dead}"], options=options(keys),
                      on_event=events.append) as t:
        r, w, ok = await socks_open(t.dynamic_ports[0], "127.0.0.1", dead)
        assert not ok
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", t.local_ports[0])
        assert await asyncio.wait_for(r.read(), 10) == b""
        w.close()
        refused = [e for e in events if e.kind == "refused"]
        assert len(refused) == 2
        assert all("could not connect" in e.message for e in refused)
        r, w, ok = await socks_open(t.dynamic_ports[0], "127.0.0.1", echo_port)
        assert ok
        a, b, n = await transfer(r, w, 1000)
        assert (a, n) == (b, 1000)


async def test_curl_through_socks5_hostname(sshd: Sshd, keys: dict[str, Path],
                                            tmp_path: Path) -> None:
    from conftest import need_peer

    curl = need_peer("curl")
    import http.server

    body = os.urandom(3 * MiB)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "blob").write_bytes(body)
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path / "www"))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        async with tunnel(f"root@127.0.0.1:{sshd.port}", dynamic=["0"],
                          options=options(keys)) as t:
            proc = await asyncio.create_subprocess_exec(
                curl, "-sS", "--max-time", "20", "--socks5-hostname",
                f"127.0.0.1:{t.dynamic_ports[0]}",
                f"http://localhost:{httpd.server_address[1]}/blob",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err
            assert hashlib.sha256(out).digest() == hashlib.sha256(body).digest()
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- host keys and authentication ---------------------------------------------------------
async def test_unknown_host_key_refused_with_fingerprint(sshd: Sshd,
                                                         keys: dict[str, Path]) -> None:
    with pytest.raises(HostKeyUnknown) as info:
        async with tunnel(f"root@127.0.0.1:{sshd.port}", local=["0:127.0.0.1:9"],
                          options=options(keys, accept_new=False)):
            pass
    assert sshd.fingerprint in str(info.value)
    assert "--accept-new" in str(info.value)
    assert not keys["known_hosts"].exists()


async def test_accept_new_records_then_trusts(sshd: Sshd, keys: dict[str, Path]) -> None:
    events = []
    async with tunnel(f"root@127.0.0.1:{sshd.port}", local=["0:127.0.0.1:9"],
                      options=options(keys), on_event=events.append):
        pass
    assert any(e.kind == "hostkey" and sshd.fingerprint in e.message for e in events)
    assert keys["known_hosts"].read_text().startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")
    async with tunnel(f"root@127.0.0.1:{sshd.port}", local=["0:127.0.0.1:9"],
                      options=options(keys, accept_new=False)) as t:
        assert t.is_up


async def test_changed_host_key_always_refused(sshd: Sshd, keys: dict[str, Path]) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519")
    line = impostor.export_public_key().decode().split()[:2]
    keys["known_hosts"].write_text(f"[127.0.0.1]:{sshd.port} {' '.join(line)}\n")
    before = keys["known_hosts"].read_text()
    with pytest.raises(HostKeyChanged) as info:
        async with tunnel(f"root@127.0.0.1:{sshd.port}", local=["0:127.0.0.1:9"],
                          options=options(keys, accept_new=True)):
            pass
    assert "CHANGED" in str(info.value) and sshd.fingerprint in str(info.value)
    assert keys["known_hosts"].read_text() == before


def test_cli_wrong_key_exits_1_without_retrying(sshd: Sshd,
                                                wirekit_proc: Callable[..., WirekitProcess]
                                                ) -> None:
    p = wirekit_proc(*tunnel_args(sshd, "-L", "0:127.0.0.1:9", key="wrong"))
    assert p.proc.wait(30) == 1
    p.kill()
    assert "authentication failed for root@127.0.0.1" in p.stderr
    assert "publickey" in p.stderr
    assert p.stderr.count("error:") == 1
    assert "reconnect" not in p.stderr


def test_cli_unknown_host_key_exits_1(sshd: Sshd,
                                      wirekit_proc: Callable[..., WirekitProcess]) -> None:
    args = [a for a in tunnel_args(sshd, "-L", "0:127.0.0.1:9") if a != "--accept-new"]
    p = wirekit_proc(*args)
    assert p.proc.wait(30) == 1
    p.kill()
    assert "unknown" in p.stderr and sshd.fingerprint in p.stderr


async def test_password_auth(wirekit_proc: Callable[..., WirekitProcess], tmp_path: Path,
                             keys: dict[str, Path], echo_port: int) -> None:
    keys["authorized_keys"].write_text("")
    server = Sshd(wirekit_proc, tmp_path, keys, "--password-env", "LAB_PW",
                  env={"LAB_PW": "correct horse"}).start()
    opts = options(keys, identity_files=(), password="correct horse")
    async with tunnel(f"someone@127.0.0.1:{server.port}", local=[f"0:127.0.0.1:{echo_port}"],
                      options=opts) as t:
        await check_roundtrip(t.local_ports[0], 4096)
    with pytest.raises(AuthError) as info:
        async with tunnel(f"someone@127.0.0.1:{server.port}", local=["0:127.0.0.1:9"],
                          options=options(keys, identity_files=(), password="wrong")):
            pass
    assert "authentication failed" in str(info.value) and "password" in str(info.value)


def test_cli_password_from_env(wirekit_proc: Callable[..., WirekitProcess], tmp_path: Path,
                               keys: dict[str, Path], echo_port: int) -> None:
    server = Sshd(wirekit_proc, tmp_path, keys, "--password-env", "LAB_PW",
                  env={"LAB_PW": "s3cret"}).start()
    p = wirekit_proc("tunnel", f"root@127.0.0.1:{server.port}", "--password-env", "TUN_PW",
                     "--no-agent", "--known-hosts", str(keys["known_hosts"]), "--accept-new",
                     "-L", f"0:127.0.0.1:{echo_port}", env={"TUN_PW": "s3cret"})
    port = int(p.wait_line(r"forwarding 127\.0\.0\.1:(\d+) ->").group(1))
    assert can_connect(port)
    assert "s3cret" not in " ".join(p.args)


def test_cli_prompts_for_the_password_on_a_terminal(wirekit_proc: Callable[..., WirekitProcess],
                                                    tmp_path: Path, keys: dict[str, Path],
                                                    echo_port: int) -> None:
    import pty

    server = Sshd(wirekit_proc, tmp_path, keys, "--password-env", "LAB_PW",
                  env={"LAB_PW": "typed secret"}).start()
    master, slave = pty.openpty()
    try:
        p = wirekit_proc("tunnel", f"root@127.0.0.1:{server.port}", "--no-agent",
                         "--known-hosts", str(keys["known_hosts"]), "--accept-new",
                         "-i", str(keys["wrong"]), "-L", f"0:127.0.0.1:{echo_port}",
                         stdin=slave)
        os.write(master, b"typed secret\n")  # typed ahead; read once the key is refused
        p.wait_line(r"root@127\.0\.0\.1's password:", timeout=20)
        port = int(p.wait_line(r"forwarding 127\.0\.0\.1:(\d+) ->").group(1))
        assert can_connect(port)
    finally:
        os.close(master)
        os.close(slave)


def test_cli_connection_refused(wirekit_proc: Callable[..., WirekitProcess],
                                keys: dict[str, Path]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = wirekit_proc("tunnel", f"root@127.0.0.1:{port}", "-i", str(keys["id"]), "--no-agent",
                     "-L", "0:127.0.0.1:9")
    assert p.proc.wait(20) == 1
    p.kill()
    assert f"connection refused by 127.0.0.1:{port}" in p.stderr


# -- the CLI: lines, reconnect, stopping ----------------------------------------------------
def test_cli_lines_and_json(sshd: Sshd, wirekit_proc: Callable[..., WirekitProcess],
                            echo_port: int) -> None:
    p = wirekit_proc(*tunnel_args(sshd, "-L", f"0:127.0.0.1:{echo_port}", "-D", "0",
                                  "-R", f"0:127.0.0.1:{echo_port}"))
    url = f"ssh://root@127.0.0.1:{sshd.port}"
    lport = int(p.wait_line(rf"^forwarding 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:{echo_port} "
                            rf"via {url}$").group(1))
    p.wait_line(rf"^forwarding 127\.0\.0\.1:\d+ -> socks via {url}$")
    rport = int(p.wait_line(rf"^forwarding remote 127\.0\.0\.1:(\d+) -> 127\.0\.0\.1:{echo_port}"
                            rf" via {url}$").group(1))
    assert lport and rport
    assert can_connect(lport) and can_connect(rport)
    p.wait_line(r"^closed 127\.0\.0\.1:\d+ -> ")
    p.stop(signal.SIGINT)

    j = wirekit_proc(*tunnel_args(sshd, "-L", f"0:127.0.0.1:{echo_port}", "--json"))
    assert j.proc.stdout is not None
    first = json.loads(j.proc.stdout.readline())
    assert first["event"] == "up"
    forward = json.loads(j.proc.stdout.readline())
    assert forward["event"] == "forward" and forward["port"] > 0 and forward["via"] == url
    assert can_connect(forward["port"])


def test_cli_reconnects_on_the_same_port(sshd: Sshd, wirekit_proc: Callable[..., WirekitProcess],
                                         echo_port: int) -> None:
    p = wirekit_proc(*tunnel_args(sshd, "-L", f"0:127.0.0.1:{echo_port}", "--keepalive", "0.5",
                                  "--keepalive-count", "2", "-R", f"0:127.0.0.1:{echo_port}"))
    port = int(p.wait_line(r"forwarding 127\.0\.0\.1:(\d+) ->").group(1))
    remote = int(p.wait_line(r"forwarding remote 127\.0\.0\.1:(\d+) ->").group(1))
    assert can_connect(port) and can_connect(remote)
    sshd.kill()
    p.wait_line(r"connection to ssh://\S+ lost: .*reconnecting", timeout=5)
    assert not can_connect(port)  # down: the local port still accepts but nothing gets through
    sshd.start()                  # same port, same host key
    wait_for(lambda: can_connect(port), timeout=5, what="a connection through the same port")
    p.wait_line(r"^reconnected to ssh://")
    assert p.proc.poll() is None
    # the -R forward is requested again, on the port the server gave the first time
    wait_for(lambda: sum(f"forwarding remote 127.0.0.1:{remote} " in line
                         for line in p.stderr_lines) == 2, 5, "the -R forward back")
    assert can_connect(remote)


def test_cli_keepalive_notices_a_frozen_server(sshd: Sshd,
                                               wirekit_proc: Callable[..., WirekitProcess],
                                               echo_port: int) -> None:
    """A server that stops answering (SIGSTOP: no FIN, no RST) is found by keepalives."""
    p = wirekit_proc(*tunnel_args(sshd, "-L", f"0:127.0.0.1:{echo_port}", "--keepalive", "0.3",
                                  "--keepalive-count", "2", "--connect-timeout", "1"))
    port = int(p.wait_line(r"forwarding 127\.0\.0\.1:(\d+) ->").group(1))
    assert can_connect(port)
    assert sshd.proc is not None
    sshd.proc.proc.send_signal(signal.SIGSTOP)
    try:
        p.wait_line(r"lost: .*not responding to keepalive.*reconnecting", timeout=0.3 * 3 + 3)
    finally:
        sshd.kill()  # SIGKILL works on a stopped process
    sshd.start()
    wait_for(lambda: can_connect(port), timeout=5, what="a connection through the same port")


def test_cli_no_reconnect_exits_1(sshd: Sshd, wirekit_proc: Callable[..., WirekitProcess]
                                  ) -> None:
    p = wirekit_proc(*tunnel_args(sshd, "-L", "0:127.0.0.1:9", "--no-reconnect"))
    p.wait_line(r"^forwarding ")
    sshd.kill()
    assert p.proc.wait(10) == 1
    p.kill()
    assert "lost" in p.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_cli_stops_within_2s_with_connections_in_flight(
        sshd: Sshd, wirekit_proc: Callable[..., WirekitProcess], echo_port: int,
        sig: int, code: int) -> None:
    p = wirekit_proc(*tunnel_args(sshd, "-L", f"0:127.0.0.1:{echo_port}"))
    port = int(p.wait_line(r"forwarding 127\.0\.0\.1:(\d+)").group(1))
    socks = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(os.urandom(MiB))  # in flight: nobody reads the echo
        socks.append(s)
    p.wait_line(r"^open ")
    started = time.monotonic()
    p.proc.send_signal(sig)
    assert p.proc.wait(2.0) == code, f"took {time.monotonic() - started:.2f}s"
    for s in socks:
        s.close()


def test_sync_tunnel_stop_never_hangs(sshd: Sshd, keys: dict[str, Path],
                                      echo_port: int) -> None:
    for i in range(50):
        t = SSHTunnel(f"root@127.0.0.1:{sshd.port}",
                      remote_bind_address=("127.0.0.1", echo_port),
                      ssh_pkey=str(keys["id"]), agent=False,
                      known_hosts=str(keys["known_hosts"]), accept_new=True)
        t.start()
        assert t.is_active and t.local_bind_port > 0
        held = None
        if i % 5 == 0:  # sometimes with a connection in flight
            held = socket.create_connection(("127.0.0.1", t.local_bind_port), timeout=5)
            held.sendall(b"x")
            assert held.recv(1) == b"x"
        t.stop()
        assert t._thread is not None and not t._thread.is_alive()
        if held is not None:
            held.close()


def test_sync_tunnel_as_context_manager(sshd: Sshd, keys: dict[str, Path],
                                        echo_port: int) -> None:
    with SSHTunnel(("127.0.0.1", sshd.port), ssh_username="root", ssh_pkey=str(keys["id"]),
                   remote_bind_addresses=[("127.0.0.1", echo_port), ("127.0.0.1", echo_port)],
                   agent=False, known_hosts=str(keys["known_hosts"]), accept_new=True) as t:
        assert len(t.local_bind_ports) == 2
        assert all(can_connect(port) for port in t.local_bind_ports)
        assert t.local_bind_address == ("127.0.0.1", t.local_bind_ports[0])
    assert not t.is_active
