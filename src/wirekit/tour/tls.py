"""The chapter's second half: a CA, a TLS time server, the chain, the verdict, the
handshake message by message, and a man in the middle (a self-signed server) refused."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wirekit
from wirekit.errors import CertificateError
from wirekit.tls import certs
from wirekit.tour.basics import _check_ctime, ask_time
from wirekit.tour.narrator import Narrator
from wirekit.tour.recording import DEFAULT_PATH

if TYPE_CHECKING:
    from wirekit.net.stream import Connection

__all__ = ["tls_time"]

EXPECTED_FLIGHT = ("ClientHello", "ServerHello", "EncryptedExtensions", "Certificate",
                   "CertificateVerify", "Finished", "NewSessionTicket")


async def tls_time(n: Narrator) -> None:
    with tempfile.TemporaryDirectory(prefix="wirekit-tour-") as tmp:
        d = Path(tmp)
        n.step("Make a certificate authority (in a temporary directory, not your own CA)")
        n.command(f"wirekit cert init --dir {d / 'ca'}")
        ca = certs.LocalCA.init(d / "ca", common_name="wirekit tour CA")
        n.say(f"CA certificate {ca.cert_path} (its key never leaves {ca.directory})")

        n.step("Issue a certificate for localhost")
        n.command(f"wirekit cert issue localhost 127.0.0.1 --dir {d / 'ca'} "
                  f"--out {d / 'localhost'}")
        issued = ca.issue(["localhost", "127.0.0.1"], d / "localhost")
        n.say(f"{issued.cert_path.name}, and its key {issued.key_path.name} (mode 0600)")

        n.step("Start the time server over TLS")
        n.command("wirekit serve time tls://:12345 --cert localhost.pem --key localhost-key.pem")
        async with await wirekit.serve("time", "tls://127.0.0.1:0", cert=issued.cert_path,
                                       key=issued.key_path) as server:
            port = server.address.port
            n.say(f"listening on {server.address}")
            await _ask_time(n, port, ca.cert_path)
            if n.recording is not None:
                await _ask_time_tls12(n, port, ca.cert_path)
            report = await _probe(n, port, ca.cert_path)
            _show_chain(n, report)
            _show_handshake(n, report.handshake or ())
        await _refuse_self_signed(n, d, ca.cert_path)


@contextlib.asynccontextmanager
async def _recorded_connect(n: Narrator, port: int, ca: Path,
                            max_version: str | None = None) -> AsyncIterator[Connection]:
    """``wirekit.connect`` to the TLS time server; with the tour recording, the ciphertext
    that crossed the wire and the session keys go into the tour's file."""
    tap = n.recording.tls_tap() if n.recording is not None else None
    conn = await wirekit.connect(f"tls://localhost:{port}", ca=ca, max_version=max_version,
                                 tls_hook=tap.context_hook if tap is not None else None)
    if tap is not None and n.recording is not None:
        tap.bind(conn.local, conn.peer)
        n.recording.tls[conn.local.port] = max_version or "default"
    try:
        async with conn:
            yield conn
    finally:
        if tap is not None:
            tap.end()


async def _ask_time_tls12(n: Narrator, port: int, ca: Path) -> None:
    n.step("For the recording: once more over TLS 1.2, whose handshake travels in clear")
    n.say("TLS 1.3 encrypts everything after the ServerHello (certificate, ticket); a TLS 1.2 "
          "connection shows the Certificate and NewSessionTicket to anyone on the wire")
    n.command(f"wirekit connect tls://localhost:{port} --ca ca.pem --max-version 1.2 "
              f"--send 'GET TIME' --record {DEFAULT_PATH}")
    async with _recorded_connect(n, port, ca, max_version="1.2") as conn:
        sslobj = conn.writer.get_extra_info("ssl_object")
        await conn.send(b"GET TIME")
        reply = await conn.recv(timeout=5)
        _check_ctime(reply)
        n.ok(f"{sslobj.version()} with {sslobj.cipher()[0]}: the time again")


async def _ask_time(n: Narrator, port: int, ca: Path) -> None:
    n.step("Connect, verify the server, ask for the time")
    record = f" --record {DEFAULT_PATH}" if n.recording is not None else ""
    n.command(f"wirekit connect tls://localhost:{port} --ca ca.pem --send 'GET TIME'{record}")
    async with _recorded_connect(n, port, ca) as conn:
        sslobj = conn.writer.get_extra_info("ssl_object")
        n.say(f"{sslobj.version()} with {sslobj.cipher()[0]}; the certificate is trusted "
              "and carries the name 'localhost'")
        stamp, _ = await ask_time(n, conn)
        n.ok(f"the server's clock says {stamp}, and nobody on the way could read or change it")


async def _probe(n: Narrator, port: int, ca: Path) -> Any:
    from wirekit.net.tlsprobe import probe

    n.step("The certificate chain and the verdict, as wirekit tls reports them")
    n.command(f"wirekit tls localhost:{port} --ca ca.pem --handshake")
    # wirekit tls's probe is a blocking one-shot; the server runs on this loop.
    return await asyncio.to_thread(probe, "localhost", port, ca=ca, handshake=True, timeout=5)


def _show_chain(n: Narrator, report: Any) -> None:
    from wirekit.tls.certinfo import describe

    for i, cert in enumerate(report.chain):
        info = describe(cert)
        n.say(f"certificate #{i}: subject {info.subject}")
        n.say(f"    issuer {info.issuer}; names {', '.join(info.san)}")
        n.say(f"    valid until {info.not_after:%Y-%m-%d}; key {info.key}; "
              f"signed with {info.signature_algorithm}")
    path = " -> ".join(describe(c).subject for c in report.check.path)
    n.say(f"verified path: {path}")
    if not report.verified:
        reasons = "; ".join(v.message for v in report.check.errors)
        raise AssertionError(f"expected the chain to verify: {reasons}")
    warnings = [v.code for v in report.check.verdicts]
    n.ok("verdict: verified" + (f" (warnings: {', '.join(warnings)})" if warnings else
                                ", no warnings"))


def _show_handshake(n: Narrator, messages: Any) -> None:
    n.step("The handshake, message by message (TLS 1.3's encrypted ones seen from inside)")
    for msg in messages:
        sender, kind = msg.get("direction", "?"), msg.get("type", "?")
        arrow = "->" if sender == "client" else "<-"
        line = f"{arrow} {sender:6} {kind}"
        if kind == "ClientHello":
            suites = msg.get("cipher_suites", [])
            n.say(f"{line}: offers {len(suites)} cipher suites")
            for start in range(0, len(suites), 3):
                n.say("        " + ", ".join(str(s) for s in suites[start:start + 3]))
            names = [str(e.get("name")) for e in msg.get("extensions", [])]
            n.say(f"        extensions: {', '.join(names)}")
        elif kind == "ServerHello":
            n.say(f"{line}: chooses {msg.get('cipher_suite')} "
                  f"({msg.get('version', msg.get('selected_version', ''))})")
        elif kind == "Certificate":
            subjects = [str(c.get("subject")) for c in msg.get("certificates", [])]
            n.say(f"{line}: {', '.join(subjects)}")
        else:
            n.say(line)
    seen = [str(m.get("type")) for m in messages]
    missing = [t for t in EXPECTED_FLIGHT if t not in seen]
    if missing:
        raise AssertionError(f"the trace lacks {', '.join(missing)}: {seen}")
    n.ok("ClientHello, ServerHello, EncryptedExtensions, Certificate, CertificateVerify, "
         "Finished and the server's NewSessionTicket, all traced")


async def _refuse_self_signed(n: Narrator, d: Path, ca: Path) -> None:
    n.step("A man in the middle: a server with a self-signed certificate for localhost")
    n.command("wirekit serve time tls://:12346 --cert self-signed.pem --key self-signed-key.pem")
    key = certs.generate_key()
    leaf = certs.new_leaf(["localhost", "127.0.0.1"], key, issuer=None, issuer_key=key)
    cert_path = certs.write_certificates(d / "self-signed.pem", [leaf])
    key_path = certs.write_private_key(d / "self-signed-key.pem", key)
    async with await wirekit.serve("time", "tls://127.0.0.1:0", cert=cert_path,
                                   key=key_path) as server:
        port = server.address.port
        n.command(f"wirekit connect tls://localhost:{port} --ca ca.pem --send 'GET TIME'")
        try:
            conn = await wirekit.connect(f"tls://localhost:{port}", ca=ca)
        except CertificateError as exc:
            codes = ", ".join(v.code for v in getattr(exc, "verdicts", ()))
            n.say(f"wirekit: error: {exc}")
            n.ok(f"refused before a byte was sent (verdict: {codes}); exit code 1")
            return
        await conn.aclose()
        raise AssertionError("the self-signed server was trusted")
