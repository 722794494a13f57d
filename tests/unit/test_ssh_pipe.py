"""The socket <-> channel pipe, with fake transports and channels (no network)."""

from __future__ import annotations

from conftest import need_module

need_module("asyncssh")

from wirekit.ssh.pipe import ChannelEnd, SocketEnd  # noqa: E402


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.paused = False
        self.eof = False
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close


class FakeChannel:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.eof = False
        self.closed = False
        self.paused = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True


def make_pair() -> tuple[SocketEnd, FakeTransport, ChannelEnd, FakeChannel, list[object]]:
    closed: list[object] = []
    end = SocketEnd(lambda e, exc: closed.append(e))
    transport = FakeTransport()
    end.connection_made(transport)  # type: ignore[arg-type]
    chan_end = ChannelEnd(end)
    chan = FakeChannel()
    chan_end.connection_made(chan)
    return end, transport, chan_end, chan, closed


def test_early_bytes_wait_for_the_channel_then_flow_both_ways() -> None:
    end, transport, chan_end, chan, _ = make_pair()
    end.data_received(b"early")
    assert transport.paused and chan.written == []
    chan_end.session_started()  # channel open: attach
    assert chan.written == [b"early"] and not transport.paused
    end.data_received(b"more")
    chan_end.data_received(b"reply", None)
    assert chan.written == [b"early", b"more"]
    assert transport.written == [b"reply"]
    assert (end.stats.sent, end.stats.received) == (9, 5)


def test_backpressure_is_passed_across() -> None:
    end, transport, chan_end, chan, _ = make_pair()
    chan_end.session_started()
    chan_end.pause_writing()       # the channel's window is full
    assert transport.paused
    chan_end.resume_writing()
    assert not transport.paused
    end.pause_writing()            # the local socket's buffer is full
    assert chan.paused
    end.resume_writing()
    assert not chan.paused


def test_half_close_then_both_sides_close() -> None:
    end, transport, chan_end, chan, closed = make_pair()
    chan_end.session_started()
    end.eof_received()
    assert chan.eof and not transport.closed
    chan_end.eof_received()
    assert transport.eof and transport.closed
    end.connection_lost(None)
    assert chan.closed and closed == [end]


def test_prelude_goes_first() -> None:
    end, transport, chan_end, _, _ = make_pair()
    end.prelude = b"\x05\x00"
    chan_end.session_started()
    chan_end.data_received(b"banner", None)
    assert transport.written == [b"\x05\x00", b"banner"]


def test_channel_opened_after_the_client_left_is_closed() -> None:
    end, _, chan_end, chan, closed = make_pair()
    end.connection_lost(ConnectionResetError())
    assert closed == [end]
    chan_end.session_started()
    assert chan.closed
    assert end.peer is None
