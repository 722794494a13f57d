"""HTTP/1.x messages from a reassembled byte stream (sans-IO).

Theory of operation
-------------------
One ``HttpParser`` per direction.  ``feed`` bytes, take ``events()``: an ``HttpRequest`` or
``HttpResponse`` once its head *and* body have passed (the body is measured, not kept).
States:  HEAD -> (BODY_LENGTH | CHUNK_SIZE -> CHUNK_DATA -> ... -> TRAILERS | UNTIL_CLOSE) ->
HEAD.  A response's framing depends on the request it answers (HEAD, 1xx, 204, 304 have no
body), so the response parser is told the request methods in order with ``expect(method)``.
``close()`` ends a read-until-close body and reports it.  A head larger than ``max_head``
or a malformed line raises ``ParseError`` with the stream offset.

``simple_exchange(c2s, s2c)`` is the offline analysis's shortcut for the commonest
conversation: one request without a body, one response whose Content-Length body fills the
rest of the stream.  It decodes the two heads exactly as the parser does and returns ``None``
for anything else (or anything malformed), so the caller runs the parser, which then gives
the same result or error it always did.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from wirekit.errors import ParseError

__all__ = ["HttpParser", "HttpRequest", "HttpResponse", "looks_like_http_request",
           "simple_exchange"]

Headers = tuple[tuple[str, str], ...]
_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"DELETE ", b"OPTIONS ", b"PATCH ",
            b"CONNECT ", b"TRACE ")
_REQUEST_LINE = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) (HTTP/\d\.\d)")
_STATUS_LINE = re.compile(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?")


# Decoded heads by their raw bytes, per role: a capture repeats heads (the same client
# asking the same server), and decoding one is most of the cost of a small message.  The
# entries are immutable; the cache (at most 1024 heads of at most 4 KiB) is dropped whole
# when it fills.
_Head = tuple[tuple[str, str, str], "Headers", "str | None", "str | None"]
_HEAD_CACHE: dict[str, dict[tuple[int, bytes], _Head]] = {"request": {}, "response": {}}
_HEAD_CACHE_SIZE = 1024
_HEAD_CACHE_MAX_HEAD = 4096


def _cached_head(role: str, raw_head: bytes, sep: int, offset: int) -> _Head:
    cache = _HEAD_CACHE[role]
    key = (sep, raw_head)
    parsed = cache.get(key)
    if parsed is None:
        parsed = _decode_head(role, raw_head, sep, offset)
        if len(raw_head) <= _HEAD_CACHE_MAX_HEAD:
            if len(cache) >= _HEAD_CACHE_SIZE:
                cache.clear()
            cache[key] = parsed
    return parsed


def _decode_head(role: str, raw_head: bytes, sep: int, offset: int) -> _Head:
    text = raw_head.decode("latin-1")
    raw = text.split("\r\n") if sep == 4 else text.split("\n")
    first = raw[0]
    regex = _REQUEST_LINE if role == "request" else _STATUS_LINE
    m = regex.fullmatch(first)
    if m is None:
        raise ParseError(f"not an HTTP {role} line: {first[:40]!r}", offset=offset)
    headers = []
    te = cl = None
    for line in raw[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or " " in name or "\t" in name or "\n" in line:
            raise ParseError(f"malformed header line {line[:40]!r}", offset=offset)
        value = value.strip()
        headers.append((name, value))
        if len(name) in (14, 17):
            lname = name.lower()
            if lname == "content-length" and cl is None:
                cl = value
            elif lname == "transfer-encoding":
                te = value.lower()
    a, b, c = m.groups()
    return (a, b, c or ""), tuple(headers), te, cl


_Exchange = tuple[tuple[str, str, str], "Headers", tuple[str, str, str], "Headers", int]


def simple_exchange(c2s: bytes, s2c: bytes) -> _Exchange | None:
    """``(request line, request headers, status line, response headers, body size)`` when
    ``c2s`` is exactly one bodiless request and ``s2c`` exactly one Content-Length response
    to it (what the parsers would report); ``None`` otherwise."""
    end = c2s.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(c2s) or c2s[0] in (13, 10):
        return None
    rend = s2c.find(b"\r\n\r\n")
    if rend < 0 or not s2c or s2c[0] in (13, 10):
        return None
    try:
        req, req_headers, te, cl = _decode_head("request", c2s[:end], 4, 0)
        if te is not None or cl is not None or req[0].upper() in ("HEAD", "CONNECT"):
            return None
        resp, resp_headers, te, cl = _decode_head("response", s2c[:rend], 4, 0)
    except ParseError:
        return None
    if te is not None or cl is None or not (cl.isascii() and cl.isdigit()):
        return None
    status = int(resp[1])
    if status < 200 or status in (204, 304) or int(cl) != len(s2c) - rend - 4:
        return None
    return req, req_headers, resp, resp_headers, int(cl)


def looks_like_http_request(data: bytes) -> bool:
    return data.startswith(_METHODS)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    uri: str
    version: str
    headers: Headers
    body_size: int
    offset: int  # stream offset of the request line

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    version: str
    status: int
    reason: str
    headers: Headers
    body_size: int
    offset: int

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)


def _header(headers: Headers, name: str) -> str | None:
    lname = name.lower()
    for k, v in headers:
        if k.lower() == lname:
            return v
    return None


class HttpParser:
    __slots__ = ("_base", "_body", "_buf", "_head", "_head_offset", "_headers", "_methods",
                 "_pos", "_ready", "_remaining", "_state", "max_head", "role")

    def __init__(self, role: str, *, max_head: int = 65536) -> None:
        if role not in ("request", "response"):
            raise ValueError("role is 'request' or 'response'")
        self.role = role
        self.max_head = max_head
        self._buf = b""
        self._pos = 0  # next unread byte in _buf (consumed bytes are dropped on feed)
        self._base = 0  # stream offset of _buf[0]
        self._state = "HEAD"
        self._remaining = 0
        self._head: tuple[str, ...] | None = None
        self._headers: Headers = ()
        self._head_offset = 0
        self._body = 0
        self._methods: deque[str] = deque()
        self._ready: list[HttpRequest | HttpResponse] = []

    def expect(self, method: str) -> None:
        """Tell a response parser that a request with ``method`` was sent."""
        self._methods.append(method.upper())

    def feed(self, data: bytes) -> None:
        # The buffer is immutable bytes: a whole stream fed at once (the offline analysis)
        # is used as is, without a copy.  Only an unconsumed remainder (at most a partial
        # head: bodies are consumed as they arrive) is copied when more comes.
        if not isinstance(data, bytes):
            data = bytes(data)
        pos, buf = self._pos, self._buf
        if pos:
            self._base += pos
            self._pos = 0
        if pos >= len(buf):
            self._buf = data
        elif data:
            self._buf = buf[pos:] + data if pos else buf + data
        elif pos:
            self._buf = buf[pos:]

    def events(self) -> Iterator[HttpRequest | HttpResponse]:
        self._run()
        ready, self._ready = self._ready, []
        return iter(ready)

    def close(self) -> Iterator[HttpRequest | HttpResponse]:
        """The stream ended; finish a read-until-close body."""
        self._run()
        if self._state == "UNTIL_CLOSE":
            self._body += len(self._buf) - self._pos
            self._pos = len(self._buf)
            self._emit()
        ready, self._ready = self._ready, []
        return iter(ready)

    @property
    def pending(self) -> bool:
        """True if a message has started but not finished."""
        return self._state != "HEAD" or self._pos < len(self._buf)

    # -- the state machine ---------------------------------------------------------------

    @property
    def _offset(self) -> int:
        return self._base + self._pos

    def _run(self) -> None:
        while True:
            state = self._state
            if state == "HEAD":
                if self._pos >= len(self._buf) or not self._parse_head():
                    return
            elif state == "BODY_LENGTH":
                take = min(self._remaining, len(self._buf) - self._pos)
                self._body += take
                self._remaining -= take
                self._pos += take
                if self._remaining:
                    return
                self._emit()
            elif state == "CHUNK_SIZE":
                line = self._line()
                if line is None:
                    return
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ParseError(f"bad chunk size {size_text[:20]!r}",
                                     offset=self._offset) from None
                if size == 0:
                    self._state = "TRAILERS"
                else:
                    self._remaining, self._state = size, "CHUNK_DATA"
            elif state == "CHUNK_DATA":
                take = min(self._remaining, len(self._buf) - self._pos)
                self._body += take
                self._remaining -= take
                self._pos += take
                if self._remaining:
                    return
                self._state = "CHUNK_END"
            elif state == "CHUNK_END":
                if len(self._buf) - self._pos < 2:
                    return
                if self._buf[self._pos : self._pos + 2] != b"\r\n":
                    raise ParseError("chunk not followed by CRLF", offset=self._offset)
                self._pos += 2
                self._state = "CHUNK_SIZE"
            elif state == "TRAILERS":
                line = self._line()
                if line is None:
                    return
                if not line:
                    self._emit()
            else:  # UNTIL_CLOSE
                self._body += len(self._buf) - self._pos
                self._pos = len(self._buf)
                return

    def _line(self) -> bytes | None:
        i = self._buf.find(b"\n", self._pos)
        if i < 0:
            if len(self._buf) - self._pos > self.max_head:
                raise ParseError("line too long", offset=self._offset)
            return None
        line = bytes(self._buf[self._pos : i]).rstrip(b"\r")
        self._pos = i + 1
        return line

    def _parse_head(self) -> bool:
        buf, pos = self._buf, self._pos
        size = len(buf)
        # Tolerate blank lines between messages (RFC 9112 section 2.2).
        while pos < size and buf[pos] in (13, 10):
            if buf[pos] == 10:
                pos += 1
            elif pos + 1 < size and buf[pos + 1] == 10:
                pos += 2
            else:
                break
        self._pos = pos
        if pos >= size:
            return False
        end = buf.find(b"\r\n\r\n", pos)
        sep = 4
        if end < 0:
            end, sep = buf.find(b"\n\n", pos), 2
        if end < 0:
            if size - pos > self.max_head:
                raise ParseError(f"HTTP head longer than {self.max_head} bytes",
                                 offset=self._offset)
            return False
        offset = self._base + pos
        parsed = _cached_head(self.role, buf[pos:end], sep, offset)
        self._pos = end + sep
        self._head, self._headers, te, cl = parsed
        self._head_offset = offset
        self._body = 0
        self._frame(te or "", cl)
        return True

    def _frame(self, te: str, cl: str | None) -> None:
        assert self._head is not None
        if self.role == "response":
            status = int(self._head[1])
            if 100 <= status < 200 and status != 101:
                self._state = "HEAD"  # interim: no body, and the request is still open
                self._ready.append(self._message())
                return
            method = self._methods.popleft() if self._methods else "GET"
            if method == "HEAD" or status in (204, 304) or (
                    method == "CONNECT" and 200 <= status < 300):
                self._emit()
                return
        if "chunked" in te:
            self._state = "CHUNK_SIZE"
        elif cl is not None:
            try:
                self._remaining = int(cl.split(",")[0].strip())
            except ValueError:
                raise ParseError(f"bad Content-Length {cl[:20]!r}",
                                 offset=self._head_offset) from None
            if self._remaining < 0:
                raise ParseError("negative Content-Length", offset=self._head_offset)
            self._state = "BODY_LENGTH"
            if not self._remaining:
                self._emit()
        elif self.role == "request":
            self._emit()
        else:
            self._state = "UNTIL_CLOSE"

    def _message(self) -> HttpRequest | HttpResponse:
        assert self._head is not None
        if self.role == "request":
            method, uri, version = self._head
            return HttpRequest(method, uri, version, self._headers, self._body,
                               self._head_offset)
        version, status, reason = self._head
        return HttpResponse(version, int(status), reason, self._headers, self._body,
                            self._head_offset)

    def _emit(self) -> None:
        self._ready.append(self._message())
        self._state = "HEAD"
