"""The local CA, issued certificates, key files, and ``wirekit cert``."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from wirekit.cli.cert import cert as cert_cli
from wirekit.cli.cert import parse_moment
from wirekit.cli.main import main
from wirekit.errors import UsageError, WirekitError
from wirekit.tls import certs


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _verify(leaf: x509.Certificate, roots: list[x509.Certificate],
            intermediates: list[x509.Certificate], name: str) -> None:
    builder = verification.PolicyBuilder().store(verification.Store(roots))
    builder.build_server_verifier(verification.DNSName(name)).verify(leaf, intermediates)


def test_key_files_are_0600_even_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    ca = certs.LocalCA.init(tmp_path / "ca")
    assert _mode(tmp_path / "ca" / "ca-key.pem") == 0o600
    assert _mode(tmp_path / "ca" / "ca.pem") == 0o644
    assert _mode(tmp_path / "ca") == 0o700
    issued = ca.issue(["localhost"], tmp_path / "leaf", intermediate=True)
    assert _mode(issued.key_path) == 0o600
    assert _mode(issued.cert_path) == 0o644
    assert _mode(tmp_path / "ca" / "intermediate-key.pem") == 0o600
    # The CA's keys stay in its directory: only the leaf key was written next to the leaf.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca", "leaf-key.pem", "leaf.pem"]


def test_no_overwrite_without_force(tmp_path: Path) -> None:
    ca = certs.LocalCA.init(tmp_path / "ca")
    with pytest.raises(WirekitError, match="already exists"):
        certs.LocalCA.init(tmp_path / "ca")
    (tmp_path / "ca" / "ca-key.pem").unlink()  # half a CA: still refused, nothing written
    with pytest.raises(WirekitError, match="already exists"):
        certs.LocalCA.init(tmp_path / "ca")
    assert not (tmp_path / "ca" / "ca-key.pem").exists()
    ca = certs.LocalCA.init(tmp_path / "ca", force=True)
    first = ca.issue(["a.test"], tmp_path / "a")
    before = first.key_path.read_bytes()
    with pytest.raises(WirekitError, match="already exists"):
        ca.issue(["a.test"], tmp_path / "a")
    assert first.key_path.read_bytes() == before
    second = ca.issue(["a.test"], tmp_path / "a", force=True)
    assert second.key_path.read_bytes() != before
    with pytest.raises(WirekitError, match="already exists"):
        certs.write_private_key(first.key_path, certs.generate_key())
    with pytest.raises(UsageError, match="CA's own files"):
        ca.issue(["x.test"], tmp_path / "ca" / "ca")


def test_key_write_refuses_a_planted_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    (tmp_path / "k.pem").symlink_to(target)
    with pytest.raises(WirekitError, match="already exists"):
        certs.write_private_key(tmp_path / "k.pem", certs.generate_key())
    assert target.read_text() == "precious"


def test_leaf_extensions(tmp_path: Path) -> None:
    ca = certs.LocalCA.init(tmp_path / "ca")
    leaf = ca.issue(["localhost", "127.0.0.1", "::1"], tmp_path / "leaf").chain[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical is False and len(leaf.subject) > 0
    assert san.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1",
                                                                                  "::1"]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    _verify(leaf, [ca.cert], [], "localhost")  # the strict verifier accepts it

    client = ca.issue(["alice"], tmp_path / "alice", client=True).chain[0]
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_intermediate_chain_has_three_links(tmp_path: Path) -> None:
    ca = certs.LocalCA.init(tmp_path / "ca", key="rsa:2048")
    issued = ca.issue(["api.test"], tmp_path / "api", intermediate=True, key="rsa:2048")
    chain = certs.load_certificates(issued.cert_path)
    assert len(chain) == 2
    leaf, inter = chain
    assert leaf.issuer == inter.subject and inter.issuer == ca.cert.subject
    assert certs.describe(inter).is_ca and not certs.describe(leaf).is_ca
    _verify(leaf, [ca.cert], [inter], "api.test")
    # The intermediate is made once and reused.
    again = ca.issue(["b.test"], tmp_path / "b", intermediate=True)
    assert certs.load_certificates(again.cert_path)[1] == inter
    # Reopening the CA from disk issues from the same root.
    reopened = certs.LocalCA.open(tmp_path / "ca")
    assert reopened.cert == ca.cert


def test_validity_options(tmp_path: Path) -> None:
    ca = certs.LocalCA.init(tmp_path / "ca")
    end = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    expired = ca.issue(["old.test"], tmp_path / "old", not_after=end).chain[0]
    assert expired.not_valid_after_utc == end
    assert expired.not_valid_before_utc < end
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    future = ca.issue(["new.test"], tmp_path / "new", not_before=start, days=10).chain[0]
    assert future.not_valid_before_utc == start.replace(microsecond=0)
    with pytest.raises(UsageError, match="must be later"):
        ca.issue(["x.test"], tmp_path / "x", not_before=start, not_after=start - dt.timedelta(1))


def test_key_specs() -> None:
    assert certs.parse_key_spec("rsa:3072") == certs.KeySpec("rsa", 3072)
    assert certs.parse_key_spec("ec") == certs.KeySpec("ec", "p256")
    for bad in ("rsa:abc", "rsa:512", "dsa", "ec:p999"):
        with pytest.raises(UsageError):
            certs.parse_key_spec(bad)


def test_describe(tmp_path: Path) -> None:
    ca = certs.LocalCA.init(tmp_path / "ca", key="rsa:2048")
    info = certs.describe(ca.issue(["x.test"], tmp_path / "x", key="rsa:2048").chain[0])
    assert info.key == "RSA 2048"
    assert info.signature_algorithm == "sha256WithRSAEncryption"
    assert info.san == ("x.test",) and info.eku == ("serverAuth",)
    assert not info.is_ca and not info.self_signed
    assert len(info.sha256.split(":")) == 32
    root = certs.describe(ca.cert)
    assert root.is_ca and root.self_signed and root.subject == root.issuer


def test_crl(tmp_path: Path) -> None:
    ca = certs.LocalCA.init(tmp_path / "ca")
    leaf = ca.issue(["x.test"], tmp_path / "x").chain[0]
    key = certs.LocalCA.open(tmp_path / "ca")._key
    crl = certs.new_crl(ca.cert, key, [leaf.serial_number])
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    assert crl.is_signature_valid(ca.cert.public_key())  # type: ignore[arg-type]


def test_parse_moment() -> None:
    now = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)
    assert parse_moment("-3d", now=now) == dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    assert parse_moment("+2h", now=now) == dt.datetime(2026, 11, 29, 2, tzinfo=dt.UTC)
    assert parse_moment("2026-01-02") == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert parse_moment("2026-01-02T03:04:05Z") == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    with pytest.raises(UsageError):
        parse_moment("yesterday")


def test_cli_init_issue_show(tmp_path: Path, umask_000: None,
                             capsys: pytest.CaptureFixture[str]) -> None:
    d = str(tmp_path / "ca")
    assert main(["cert", "init", "--dir", d]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{d}/ca.pem"
    assert "curl --cacert" in err and "SSL_CERT_FILE" in err and "Firefox" in err
    assert "Chrome" in err
    prefix = str(tmp_path / "web")
    assert main(["cert", "issue", "localhost", "127.0.0.1", "--dir", d, "--out", prefix]) == 0
    out, _ = capsys.readouterr()
    assert out.split() == [f"{prefix}.pem", f"{prefix}-key.pem"]
    assert _mode(Path(f"{prefix}-key.pem")) == 0o600
    # Again without --force: refused, exit 1, one line.
    assert main(["cert", "issue", "localhost", "--dir", d, "--out", prefix]) == 1
    _, err = capsys.readouterr()
    assert err.strip() == f"wirekit: error: {prefix}.pem already exists (use --force to " \
                          "replace it)"
    assert main(["cert", "issue", "localhost", "127.0.0.1", "--dir", d, "--out", prefix,
                 "--force"]) == 0
    capsys.readouterr()
    assert main(["cert", "show", f"{prefix}.pem", "--json"]) == 0
    out, _ = capsys.readouterr()
    (shown,) = json.loads(out)
    assert shown["san"] == ["localhost", "127.0.0.1"]
    assert shown["eku"] == ["serverAuth"] and shown["is_ca"] is False
    assert set(shown) >= {"subject", "issuer", "san", "not_before", "not_after", "serial",
                          "sha256", "key", "signature_algorithm"}
    # Usage errors exit 2.
    assert main(["cert", "issue", "x.test", "--dir", d, "--key", "rsa:12"]) == 2
    assert main(["cert", "issue", "x.test", "--dir", str(tmp_path / "nothing")]) == 2


def test_cli_issue_expired_and_human_show(tmp_path: Path) -> None:
    runner = CliRunner()
    d = str(tmp_path / "ca")
    assert runner.invoke(cert_cli, ["init", "--dir", d, "-q"]).exit_code == 0
    result = runner.invoke(cert_cli, ["issue", "old.test", "--dir", d, "--out",
                                      str(tmp_path / "old"), "--not-after", "-3d"])
    assert result.exit_code == 0, result.output
    leaf = certs.load_certificates(tmp_path / "old.pem")[0]
    assert leaf.not_valid_after_utc < dt.datetime.now(dt.UTC)
    shown = runner.invoke(cert_cli, ["show", str(tmp_path / "old.pem")])
    assert shown.exit_code == 0 and "old.test" in shown.output and "serverAuth" in shown.output


def test_default_ca_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert certs.default_ca_dir() == tmp_path / "wirekit" / "ca"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert certs.default_ca_dir() == tmp_path / ".local" / "share" / "wirekit" / "ca"


def test_trust_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wirekit.tls.inspect import Trust, load_trust

    ca = certs.LocalCA.init(tmp_path / "ca")
    trust = load_trust(ca.cert_path)
    assert trust.roots == (ca.cert,) and str(ca.cert_path) in trust.name
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert_path))  # honoured like OpenSSL does
    assert Trust.system().roots == (ca.cert,)
    with pytest.raises(UsageError, match="no such file"):
        load_trust(tmp_path / "missing.pem")

