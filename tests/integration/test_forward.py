"""``wirekit forward`` as a subprocess: rules, limits, ACL, drain, UDP, workers, output."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from conftest import wait_for
from wirekit.cli.main import main


class ThreadTarget:
    """A TCP target in a thread: echo by default, or a custom per-connection handler."""

    def __init__(self, handler=None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.handler = handler or self.echo
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def echo(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self.handler(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo_target():
    t = ThreadTarget()
    yield t
    t.close()


def connect(port: int, host: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def assert_reset(port: int, payload: bytes = b"") -> None:
    """The forwarder resets this connection at once.  Under load the RST can beat the
    client's own connect() back to user space, so a reset there counts too."""
    with pytest.raises(ConnectionResetError), connect(port) as s:
        if payload:
            s.sendall(payload)
        s.recv(10)


def recv_all(s: socket.socket) -> bytes:
    parts = []
    while chunk := s.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


def roundtrip(port: int, payload: bytes) -> bytes:
    with connect(port) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)


def test_forward_prints_listening_and_connection_lines(wirekit_proc, echo_target) -> None:
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_target.port}")
    scheme, host, port = p.listening()
    assert (scheme, host) == ("tcp", "127.0.0.1")
    assert roundtrip(port, b"x" * 1000) == b"x" * 1000
    line = p.wait_line(r"-> 127\.0\.0\.1:\d+ closed: 1000 B up, 1000 B down")
    assert f":{echo_target.port}" in line.string
    assert p.stop(signal.SIGTERM) == 0


def test_several_rules_with_f_and_config(wirekit_proc, echo_target, tmp_path: Path) -> None:
    other = ThreadTarget(lambda c: (c.sendall(b"other"), c.shutdown(socket.SHUT_WR)))
    cfg = tmp_path / "rules.toml"
    cfg.write_text(f'[[forward]]\nlisten = ":0"\ntarget = "127.0.0.1:{other.port}"\n'
                   f'max_conns = 5\nidle_timeout = 30\n')
    p = wirekit_proc("forward", "-f", f":0=127.0.0.1:{echo_target.port}", "--config", str(cfg))
    p.wait_line(rf"listening on .*-> tcp://127\.0\.0\.1:{other.port}")
    lines = [p.wait_line(rf"listening on \w+://[^:]+:(\d+) -> tcp://127\.0\.0\.1:{t}\b")
             for t in (echo_target.port, other.port)]
    echo_port, other_port = (int(m.group(1)) for m in lines)
    assert roundtrip(echo_port, b"hi") == b"hi"
    assert roundtrip(other_port, b"") == b"other"
    p.stop()
    other.close()


def test_acl_denies_and_max_conns(wirekit_proc, echo_target) -> None:
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_target.port}", "--deny", "127.0.0.0/8")
    _, _, port = p.listening()
    assert_reset(port, b"x")
    p.wait_line(r"rejected: denied by --deny 127\.0\.0\.0/8")

    q = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_target.port}", "--max-conns", "1")
    _, _, port = q.listening()
    with connect(port) as first:
        first.sendall(b"1")
        assert first.recv(1) == b"1"  # admitted and relayed
        assert_reset(port)
    q.wait_line(r"closed: 1 B up")
    assert roundtrip(port, b"again") == b"again"  # the slot came back


def test_idle_timeout_closes_quiet_connections(wirekit_proc, echo_target) -> None:
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_target.port}", "--idle-timeout", "0.3")
    _, _, port = p.listening()
    with connect(port) as s:
        s.sendall(b"hello")
        assert s.recv(10) == b"hello"
        assert recv_all(s) == b""  # closed by the forwarder after 0.3 s of silence
    p.wait_line(r" idle: 5 B up, 5 B down")


def test_graceful_drain_finishes_transfer_in_flight(wirekit_proc) -> None:
    size = 32 << 20
    started = threading.Event()
    release = threading.Event()

    def slow_sender(conn: socket.socket) -> None:
        assert conn.recv(2, socket.MSG_WAITALL) == b"go"  # nothing unread: close sends FIN
        started.set()
        release.wait(10)
        block = bytes(range(256)) * 4096
        for _ in range(size // len(block)):
            conn.sendall(block)

    target = ThreadTarget(slow_sender)
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{target.port}", "--grace", "20")
    _, _, port = p.listening()
    with connect(port, timeout=30) as s:
        s.sendall(b"go")
        assert started.wait(10)
        p.proc.send_signal(signal.SIGTERM)
        p.wait_line(r"stopping: 1 connection\(s\) open")
        with pytest.raises(OSError):  # no longer accepting
            connect(port, timeout=2).close()
        release.set()
        digest = hashlib.sha256()
        got = 0
        while chunk := s.recv(1 << 20):
            digest.update(chunk)
            got += len(chunk)
    expected = hashlib.sha256(bytes(range(256)) * 4096 * (size // (256 * 4096))).hexdigest()
    assert got == size and digest.hexdigest() == expected
    assert p.proc.wait(30) == 0
    target.close()


def test_udp_two_clients_replies_do_not_cross(wirekit_proc) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def echo_upper() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            server.sendto(data.upper() + b" @" + str(addr[1]).encode(), addr)

    t = threading.Thread(target=echo_upper, daemon=True)
    t.start()
    p = wirekit_proc("forward", "udp://:0", f"udp://127.0.0.1:{server.getsockname()[1]}",
                     "--udp-idle", "0.5")
    scheme, _, port = p.listening()
    assert scheme == "udp"
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.settimeout(5)
    try:
        for i in range(5):
            a.sendto(b"alpha%d" % i, ("127.0.0.1", port))
            b.sendto(b"beta%d" % i, ("127.0.0.1", port))
            ra, rb = a.recv(100), b.recv(100)
            assert ra.startswith(b"ALPHA%d @" % i) and rb.startswith(b"BETA%d @" % i)
            assert ra.split(b"@")[1] != rb.split(b"@")[1]  # two upstream sockets
        p.wait_line(r"udp|idle", timeout=10)
        p.wait_line(r" idle: 30 B up", timeout=10)  # "alpha0".."alpha4": sessions expire
    finally:
        a.close()
        b.close()
        stop.set()
        server.close()


def test_refused_target_is_reported(wirekit_proc) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{dead_port}")
    _, _, port = p.listening()
    assert_reset(port)
    p.wait_line(rf"refused \(connection refused by 127\.0\.0\.1:{dead_port}\)")


def test_unresolvable_target_is_reported(wirekit_proc) -> None:
    p = wirekit_proc("forward", ":0", "no-such-host.invalid:80")
    _, _, port = p.listening()
    assert_reset(port)
    p.wait_line(r"refused \(could not resolve", timeout=20)


def test_json_hexdump_and_stats(wirekit_proc, echo_target) -> None:
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_target.port}", "--json", "--hexdump",
                     "--stats", "0.2")
    _, _, port = p.listening()
    assert roundtrip(port, b"GET / HTTP/1.0\r\n") == b"GET / HTTP/1.0\r\n"
    p.wait_line(r"127\.0\.0\.1:\d+ >> 127\.0\.0\.1:\d+ 16 bytes at offset 0")
    p.wait_line(r"127\.0\.0\.1:\d+ << 127\.0\.0\.1:\d+ 16 bytes at offset 0")
    p.wait_line(r">> 127\.0\.0\.1:\d+ EOF after 16 bytes")
    p.wait_line(r"\|GET / HTTP/1\.0\.\.\|")
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(p.proc.stdout.readline, b"")),
                              daemon=True)
    reader.start()
    wait_for(lambda: any(b'"stats"' in line for line in list(lines)), 10, "a stats record")
    assert p.stop(signal.SIGTERM) == 0
    reader.join(5)
    records = [json.loads(line) for line in lines]
    kinds = {r["event"] for r in records}
    assert {"listening", "connection", "stats", "stopped"} <= kinds
    conn = next(r for r in records if r["event"] == "connection")
    assert conn["bytes_up"] == 16 and conn["reason"] == "closed"


def test_workers_share_the_port(wirekit_proc, echo_target) -> None:
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_target.port}", "--workers", "2")
    m = p.wait_line(r"2 worker processes \(pids (\d+), (\d+)\)")
    child = int(m.group(2))
    _, _, port = p.listening()
    for i in range(20):
        assert roundtrip(port, b"w%d" % i) == b"w%d" % i
    # Both processes hold a listening socket of their own on the port.
    assert os.path.exists(f"/proc/{child}")
    assert p.stop(signal.SIGTERM) == 0
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or _is_zombie(child), 10,
             "the worker to exit")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_sigint_exits_130(wirekit_proc, echo_target) -> None:
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_target.port}")
    p.listening()
    assert p.stop(signal.SIGINT) == 130


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["forward"], "nothing to forward"),
        (["forward", ":8080"], "give both LISTEN and TARGET"),
        (["forward", ":0", "udp://127.0.0.1:9"], "both sides must be tcp:// or both udp://"),
        (["forward", "-f", ":0"], "-f wants LISTEN=TARGET"),
        (["forward", ":0", "127.0.0.1:0"], "needs a port other than 0"),
        (["forward", ":0", "unix:/tmp/wk.sock"], "unix:// is not supported here"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_config(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[forward]]\nlisten = ":0"\ntarget = "127.0.0.1:9"\nmax_conn = 3\n')
    assert main(["forward", "--config", str(cfg)]) == 2
    assert "unknown key(s) max_conn" in capsys.readouterr().err


def _forward_without_serving(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> str:
    """Run ``wirekit forward ARGS`` in-process up to the point where it would serve: the
    event loop is replaced, so nothing is bound (tests listen on loopback only)."""
    served: list[object] = []

    def no_loop(coro) -> int:  # type: ignore[no-untyped-def]
        served.append(coro)
        coro.close()
        return 0

    monkeypatch.setattr("wirekit.cli.forward.run", no_loop)
    assert main(["forward", *args]) == 0
    assert len(served) == 1  # it got as far as serving
    return capsys.readouterr().err


def test_non_loopback_plaintext_listener_warns(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    err = _forward_without_serving(monkeypatch, capsys, "0.0.0.0:0", "127.0.0.1:9")
    assert "warning: listening on 0.0.0.0:0 (not loopback) without encryption" in err


@pytest.mark.parametrize("listen", [":0", "127.0.0.2:0", "[::1]:0"])
def test_loopback_listener_does_not_warn(monkeypatch: pytest.MonkeyPatch, capsys,
                                         listen: str) -> None:
    err = _forward_without_serving(monkeypatch, capsys, listen, "127.0.0.1:9")
    assert "warning" not in err and "not loopback" not in err


def test_bind_error_is_one_line(echo_target, capsys) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        assert main(["forward", f":{port}", f"127.0.0.1:{echo_target.port}"]) == 1
    finally:
        taken.close()
    assert "address already in use" in capsys.readouterr().err




def test_splice_mode_relays_and_reports(wirekit_proc, echo_target) -> None:
    p = wirekit_proc("forward", ":0", f"127.0.0.1:{echo_target.port}", "--splice")
    _, _, port = p.listening()
    payload = os.urandom(5 << 20)
    assert roundtrip(port, payload) == payload
    p.wait_line(rf"closed: {len(payload)} B up, {len(payload)} B down")
    assert p.stop(signal.SIGTERM) == 0
