"""``wirekit tls`` end to end against an in-process TLS server (no peer tools needed)."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from wirekit.cli.main import main
from wirekit.tls import certs
from wirekit.tls.context import server_context


class Pki:
    def __init__(self, d: Path) -> None:
        self.ca = certs.LocalCA.init(d / "ca")
        self.server = self.ca.issue(["localhost", "127.0.0.1"], d / "server")
        self.client = self.ca.issue(["alice"], d / "alice", client=True)
        self.ca_file = str(self.ca.cert_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("tlscli"))


class Server:
    """A TLS server in a thread: handshakes each connection, then waits for the client's EOF."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    while tls.recv(1024):
                        pass
            except (ssl.SSLError, OSError) as exc:
                self.errors.append(str(exc))
            finally:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def serve(pki: Pki) -> Iterator[object]:
    servers: list[Server] = []

    def start(**kw: object) -> int:
        ctx = server_context(cert=pki.server.cert_path, key=pki.server.key_path,
                             environ={}, **kw)  # type: ignore[arg-type]
        server = Server(ctx)
        servers.append(server)
        return server.port

    yield start
    for server in servers:
        server.close()


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["tls", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["x.test:1", "--sni", "a.test", "--no-sni"], ["bad host:1"],
                 ["x.test:1", "--min-version", "1.1"], ["x.test:99999"],
                 ["x.test:1", "--key", "k.pem"], ["udp://x.test:1"]):
        code, _, err = _run(capsys, *args)
        assert code == 2, (args, err)
        assert "Traceback" not in err


def test_connection_refused_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = s.getsockname()[1]
        code, out, err = _run(capsys, f"127.0.0.1:{port}", "--timeout", "5")
    assert code == 1 and out == ""
    assert err.strip() == f"wirekit: error: connection refused by 127.0.0.1:{port}"


def test_verified_human_and_json(pki: Pki, serve: object,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    port = serve(alpn=["h2", "http/1.1"])  # type: ignore[operator]
    code, out, _ = _run(capsys, f"localhost:{port}", "--ca", pki.ca_file, "--alpn", "h2")
    assert code == 0
    assert "✔ verified" in out and "CN=localhost" in out
    code, out, _ = _run(capsys, f"localhost:{port}", "--ca", pki.ca_file, "--json",
                        "--alpn", "spdy/1,h2")
    report = json.loads(out)
    assert code == 0 and report["verified"] is True and report["verdicts"] == []
    assert report["alpn"] == "h2" and report["sni"] == "localhost"
    assert report["address"] == f"localhost:{port}"
    assert set(report) >= {"address", "sni", "verified", "protocol", "cipher", "alpn",
                           "verdicts", "chain"}
    assert set(report["chain"][0]) == {"subject", "issuer", "san", "not_before", "not_after",
                                       "serial", "sha256", "key", "signature_algorithm"}


def test_keylog(pki: Pki, serve: object, tmp_path: Path,
                capsys: pytest.CaptureFixture[str]) -> None:
    port = serve()  # type: ignore[operator]
    log = tmp_path / "keys.log"
    log.write_text("stale\n")
    code, _, _ = _run(capsys, f"127.0.0.1:{port}", "--ca", pki.ca_file, "--keylog", str(log))
    assert code == 0
    text = log.read_text()
    assert "stale" not in text
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in text and "EXPORTER_SECRET" in text
    assert log.stat().st_mode & 0o777 == 0o600


def test_untrusted_fails_and_insecure_reports(pki: Pki, serve: object,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    port = serve()  # type: ignore[operator]
    code, out, err = _run(capsys, f"127.0.0.1:{port}", "--sni", "wrong.test", "--ca",
                          pki.ca_file)
    assert code == 1 and "✘ NOT verified" in out and "hostname_mismatch" in out
    assert err.startswith("wirekit: error: certificate of 127.0.0.1:")
    assert "'wrong.test' is not in the certificate's names: localhost, 127.0.0.1" in err
    code, out, err = _run(capsys, f"127.0.0.1:{port}", "--sni", "wrong.test", "--ca",
                          pki.ca_file, "--insecure")
    assert code == 0 and "hostname_mismatch" in out
    assert "--insecure" in err and "NOT verified" in err


def test_client_certificate(pki: Pki, serve: object,
                            capsys: pytest.CaptureFixture[str]) -> None:
    port = serve(client_ca=pki.ca_file, require_client_cert=True)  # type: ignore[operator]
    # TLS 1.2: the server refuses the handshake itself when no client certificate comes.
    code, _, err = _run(capsys, f"127.0.0.1:{port}", "--ca", pki.ca_file, "--max-version", "1.2")
    assert code == 1 and "TLS handshake with 127.0.0.1" in err
    code, out, err = _run(capsys, f"127.0.0.1:{port}", "--ca", pki.ca_file, "--max-version",
                          "1.2", "--cert", str(pki.client.cert_path), "--key",
                          str(pki.client.key_path), "--json")
    assert code == 0, err
    assert json.loads(out)["protocol"] == "TLSv1.2"


@pytest.mark.parametrize("command", [["tls"], ["cert"], ["cert", "init"], ["cert", "issue"],
                                     ["cert", "show"]])
def test_help_has_examples(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out, _ = capsys.readouterr()
    assert "Examples:" in out and "wirekit " in out.split("Examples:", 1)[1]


def test_chain_from_an_ssl_object_explains_a_failure(tmp_path: Path) -> None:
    """The recipe for connect/serve: handshake over memory BIOs (as asyncio does), then
    judge the chain the peer sent; here the client does not trust the CA."""
    import datetime as dt

    from wirekit.net.tlsprobe import unverified_chain
    from wirekit.tls.context import client_context
    from wirekit.tls.inspect import Trust, inspect_chain

    ca = certs.LocalCA.init(tmp_path / "ca")
    issued = ca.issue(["localhost"], tmp_path / "s", intermediate=True)
    stranger = certs.LocalCA.init(tmp_path / "other")
    client = client_context(ca=stranger.cert_path, environ={})
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    server = server_context(cert=issued.cert_path, key=issued.key_path, environ={})
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = unverified_chain(c)
    assert len(der) == 2
    chain, check = inspect_chain(der, "localhost", Trust.from_file(stranger.cert_path),
                                 now=dt.datetime.now(dt.UTC))
    assert chain[0] == issued.chain[0]
    assert check.codes == ("untrusted_root",)


def test_handshake_trace_human(pki: Pki, serve: object,
                               capsys: pytest.CaptureFixture[str]) -> None:
    port = serve()  # type: ignore[operator]
    code, out, _ = _run(capsys, f"127.0.0.1:{port}", "--ca", pki.ca_file, "--handshake")
    assert code == 0
    lines = [line.split()[:3] for line in out.splitlines() if line.startswith(("→", "←"))]
    assert lines[0] == ["→", "client", "ClientHello"]
    assert lines[1] == ["←", "server", "ServerHello"]
    assert ["←", "server", "EncryptedExtensions"] in lines
    code, out, _ = _run(capsys, f"127.0.0.1:{port}", "--ca", pki.ca_file, "--handshake", "-v")
    assert "extension supported_versions" in out and "cipher_suite: TLS_" in out
