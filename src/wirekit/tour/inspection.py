"""The chapter's Wireshark pages from the command line: the tour's own recording, inspected.

The TCP, UDP and TLS sections recorded what they did into one pcapng file
(:mod:`wirekit.tour.recording`).  This last section closes the file, inspects it with the
functions ``wirekit inspect`` uses (:class:`wirekit.dissect.summary.Summary`, rendered by
:mod:`wirekit.report.inspect`), checks that the file shows what the tour did, and says how
to open it in Wireshark.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wirekit.tour.narrator import Narrator, SectionSkipped
from wirekit.tour.recording import TourRecording

__all__ = ["inspect_recording"]


def _summarise(path: str) -> Any:
    from wirekit.dissect.summary import Summary
    from wirekit.pcapng.reader import open_buffer

    summary = Summary()
    with open(path, "rb") as f:
        buf = open_buffer(f)
        try:
            summary.run(buf)
        finally:
            if hasattr(buf, "close"):
                buf.close()
    return summary


async def inspect_recording(n: Narrator) -> None:
    rec = n.recording
    if rec is None:
        raise SectionSkipped("the tour ran with --no-record: there is no file to inspect")
    if rec.empty:
        raise SectionSkipped("no section recorded anything (run the TCP, UDP and TLS "
                             "sections too)")
    from wirekit.report.inspect import summary_text

    n.step("Close the recording and inspect it, as tshark -z conv,tcp would")
    await rec.recorder.aclose()
    if rec.recorder.error is not None:  # a full disk: the tour went on, the file is short
        raise AssertionError(rec.recorder.error)
    n.command(f"wirekit inspect {rec.path}")
    n.say(f"{rec.recorder.summary()}")
    summary = await asyncio.to_thread(_summarise, rec.path)
    if summary.error is not None:
        raise AssertionError(f"the recording is damaged: {summary.error}")
    n.block(summary_text(summary))
    _check(n, rec, summary)
    _explain(n, rec)


def _by_port(summary: Any, proto: str, port: int, side: str) -> list[Any]:
    suffix = f":{port}"
    return [c for c in summary.conversations if c.proto == proto
            and getattr(c, f"{side}_text").endswith(suffix)]


def _check(n: Narrator, rec: TourRecording, summary: Any) -> None:
    n.step("What the file shows, checked against what the tour did")
    for port, service in rec.tcp.items():
        convs = _by_port(summary, "tcp", port, "server")
        if not convs:
            raise AssertionError(f"no TCP conversation with the {service} server (:{port})")
        if any(c.opened_state != "handshake" for c in convs):
            raise AssertionError(f"the {service} conversation lacks its three-way handshake")
        n.ok(f"{service} server :{port}: {len(convs)} conversation(s), each opened by "
             "SYN, SYN-ACK, ACK and closed by " + "/".join(sorted({str(c.closed_state)
                                                                    for c in convs})))
    for uri in rec.http_uris:
        hits = [h for h in summary.http if h["method"] == "GET" and h["uri"] == uri]
        if not hits or hits[0]["status"] != 200:
            raise AssertionError(f"no GET {uri} answered 200 in the recording: {summary.http}")
        n.ok(f"GET {uri} -> {hits[0]['status']} {hits[0]['reason']}, "
             f"{hits[0]['response_body_size']} body bytes")
    for port in rec.udp:
        convs = _by_port(summary, "udp", port, "server")
        if not convs or convs[0].packets[0] < 1 or convs[0].packets[1] < 1:
            raise AssertionError(f"no UDP exchange with :{port} in the recording")
        n.ok(f"UDP :{port}: {convs[0].packets[0]} datagram(s) out, "
             f"{convs[0].packets[1]} back, no handshake and no close")
    tls_convs = {c.id: c for c in summary.conversations if c.proto == "tcp"}
    for port, version in rec.tls.items():
        entry = next((t for t in summary.tls if t["conversation"] in tls_convs
                      and tls_convs[t["conversation"]].client_text.endswith(f":{port}")), None)
        if entry is None or not entry["client_hello"] or not entry["server_hello"]:
            raise AssertionError(f"no TLS ClientHello and ServerHello from client :{port}")
        suites = entry["client_hello"]["cipher_suites"]
        chosen = entry["server_hello"]["cipher_suite"]
        if not suites or chosen not in suites:
            raise AssertionError(f"the ServerHello's {chosen} is not among the offered {suites}")
        n.ok(f"TLS from :{port}: the ClientHello offers {len(suites)} suites, the ServerHello "
             f"chooses {chosen} ({entry['server_hello']['version']})")
        ticket = entry["new_session_ticket"]
        if version == "1.2":
            if not entry["certificates"] or ticket is None:
                raise AssertionError("the TLS 1.2 handshake should show its Certificate and "
                                     "NewSessionTicket in clear")
            n.ok(f"TLS 1.2 in clear: Certificate {entry['certificates'][0].get('subject')}, "
                 f"NewSessionTicket ({ticket.get('ticket_length')} bytes, lifetime "
                 f"{ticket.get('lifetime')}s)")
        else:
            n.ok("TLS 1.3: everything after the ServerHello (certificate, Finished, the "
                 "tickets, the time) is encrypted application data records")


def _explain(n: Narrator, rec: TourRecording) -> None:
    path = rec.path
    n.step("Open it in Wireshark")
    n.command(f"wireshark {path}")
    n.say("The session keys are inside the file (a Decryption Secrets Block), so Wireshark "
          "decrypts the TLS connections without a key-log file: the TLS 1.3 Certificate, "
          "NewSessionTicket and the time appear under 'Decrypted TLS'.  wirekit inspect "
          "does not decrypt: it shows what a passive observer sees.")
    n.command(f"tshark -r {path} -q -z conv,tcp -z conv,udp")
    n.command(f"tshark -r {path} -Y http")
    n.command(f"tshark -r {path} -Y 'tls.handshake.type == 4'   # the tickets, decrypted")
    n.command(f"tshark -r {path} -Y tls.handshake -T fields -e tcp.stream "
              "-e tls.handshake.type -e tls.handshake.ciphersuite")
    n.command(f"wirekit inspect {path} --follow 0")
