"""The words wirekit puts on TLS failures in connect/serve (net/tls.py), in memory."""

from __future__ import annotations

import ssl

import pytest

from wirekit.errors import TLSError
from wirekit.net.tls import client_tls, explain_alert, explain_server_failure
from wirekit.tls.context import server_context


def _ssl_error(cls: type[ssl.SSLError], reason: str, **attrs: object) -> ssl.SSLError:
    exc = cls(1, f"[SSL: {reason}] {reason.lower()}")
    exc.reason = reason
    for name, value in attrs.items():
        setattr(exc, name, value)
    return exc


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "the server requires a client certificate"),
        ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "client certificate: it has expired"),
        ("TLSV1_ALERT_UNKNOWN_CA", "it does not trust its issuer"),
        ("TLSV1_ALERT_INTERNAL_ERROR", "the peer sent the alert internal error"),
    ],
)
def test_alerts_in_words(reason: str, words: str) -> None:
    original = TLSError(f"TLS error with 127.0.0.1:8443: {reason}", host="127.0.0.1", port=8443)
    explained = explain_alert(original)
    assert str(explained).startswith("TLS error with 127.0.0.1:8443: ")
    assert words in str(explained) and reason not in str(explained)


def test_other_tls_errors_are_left_alone() -> None:
    original = TLSError("TLS error with h:1: DECRYPTION_FAILED_OR_BAD_RECORD_MAC")
    assert explain_alert(original) is original


def test_server_failure_reasons(tmp_path) -> None:
    from wirekit.tls import certs

    ca = certs.LocalCA.init(tmp_path / "ca")
    issued = ca.issue(["localhost"], tmp_path / "srv")
    ctx = server_context(cert=issued.cert_path, key=issued.key_path, client_ca=ca.cert_path,
                         require_client_cert=True)
    missing = _ssl_error(ssl.SSLError, "PEER_DID_NOT_RETURN_A_CERTIFICATE")
    assert explain_server_failure(missing, ctx, ca.cert_path) == \
        "no client certificate (one is required)"
    http = _ssl_error(ssl.SSLError, "HTTP_REQUEST")
    assert "plain HTTP request" in explain_server_failure(http, ctx, None)
    version = _ssl_error(ssl.SSLError, "UNSUPPORTED_PROTOCOL")
    assert explain_server_failure(version, ctx, None).startswith("no TLS version in common")
    unknown = _ssl_error(ssl.SSLCertVerificationError, "CERTIFICATE_VERIFY_FAILED",
                         verify_message="unable to get local issuer certificate",
                         wk_chain=[], wk_certificate_seen=True)
    assert explain_server_failure(unknown, ctx, ca.cert_path) == \
        "client certificate not trusted: unable to get local issuer certificate"
    assert explain_server_failure(TimeoutError(), ctx, None) == "the handshake timed out"


def test_client_setup() -> None:
    tls = client_tls("127.0.0.1")
    assert tls.server_hostname == "127.0.0.1" and tls.context.check_hostname
    assert tls.context.verify_mode == ssl.CERT_REQUIRED
    named = client_tls("10.0.0.5", sni="mail.internal")
    assert (named.server_hostname, named.checked_name) == ("mail.internal", "mail.internal")
    quiet = client_tls("example.org", no_sni=True)
    assert quiet.server_hostname is None and quiet.check_after
    assert not quiet.context.check_hostname  # the name is checked after the handshake
    assert quiet.context.verify_mode == ssl.CERT_REQUIRED  # the chain still is, by OpenSSL
    insecure = client_tls("example.org", insecure=True)
    assert insecure.context.verify_mode == ssl.CERT_NONE and not insecure.check_after
    with pytest.raises(ValueError, match="contradict"):
        client_tls("example.org", sni="a", no_sni=True)
