"""The commonest HTTP conversation straight from its bytes to its compact JSON entry.

``simple_exchange_json(cid, c2s, s2c)`` accepts exactly what ``http1.simple_exchange``
accepts (one bodiless request, one Content-Length response filling the rest) *and* whose
two heads are printable ASCII lines ending in CRLF, and returns the entry's JSON text as
``report.inspect`` writes it (``json.dumps`` with ``separators=(",", ":")`` of the dict
``app`` builds).  Anything else gives ``None`` and the caller takes the general path.

In printable ASCII only ``"`` and ``\\`` need escaping in a JSON string, and escaping them
neither adds nor removes colons, spaces or line breaks, so a head is escaped once, whole,
and then cut into names and values exactly as ``http1`` cuts the unescaped head: no
per-header ``str``, tuple or encoder call.
"""

from __future__ import annotations

from wirekit.dissect.http1 import _REQUEST_LINE, _STATUS_LINE

__all__ = ["simple_exchange_json"]

_PRINTABLE = bytes(range(0x20, 0x7F))


def _lines(head: bytes) -> list[str] | None:
    """The head's lines, JSON-escaped, if it is printable ASCII lines split by CRLF."""
    rest = head.translate(None, _PRINTABLE)
    if rest:
        # Only CRLF pairs may remain: as many CRs and LFs as adjacent CRLFs.
        n = head.count(b"\r\n")
        if rest != b"\r\n" * n:
            return None
    text = head.decode("ascii")
    if '"' in text or "\\" in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return text.split("\r\n")


def _headers(lines: list[str]) -> tuple[str, str | None, str | None, bool] | None:
    """``(JSON list of [name, value] pairs, Host, Content-Length, has Transfer-Encoding)``;
    ``None`` for a malformed line (``http1`` would raise)."""
    pieces = []
    host = cl = None
    te = False
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or " " in name:
            return None
        value = value.strip()
        pieces.append(f'{name}","{value}')
        n = len(name)
        if n == 4:
            if host is None and name.lower() == "host":
                host = value
        elif n == 14:
            if cl is None and name.lower() == "content-length":
                cl = value
        elif n == 17 and name.lower() == "transfer-encoding":
            te = True
    text = '[["' + '"],["'.join(pieces) + '"]]' if pieces else "[]"
    return text, host, cl, te


def simple_exchange_json(cid: int, c2s: bytes, s2c: bytes) -> str | None:
    """The JSON entry of conversation ``cid``'s one exchange, or ``None`` (see above)."""
    end = c2s.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(c2s) or c2s[0] in (13, 10):
        return None
    rend = s2c.find(b"\r\n\r\n")
    if rend < 0 or s2c[0] in (13, 10):
        return None
    req = _lines(c2s[:end])
    resp = _lines(s2c[:rend])
    if req is None or resp is None:
        return None
    m = _REQUEST_LINE.fullmatch(req[0])
    r = _STATUS_LINE.fullmatch(resp[0])
    if m is None or r is None:
        return None
    method, uri, version = m.groups()
    if method.upper() in ("HEAD", "CONNECT"):
        return None
    req_h = _headers(req[1:])
    resp_h = _headers(resp[1:])
    if req_h is None or resp_h is None:
        return None
    req_json, host, cl, te = req_h
    if te or cl is not None:
        return None
    resp_json, _, cl, te = resp_h
    if te or cl is None or not (cl.isascii() and cl.isdigit()):
        return None
    status = int(r.group(2))
    body = int(cl)
    if status < 200 or status in (204, 304) or body != len(s2c) - rend - 4:
        return None
    # An f-string (one BUILD_STRING) costs half a %-template here.
    host_json = "null" if host is None else f'"{host}"'
    return (f'{{"conversation":{cid},"method":"{method}","uri":"{uri}","host":{host_json},'
            f'"version":"{version}","request_headers":{req_json},"request_body_size":0,'
            f'"status":{status},"reason":"{r.group(3) or ""}","response_headers":{resp_json},'
            f'"response_body_size":{body}}}')
