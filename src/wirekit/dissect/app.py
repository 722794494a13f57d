"""Application layer of a finished conversation: HTTP/1.x, TLS, DNS, or a hexdump excerpt.

Called once per conversation with the reassembled (capped) bytes in capture order; results
go to the ``Summary``'s ``http``/``tls``/``dns`` lists and the conversation's ``app`` and
``app_detail``.  A parser error does not stop the inspection: it is noted on the
conversation (``app_detail["error"]``) and what was decoded before it is kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wirekit.dissect.dns import parse_dns
from wirekit.dissect.http1 import (
    HttpParser,
    HttpRequest,
    HttpResponse,
    looks_like_http_request,
    simple_exchange,
)
from wirekit.dissect.http1_json import simple_exchange_json
from wirekit.errors import ParseError

if TYPE_CHECKING:
    from wirekit.dissect.conversations import Conversation
    from wirekit.dissect.summary import Summary

__all__ = ["analyse", "is_dns_port"]

_DNS_PORTS = frozenset({53, 5353, 5355})
EXCERPT = 64


def is_dns_port(sport: int, dport: int) -> bool:
    return sport in _DNS_PORTS or dport in _DNS_PORTS


def analyse(conv: Conversation, summary: Summary) -> None:
    if conv.proto == "udp":
        _udp(conv, summary)
        return
    chunks = conv.chunks
    if not chunks:
        return
    sides: tuple[list[bytes], list[bytes]] = ([], [])
    for d, c in chunks:
        sides[d].append(c)
    c2s = sides[0][0] if sides[0] else b""
    if looks_like_http_request(c2s):
        _http(conv, summary, _join(sides[0]), _join(sides[1]))
    elif _looks_like_tls(c2s) or (not c2s and _looks_like_tls(sides[1][0])):
        _tls(conv, summary)
    else:
        conv.app = "data"
        conv.app_detail = {"client": _join(sides[0])[:EXCERPT].hex(),
                           "server": _join(sides[1])[:EXCERPT].hex()}


def _join(pieces: list[bytes]) -> bytes:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _looks_like_tls(data: bytes) -> bool:
    return len(data) >= 3 and data[0] in (0x14, 0x15, 0x16, 0x17) and data[1] == 3


_ONE_EACH = {"requests": 1, "responses": 1}


def _http(conv: Conversation, summary: Summary, c2s: bytes, s2c: bytes) -> None:
    conv.app = "http"
    add_json = summary.add_http_json
    if add_json is not None:
        text = simple_exchange_json(conv.id, c2s, s2c)
        if text is not None:
            add_json(text)
            conv.app_detail = {"requests": 1, "responses": 1}
            return
    quick = simple_exchange(c2s, s2c)
    if quick is not None:
        (method, uri, version), req_headers, status_line, resp_headers, body = quick
        host = None
        for k, v in req_headers:
            if len(k) == 4 and k.lower() == "host":
                host = v
                break
        summary.add_http({
            "conversation": conv.id, "method": method, "uri": uri, "host": host,
            "version": version, "request_headers": req_headers, "request_body_size": 0,
            "status": int(status_line[1]), "reason": status_line[2],
            "response_headers": resp_headers,
            "response_body_size": body,
        })
        conv.app_detail = dict(_ONE_EACH)
        return
    requests = HttpParser("request")
    responses = HttpParser("response")
    reqs: list[HttpRequest] = []
    resps: list[HttpResponse] = []
    error = None
    try:
        requests.feed(c2s)
        for ev in requests.events():
            assert isinstance(ev, HttpRequest)
            reqs.append(ev)
            responses.expect(ev.method)
    except ParseError as exc:
        error = f"requests: {exc}"
    try:
        responses.feed(s2c)
        evs = list(responses.events())
        if not conv.truncated:
            evs += responses.close()
        resps = [r for r in evs if isinstance(r, HttpResponse) and not 100 <= r.status < 200]
    except ParseError as exc:
        error = (error + "; " if error else "") + f"responses: {exc}"
    append = summary.add_http
    cid = conv.id
    nreq, nresp = len(reqs), len(resps)
    for i in range(max(nreq, nresp)):
        req = reqs[i] if i < nreq else None
        resp = resps[i] if i < nresp else None
        append({
            "conversation": cid,
            "method": req.method if req else None,
            "uri": req.uri if req else None,
            "host": req.header("host") if req else None,
            "version": req.version if req else (resp.version if resp else None),
            "request_headers": req.headers if req else (),
            "request_body_size": req.body_size if req else None,
            "status": resp.status if resp else None,
            "reason": resp.reason if resp else None,
            "response_headers": resp.headers if resp else (),
            "response_body_size": resp.body_size if resp else None,
        })
    conv.app_detail = {"requests": len(reqs), "responses": len(resps)}
    if error:
        conv.app_detail["error"] = error


def _tls(conv: Conversation, summary: Summary) -> None:
    conv.app = "tls"
    try:
        from wirekit.dissect import tls
    except ImportError:  # pragma: no cover - the dissector ships with wirekit
        conv.app_detail = {"error": "TLS dissector not available"}
        return
    context = tls.HandshakeContext()
    sides = (tls.TLSDirection(context), tls.TLSDirection(context))
    entry: dict[str, Any] = {"conversation": conv.id, "client_hello": None,
                             "server_hello": None, "certificates": [],
                             "new_session_ticket": None, "messages": [[], []],
                             "alerts": []}
    failed = [False, False]
    error = None
    for d, chunk in conv.chunks:
        if failed[d]:
            continue
        try:
            events = sides[d].feed(chunk)
        except ParseError as exc:
            failed[d] = True
            error = f"{'client' if d == 0 else 'server'}: {exc}"
            continue
        for ev in events:
            _tls_event(entry, d, ev, tls)
    entry["records"] = [dict(sides[0].records), dict(sides[1].records)]
    entry["application_bytes"] = [sides[0].application_bytes, sides[1].application_bytes]
    if error:
        entry["error"] = error
    summary.tls.append(entry)
    conv.app_detail = {"sni": (entry["client_hello"] or {}).get("sni"),
                       "version": (entry["server_hello"] or {}).get("version"),
                       "cipher_suite": (entry["server_hello"] or {}).get("cipher_suite")}
    if error:
        conv.app_detail["error"] = error


def _tls_event(entry: dict[str, Any], d: int, ev: Any, tls: Any) -> None:
    name = ev.type_name
    if name != "ApplicationData":
        entry["messages"][d].append(name)
    if isinstance(ev, tls.ClientHello) and entry["client_hello"] is None:
        entry["client_hello"] = {
            "version": ev.supported_versions[0] if ev.supported_versions else
            ev.to_dict()["version"],
            "sni": ev.sni, "alpn": ev.alpn, "cipher_suites": ev.cipher_suite_names,
            "extensions": [e.name for e in ev.extensions],
        }
    elif isinstance(ev, tls.ServerHello) and not ev.is_hello_retry_request:
        sd = ev.to_dict()
        entry["server_hello"] = {"version": sd["version"], "cipher_suite": sd["cipher_suite"],
                                 "extensions": [e.name for e in ev.extensions]}
    elif isinstance(ev, tls.Certificate):
        entry["certificates"] = ev.to_dict()["certificates"]
    elif isinstance(ev, tls.NewSessionTicket) and entry["new_session_ticket"] is None:
        entry["new_session_ticket"] = ev.to_dict()
    elif isinstance(ev, tls.Alert):
        entry["alerts"].append(ev.to_dict())


def _looks_like_dns(first: list[bytes]) -> bool:
    """A DNS message on a port that is not DNS's: one question, standard opcode, a name made
    of printable labels, and a question that ends where the header says it does."""
    if not first or len(first[0]) < 17:
        return False
    data = first[0]
    if data[4:6] != b"\0\1" or (data[2] >> 3) & 0xF:
        return False
    try:
        msg = parse_dns(data)
    except ParseError:
        return False
    name = msg.questions[0].name
    return name.isascii() and name.isprintable() and " " not in name


def _udp(conv: Conversation, summary: Summary) -> None:
    payloads = conv.udp_payloads
    if not payloads or not (payloads[0] or payloads[1]):
        return
    sport, dport = conv.client[1], conv.server[1]
    if is_dns_port(sport, dport) or _looks_like_dns(payloads[0][:1] or payloads[1][:1]):
        conv.app = "dns"
        malformed = 0
        for d in (0, 1):
            for data in payloads[d]:
                try:
                    msg = parse_dns(data)
                except ParseError:
                    malformed += 1
                    continue
                summary.dns.append({
                    "conversation": conv.id,
                    "id": msg.id,
                    "response": msg.response,
                    "rcode": msg.rcode,
                    "questions": [{"name": q.name, "type": q.type} for q in msg.questions],
                    "answers": [{"name": a.name, "type": a.type, "ttl": a.ttl, "data": a.data}
                                for a in msg.answers],
                })
        conv.app_detail = {"malformed": malformed} if malformed else {}
        return
    conv.app = "data"
    conv.app_detail = {"client": b"".join(payloads[0])[:EXCERPT].hex(),
                       "server": b"".join(payloads[1])[:EXCERPT].hex()}
