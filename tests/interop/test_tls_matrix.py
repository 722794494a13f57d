"""The certificate matrix: each bad certificate served by a real ``openssl s_server``,
checked by ``wirekit tls --json`` for exactly the expected verdict codes and exit code,
over TLS 1.2 and TLS 1.3.  Every key and certificate is made here, in the test session.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509

from conftest import free_port, need_peer
from wirekit.tls import certs

pytestmark = pytest.mark.peer("openssl")

NOW = dt.datetime.now(dt.UTC)
DAY = dt.timedelta(days=1)
HOST = "localhost"


@dataclass(frozen=True)
class Case:
    cert: Path
    key: Path
    expected: tuple[str, ...]
    chain: Path | None = None
    weak: bool = False  # the test server (never the client) needs OpenSSL security level 0
    args: tuple[str, ...] = field(default=())
    server_args: tuple[str, ...] = field(default=())


class Files:
    def __init__(self, d: Path) -> None:
        self.d = d

    def write(self, name: str, chain: Sequence[x509.Certificate], key: certs.PrivateKey,
              extra: Sequence[x509.Certificate] = ()) -> tuple[Path, Path, Path | None]:
        cert_path = certs.write_certificates(self.d / f"{name}.pem", list(chain))
        key_path = certs.write_private_key(self.d / f"{name}-key.pem", key)
        chain_path = (certs.write_certificates(self.d / f"{name}-chain.pem", list(extra))
                      if extra else None)
        return cert_path, key_path, chain_path


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Case]]:
    d = tmp_path_factory.mktemp("matrix")
    files = Files(d)
    root_key = certs.generate_key("ec")
    root = certs.new_ca(root_key, common_name="Matrix Root")
    inter_key = certs.generate_key("ec")
    inter = certs.new_ca(inter_key, common_name="Matrix Intermediate", issuer=root,
                         issuer_key=root_key, path_length=0)
    other_key = certs.generate_key("ec")
    other = certs.new_ca(other_key, common_name="Stranger Root")
    other_inter_key = certs.generate_key("ec")
    other_inter = certs.new_ca(other_inter_key, common_name="Stranger Intermediate",
                               issuer=other, issuer_key=other_key, path_length=0)
    ca_file = certs.write_certificates(d / "ca.pem", [root])

    def leaf(name: str, names: Sequence[str] = (HOST, "127.0.0.1"), *, by: str = "root",
             key: str = "ec", expected: tuple[str, ...] = (), weak: bool = False,
             sent_chain: bool = True, args: tuple[str, ...] = (),
             **kw: object) -> tuple[Case, x509.Certificate, certs.PrivateKey]:
        issuer, issuer_key = {"root": (root, root_key), "inter": (inter, inter_key),
                              "other": (other_inter, other_inter_key)}[by]
        private = certs.generate_key(key)
        cert = certs.new_leaf(list(names), private, issuer=issuer, issuer_key=issuer_key,
                              **kw)  # type: ignore[arg-type]
        extra = [issuer] if by != "root" and sent_chain else []
        c, k, ch = files.write(name, [cert], private, extra)
        return Case(c, k, expected, ch, weak, args), cert, private

    cases: dict[str, Case] = {}
    cases["valid"], _, _ = leaf("valid")
    cases["valid_three_links"], _, _ = leaf("valid3", by="inter")
    cases["expired"], _, _ = leaf("expired", not_before=NOW - 90 * DAY, not_after=NOW - 3 * DAY,
                                  expected=("expired",))
    cases["not_yet_valid"], _, _ = leaf("future", not_before=NOW + 3 * DAY,
                                        not_after=NOW + 90 * DAY, expected=("not_yet_valid",))
    cases["wrong_host"], _, _ = leaf("wronghost", ["other.test"],
                                     expected=("hostname_mismatch",))
    self_key = certs.generate_key("ec")
    self_signed = certs.new_leaf([HOST], self_key, issuer=None, issuer_key=self_key)
    c, k, _ = files.write("selfsigned", [self_signed], self_key)
    cases["self_signed"] = Case(c, k, ("self_signed",))
    cases["untrusted_root"], _, _ = leaf("stranger", by="other", expected=("untrusted_root",))
    cases["missing_intermediate"], _, _ = leaf("leafonly", by="inter", sent_chain=False,
                                               expected=("incomplete_chain",))
    cases["rsa_1024"], _, _ = leaf("rsa1024", key="rsa:1024", expected=("weak_key",), weak=True)
    _, plain, plain_key = leaf("sha1-base")
    sha1 = certs.legacy_signed(plain, root_key, "sha1")
    c, k, _ = files.write("sha1", [sha1], plain_key)
    cases["sha1_signature"] = Case(c, k, ("weak_signature",), weak=True)
    cases["client_only_eku"], _, _ = leaf("clientonly", client=True, expected=("wrong_usage",))
    revoked_case, revoked, _ = leaf("revoked", expected=("revoked",))
    crl = certs.new_crl(root, root_key, [revoked.serial_number])
    from cryptography.hazmat.primitives.serialization import Encoding

    crl_file = d / "root.crl"
    crl_file.write_bytes(crl.public_bytes(Encoding.PEM))
    cases["revoked"] = Case(revoked_case.cert, revoked_case.key, ("revoked",),
                            args=("--crl", str(crl_file)))
    cases["not_revoked"] = Case(cases["valid"].cert, cases["valid"].key, (),
                                args=("--crl", str(crl_file)))
    cases["tls_1_0_only"] = Case(cases["valid"].cert, cases["valid"].key, ("legacy_protocol",),
                                 weak=True, server_args=("-tls1",))
    return ca_file, cases


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Servers:
    """``openssl s_server`` processes on free loopback ports; all killed by PID at the end."""

    def __init__(self, openssl: str) -> None:
        self.openssl = openssl
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, case: Case) -> int:
        for _attempt in range(5):
            port = free_port()  # race: someone may take it before s_server binds; retry
            cmd = [self.openssl, "s_server", "-accept", f"127.0.0.1:{port}",
                   "-cert", str(case.cert), "-key", str(case.key), "-www", "-quiet"]
            if case.chain:
                cmd += ["-cert_chain", str(case.chain)]
            if case.weak:
                cmd += ["-cipher", "DEFAULT:@SECLEVEL=0"]
            cmd += case.server_args
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            self.procs.append(proc)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and proc.poll() is None:
                if _accepts(port):
                    return port
                time.sleep(0.02)
            if proc.poll() is None:
                pytest.fail("openssl s_server did not accept connections within 10 s")
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if "in use" not in err:
                pytest.fail(f"openssl s_server exited {proc.returncode}: {err}")
        pytest.fail("no free port for openssl s_server after 5 tries")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            if proc.stderr:
                proc.stderr.close()


@pytest.fixture(scope="module")
def servers(matrix: tuple[Path, dict[str, Case]]) -> Iterator[dict[str, int]]:
    """One s_server per case (distinct certificate files), started once for the module."""
    owner = Servers(need_peer("openssl"))
    try:
        yield {name: owner.start(case) for name, case in matrix[1].items()}
    finally:
        owner.close()


def _wirekit_tls(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "wirekit", "tls", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


CASES = ["valid", "valid_three_links", "expired", "not_yet_valid", "wrong_host", "self_signed",
         "untrusted_root", "missing_intermediate", "rsa_1024", "sha1_signature",
         "client_only_eku", "revoked", "not_revoked"]
PROTOCOLS = {"TLSv1.2": ("--max-version", "1.2"), "TLSv1.3": ("--min-version", "1.3")}
PARALLEL = 4  # wirekit processes at a time: the cost is interpreter start-up, on 2 cores


@pytest.fixture(scope="module")
def results(matrix: tuple[Path, dict[str, Case]], servers: dict[str, int],
            ) -> dict[tuple[str, str], tuple[int, bytes, str]]:
    """``wirekit tls --json`` against every case over both versions, a few at a time."""
    ca_file, cases = matrix
    jobs = [(name, protocol) for name in CASES for protocol in PROTOCOLS]
    running: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
    done: dict[tuple[str, str], tuple[int, bytes, str]] = {}
    try:
        while jobs or running:
            while jobs and len(running) < PARALLEL:
                name, protocol = jobs.pop(0)
                running[(name, protocol)] = _wirekit_tls(
                    f"127.0.0.1:{servers[name]}", "--sni", HOST, "--ca", str(ca_file),
                    "--json", "--timeout", "10", *cases[name].args, *PROTOCOLS[protocol])
            job, proc = next(iter(running.items()))
            out, err = proc.communicate(timeout=60)
            done[job] = (proc.returncode, out, err.decode(errors="replace"))
            del running[job]
    finally:
        for proc in running.values():
            proc.kill()
            proc.communicate()
    return done


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("name", CASES)
def test_certificate_matrix(name: str, protocol: str, matrix: tuple[Path, dict[str, Case]],
                            results: dict[tuple[str, str], tuple[int, bytes, str]]) -> None:
    case = matrix[1][name]
    returncode, out, err = results[(name, protocol)]
    assert out, f"no JSON; stderr: {err}"
    report = json.loads(out)
    codes = sorted(v["code"] for v in report["verdicts"])
    assert codes == sorted(case.expected), report["verdicts"]
    assert report["protocol"] == protocol
    assert report["verified"] is (not case.expected)
    assert returncode == (1 if case.expected else 0), err
    assert report["sni"] == HOST
    assert report["chain"], "the chain as sent is always reported"
    assert all(v["message"] for v in report["verdicts"])
    if case.expected:
        assert err.startswith("wirekit: error: certificate of 127.0.0.1:")
    if protocol == "TLSv1.2":
        assert report["cipher"].startswith("ECDHE-")


def test_ip_literal_sends_no_sni_and_checks_ip_san(matrix: tuple[Path, dict[str, Case]],
                                                     servers: dict[str, int]) -> None:
    ca_file, _ = matrix
    port = servers["valid"]
    proc = _wirekit_tls(f"127.0.0.1:{port}", "--ca", str(ca_file), "--json")
    out, err = proc.communicate(timeout=60)
    report = json.loads(out)
    assert proc.returncode == 0, err.decode()
    assert report["sni"] is None and report["hostname"] == "127.0.0.1"
    assert report["verdicts"] == [] and report["verified"] is True
    assert [c["subject"] for c in report["verified_chain"]][-1].startswith("CN=Matrix Root")


def test_tls_1_0_server_is_reported_not_trusted(matrix: tuple[Path, dict[str, Case]],
                                                servers: dict[str, int]) -> None:
    """Our client refuses TLS 1.0; a report-only legacy handshake still shows the chain."""
    ca_file, _ = matrix
    port = servers["tls_1_0_only"]
    proc = _wirekit_tls(f"127.0.0.1:{port}", "--sni", HOST, "--ca", str(ca_file), "--json")
    out, err = proc.communicate(timeout=60)
    report = json.loads(out)
    assert proc.returncode == 1
    assert report["protocol"] == "TLSv1" and report["verified"] is False
    assert [(v["code"], v["severity"]) for v in report["verdicts"]] == [("legacy_protocol",
                                                                         "error")]
    assert report["chain"][0]["san"] == [HOST, "127.0.0.1"]
    assert b"TLS 1.0" in err
    # Asked for TLS 1.2 at least, there is no fallback: the handshake simply fails.
    strict = _wirekit_tls(f"127.0.0.1:{port}", "--ca", str(ca_file), "--min-version", "1.2")
    out, err = strict.communicate(timeout=60)
    assert strict.returncode == 1 and out == b""
    assert b"TLS handshake with 127.0.0.1" in err


def test_default_trust_is_the_system_not_our_ca(servers: dict[str, int]) -> None:
    port = servers["valid"]
    proc = _wirekit_tls(f"127.0.0.1:{port}", "--sni", HOST, "--json")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert [v["code"] for v in json.loads(out)["verdicts"]] == ["incomplete_chain"]
    insecure = _wirekit_tls(f"127.0.0.1:{port}", "--sni", HOST, "--insecure", "-q")
    out, _ = insecure.communicate(timeout=60)
    assert insecure.returncode == 0  # like curl -k: reported, but not fatal
    assert b"NOT verified" in out


IANA_INTERMEDIATE_TLS12 = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
]


@pytest.mark.parametrize(("version", "expected"), [
    ("1.3", ["ClientHello", "ServerHello", "EncryptedExtensions", "Certificate",
             "CertificateVerify", "Finished", "Finished", "NewSessionTicket"]),
    ("1.2", ["ClientHello", "ServerHello", "Certificate", "ServerKeyExchange",
             "ServerHelloDone", "ClientKeyExchange", "Finished", "NewSessionTicket",
             "Finished"]),
])
def test_handshake_trace_in_json(version: str, expected: list[str],
                                 matrix: tuple[Path, dict[str, Case]],
                                 servers: dict[str, int]) -> None:
    ca_file, _ = matrix
    proc = _wirekit_tls(f"127.0.0.1:{servers['valid']}", "--sni", HOST, "--ca", str(ca_file),
                        "--json", "--handshake", "--min-version", version, "--max-version",
                        version)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    messages = json.loads(out)["handshake"]
    types = [m["type"] for m in messages if m["type"] != "ChangeCipherSpec"]
    assert types[:len(expected)] == expected
    hello = messages[0]
    assert hello["direction"] == "client"
    offered = [s for s in hello["cipher_suites"] if not s.endswith("_SCSV")]
    if version == "1.2":  # what we offer for TLS 1.2 is exactly Mozilla's list, in order
        assert offered == IANA_INTERMEDIATE_TLS12
    else:
        assert sorted(offered) == sorted(["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                          "TLS_CHACHA20_POLY1305_SHA256"])
    assert messages[1]["direction"] == "server"
    assert messages[1]["version"] == f"TLS {version}"
