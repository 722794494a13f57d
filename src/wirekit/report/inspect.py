"""Rendering an offline inspection (``wirekit.dissect.summary.Summary``) as text or JSON.

JSON schema (stable; every key always present):

    {
      "packets": int,                       # frames read
      "conversations": [{
          "id": int,                        # per protocol, = tshark's tcp.stream / udp.stream
          "proto": "tcp" | "udp",
          "client": "HOST:PORT", "server": "HOST:PORT",   # [v6]:PORT for IPv6
          "packets": {"client_to_server": int, "server_to_client": int, "total": int},
          "bytes":   {"client_to_server": int, "server_to_client": int, "total": int},
          "start": float, "duration": float,              # seconds, start relative to file
          "opened": "handshake" | "partial" | "midstream" | null,   # null for UDP
          "closed": "fin" | "rst" | "open" | null,
          "retransmissions": int,
          "app": "http" | "tls" | "dns" | "data" | null,
          "app_detail": {...}
      }],
      "tls": [{"conversation", "client_hello": {version, sni, alpn, cipher_suites,
               extensions} | null, "server_hello": {version, cipher_suite, extensions} | null,
               "certificates": [{subject, issuer, length}], "new_session_ticket": {...} | null,
               "messages": [[client...], [server...]], "records": [{type: n}, {type: n}],
               "application_bytes": [c2s, s2c], "alerts": [...]}],
      "http": [{"conversation", "method", "uri", "host", "version", "status", "reason",
                "request_headers", "response_headers", "request_body_size",
                "response_body_size"}],
      "dns": [{"conversation", "id", "response", "rcode", "questions": [{name, type}],
               "answers": [{name, type, ttl, data}]}],
      "error": null | {"message": str, "offset": int | null}
    }
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii as _jstr
from typing import Any

from wirekit.dissect.conversations import Conversation
from wirekit.dissect.summary import Summary
from wirekit.report.hexdump import hexdump

__all__ = ["HttpJson", "follow_json", "follow_text", "summary_json", "summary_json_text",
           "summary_text"]


def _rel(summary: Summary, conv: Conversation) -> tuple[float, float]:
    first = conv.first_ns if summary.first_ns is None else summary.first_ns
    return (conv.first_ns - first) / 1e9, (conv.last_ns - conv.first_ns) / 1e9


def _counts(values: list[int]) -> dict[str, int]:
    return {"client_to_server": values[0], "server_to_client": values[1],
            "total": values[0] + values[1]}


def conversation_json(summary: Summary, conv: Conversation) -> dict[str, Any]:
    start, duration = _rel(summary, conv)
    return {
        "id": conv.id, "proto": conv.proto, "client": conv.client_text,
        "server": conv.server_text, "packets": _counts(conv.packets),
        "bytes": _counts(conv.bytes), "start": round(start, 9),
        "duration": round(duration, 9), "opened": conv.opened_state,
        "closed": conv.closed_state, "retransmissions": conv.retransmissions,
        "app": conv.app, "app_detail": conv.app_detail,
    }


def summary_json(summary: Summary) -> dict[str, Any]:
    error = None
    if summary.error is not None:
        error = {"message": str(summary.error),
                 "offset": getattr(summary.error, "offset", None)}
    return {
        "packets": summary.packets,
        "conversations": [conversation_json(summary, c) for c in summary.conversations],
        "tls": summary.tls,
        "http": summary.http,
        "dns": summary.dns,
        "error": error,
    }


# -- the compact JSON text, written directly ------------------------------------------------
#
# ``summary_json_text`` yields exactly ``json.dumps(summary_json(s), separators=(",", ":"))``
# in pieces, without building the document first: one ``%`` template per conversation (with
# the repeated app_detail encodings memoised), HTTP exchanges in batches through the C
# encoder, the stdlib encoder for everything else.

# No circular-reference bookkeeping: the report is a tree built here (it halves the cost of
# encoding the HTTP exchanges); the output is the same.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)
_ENCODE = _ENCODER.encode
# The same encoder made once (``encode`` builds one per call, which costs as much as a small
# HTTP exchange's encoding): a callable ``(obj, 0)`` giving the text in pieces.
_encode_one: Any = _ENCODER.iterencode
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
if _c_make_encoder is not None:
    _encode_one = _c_make_encoder(None, _ENCODER.default, _jstr, None, ":", ",", False, False,
                                  True)
_DETAIL_MEMO: dict[tuple[Any, ...], str] = {}
# Below 4e15 ns (46 days) ``ns / 1e9`` is already what ``round(ns / 1e9, 9)`` gives: the
# double's ulp is under 1e-9, so rounding to 9 places recovers the exact ns / 10**9, whose
# nearest double is the division's (correctly rounded) result.  round() is the slow part.
_EXACT_NS = 4_000_000_000_000_000


def _opt_str(value: str | None) -> str:
    return "null" if value is None else _jstr(value)


class _Names(dict[str | None, str]):
    """JSON text of the few names a conversation has (proto, opened, closed, app)."""

    def __missing__(self, key: str | None) -> str:
        text = self[key] = _opt_str(key)
        return text


def _detail(detail: dict[str, Any]) -> str:
    # Most details are a few scalars repeated across conversations ({"requests": 1, ...}).
    try:
        # Keys, values and the values' types (1, 1.0 and True are equal keys but encode
        # differently) in one flat tuple: dicts of one size line up position by position.
        key = (*detail, *detail.values(), *map(type, detail.values()))
        text = _DETAIL_MEMO.get(key)
    except TypeError:  # a list or dict inside: not hashable, encode it each time
        return _ENCODE(detail)
    if text is None:
        text = _ENCODE(detail)
        if len(_DETAIL_MEMO) >= 1024:
            _DETAIL_MEMO.clear()
        _DETAIL_MEMO[key] = text
    return text


def _conversations_text(first: int | None, convs: list[Conversation],
                        names: _Names) -> Iterator[str]:
    """One JSON object per conversation (endpoints are digits, dots, colons and brackets:
    no escaping needed)."""
    exact = _EXACT_NS
    for conv in convs:
        begin = conv.first_ns if first is None else first
        detail = conv.app_detail
        start = conv.first_ns - begin
        duration = conv.last_ns - conv.first_ns
        (ca, cport), (sa, sport) = conv.client, conv.server
        if len(ca) == 4:
            a0, a1, a2, a3 = ca
            client = f"{a0}.{a1}.{a2}.{a3}:{cport}"
        else:
            client = conv.client_text
        if len(sa) == 4:
            a0, a1, a2, a3 = sa
            server = f"{a0}.{a1}.{a2}.{a3}:{sport}"
        else:
            server = conv.server_text
        p0, p1 = conv.packets
        b0, b1 = conv.bytes
        start_s = start / 1e9 if -exact < start < exact else round(start / 1e9, 9)
        duration_s = duration / 1e9 if -exact < duration < exact else round(duration / 1e9, 9)
        # One f-string (a single BUILD_STRING): about half the cost of %-templates.
        yield (f'{{"id":{conv.id},"proto":{names[conv.proto]},"client":"{client}",'
               f'"server":"{server}","packets":{{"client_to_server":{p0},'
               f'"server_to_client":{p1},"total":{p0 + p1}}},"bytes":{{"client_to_server":'
               f'{b0},"server_to_client":{b1},"total":{b0 + b1}}},"start":{start_s!r},'
               f'"duration":{duration_s!r},"opened":{names[conv.opened_state]},'
               f'"closed":{names[conv.closed_state]},"retransmissions":{conv.retransmissions},'
               f'"app":{names[conv.app]},"app_detail":{_detail(detail) if detail else "{}"}}}')


def _list_text(items: list[Any], one: Any) -> Iterator[str]:
    for i, item in enumerate(items):
        yield ("," if i else "") + one(item)


def _batches(items: list[dict[str, Any]], size: int = 2048) -> Iterator[str]:
    """The entries, comma-separated, encoded a batch at a time by the C encoder (a header
    tuple encodes as a list, as in the document); one call per
    batch costs less than a template per entry."""
    for i in range(0, len(items), size):
        text = _ENCODE(items[i : i + size])
        yield ("," if i else "") + text[1:-1]


class HttpJson:
    """An ``on_http`` sink for ``Summary``: each HTTP exchange encoded as it is found (the
    compact text is a fraction of the dict's memory), for ``summary_json_text``."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._append = self.texts.append
        # The ``on_http_json`` sink: an exchange already encoded (``dissect.http1_json``).
        self.add_text = self.texts.append

    def __call__(self, entry: dict[str, Any]) -> None:
        self._append("".join(_encode_one(entry, 0)))


def summary_json_text(summary: Summary, http: HttpJson | None = None) -> Iterator[str]:
    """The compact JSON report (``summary_json``, ``separators=(",", ":")``), in pieces;
    ``http`` is the sink the summary's HTTP exchanges went to, if any."""
    error = None
    if summary.error is not None:
        error = {"message": str(summary.error),
                 "offset": getattr(summary.error, "offset", None)}
    first = summary.first_ns
    yield '{"packets":%d,"conversations":[' % summary.packets  # noqa: UP031
    # A few thousand conversations per piece: one write each, not one per conversation
    # (an unbuffered stdout, PYTHONUNBUFFERED=1, makes every write a system call).
    convs, names = summary.conversations, _Names()
    for i in range(0, len(convs), 4096):
        yield ("," if i else "") + ",".join(
            _conversations_text(first, convs[i : i + 4096], names))
    yield '],"tls":['
    yield from _list_text(summary.tls, _ENCODE)
    yield '],"http":['
    if http is None:
        yield from _batches(summary.http)
    else:
        texts = http.texts
        for i in range(0, len(texts), 2048):
            yield ("," if i else "") + ",".join(texts[i : i + 2048])
    yield '],"dns":['
    yield from _list_text(summary.dns, _ENCODE)
    yield '],"error":' + _ENCODE(error) + "}"


def _size(n: int) -> str:
    if n < 10_000:
        return f"{n} B"
    if n < 10_000_000:
        return f"{n / 1024:.0f} KiB"
    return f"{n / 1048576:.0f} MiB"


def summary_text(summary: Summary) -> str:
    lines = [f"{summary.packets} packets, {len(summary.conversations)} conversations", ""]
    if summary.conversations:
        rows = [("ID", "PROTO", "CLIENT", "SERVER", "PKTS →/←", "BYTES →/←", "DURATION",
                 "OPENED", "CLOSED", "RETX", "APP")]
        for c in summary.conversations:
            _, duration = _rel(summary, c)
            rows.append((
                str(c.id), c.proto, c.client_text, c.server_text,
                f"{c.packets[0]}/{c.packets[1]}", f"{_size(c.bytes[0])}/{_size(c.bytes[1])}",
                f"{duration:.3f}s", c.opened_state or "-", c.closed_state or "-",
                str(c.retransmissions) if c.proto == "tcp" else "-", c.app or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    for entry in summary.http:
        lines.append("")
        lines.append(f"HTTP  tcp {entry['conversation']}: {entry['method'] or '?'} "
                     f"{entry['uri'] or '?'} -> {entry['status'] or 'no response'}"
                     + (f" {entry['reason']}" if entry["reason"] else "")
                     + (f" ({entry['response_body_size']} body bytes)"
                        if entry["response_body_size"] is not None else ""))
        for name, value in entry["request_headers"]:
            lines.append(f"    > {name}: {value}")
        for name, value in entry["response_headers"]:
            lines.append(f"    < {name}: {value}")
    for entry in summary.tls:
        lines.append("")
        lines.append(f"TLS   tcp {entry['conversation']}")
        ch, sh = entry["client_hello"], entry["server_hello"]
        if ch:
            lines.append(f"    ClientHello  SNI={ch['sni'] or '-'}  ALPN="
                         f"{','.join(ch['alpn']) or '-'}  version={ch['version']}")
            lines.append(f"      offered {len(ch['cipher_suites'])} suites: "
                         + ", ".join(ch["cipher_suites"]))
            lines.append("      extensions: " + ", ".join(ch["extensions"]))
        if sh:
            lines.append(f"    ServerHello  {sh['version']}  {sh['cipher_suite']}")
        for cert in entry["certificates"]:
            lines.append(f"    Certificate  subject={cert.get('subject')}  "
                         f"issuer={cert.get('issuer')}")
        if entry["new_session_ticket"]:
            t = entry["new_session_ticket"]
            lines.append(f"    NewSessionTicket  lifetime={t.get('lifetime')}s  "
                         f"{t.get('ticket_length')} bytes")
        for side, msgs in zip(("client", "server"), entry["messages"], strict=True):
            if msgs:
                lines.append(f"    {side} messages: {' '.join(msgs)}")
        recs = entry["records"]
        lines.append(f"    records client {recs[0]}  server {recs[1]}  application bytes "
                     f"{entry['application_bytes'][0]}/{entry['application_bytes'][1]}")
        for alert in entry["alerts"]:
            lines.append(f"    Alert {alert.get('level')} {alert.get('description')}")
        if entry.get("error"):
            lines.append(f"    (undecodable: {entry['error']})")
    for entry in summary.dns:
        lines.append("")
        qs = ", ".join(f"{q['type']} {q['name']}" for q in entry["questions"])
        kind = "response" if entry["response"] else "query"
        text = f"DNS   udp {entry['conversation']}: {kind} 0x{entry['id']:04x} {qs}"
        if entry["response"]:
            text += f" {entry['rcode']}"
            text += "".join(f"\n    {a['name']} {a['type']} {a['data']} (ttl {a['ttl']})"
                            for a in entry["answers"])
        lines.append(text)
    for c in summary.conversations:
        if c.app == "data":
            lines.append("")
            lines.append(f"DATA  {c.proto} {c.id}: first bytes each way")
            for side in ("client", "server"):
                raw = bytes.fromhex(c.app_detail.get(side, ""))
                if raw:
                    lines.append(f"  {side}:")
                    lines.extend("    " + row for row in hexdump(raw).splitlines())
        elif c.app_detail.get("error") and c.app != "tls":
            lines.append(f"\n{c.app.upper() if c.app else 'APP'}  {c.proto} {c.id}: "
                         f"undecodable: {c.app_detail['error']}")
    return "\n".join(lines)


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return "".join(ch if ch.isprintable() or ch in "\r\n\t" else "." for ch in text)


def follow_text(conv: Conversation, *, as_hex: bool = False) -> str:
    out = [f"Follow {conv.proto} stream {conv.id}: client {conv.client_text}  "
           f"server {conv.server_text}"]
    offsets = [0, 0]
    for d, chunk in _follow_chunks(conv):
        arrow = ">>" if d == 0 else "<<"
        who = "client" if d == 0 else "server"
        out.append(f"{arrow} {who} {len(chunk)} bytes at offset {offsets[d]}")
        out.append(hexdump(chunk, offsets[d]) if as_hex else _printable(chunk).rstrip("\n"))
        offsets[d] += len(chunk)
    out.append(f"== client sent {offsets[0]} bytes, server sent {offsets[1]} bytes")
    return "\n".join(out)


def _follow_chunks(conv: Conversation) -> list[tuple[int, bytes]]:
    """Chunks in capture order; for TCP, adjacent chunks of one direction are merged, like
    Wireshark's follow view."""
    if conv.proto == "udp":
        return list(conv.chunks)
    merged: list[tuple[int, list[bytes]]] = []
    for d, chunk in conv.chunks:
        if merged and merged[-1][0] == d:
            merged[-1][1].append(chunk)
        else:
            merged.append((d, [chunk]))
    return [(d, b"".join(parts)) for d, parts in merged]


def follow_json(conv: Conversation) -> dict[str, Any]:
    return {"conversation": conv.id, "proto": conv.proto, "client": conv.client_text,
            "server": conv.server_text,
            "chunks": [{"direction": "client_to_server" if d == 0 else "server_to_client",
                        "data": chunk.hex()} for d, chunk in _follow_chunks(conv)]}
