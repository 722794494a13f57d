"""``--crl`` for ``connect tls://`` and ``forward LISTEN tls://TARGET``: a server whose
certificate a CRL from its issuer lists is refused with the ``revoked`` verdict, as
``wirekit tls --crl`` judges it; a certificate the CRL does not list connects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

import wirekit
from wirekit.errors import CertificateError, UsageError
from wirekit.net.forward import ConnectionEnded, forward
from wirekit.net.forward_tls import TargetTLS
from wirekit.net.tcp import connect
from wirekit.tls import certs

HOST = "127.0.0.1"


@dataclass(frozen=True)
class PKI:
    ca: Path
    crl: Path
    crl_der: Path
    other_crl: Path  # a CRL for another CA: does not cover our leaves
    revoked: tuple[Path, Path]
    good: tuple[Path, Path]
    revoked_serial: int
    under_revoked_ca: tuple[Path, Path]  # a good leaf whose intermediate CA is revoked
    revoked_ca_serial: int


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("crl")
    root_key = certs.generate_key("ec")
    root = certs.new_ca(root_key, common_name="CRL Root")
    other_key = certs.generate_key("ec")
    other = certs.new_ca(other_key, common_name="Other Root")

    def leaf(name: str) -> tuple[tuple[Path, Path], int]:
        key = certs.generate_key("ec")
        cert = certs.new_leaf([HOST], key, issuer=root, issuer_key=root_key)
        return (certs.write_certificates(d / f"{name}.pem", [cert]),
                certs.write_private_key(d / f"{name}-key.pem", key)), cert.serial_number

    revoked, serial = leaf("revoked")
    good, _ = leaf("good")
    inter_key = certs.generate_key("ec")
    inter = certs.new_ca(inter_key, common_name="Revoked Intermediate", issuer=root,
                         issuer_key=root_key, path_length=0)
    below_key = certs.generate_key("ec")
    below = certs.new_leaf([HOST], below_key, issuer=inter, issuer_key=inter_key)
    under = (certs.write_certificates(d / "under.pem", [below, inter]),
             certs.write_private_key(d / "under-key.pem", below_key))
    crl = certs.new_crl(root, root_key, [serial, inter.serial_number])
    (d / "root.crl").write_bytes(crl.public_bytes(Encoding.PEM))
    (d / "root.der").write_bytes(crl.public_bytes(Encoding.DER))
    (d / "other.crl").write_bytes(
        certs.new_crl(other, other_key, [serial]).public_bytes(Encoding.PEM))
    return PKI(certs.write_certificates(d / "ca.pem", [root]), d / "root.crl", d / "root.der",
               d / "other.crl", revoked, good, serial, under, inter.serial_number)


async def _echo(pair: tuple[Path, Path]) -> wirekit.Server:
    return await wirekit.serve("echo", f"tls://{HOST}:0", cert=pair[0], key=pair[1])


def _url(server: wirekit.Server) -> str:
    return f"tls://{HOST}:{server.address.port}"


async def test_library_refuses_revoked_certificate(pki: PKI) -> None:
    async with await _echo(pki.revoked) as server:
        with pytest.raises(CertificateError) as info:
            await connect(_url(server), ca=pki.ca, crl=pki.crl, timeout=5)
    assert "revoked" in str(info.value)
    assert f"{pki.revoked_serial:x}" in str(info.value)
    assert "revoked" in [v.code for v in info.value.verdicts]


async def test_library_der_crl_and_list_of_files(pki: PKI) -> None:
    async with await _echo(pki.revoked) as server:
        with pytest.raises(CertificateError, match="revoked"):
            await connect(_url(server), ca=pki.ca, crl=[pki.other_crl, pki.crl_der], timeout=5)


async def test_library_connects_when_not_revoked(pki: PKI) -> None:
    async with await _echo(pki.good) as server:
        conn = await connect(_url(server), ca=pki.ca, crl=pki.crl, timeout=5)
        try:
            await conn.send(b"hi\n")
            assert await conn.recvline() == b"hi\n"
        finally:
            await conn.aclose()


async def test_crl_of_another_issuer_does_not_refuse(pki: PKI) -> None:
    # as wirekit tls: a certificate whose issuer has no CRL given is not checked
    async with await _echo(pki.revoked) as server:
        conn = await connect(_url(server), ca=pki.ca, crl=pki.other_crl, timeout=5)
        await conn.aclose()


async def test_crl_with_insecure_is_a_usage_error(pki: PKI) -> None:
    with pytest.raises(UsageError, match="--crl"):
        await connect("tls://127.0.0.1:1", insecure=True, crl=pki.crl, timeout=5)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wirekit", *args], capture_output=True,
                          text=True, timeout=30, check=False)


def _serve_proc(wirekit_proc, pair: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    p = wirekit_proc("serve", "echo", f"tls://{HOST}:0", "--cert", str(pair[0]),
                     "--key", str(pair[1]))
    return p.listening()


def test_cli_connect_revoked_exits_1_naming_revoked(pki: PKI, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    _, _, port = _serve_proc(wirekit_proc, pki.revoked)
    done = _cli("connect", f"tls://{HOST}:{port}", "--ca", str(pki.ca), "--crl", str(pki.crl),
                "--no-stdin", "--send", "x")
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "revoked" in lines[0], done.stderr
    assert f"serial {pki.revoked_serial:x}" in lines[0]
    # and the same server without --crl is trusted (the CRL is what refuses it)
    ok = _cli("connect", f"tls://{HOST}:{port}", "--ca", str(pki.ca), "--no-stdin",
              "--send", "x\n", "--wait", "2", "-q")
    assert ok.returncode == 0, ok
    assert ok.stdout == "x\n"


# -- forward LISTEN tls://TARGET (originating) ----------------------------------------------


async def _until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_forward_to_revoked_target_resets_client_naming_revoked(pki: PKI) -> None:
    received: list[bytes] = []

    async def sink(conn) -> None:  # type: ignore[no-untyped-def]
        received.append(await conn.recv(100))

    events: list[ConnectionEnded] = []
    async with await wirekit.serve(sink, f"tls://{HOST}:0", cert=pki.revoked[0],
                                   key=pki.revoked[1]) as server:
        fwd = await forward(f"{HOST}:0", _url(server), on_event=events.append,
                            target_tls=TargetTLS(ca=pki.ca, crl=(pki.crl,)))
        try:
            r, w = await asyncio.open_connection(HOST, fwd.address.port)
            with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
                w.write(b"secret")
                await asyncio.wait_for(r.readexactly(1), 10)
            w.close()
            await _until(lambda: bool(events))
        finally:
            await fwd.aclose(0)
    assert events[0].reason == "tls failed", events
    assert "revoked" in events[0].detail and f"{pki.revoked_serial:x}" in events[0].detail
    assert events[0].bytes_down == 0
    assert b"secret" not in b"".join(received)  # nothing reached the revoked server


async def test_forward_to_good_target_with_crl_relays(pki: PKI) -> None:
    async with await _echo(pki.good) as server:
        fwd = await forward(f"{HOST}:0", _url(server),
                            target_tls=TargetTLS(ca=pki.ca, crl=(pki.crl,)))
        try:
            r, w = await asyncio.open_connection(HOST, fwd.address.port)
            w.write(b"hello\n")
            assert await asyncio.wait_for(r.readexactly(6), 10) == b"hello\n"
            w.close()
        finally:
            await fwd.aclose(0)


def test_cli_forward_connection_line_names_revoked(pki: PKI, wirekit_proc) -> None:  # type: ignore[no-untyped-def]
    _, _, port = _serve_proc(wirekit_proc, pki.revoked)
    fwd = wirekit_proc("forward", f"{HOST}:0", f"tls://{HOST}:{port}", "--ca", str(pki.ca),
                       "--crl", str(pki.crl))
    _, _, fport = fwd.listening()
    with socket.create_connection((HOST, fport), timeout=10) as s:
        s.sendall(b"x")
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(1) == b""
    line = fwd.wait_line(r"tls failed.*revoked").group(0)
    assert f"serial {pki.revoked_serial:x}" in line


async def test_revoked_intermediate_is_refused(pki: PKI) -> None:
    # every certificate of the chain is checked (the leaf's issuer has no CRL given here)
    async with await _echo(pki.under_revoked_ca) as server:
        with pytest.raises(CertificateError, match="revoked") as info:
            await connect(_url(server), ca=pki.ca, crl=pki.crl, timeout=5)
    assert f"{pki.revoked_ca_serial:x}" in str(info.value)


@pytest.mark.parametrize(("which", "crl", "codes"), [
    ("revoked", "crl", ["revoked"]),
    ("revoked", "other_crl", []),
    ("good", "crl", []),
    ("under_revoked_ca", "crl", ["revoked"]),
])
def test_connect_agrees_with_wirekit_tls(pki: PKI, wirekit_proc, which: str, crl: str,  # type: ignore[no-untyped-def]
                                         codes: list[str]) -> None:
    _, _, port = _serve_proc(wirekit_proc, getattr(pki, which))
    crl_path = str(getattr(pki, crl))
    probe = _cli("tls", f"{HOST}:{port}", "--ca", str(pki.ca), "--crl", crl_path, "--json")
    report = json.loads(probe.stdout)
    assert [v["code"] for v in report["verdicts"] if v["severity"] == "error"] == codes
    conn = _cli("connect", f"tls://{HOST}:{port}", "--ca", str(pki.ca), "--crl", crl_path,
                "--no-stdin", "--wait", "0.2", "-q")  # exit 0 once quiet: no reply is awaited
    assert (probe.returncode, conn.returncode) == ((1, 1) if codes else (0, 0)), (probe, conn)
    assert ("revoked" in conn.stderr) == bool(codes)
