"""The ``http`` service's protocol logic, sans-IO: bytes in, requests out, bytes back.

Theory of operation
-------------------
:class:`HttpRequestParser` is fed whatever arrives and returns complete items::

    HEAD  --(blank line)--> request ready --(Content-Length body skipped)--> HEAD ...
      |  malformed / too large / unsupported
      v
    HttpError (the connection answers it and closes; the parser returns nothing more)

Only what a tiny demo server needs: request line, headers, ``Content-Length`` bodies
(skipped), no chunked request bodies (501), keep-alive per HTTP/1.0 and 1.1 rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate

from wirekit import __version__

__all__ = ["HttpError", "HttpRequest", "HttpRequestParser", "http_error_response",
           "http_response"]

MAX_HEAD = 16384
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")

PAGE = (
    b"<!doctype html>\n<html>\n<head><meta charset=\"utf-8\"><title>wirekit</title></head>\n"
    b"<body>\n<h1>Hello from wirekit</h1>\n"
    b"<p>This page comes from <code>wirekit serve http</code>.</p>\n"
    b"</body>\n</html>\n"
)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    target: str
    version: tuple[int, int]
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        if self.version >= (1, 1):
            return "close" not in tokens
        return "keep-alive" in tokens


@dataclass(frozen=True, slots=True)
class HttpError:
    status: int
    reason: str


class HttpRequestParser:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan = 0  # where to resume looking for the end of the head
        self._skip = 0  # body bytes of the previous request still to discard
        self._failed = False

    @property
    def busy(self) -> bool:
        """True while part of a request (head or body) has arrived but not all of it."""
        return bool(self._buffer or self._skip)

    def feed(self, data: bytes) -> list[HttpRequest | HttpError]:
        if self._failed:
            return []
        buffer = self._buffer
        buffer += data
        items: list[HttpRequest | HttpError] = []
        while True:
            if self._skip:
                taken = min(self._skip, len(buffer))
                self._skip -= taken
                del buffer[:taken]
                self._scan = 0
                if self._skip:
                    return items
            end = _head_end(buffer, self._scan)
            if end < 0:
                if len(buffer) > MAX_HEAD:
                    items.append(self._fail(431, "Request Header Fields Too Large"))
                else:  # a trickling peer costs linear, not quadratic, time
                    self._scan = max(0, len(buffer) - 3)
                return items
            head = bytes(buffer[:end]).lstrip(b"\r\n")  # RFC 9112 2.2: skip blank lines
            del buffer[:end]
            self._scan = 0
            if not head.strip():
                continue
            item = _parse_head(head)
            if isinstance(item, HttpError):
                items.append(self._fail(item.status, item.reason))
                return items
            length = item.header("content-length")
            if item.header("transfer-encoding") is not None:
                items.append(self._fail(501, "Not Implemented"))
                return items
            if length is not None:
                if not length.isdigit():
                    items.append(self._fail(400, "Bad Request"))
                    return items
                self._skip = int(length)
            items.append(item)

    def _fail(self, status: int, reason: str) -> HttpError:
        self._failed = True
        self._buffer.clear()
        return HttpError(status, reason)


def _head_end(buffer: bytearray, start: int) -> int:
    """Index just past the blank line ending the head, or -1 (accepts bare ``\\n``)."""
    crlf = buffer.find(b"\r\n\r\n", start)
    lf = buffer.find(b"\n\n", start)
    ends = [i + 4 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    return min(ends) if ends else -1


def _parse_head(head: bytes) -> HttpRequest | HttpError:
    lines = head.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        return HttpError(400, "Bad Request")
    method, target, version_text = parts
    version = _VERSION.fullmatch(version_text)
    if version is None:
        return HttpError(400, "Bad Request")
    if version.group(1) != b"1":
        return HttpError(505, "HTTP Version Not Supported")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            return HttpError(400, "Bad Request")
        headers.append((name.decode("ascii").lower(), value.strip().decode("latin-1")))
    try:
        target_text = target.decode("ascii")
    except UnicodeDecodeError:
        return HttpError(400, "Bad Request")
    return HttpRequest(method.decode("ascii"), target_text,
                       (int(version.group(1)), int(version.group(2))), tuple(headers))


def _response(status: int, reason: str, body: bytes, *, keep_alive: bool, version: str,
              head_only: bool = False, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    headers = [
        ("Date", formatdate(usegmt=True)),
        ("Server", f"wirekit/{__version__}"),
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "keep-alive" if keep_alive else "close"),
        *extra,
    ]
    head = f"{version} {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1") + b"\r\n" + (b"" if head_only else body)


def _page(title: str) -> bytes:
    return (f"<!doctype html>\n<html><head><title>{title}</title></head>\n"
            f"<body><h1>{title}</h1></body></html>\n").encode()


def http_response(request: HttpRequest) -> tuple[bytes, bool]:
    """The response bytes for ``request`` and whether to keep the connection open."""
    keep_alive = request.keep_alive
    version = "HTTP/1.1" if request.version >= (1, 1) else "HTTP/1.0"
    if request.method not in ("GET", "HEAD"):
        return _response(405, "Method Not Allowed", _page("405 Method Not Allowed"),
                         keep_alive=keep_alive, version=version,
                         extra=(("Allow", "GET, HEAD"),)), keep_alive
    head_only = request.method == "HEAD"
    path = request.target.split("?", 1)[0]
    if path.startswith(("http://", "https://")):  # absolute-form: keep only the path
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    if path in ("/", "/index.html"):
        return _response(200, "OK", PAGE, keep_alive=keep_alive, version=version,
                         head_only=head_only), keep_alive
    return _response(404, "Not Found", _page("404 Not Found"), keep_alive=keep_alive,
                     version=version, head_only=head_only), keep_alive


def http_error_response(error: HttpError) -> bytes:
    return _response(error.status, error.reason, _page(f"{error.status} {error.reason}"),
                     keep_alive=False, version="HTTP/1.1")
