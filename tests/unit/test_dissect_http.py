"""HTTP/1.x parsing: whole, byte by byte, with trailing bytes; framing rules; errors."""

from __future__ import annotations

import pytest

from wirekit.dissect.http1 import HttpParser, HttpRequest, HttpResponse
from wirekit.errors import ParseError

REQUESTS = (b"GET /a?b=1 HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"
            b"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nX-Trailer: 1\r\n\r\n"
            b"HEAD /h HTTP/1.1\r\n\r\n")
RESPONSES = (b"HTTP/1.1 100 Continue\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
             b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n12345\r\n0\r\n\r\n"
             b"HTTP/1.1 204 No Content\r\n\r\n"
             b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"  # answers HEAD: no body
             b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\nuntil the end")


def parse(role: str, pieces: list[bytes], methods: list[str] = ()) -> list:
    p = HttpParser(role)
    for m in methods:
        p.expect(m)
    out = []
    for piece in pieces:
        p.feed(piece)
        out.extend(p.events())
    out.extend(p.close())
    return out


def three_ways(data: bytes) -> list[list[bytes]]:
    return [[data], [data[i : i + 1] for i in range(len(data))],
            [data[:7], data[7:40], data[40:]]]


@pytest.mark.parametrize("split", range(3))
def test_requests(split: int) -> None:
    reqs = parse("request", three_ways(REQUESTS)[split])
    assert all(isinstance(r, HttpRequest) for r in reqs)
    assert [(r.method, r.uri, r.body_size) for r in reqs] == [
        ("GET", "/a?b=1", 0), ("POST", "/form", 5), ("PUT", "/c", 7), ("HEAD", "/h", 0)]
    assert reqs[0].header("HOST") == "example.test" and reqs[1].offset == REQUESTS.index(b"POST")


@pytest.mark.parametrize("split", range(3))
def test_responses_follow_request_methods(split: int) -> None:
    resps = parse("response", three_ways(RESPONSES)[split],
                  ["POST", "PUT", "DELETE", "HEAD", "GET"])
    assert all(isinstance(r, HttpResponse) for r in resps)
    assert [(r.status, r.body_size) for r in resps] == [
        (100, 0), (200, 3), (201, 5), (204, 0), (200, 0), (200, 13)]
    assert resps[-1].version == "HTTP/1.0" and resps[1].reason == "OK"


def test_trailing_bytes_are_a_pending_message() -> None:
    p = HttpParser("request")
    p.feed(REQUESTS + b"GET /next HTT")
    assert len(list(p.events())) == 4 and p.pending


@pytest.mark.parametrize("bad", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc\r\n",
])
def test_malformed_raises_parse_error(bad: bytes) -> None:
    with pytest.raises(ParseError):
        parse("request", [bad])


def test_head_too_large() -> None:
    p = HttpParser("request", max_head=100)
    p.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 200)
    with pytest.raises(ParseError, match="longer than 100"):
        list(p.events())


def test_every_prefix_never_crashes() -> None:
    for n in range(len(REQUESTS)):
        p = HttpParser("request")
        p.feed(REQUESTS[:n])
        events = list(p.events())
        assert len(events) <= 4
