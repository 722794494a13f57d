"""The built-in services' logic in memory: time messages, chargen pattern, UDP answers."""

from __future__ import annotations

import random
import time

import pytest

from wirekit.errors import UsageError
from wirekit.net.services import (
    CHARGEN_CYCLE,
    SERVICES,
    MessageSplitter,
    chargen_datagram,
    chargen_lines,
    daytime_text,
    get_service,
    is_end,
    time_text,
)


def _parse_ctime(text: bytes) -> time.struct_time:
    return time.strptime(text.decode().strip(), "%a %b %d %H:%M:%S %Y")


def test_time_text_is_ctime_with_newline() -> None:
    before = time.time()
    reply = time_text()
    assert reply.endswith(b"\n") and reply.count(b"\n") == 1
    parsed = time.mktime(_parse_ctime(reply))
    assert before - 2 <= parsed <= time.time() + 1


def test_daytime_text_is_one_crlf_line() -> None:
    reply = daytime_text()
    assert reply.endswith(b"\r\n") and reply.count(b"\n") == 1
    _parse_ctime(reply)


@pytest.mark.parametrize(
    ("reads", "messages"),
    [
        ([b"GET TIME"], [b"GET TIME"]),  # the chapter's client: no newline, one read
        ([b"a\n", b"b\r\n"], [b"a", b"b"]),
        ([b"a\nb\n"], [b"a", b"b"]),
        ([b"par", b"tial\n"], [b"par", b"tial"]),  # a read without newline is a message
        ([b"one\ntw", b"o\n"], [b"one", b"two"]),  # a partial line waits for its end
        ([b"\n"], [b""]),
        ([b""], []),
    ],
)
def test_message_splitter(reads: list[bytes], messages: list[bytes]) -> None:
    splitter = MessageSplitter()
    got = [m for data in reads for m in splitter.feed(data)]
    assert got == messages
    assert splitter.finish() is None


def test_message_splitter_finish_returns_the_pending_partial_line() -> None:
    splitter = MessageSplitter()
    assert splitter.feed(b"x\nGET TI") == [b"x"]
    assert splitter.finish() == b"GET TI"
    assert splitter.finish() is None


def test_message_splitter_bounds_a_line_without_newline() -> None:
    splitter = MessageSplitter()
    huge = b"a" * (MessageSplitter.MAX_LINE + 10)
    assert splitter.feed(b"\n" + huge) == [b"", huge]


@pytest.mark.parametrize(("message", "end"), [(b"END", True), (b" end\r", True),
                                              (b"ENDING", False), (b"", False)])
def test_is_end(message: bytes, end: bool) -> None:
    assert is_end(message) is end


def test_chargen_cycle_follows_rfc_864() -> None:
    lines = CHARGEN_CYCLE.split(b"\r\n")
    assert lines.pop() == b""
    assert len(lines) == 95
    printable = bytes(range(32, 127))
    for i, line in enumerate(lines):
        assert len(line) == 72
        assert all(32 <= c < 127 for c in line)
        assert line[0] == printable[i]
        assert (printable * 2)[i : i + 72] == line
    assert lines[0].startswith(b' !"#$%&')


def test_chargen_lines_wrap_around_the_cycle() -> None:
    assert chargen_lines(0, 95) == CHARGEN_CYCLE
    assert chargen_lines(94, 2) == CHARGEN_CYCLE[-74:] + CHARGEN_CYCLE[:74]
    assert chargen_lines(95 * 3 + 5, 1) == chargen_lines(5, 1)


def test_chargen_datagram_is_whole_lines_within_512() -> None:
    rng = random.Random(7)
    sizes = set()
    for start in range(200):
        dgram = chargen_datagram(start, rng)
        assert 0 < len(dgram) <= 512
        assert len(dgram) % 74 == 0
        assert dgram == chargen_lines(start, len(dgram) // 74)
        sizes.add(len(dgram))
    assert len(sizes) > 1


def test_udp_answers() -> None:
    assert SERVICES["echo"].udp is not None
    assert SERVICES["echo"].udp()(b"abc") == b"abc"
    assert SERVICES["discard"].udp()(b"abc") is None  # type: ignore[misc]
    _parse_ctime(SERVICES["time"].udp()(b"GET TIME"))  # type: ignore[arg-type, misc]
    _parse_ctime(SERVICES["daytime"].udp()(b""))  # type: ignore[arg-type, misc]
    chargen = SERVICES["chargen"].udp()  # type: ignore[misc]
    first, second = chargen(b""), chargen(b"")
    assert first + second == chargen_lines(0, (len(first) + len(second)) // 74)
    assert SERVICES["http"].udp is None


def test_get_service_names_the_choices() -> None:
    assert get_service("ECHO").name == "echo"
    with pytest.raises(UsageError, match="choose from: time, echo, discard, daytime"):
        get_service("finger")


# -- the TCP protocols against an in-memory transport ------------------------------------------
class FakeTransport:
    """Records what a protocol writes and how it controls the transport."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.reading = True
        self.closing = False
        self.aborted = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True


def _connect(service: str, limits=None, events=None):
    from wirekit.net._served import ServerState
    from wirekit.net.gate import Gate, Limits

    state = ServerState(service, Gate(limits or Limits()), events.append if events is not None
                        else None)
    protocol = SERVICES[service].tcp_factory(state)()
    transport = FakeTransport()
    protocol.connection_made(transport)
    return state, protocol, transport


async def test_echo_protocol_echoes_and_applies_backpressure() -> None:
    events: list = []
    state, proto, tr = _connect("echo", events=events)
    proto.data_received(b"abc")
    proto.data_received(b"def")
    assert bytes(tr.written) == b"abcdef"
    proto.pause_writing()  # our write buffer is full: the peer does not read
    assert not tr.reading
    proto.resume_writing()
    assert tr.reading
    assert proto.eof_received() is None  # falsy: close once flushed
    proto.connection_lost(None)
    (event,) = events
    assert (event.bytes_in, event.bytes_out, event.ended) == (6, 6, "peer closed")
    assert event.peer.hostport == "127.0.0.1:40000"
    assert state.gate.active == 0 and not state.live


async def test_time_protocol_answers_each_message_and_closes_on_end() -> None:
    _, proto, tr = _connect("time")
    proto.data_received(b"GET TIME")
    proto.data_received(b"one\ntwo\nEND\nignored\n")
    replies = bytes(tr.written).splitlines()
    assert len(replies) == 3
    for reply in replies:
        _parse_ctime(reply)
    assert tr.closing


async def test_time_protocol_answers_a_partial_line_at_eof() -> None:
    _, proto, tr = _connect("time")
    proto.data_received(b"a\nlast")
    proto.eof_received()
    assert len(bytes(tr.written).splitlines()) == 2


async def test_refused_connection_is_closed_and_ignores_data() -> None:
    from wirekit.net.acl import AccessList
    from wirekit.net.gate import Limits

    events: list = []
    limits = Limits(acl=AccessList.from_strings(deny=["127.0.0.0/8"]))
    state, proto, tr = _connect("echo", limits, events)
    assert tr.closing and not proto.admitted
    proto.data_received(b"late")  # uvloop may still deliver
    proto.connection_lost(None)
    assert bytes(tr.written) == b""
    assert [(e.ended, e.detail) for e in events] == [("refused", "denied by --deny 127.0.0.0/8")]
    assert state.gate.refused == 1 and state.gate.active == 0


async def test_chargen_protocol_stops_when_paused() -> None:
    _, proto, tr = _connect("chargen")
    proto.pause_writing()
    written = len(tr.written)
    assert written > 0 and bytes(tr.written) == CHARGEN_CYCLE * (written // len(CHARGEN_CYCLE))
    proto.resume_writing()
    proto.pause_writing()
    assert len(tr.written) > written
    tr.closing = True  # stop the call_soon chain


async def test_daytime_protocol_sends_once_and_closes() -> None:
    _, _, tr = _connect("daytime")
    _parse_ctime(bytes(tr.written))
    assert tr.closing


def test_raise_nofile_limit_goes_to_the_hard_limit() -> None:
    import resource

    from wirekit.net.server import raise_nofile_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        new = raise_nofile_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == new
        if hard == resource.RLIM_INFINITY:
            assert new > lowered
        else:
            assert new == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
