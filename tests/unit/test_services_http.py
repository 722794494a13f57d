"""The http service's sans-IO parser and responses, fed whole, byte by byte, with trailers."""

from __future__ import annotations

import pytest

from wirekit.net._http import (
    PAGE,
    HttpError,
    HttpRequest,
    HttpRequestParser,
    http_error_response,
    http_response,
)


def feed_whole(data: bytes) -> list[HttpRequest | HttpError]:
    return HttpRequestParser().feed(data)


def feed_bytewise(data: bytes) -> list[HttpRequest | HttpError]:
    parser = HttpRequestParser()
    return [item for i in range(len(data)) for item in parser.feed(data[i : i + 1])]


FEEDS = pytest.mark.parametrize("feed", [feed_whole, feed_bytewise])


def parse_response(raw: bytes) -> tuple[str, int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, _reason = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return version, int(status), headers, body


@FEEDS
def test_the_chapters_raw_request(feed) -> None:
    (req,) = feed(b"GET / HTTP/1.0\r\n\r\n")
    assert req == HttpRequest("GET", "/", (1, 0), ())
    raw, keep_alive = http_response(req)
    version, status, headers, body = parse_response(raw)
    assert (version, status, keep_alive) == ("HTTP/1.0", 200, False)
    assert headers["content-length"] == str(len(body)) and body == PAGE
    assert headers["connection"] == "close"
    assert headers["content-type"].startswith("text/html")


@FEEDS
def test_pipelined_requests_with_headers_and_body(feed) -> None:
    data = (b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
            b"HEAD / HTTP/1.1\r\nConnection: close\r\n\r\n")
    first, second = feed(data)
    assert isinstance(first, HttpRequest) and isinstance(second, HttpRequest)
    assert first.target == "/x?y=1" and first.header("HOST") == "a"
    raw, keep_alive = http_response(first)
    assert parse_response(raw)[1] == 404 and keep_alive
    raw, keep_alive = http_response(second)
    _, status, headers, body = parse_response(raw)
    assert status == 200 and body == b"" and int(headers["content-length"]) == len(PAGE)
    assert not keep_alive


def test_trailing_partial_request_waits() -> None:
    parser = HttpRequestParser()
    assert len(parser.feed(b"GET / HTTP/1.1\r\n\r\nGET / HT")) == 1
    assert parser.feed(b"TP/1.1\r\n\r\n") == [HttpRequest("GET", "/", (1, 1), ())]


def test_bare_newlines_and_leading_blank_lines_are_accepted() -> None:
    assert feed_whole(b"\r\nGET / HTTP/1.1\nHost: x\n\n") == [
        HttpRequest("GET", "/", (1, 1), (("host", "x"),))]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / FTP/1.0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"GET /" + b"a" * 20000, 431),
    ],
)
@FEEDS
def test_bad_requests(feed, data: bytes, status: int) -> None:
    items = feed(data)
    assert items == [HttpError(status, items[0].reason)]  # type: ignore[union-attr]
    _, got, headers, body = parse_response(http_error_response(items[0]))  # type: ignore[arg-type]
    assert got == status and headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)


def test_parser_stays_failed() -> None:
    parser = HttpRequestParser()
    assert parser.feed(b"BAD\r\n\r\n")
    assert parser.feed(b"GET / HTTP/1.1\r\n\r\n") == []


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [((1, 1), None, True), ((1, 1), "close", False), ((1, 0), None, False),
     ((1, 0), "Keep-Alive", True)],
)
def test_keep_alive_rules(version, connection, keep_alive) -> None:
    headers = (("connection", connection),) if connection else ()
    req = HttpRequest("GET", "/", version, headers)
    raw, got = http_response(req)
    assert got is keep_alive
    assert parse_response(raw)[2]["connection"] == ("keep-alive" if keep_alive else "close")


def test_other_methods_get_405_with_allow() -> None:
    raw, _ = http_response(HttpRequest("DELETE", "/", (1, 1), ()))
    _, status, headers, _ = parse_response(raw)
    assert status == 405 and headers["allow"] == "GET, HEAD"
