"""The recorder's writer process (capture/record_writer.py): what reaches the file through
the shared ring, drops when the writer cannot keep up, a full disk, and the writer's
lifetime (it ends with ``close()``, and when the recording process dies)."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import wait_for
from wirekit.capture.recorder import Recorder
from wirekit.errors import ParseError
from wirekit.pcapng import DecryptionSecrets, Interface, Packet, read

C, S = ("127.0.0.1", 40000), ("127.0.0.1", 8080)


def blocks(path: Path, *, torn_tail: bool = False) -> list[object]:
    out: list[object] = []
    with open(path, "rb") as f:
        try:
            out.extend(read(f))
        except ParseError:
            if not torn_tail:
                raise
    return out


def payloads(path: Path, *, torn_tail: bool = False,
             ) -> dict[tuple[int, int, int], bytes]:
    """TCP payload per (interface, sport, dport), in file order (an independent decoder
    of Ethernet + IPv4 + TCP)."""
    out: dict[tuple[int, int, int], bytes] = {}
    for b in blocks(path, torn_tail=torn_tail):
        if not isinstance(b, Packet):
            continue
        ip = b.data[14:]
        total = struct.unpack_from("!H", ip, 2)[0]
        seg = ip[(ip[0] & 15) * 4 : total]
        sport, dport = struct.unpack_from("!HH", seg)
        key = (b.interface, sport, dport)
        out[key] = out.get(key, b"") + bytes(seg[(seg[12] >> 4) * 4 :])
    return out


def caught_up(rec: Recorder) -> bool:
    """The writer has taken every queued record (the file has them)."""
    return rec._queued == rec._counters()[2]


def test_both_legs_share_one_copy_and_the_ring_wraps_without_losing_bytes(
        tmp_path: Path) -> None:
    path = tmp_path / "wrap.pcapng"
    # A ring of ~840 kB (max_bytes plus the record headers): the 70 kB payloads wrap
    # around it many times.
    rec = Recorder(path, max_bytes=300_000)
    a, b = rec.tcp(C, S), rec.tcp(("127.0.0.1", 40001), ("127.0.0.1", 9090))
    sent = [os.urandom(70_000 + n) for n in range(30)]
    for n, data in enumerate(sent):
        ts = time.time_ns()
        a.data("c", data, ts)
        b.data("c", data, ts + 1)  # the same bytes object: queued once, written twice
        if n % 2:
            a.data("s", data[:100], ts + 2)
        wait_for(lambda: caught_up(rec), 10, "the writer to catch up")
    a.close(time.time_ns())
    b.close(time.time_ns())
    rec.close()
    assert rec.dropped == 0 and rec.error is None
    got = payloads(path)
    assert got[(0, 40000, 8080)] == got[(0, 40001, 9090)] == b"".join(sent)
    assert got[(0, 8080, 40000)] == b"".join(d[:100] for d in sent[1::2])
    assert rec.packets == sum(isinstance(x, Packet) for x in blocks(path))


def test_secrets_and_the_plain_interface_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / "order.pcapng"
    rec = Recorder(path)
    tls, plain = rec.tcp(C, S), rec.tcp(("127.0.0.1", 40001), S, plain=True)
    rec.secrets(b"CLIENT_RANDOM 00 11\n")
    tls.data("c", b"ciphertext", time.time_ns())
    plain.data("c", b"plaintext", time.time_ns())
    rec.close()
    kinds = [type(b).__name__ for b in blocks(path)]
    assert kinds[:3] == ["SectionHeader", "Interface", "DecryptionSecrets"]
    assert kinds.index("DecryptionSecrets") < kinds.index("Packet")
    names = [b.name for b in blocks(path) if isinstance(b, Interface)]
    assert names == ["wirekit", "wirekit-plain"]
    secrets = [b for b in blocks(path) if isinstance(b, DecryptionSecrets)]
    assert secrets[0].data == b"CLIENT_RANDOM 00 11\n"
    got = payloads(path)
    assert got[(0, 40000, 8080)] == b"ciphertext" and got[(1, 40001, 8080)] == b"plaintext"


def test_a_stalled_writer_means_counted_drops_not_a_blocked_relay(tmp_path: Path) -> None:
    path = tmp_path / "stalled.pcapng"
    rec = Recorder(path, max_bytes=1_000_000)
    leg = rec.tcp(C, S)
    os.kill(rec._proc.pid, signal.SIGSTOP)  # the writer gets no CPU at all
    try:
        chunks = [os.urandom(200_000) for _ in range(20)]  # 4 MB against a 1 MB ring
        for data in chunks:  # offer() must not wait
            leg.data("c", data, time.time_ns())
        assert rec.dropped > 0 and rec.dropped_events > 0
    finally:
        os.kill(rec._proc.pid, signal.SIGCONT)
    wait_for(lambda: caught_up(rec), 10, "the writer to drain the ring")
    leg.data("s", b"after", time.time_ns())
    rec.close()
    assert rec.error is None and "dropped" in rec.summary()
    got = payloads(path)
    queued = got[(0, 40000, 8080)]
    assert 0 < len(queued) < 4_000_000
    assert queued == b"".join(chunks[: len(queued) // 200_000])  # whole chunks, in order
    assert got[(0, 8080, 40000)] == b"after"  # the ring has room again once it drained


def test_close_ends_the_writer_process(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "closed.pcapng")
    proc = rec._proc
    assert proc.poll() is None
    rec.close()
    assert proc.returncode == 0
    rec.close()  # idempotent


_ORPHAN = textwrap.dedent("""
    import os, sys, time
    from wirekit.capture.recorder import Recorder
    rec = Recorder(sys.argv[1])
    leg = rec.tcp(("127.0.0.1", 40000), ("127.0.0.1", 8080))
    os.kill(rec._proc.pid, 19)  # SIGSTOP: everything below stays queued in the ring
    for n in range(50):
        leg.data("c", bytes([n]) * 10_000, time.time_ns())
    print(rec._proc.pid, flush=True)
    time.sleep(120)
""")


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie: exited
    except FileNotFoundError:
        return True


def test_writer_drains_and_exits_when_the_recording_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "orphan.pcapng"
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN, str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        writer = int(proc.stdout.readline())  # type: ignore[union-attr]
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
    try:
        assert not _gone(writer)
        os.kill(writer, signal.SIGCONT)
        wait_for(lambda: _gone(writer), 10, "the orphaned writer to exit")
    finally:
        if not _gone(writer):
            os.kill(writer, signal.SIGKILL)
    # It wrote everything that was queued before it went.
    assert payloads(path)[(0, 40000, 8080)] == b"".join(bytes([n]) * 10_000 for n in range(50))


def test_full_disk_reports_one_error_and_offers_become_no_ops(tiny_disk: Path) -> None:
    path = tiny_disk / "full.pcapng"
    errors: list[str] = []
    rec = Recorder(path, on_error=errors.append)
    leg = rec.tcp(C, S)
    for n in range(10):  # 300 kB against a 64 kB disk
        leg.data("c", bytes([n]) * 30_000, time.time_ns())
    wait_for(lambda: rec.error is not None, 10, "the writer to report ENOSPC")
    leg.data("c", b"ignored", time.time_ns())
    rec.close()
    assert len(errors) == 1 and errors[0] == rec.error
    assert "No space left on device (ENOSPC)" in errors[0] and str(path) in errors[0]
    assert rec.dropped == 0
    # What reached the disk reads, up to the block the disk could not hold.
    data = payloads(path, torn_tail=True).get((0, 40000, 8080), b"")
    assert data == b"".join(bytes([n]) * 30_000 for n in range(10))[: len(data)]


def test_unwritable_path_is_a_usage_error(tmp_path: Path) -> None:
    from wirekit.errors import UsageError

    with pytest.raises(UsageError, match="cannot record to"):
        Recorder(tmp_path / "missing" / "x.pcapng")
    with pytest.raises(UsageError, match="cannot record to"):
        Recorder("/dev/full")  # the header itself cannot be written


def test_a_killed_writer_is_one_error_and_the_recorder_carries_on(tmp_path: Path) -> None:
    errors: list[str] = []
    rec = Recorder(tmp_path / "killed-writer.pcapng", on_error=errors.append)
    leg = rec.tcp(C, S)
    leg.data("c", b"before", time.time_ns())
    wait_for(lambda: caught_up(rec), 10, "the writer to catch up")
    os.kill(rec._proc.pid, signal.SIGKILL)
    wait_for(lambda: rec.error is not None, 10, "the recorder to notice")
    leg.data("c", b"after", time.time_ns())  # a no-op now, and no exception
    rec.close()
    assert errors == [rec.error] and "the writer process ended" in errors[0]
    assert payloads(tmp_path / "killed-writer.pcapng")[(0, 40000, 8080)] == b"before"


def test_a_ring_of_one_payload_takes_the_next_once_the_writer_took_the_last(
        tmp_path: Path) -> None:
    path = tmp_path / "tight.pcapng"
    rec = Recorder(path, queue_size=4, max_bytes=100_000)  # room for one 90 kB chunk
    a, b = rec.tcp(C, S), rec.tcp(("127.0.0.1", 40001), ("127.0.0.1", 9090))
    a.open(time.time_ns())
    b.open(time.time_ns())
    wait_for(lambda: caught_up(rec), 10, "the writer to catch up")
    sent = [os.urandom(90_000) for _ in range(6)]
    for data in sent:
        for leg in (a, b):  # the second leg refers to the first leg's record
            leg.data("c", data, time.time_ns())
            wait_for(lambda: caught_up(rec), 10, "the writer to catch up")
    rec.close()
    assert rec.dropped == 0
    got = payloads(path)
    assert got[(0, 40000, 8080)] == got[(0, 40001, 9090)] == b"".join(sent)


@pytest.mark.parametrize("failing", ["Popen", "second pipe"])
def test_a_writer_that_cannot_start_is_a_usage_error_and_leaks_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    from wirekit.errors import UsageError

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(24, "Too many open files")

    real_pipe, pipes = os.pipe, []

    def second_pipe_fails() -> tuple[int, int]:
        pipes.append(1)
        if len(pipes) == 2:
            refuse()
        return real_pipe()

    before = len(os.listdir("/proc/self/fd"))
    if failing == "Popen":
        monkeypatch.setattr(subprocess, "Popen", refuse)
    else:
        monkeypatch.setattr(os, "pipe", second_pipe_fails)
    with pytest.raises(UsageError, match="cannot start the writer process: Too many open"):
        Recorder(tmp_path / "never.pcapng")
    assert len(os.listdir("/proc/self/fd")) == before


def test_the_recording_is_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "keys.pcapng"  # it may hold TLS keys and plaintext
    with Recorder(path):
        pass
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_second_close_waits_for_the_first(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "twice.pcapng"
    rec = Recorder(path)
    leg = rec.tcp(C, S)
    os.kill(rec._proc.pid, signal.SIGSTOP)  # the first close() waits for the writer
    try:
        leg.open(time.time_ns())
        leg.data("c", b"queued before close", time.time_ns())
        first = threading.Thread(target=rec.close)
        first.start()
        wait_for(lambda: rec._closed, 10, "the first close() to begin")
        second = threading.Thread(target=rec.close)
        second.start()
        second.join(0.3)
        assert second.is_alive()  # still waiting: the file is not complete yet
    finally:
        os.kill(rec._proc.pid, signal.SIGCONT)
    second.join(30)
    first.join(30)
    assert not second.is_alive() and rec.packets > 0
    assert payloads(path)[(0, 40000, 8080)] == b"queued before close"


def test_no_module_of_the_callers_directory_runs_in_the_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "select.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    with Recorder(tmp_path / "safe.pcapng") as rec:
        rec.tcp(C, S).open(time.time_ns())
    assert rec.error is None and rec.packets == 3
    assert not marker.exists()
