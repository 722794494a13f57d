"""``tunnel(record=...)`` read by the real tshark: the ``-R`` target leg and the SSH connection
itself (banners, KEXINIT, encrypted packets) next to the ``-L`` leg, with consistent
sequence numbers, against ``wirekit sshd`` in a subprocess."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from test_record_tshark import conversations, follow, tshark, upper_server

from conftest import need_module
from wirekit.capture.recorder import Recorder

asyncssh = need_module("asyncssh")

from wirekit.ssh.tunnel import tunnel  # noqa: E402


async def ask(port: int, payload: bytes) -> bytes:
    """Send ``payload``, half-close, read the answer to the end."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(payload)
    w.write_eof()
    got = await asyncio.wait_for(r.read(), 10)
    w.close()
    await w.wait_closed()
    return got


async def test_tunnel_record_remote_leg_and_ssh_leg(tmp_path: Path, wirekit_sshd: Any,
                                                   echo_port: int) -> None:
    ssh_port, options = wirekit_sshd
    path = tmp_path / "tunnel.pcapng"
    remote_payload = b"through the remote forward\n" * 2000
    local_payload = os.urandom(30_000)
    async with upper_server() as upper_port:
        with Recorder(path) as rec:
            async with tunnel(f"root@127.0.0.1:{ssh_port}", options=options, record=rec,
                              local=[f"0:127.0.0.1:{echo_port}"],
                              remote=[f"0:127.0.0.1:{upper_port}"]) as t:
                rport, lport = t.remote_ports[0], t.local_ports[0]
                assert await ask(rport, remote_payload) == remote_payload.upper()
                assert await ask(lport, local_payload) == local_payload
        assert rec.dropped == 0 and rec.error is None

    # Three connections carried by wirekit: the -L client's, wirekit's own connection to
    # the -R target, and the SSH connection; nothing else (sshd's side is not ours).
    convs = conversations(path)
    assert len(convs) == 3, convs
    by_port = {port: conv for conv in convs for _, port in conv}
    for port in (upper_port, lport, ssh_port):
        assert port in by_port, (port, convs)

    streams = follow(path, 3)
    target = [s for s in streams if s[0] in by_port[upper_port]]
    assert len(target) == 1, streams
    (client, sent, received), = target
    # Node 0 (the SYN's sender) is wirekit's own socket, node 1 the target.
    assert client[1] != upper_port and sent == remote_payload
    assert received == remote_payload.upper()
    # The -L leg: the test's client (node 0) <-> wirekit's listener, the echo both ways.
    (client, sent, received), = [s for s in streams if s[0] in by_port[lport]]
    assert client[1] != lport and sent == received == local_payload

    # The SSH leg is dissected as SSH: both banners, both KEXINITs with the algorithms.
    decode = ["-d", f"tcp.port=={ssh_port},ssh"]
    text = tshark("-r", str(path), *decode, "-Y", "ssh.protocol", "-T", "fields",
                  "-e", "tcp.srcport", "-e", "ssh.protocol")
    banners = {int(line.split("\t")[0]): line.split("\t")[1]
               for line in text.splitlines() if line.strip()}
    assert len(banners) == 2 and ssh_port in banners, text
    assert all(b.startswith("SSH-2.0-") for b in banners.values()), banners
    text = tshark("-r", str(path), *decode, "-Y", "ssh.message_code == 20", "-T", "fields",
                  "-e", "tcp.srcport", "-e", "ssh.kex_algorithms",
                  "-e", "ssh.encryption_algorithms_client_to_server")
    kexinit = {int(line.split("\t")[0]): line.split("\t")[1:]
               for line in text.splitlines() if line.strip()}
    assert len(kexinit) == 2, text
    kex, ciphers = next(v for port, v in kexinit.items() if port != ssh_port)
    offered = [alg.decode() for alg in asyncssh.kex.get_default_kex_algs()
               if not alg.startswith(b"gss-")]  # GSS ones only with Kerberos credentials
    # ... followed by the extension markers (ext-info-c, strict kex)
    assert kex.split(",")[:len(offered)] == offered, (offered, kex)
    assert "ext-info-c" in kex.split(","), kex
    assert ciphers.startswith("aes128-gcm@openssh.com,"), ciphers  # wirekit's preference
    # ... then NEWKEYS each way and encrypted packets after it, in both directions, framed
    # by their lengths (tshark 4.0 without the keys guesses at their contents).
    text = tshark("-r", str(path), *decode, "-Y", "ssh.packet_length", "-T", "fields",
                  "-e", "frame.number", "-e", "tcp.srcport", "-e", "ssh.message_code")
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    newkeys = max(int(n) for n, _, codes in rows if codes.split(",")[0] == "21")
    after = [(int(n), int(p)) for n, p, _ in rows if int(n) > newkeys]
    assert {p for _, p in after} == set(banners) and len(after) > 10, text[:2000]

    # Sequence analysis finds nothing to complain about, and every leg is closed.
    assert tshark("-r", str(path), "-Y", "tcp.analysis.flags") == ""
    ended = tshark("-r", str(path), "-Y", "tcp.flags.fin == 1 or tcp.flags.reset == 1",
                   "-T", "fields", "-e", "tcp.stream")
    assert set(ended.split()) == {"0", "1", "2"}, ended


async def test_cli_tunnel_record_remote_and_ssh_legs(tmp_path: Path, wirekit_proc: Any,
                                                     wirekit_sshd: Any, echo_port: int) -> None:
    ssh_port, _ = wirekit_sshd
    path = tmp_path / "cli.pcapng"
    p = wirekit_proc("tunnel", f"root@127.0.0.1:{ssh_port}", "-i", str(tmp_path / "id"),
                     "--no-agent", "--known-hosts", str(tmp_path / "known_hosts"),
                     "--accept-new", "-R", f"0:127.0.0.1:{echo_port}", "--record", str(path))
    rport = int(p.wait_line(r"forwarding remote \S+:(\d+) ->").group(1))
    payload = b"echo through -R\n" * 100
    r, w = await asyncio.open_connection("127.0.0.1", rport)
    w.write(payload)
    assert await asyncio.wait_for(r.readexactly(len(payload)), 10) == payload
    w.close()
    await w.wait_closed()
    assert p.stop() == 0, p.stderr
    convs = conversations(path)
    ports = {port for conv in convs for _, port in conv}
    assert len(convs) == 2 and {ssh_port, echo_port} <= ports, convs
    ssh_leg = next(conv for conv in convs if ("127.0.0.1", ssh_port) in conv)
    target = [s for s in follow(path, 2) if s[0] not in ssh_leg]
    assert [(sent, back) for _, sent, back in target] == [(payload, payload)], target
    text = tshark("-r", str(path), "-d", f"tcp.port=={ssh_port},ssh", "-Y",
                  "ssh.message_code == 20", "-T", "fields", "-e", "ssh.kex_algorithms")
    assert len(text.split()) == 2, text
