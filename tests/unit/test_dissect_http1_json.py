"""``http1_json.simple_exchange_json`` gives exactly the JSON text of the general path's entry,
or ``None`` (and then the general path runs)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from wirekit.dissect import app
from wirekit.dissect.conversations import Conversation
from wirekit.dissect.http1 import simple_exchange
from wirekit.dissect.http1_json import simple_exchange_json
from wirekit.dissect.summary import Summary


def _general(c2s: bytes, s2c: bytes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The entries and app_detail the analysis gives without the JSON shortcut."""
    entries: list[dict[str, Any]] = []
    summary = Summary(on_http=entries.append)
    conv = Conversation(7, "tcp", (b"\x7f\0\0\1", 50000), (b"\x7f\0\0\1", 80), 0)
    app._http(conv, summary, c2s, s2c)
    return entries, conv.app_detail


def _check(c2s: bytes, s2c: bytes) -> str | None:
    text = simple_exchange_json(7, c2s, s2c)
    entries, detail = _general(c2s, s2c)
    if text is not None:
        assert simple_exchange(c2s, s2c) is not None
        assert detail == {"requests": 1, "responses": 1} and len(entries) == 1
        assert text == json.dumps(entries[0], separators=(",", ":"))
    return text


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"

ACCEPTED = [
    (REQUEST, RESPONSE),
    (b"GET / HTTP/1.1\r\n\r\n", RESPONSE),
    (b'GET /a"b\\c?x=:%20 HTTP/1.0\r\nHOST:  h\\"x\\  \r\nX-E:\r\nX-F: \r\nX-G: a: b\r\n'
     b"X-H:c:d\r\nHost: second\r\n\r\n",
     b'HTTP/1.1 200 "fine" \\ok\r\nETag: "1"\r\ncontent-length: 3\r\nContent-Length: 9\r\n'
     b"Server:\x20x~\r\n\r\nabc"),
    (REQUEST, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
    (REQUEST, b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
    (b"delete /x HTTP/1.1\r\n\r\n", b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx"),
]

REJECTED = [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nextra", RESPONSE),  # more than one request
    (b"\r\nGET / HTTP/1.1\r\n\r\n", RESPONSE),  # leading blank line
    (b"HEAD / HTTP/1.1\r\n\r\n", RESPONSE),
    (b"CONNECT a:1 HTTP/1.1\r\n\r\n", RESPONSE),
    (b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", RESPONSE),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", RESPONSE),
    (REQUEST, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabc"),  # short body
    (REQUEST, b"HTTP/1.1 200 OK\r\n\r\nabc"),  # read until close
    (REQUEST, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: x\r\n\r\nabc"),
    (REQUEST, b"HTTP/1.1 204 No\r\nContent-Length: 0\r\n\r\n"),
    (REQUEST, b"HTTP/1.1 304 No\r\nContent-Length: 0\r\n\r\n"),
    (REQUEST, b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\n"),
    (REQUEST, b"HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc"),
    (b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", RESPONSE),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", RESPONSE),
    (b"GET / HTTP/1.1\r\n: empty name\r\n\r\n", RESPONSE),
    (b"GET / HTTP/1.1\r\nX: a\nY: b\r\n\r\n", RESPONSE),  # bare LF
    (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", RESPONSE),  # bare CR: JSON escapes it
    (b"GET / HTTP/1.1\r\nX: a\tb\r\n\r\n", RESPONSE),  # tab: JSON escapes it
    (b"GET / HTTP/1.1\r\nX: \xe9\r\n\r\n", RESPONSE),  # not ASCII
    (b"GET / HTTP/1.1\r\nX: \x7f\r\n\r\n", RESPONSE),  # DEL: JSON escapes it
    (b"GET /\x01 HTTP/1.1\r\n\r\n", RESPONSE),
    (b"GET / HTTP/1.1\n\n", RESPONSE),  # LF-only heads: the general path
    (b"GET  / HTTP/1.1\r\n\r\n", RESPONSE),
    (REQUEST, b"HTTP/1.1 20 OK\r\nContent-Length: 3\r\n\r\nabc"),
    (REQUEST, b"HTTP/1.1 200 \xc3\xa9\r\nContent-Length: 3\r\n\r\nabc"),
]


@pytest.mark.parametrize(("c2s", "s2c"), ACCEPTED)
def test_accepted_exchanges_encode_like_the_general_path(c2s: bytes, s2c: bytes) -> None:
    assert _check(c2s, s2c) is not None


@pytest.mark.parametrize(("c2s", "s2c"), REJECTED)
def test_anything_else_is_left_to_the_general_path(c2s: bytes, s2c: bytes) -> None:
    assert _check(c2s, s2c) is None


def test_random_heads_agree_with_the_general_path() -> None:
    rng = random.Random(1234)
    atoms = ["a", "Z", "9", "-", ":", ": ", " ", "  ", '"', "\\", "\t", "\r", "\n", "\r\n",
             "\xe9", "\x7f", "\x00", "Host", "content-length", "Transfer-Encoding", "0", "12"]
    accepted = 0
    for _ in range(3000):
        lines = [rng.choice(["Host: h", "X: y", "A:b"]) if rng.random() < 0.5 else
                 "".join(rng.choice(atoms) for _ in range(rng.randrange(1, 6)))
                 for _ in range(rng.randrange(0, 4))]
        body = b"x" * rng.randrange(0, 4)
        resp_lines = [*lines[:2], f"Content-Length: {rng.choice([len(body), 3])}"]
        rng.shuffle(resp_lines)
        c2s = ("GET /p HTTP/1.1\r\n" + "".join(x + "\r\n" for x in lines) + "\r\n").encode(
            "latin-1")
        s2c = ("HTTP/1.1 200 OK\r\n" + "".join(x + "\r\n" for x in resp_lines)
               + "\r\n").encode("latin-1") + body
        if _check(c2s, s2c) is not None:
            accepted += 1
        elif simple_exchange(c2s, s2c) is not None:
            # Accepted by the general shortcut: only heads JSON must escape may differ.
            heads = (c2s + s2c[: s2c.find(b"\r\n\r\n")]).replace(b"\r\n", b"")
            assert any(b < 0x20 or b >= 0x7F for b in heads)
    assert accepted > 300
