"""The secure defaults of every wirekit TLS context."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from wirekit.errors import UsageError
from wirekit.tls import certs
from wirekit.tls.context import (
    MOZILLA_INTERMEDIATE_TLS12,
    client_context,
    parse_version,
    server_context,
    server_hostname,
)

# Mozilla server-side TLS guidelines 6.0, configuration "intermediate", ciphers.openssl.
MOZILLA_6_0_INTERMEDIATE = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
]


def _tls12_suites(ctx: ssl.SSLContext) -> list[str]:
    return [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]


@pytest.fixture(scope="module")
def leaf_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("defaults")
    ca = certs.LocalCA.init(d / "ca")
    issued = ca.issue(["localhost"], d / "leaf")
    return issued.cert_path, issued.key_path


def test_client_defaults() -> None:
    ctx = client_context(environ={})
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert _tls12_suites(ctx) == MOZILLA_6_0_INTERMEDIATE
    assert list(MOZILLA_INTERMEDIATE_TLS12) == MOZILLA_6_0_INTERMEDIATE
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
    assert ctx.keylog_filename is None
    # Nothing weaker than TLS 1.2 can be negotiated, whatever the peer offers.
    assert all(c["protocol"] in ("TLSv1.2", "TLSv1.3") for c in ctx.get_ciphers())


def test_server_defaults(leaf_files: tuple[Path, Path]) -> None:
    cert, key = leaf_files
    ctx = server_context(cert=cert, key=key, environ={})
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert _tls12_suites(ctx) == MOZILLA_6_0_INTERMEDIATE
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    assert ctx.verify_mode == ssl.CERT_NONE
    mtls = server_context(cert=cert, key=key, client_ca=cert, require_client_cert=True,
                          environ={})
    assert mtls.verify_mode == ssl.CERT_REQUIRED


def test_only_insecure_turns_verification_off() -> None:
    ctx = client_context(insecure=True, environ={})
    assert ctx.verify_mode == ssl.CERT_NONE and ctx.check_hostname is False
    assert _tls12_suites(ctx) == MOZILLA_6_0_INTERMEDIATE  # insecure does not weaken crypto


def test_versions() -> None:
    ctx = client_context(min_version="1.3", environ={})
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    ctx = client_context(max_version="1.2", environ={})
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    assert parse_version("TLSv1.3") == ssl.TLSVersion.TLSv1_3
    for bad in ("1.1", "1.0", "3"):
        with pytest.raises(UsageError):
            parse_version(bad)
    with pytest.raises(UsageError):
        client_context(min_version="1.3", max_version="1.2", environ={})


def test_sni_never_for_ip_literals() -> None:
    assert server_hostname("example.test") == "example.test"
    assert server_hostname("127.0.0.1", sni="name.test") == "name.test"
    assert server_hostname("example.test", no_sni=True) is None
    # The ssl module itself never sends an IP literal as SNI; we pass it for the IP-SAN check.
    assert server_hostname("::1") == "::1"


def test_custom_ca_replaces_system_roots(leaf_files: tuple[Path, Path]) -> None:
    ca_file = leaf_files[0].parent / "ca" / "ca.pem"
    system = client_context(environ={})
    custom = client_context(ca=ca_file, environ={})
    assert len(custom.get_ca_certs()) == 1
    assert len(system.get_ca_certs()) != 1 or not Path(ssl.get_default_verify_paths().cafile
                                                       or "/nonexistent").exists()
    with pytest.raises(UsageError, match="no such file"):
        client_context(ca="/nonexistent/ca.pem", environ={})


def test_keylog_starts_fresh_and_private(tmp_path: Path) -> None:
    log = tmp_path / "keys.log"
    log.write_text("old secrets\n")
    old = os.umask(0)
    try:
        ctx = client_context(keylog=log, environ={})
    finally:
        os.umask(old)
    assert ctx.keylog_filename == str(log)
    assert "old secrets" not in log.read_text()
    assert (log.stat().st_mode & 0o777) == 0o600


def test_sslkeylogfile_is_honoured(tmp_path: Path) -> None:
    log = tmp_path / "env.log"
    ctx = client_context(environ={"SSLKEYLOGFILE": str(log)})
    assert ctx.keylog_filename == str(log)
