"""The chapter's SSH tunnel: ``wirekit sshd`` on loopback, a ``-L`` tunnel to the time
service, and the two wires tapped side by side.

    client -> [tunnel -L port] ==SSH==> [forward, tapped] ==SSH==> sshd
                                                                    |
             time service <-- [forward, tapped] <-- plaintext ------'

The SSH leg's tap sees the version banners, the key exchange, then only ciphertext; the
service leg's tap sees ``GET TIME`` and the time in clear.  Everything (client key, host
key, known_hosts, an empty ssh_config) lives in a temporary directory: ``~/.ssh`` is
never read or written.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

import wirekit
from wirekit import ssh as wirekit_ssh
from wirekit.net.relay import DOWNSTREAM, UPSTREAM
from wirekit.tour.basics import ask_time
from wirekit.tour.forwarding import Chunk, Recorder, show_chunk
from wirekit.tour.narrator import Narrator, SectionSkipped

__all__ = ["ssh_tunnel"]

ROWS = 6


async def ssh_tunnel(n: Narrator) -> None:
    if not wirekit_ssh.available():
        raise SectionSkipped(f"asyncssh is not installed ({wirekit_ssh.INSTALL_HINT})")
    from wirekit.ssh.keys import new_client_key
    from wirekit.ssh.server import start_sshd

    with tempfile.TemporaryDirectory(prefix="wirekit-tour-ssh-") as tmp:
        d = Path(tmp)
        n.step("Make a client key and authorize it (in a temporary directory, not ~/.ssh)")
        n.say(f"working directory {d}")
        n.command("ssh-keygen -t ed25519 -N '' -f id_ed25519")
        key_path = d / "id_ed25519"
        (d / "authorized_keys").write_bytes(new_client_key(key_path))
        (d / "ssh_config").write_text("")  # so the tunnel does not read ~/.ssh/config
        n.say(f"{key_path.name} (mode 0600); its public half is the sshd's authorized_keys")

        async with contextlib.AsyncExitStack() as stack:
            n.step("Start wirekit sshd on loopback; it makes its host key on first start")
            n.command("wirekit sshd :0 --authorized-keys authorized_keys --state-dir sshd")
            sshd = await start_sshd("127.0.0.1", 0, state_dir=d / "sshd",
                                    authorized_keys=d / "authorized_keys")
            stack.push_async_callback(sshd.aclose)
            n.say(f"listening on {sshd.url}")
            n.say(f"host key {sshd.fingerprint}")

            n.step("The time service, and a tapped forward in front of it and of the sshd")
            server = await stack.enter_async_context(
                await wirekit.serve("time", "tcp://127.0.0.1:0"))
            n.command("wirekit serve time :12345")
            n.say(f"time service on {server.address}")
            plain, wire = Recorder(), Recorder()
            to_time = await wirekit.forward("tcp://127.0.0.1:0", server.address.hostport,
                                            tap=plain)
            stack.push_async_callback(to_time.aclose, 1.0)
            to_sshd = await wirekit.forward("tcp://127.0.0.1:0", f"127.0.0.1:{sshd.port}",
                                            tap=wire)
            stack.push_async_callback(to_sshd.aclose, 1.0)
            n.command(f"wirekit forward :2200 127.0.0.1:{sshd.port} --hexdump")
            n.say(f"{to_sshd.address} -> sshd {sshd.url}   (the SSH leg)")
            n.command(f"wirekit forward :12300 {server.address.hostport} --hexdump")
            n.say(f"{to_time.address} -> time {server.address}   (the service leg)")

            reply, sent_at = await _through_tunnel(n, d, sshd.fingerprint, wire,
                                                   to_sshd.address.port, to_time.address.port)
        _compare(n, wire, plain, reply, sent_at)


async def _through_tunnel(n: Narrator, d: Path, fingerprint: str, wire: Recorder,
                          ssh_port: int, time_port: int) -> tuple[bytes, int]:
    """Returns the reply and how many chunks the SSH leg had carried when the request
    was sent (the channel already open), so the rest is the request and its reply."""
    n.step("Open the -L tunnel (trust on first use, recorded in a temporary known_hosts)")
    spec = f"0:127.0.0.1:{time_port}"
    n.command(f"wirekit tunnel tour@127.0.0.1:{ssh_port} -L {spec} -i id_ed25519 "
              f"--known-hosts known_hosts --accept-new -F ssh_config --no-agent")
    events: list[Any] = []
    opened = asyncio.Event()

    def on_event(event: Any) -> None:
        events.append(event)
        if event.kind == "open":
            opened.set()

    async with wirekit.tunnel(
        f"tour@127.0.0.1:{ssh_port}", local=[spec], identity_files=[str(d / "id_ed25519")],
        agent=False, known_hosts=str(d / "known_hosts"), accept_new=True,
        config_file=str(d / "ssh_config"), reconnect=False, connect_timeout=10.0,
        on_event=on_event,
    ) as tun:
        for event in events:
            if event.kind in ("hostkey", "forward"):
                n.say(event.message)
        seen = [e.fields.get("fingerprint") for e in events if e.kind == "hostkey"]
        if seen != [fingerprint]:
            raise AssertionError(f"expected the sshd's host key {fingerprint}, trusted {seen}")
        n.ok("the host key trusted on first use is the one wirekit sshd printed")

        port = tun.local_ports[0]
        n.step("Talk to the time service through the tunnel")
        n.command(f"wirekit connect 127.0.0.1:{port} --send 'GET TIME' --no-stdin")
        async with await wirekit.connect(f"tcp://127.0.0.1:{port}") as conn:
            await asyncio.wait_for(opened.wait(), 10)
            n.say(f"tunnel: {next(e for e in events if e.kind == 'open').message}, "
                  "a direct-tcpip channel in the SSH session")
            sent_at = len(wire.chunks)
            stamp, reply = await ask_time(n, conn)
            n.ok(f"the time service answered through SSH: {stamp}")
            await conn.send(b"END")
            n.sent(b"END")
            if await conn.recv(timeout=5):
                raise AssertionError("expected the service to close after END")
    return reply, sent_at


def _compare(n: Narrator, wire: Recorder, plain: Recorder, reply: bytes,
             sent_at: int) -> None:
    n.step("The same exchange on both wires (>> towards the server, << back)")
    left = _ssh_leg_rows(wire, sent_at)
    right = [show_chunk(c) for c in plain.chunks[:ROWS]]
    rows = max(len(left), len(right))
    n.columns(("SSH leg: tunnel -> sshd", "service leg: sshd -> time"),
              [(left[i] if i < len(left) else "", right[i] if i < len(right) else "")
               for i in range(rows)])

    ssh_bytes = wire.joined(UPSTREAM) + wire.joined(DOWNSTREAM)
    if not wire.joined(UPSTREAM).startswith(b"SSH-2.0-"):
        raise AssertionError("the SSH leg does not start with an SSH-2.0 banner")
    for secret in (b"GET TIME", reply.strip()):
        if secret in ssh_bytes:
            raise AssertionError(f"{secret!r} crossed the SSH leg in the clear")
    if not any(c.data for c in wire.chunks[sent_at:]):
        raise AssertionError("the SSH leg carried nothing after the request was sent")
    if b"GET TIME" not in plain.joined(UPSTREAM) or reply not in plain.joined(DOWNSTREAM):
        raise AssertionError("the service leg did not carry the request and reply in clear")
    n.say("(with AES-GCM, wirekit's first choice, each SSH packet's 4-byte length travels in "
          "clear; the rest is ciphertext and a 16-byte authentication tag)")
    n.ok(f"SSH leg: SSH-2.0 banners, then ciphertext; 'GET TIME' and the time appear "
         f"nowhere in its {len(ssh_bytes)} bytes")
    n.ok("service leg: 'GET TIME' and the time in clear, as the chapter's FTP server sees "
         "them: the tunnel protects only the path between its two ends")


def _ssh_leg_rows(wire: Recorder, sent_at: int) -> list[str]:
    before = wire.chunks[:sent_at]
    after = [c for c in wire.chunks[sent_at:] if c.data]
    rows = [show_chunk(c) for c in _banners(before)]
    handshake = sum(len(c.data) for c in before) - sum(
        len(c.data) for c in _banners(before))
    rows.append(f"   handshake and auth: {handshake} B")
    rows.append("   then GET TIME, encrypted:")
    rows += [show_chunk(c) for c in after[:ROWS - len(rows)]]
    return rows


def _banners(chunks: list[Chunk]) -> list[Chunk]:
    out: list[Chunk] = []
    for direction in (UPSTREAM, DOWNSTREAM):
        first = next((c for c in chunks if c.direction == direction), None)
        if first is not None and first.data.startswith(b"SSH-"):
            out.append(first)
    return out
