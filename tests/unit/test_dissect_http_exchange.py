"""simple_exchange (the offline shortcut) agrees with the HTTP parsers, or declines."""

from __future__ import annotations

import pytest

from wirekit.dissect.http1 import HttpParser, HttpResponse, simple_exchange
from wirekit.errors import ParseError

REQ = b"GET /a?b=1 HTTP/1.1\r\nHost: Example.test\r\nUser-Agent: t\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello"


def _parsed(c2s: bytes, s2c: bytes) -> tuple:
    requests, responses = HttpParser("request"), HttpParser("response")
    requests.feed(c2s)
    reqs = list(requests.events())
    for r in reqs:
        responses.expect(r.method)
    responses.feed(s2c)
    resps = [r for r in [*responses.events(), *responses.close()]
             if isinstance(r, HttpResponse)]
    assert len(reqs) == len(resps) == 1
    q, p = reqs[0], resps[0]
    assert q.body_size == 0
    return ((q.method, q.uri, q.version), q.headers, (p.version, str(p.status), p.reason),
            p.headers, p.body_size)


def test_the_common_exchange_matches_the_parsers() -> None:
    quick = simple_exchange(REQ, RESP)
    assert quick is not None
    assert quick == _parsed(REQ, RESP)
    assert quick[1][0] == ("Host", "Example.test")
    assert quick[4] == 5


@pytest.mark.parametrize(("c2s", "s2c"), [
    (REQ + REQ, RESP + RESP),  # pipelined: two of each
    (REQ, RESP + b"!"),  # more than the body
    (REQ, RESP[:-1]),  # body cut short
    (REQ.replace(b"GET", b"HEAD"), RESP),  # HEAD: no body whatever the length says
    (REQ, RESP.replace(b"200 OK", b"204 No Content")),
    (REQ, RESP.replace(b"200 OK", b"100 Continue")),
    (REQ, RESP.replace(b"Content-Length: 5", b"Transfer-Encoding: chunked")),
    (REQ, RESP.replace(b"Content-Length: 5", b"Content-Length: \xb2")),  # superscript 2
    (REQ, RESP.replace(b"Content-Length: 5", b"Content-Length: 5, 5")),
    (REQ.replace(b"User-Agent: t", b"Content-Length: 0"), RESP),
    (b"\r\n" + REQ, RESP),  # a leading blank line
    (REQ.replace(b"\r\n", b"\n"), RESP),  # bare LF heads
    (REQ.replace(b"Host:", b"Bad Name:"), RESP),  # malformed: the parser reports it
    (REQ, b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"),
    (REQ, b""),
])
def test_anything_else_is_left_to_the_parsers(c2s: bytes, s2c: bytes) -> None:
    assert simple_exchange(c2s, s2c) is None


def test_a_malformed_head_is_declined_and_the_parser_raises() -> None:
    bad = REQ.replace(b"Host:", b"Bad Name:")
    assert simple_exchange(bad, RESP) is None
    p = HttpParser("request")
    p.feed(bad)
    with pytest.raises(ParseError):
        list(p.events())
