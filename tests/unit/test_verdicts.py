"""Verdicts, pure: crafted certificates, a fixed clock, a host name in; reasons out."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from wirekit.errors import CertificateError
from wirekit.tls import certs
from wirekit.tls.verdicts import CODES, ERROR, WARNING, certificate_error, check_chain

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


class PKI:
    """A root, an intermediate, and a foreign root, valid around NOW."""

    def __init__(self) -> None:
        self.root_key = certs.generate_key("ec")
        self.root = certs.new_ca(self.root_key, common_name="Test Root",
                                 not_before=NOW - 400 * DAY, not_after=NOW + 3000 * DAY)
        self.inter_key = certs.generate_key("ec")
        self.inter = certs.new_ca(self.inter_key, common_name="Test Intermediate",
                                  issuer=self.root, issuer_key=self.root_key,
                                  not_before=NOW - 300 * DAY, not_after=NOW + 1000 * DAY)
        self.other_key = certs.generate_key("ec")
        self.other = certs.new_ca(self.other_key, common_name="Other Root",
                                  not_before=NOW - 400 * DAY, not_after=NOW + 3000 * DAY)

    def leaf(self, names: list[str] | None = None, *, issuer: str = "root",
             start: dt.datetime | None = None, end: dt.datetime | None = None,
             key: str = "ec", **kw: object) -> x509.Certificate:
        issuer_cert, issuer_key = {
            "root": (self.root, self.root_key),
            "inter": (self.inter, self.inter_key),
            "other": (self.other, self.other_key),
        }[issuer]
        return certs.new_leaf(names or ["bar.test", "*.bar.test", "127.0.0.1"],
                              certs.generate_key(key), issuer=issuer_cert,
                              issuer_key=issuer_key, not_before=start or NOW - 10 * DAY,
                              not_after=end or NOW + 90 * DAY, **kw)  # type: ignore[arg-type]

    def check(self, chain: list[x509.Certificate], host: str | None = "bar.test", **kw: object):
        return check_chain(chain, host, roots=[self.root], now=NOW, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pki() -> PKI:
    return PKI()


def test_valid_chains_have_no_verdicts(pki: PKI) -> None:
    check = pki.check([pki.leaf()])
    assert check.verified and check.verdicts == () and check.trusted_anchor
    assert [c.subject for c in check.path] == [check.path[0].subject, pki.root.subject]
    three = pki.check([pki.leaf(issuer="inter"), pki.inter])
    assert three.verified and three.verdicts == ()
    assert len(three.path) == 3
    assert pki.check([pki.leaf()], "x.bar.test").verified
    assert pki.check([pki.leaf()], "127.0.0.1").verified
    assert check.revocation == "not_checked"


def test_expired(pki: PKI) -> None:
    end = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    check = pki.check([pki.leaf(start=end - 90 * DAY, end=end)])
    assert check.codes == ("expired",)
    assert check.verdicts[0].message == "certificate expired 3 days ago (not after 2026-11-26)"
    assert not check.verified


def test_not_yet_valid(pki: PKI) -> None:
    start = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    check = pki.check([pki.leaf(start=start, end=start + 90 * DAY)])
    assert check.codes == ("not_yet_valid",)
    assert "starts in 3 days" in check.verdicts[0].message


def test_expires_soon_is_a_warning(pki: PKI) -> None:
    check = pki.check([pki.leaf(end=NOW + 5 * DAY)])
    assert check.codes == ("expires_soon",)
    assert check.verdicts[0].severity == WARNING
    assert "expires in 5 days" in check.verdicts[0].message
    assert check.verified


def test_hostname_mismatch_names_the_names(pki: PKI) -> None:
    check = pki.check([pki.leaf()], "foo.test")
    assert check.codes == ("hostname_mismatch",)
    assert check.verdicts[0].message == (
        "'foo.test' is not in the certificate's names: bar.test, *.bar.test, 127.0.0.1")
    # A wildcard covers exactly one label; an IP literal only matches IP SANs.
    assert pki.check([pki.leaf()], "a.b.bar.test").codes == ("hostname_mismatch",)
    assert pki.check([pki.leaf()], "127.0.0.2").codes == ("hostname_mismatch",)
    assert pki.check([pki.leaf(["127.0.0.1.nip.test"])], "127.0.0.1").codes == (
        "hostname_mismatch",)


def test_self_signed(pki: PKI) -> None:
    key = certs.generate_key("ec")
    leaf = certs.new_leaf(["bar.test"], key, issuer=None, issuer_key=key,
                          not_before=NOW - DAY, not_after=NOW + 90 * DAY)
    check = pki.check([leaf])
    assert check.codes == ("self_signed",)
    assert "self-signed ('bar.test')" in check.verdicts[0].message


def test_untrusted_root(pki: PKI) -> None:
    # The peer sends its chain up to a root we do not trust ...
    check = pki.check([pki.leaf(issuer="other"), pki.other])
    assert check.codes == ("untrusted_root",)
    assert "'Other Root'" in check.verdicts[0].message
    # ... or intermediates whose root we do not have.
    other_inter_key = certs.generate_key("ec")
    other_inter = certs.new_ca(other_inter_key, common_name="Other Intermediate",
                               issuer=pki.other, issuer_key=pki.other_key,
                               not_before=NOW - DAY, not_after=NOW + 900 * DAY)
    leaf = certs.new_leaf(["bar.test"], certs.generate_key("ec"), issuer=other_inter,
                          issuer_key=other_inter_key, not_before=NOW - DAY,
                          not_after=NOW + 90 * DAY)
    check = pki.check([leaf, other_inter])
    assert check.codes == ("untrusted_root",)
    assert "issued by 'Other Root'" in check.verdicts[0].message


def test_incomplete_chain(pki: PKI) -> None:
    check = pki.check([pki.leaf(issuer="inter")])  # the intermediate was not sent
    assert check.codes == ("incomplete_chain",)
    assert "'Test Intermediate' was not sent" in check.verdicts[0].message


def test_weak_key(pki: PKI) -> None:
    check = pki.check([pki.leaf(key="rsa:1024")])
    assert check.codes == ("weak_key",)
    assert "1024-bit RSA key" in check.verdicts[0].message


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_weak_signature(kind: str) -> None:
    root_key = certs.generate_key(kind)
    root = certs.new_ca(root_key, not_before=NOW - DAY, not_after=NOW + 900 * DAY)
    leaf = certs.new_leaf(["bar.test"], certs.generate_key("ec"), issuer=root,
                          issuer_key=root_key, not_before=NOW - DAY, not_after=NOW + 90 * DAY)
    sha1 = certs.legacy_signed(leaf, root_key)
    check = check_chain([sha1], "bar.test", roots=[root], now=NOW)
    assert check.codes == ("weak_signature",)
    assert "SHA-1" in check.verdicts[0].message
    assert check.trusted_anchor  # the path still builds; only the hash is the problem


def test_wrong_usage(pki: PKI) -> None:
    check = pki.check([pki.leaf(client=True)])
    assert check.codes == ("wrong_usage",)
    assert "clientAuth" in check.verdicts[0].message and "serverAuth" in check.verdicts[0].message
    # The same certificate is right for a client, checked as one (mutual TLS).
    client = pki.check([pki.leaf(client=True)], None, purpose="client")
    assert client.verified
    any_usage = pki.leaf(usages=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    assert "wrong_usage" not in pki.check([any_usage]).codes


def test_revoked_only_with_crls(pki: PKI) -> None:
    leaf = pki.leaf()
    crl = certs.new_crl(pki.root, pki.root_key, [leaf.serial_number],
                        last_update=NOW - DAY, next_update=NOW + 6 * DAY)
    assert pki.check([leaf]).codes == ()
    check = pki.check([leaf], crls=[crl])
    assert check.codes == ("revoked",)
    assert f"serial {leaf.serial_number:x}" in check.verdicts[0].message
    assert check.revocation == "checked"
    assert pki.check([pki.leaf()], crls=[crl]).codes == ()
    # A CRL signed by someone else is not believed.
    forged = certs.new_crl(pki.root, pki.other_key, [leaf.serial_number],
                           last_update=NOW - DAY, next_update=NOW + 6 * DAY)
    check = pki.check([leaf], crls=[forged])
    assert check.codes == () and check.revocation == "partial"


def test_legacy_protocol_warns(pki: PKI) -> None:
    check = pki.check([pki.leaf()], protocol="TLSv1.1")
    assert check.codes == ("legacy_protocol",) and check.verified
    assert "TLS 1.1" in check.verdicts[0].message
    assert pki.check([pki.leaf()], protocol="TLSv1.3").codes == ()


def test_every_verdict_that_applies_is_reported(pki: PKI) -> None:
    end = NOW - 3 * DAY
    leaf = pki.leaf(["bar.test"], issuer="inter", key="rsa:1024", client=True,
                    start=end - 90 * DAY, end=end)
    check = pki.check([leaf], "foo.test")
    assert sorted(check.codes) == sorted(
        ["incomplete_chain", "expired", "weak_key", "hostname_mismatch", "wrong_usage"])
    assert all(CODES[v.code] == v.severity for v in check.verdicts)


def test_expired_intermediate_is_named(pki: PKI) -> None:
    inter = certs.new_ca(pki.inter_key, common_name="Old Intermediate", issuer=pki.root,
                         issuer_key=pki.root_key, not_before=NOW - 900 * DAY,
                         not_after=NOW - 2 * DAY)
    leaf = certs.new_leaf(["bar.test"], certs.generate_key("ec"), issuer=inter,
                          issuer_key=pki.inter_key, not_before=NOW - DAY,
                          not_after=NOW + 90 * DAY)
    check = pki.check([leaf, inter])
    assert check.codes == ("expired",)
    assert "CA certificate 'Old Intermediate' expired 2 days ago" in check.verdicts[0].message


def test_certificate_error_carries_verdicts(pki: PKI) -> None:
    check = pki.check([pki.leaf(key="rsa:1024")], "foo.test")
    exc = certificate_error(check, "bar.test:443")
    assert isinstance(exc, CertificateError)
    assert exc.verdicts == check.verdicts
    assert str(exc).startswith("certificate of bar.test:443 not trusted: ")
    assert "(and 1 more)" in str(exc)
    assert all(v.severity == ERROR for v in check.errors)
    with pytest.raises(ValueError):
        certificate_error(pki.check([pki.leaf()]), "bar.test:443")


def test_strict_verifier_catches_what_our_checks_do_not(pki: PKI) -> None:
    # A leaf certificate (CA=false) acting as an issuer: names and signature line up, so
    # only the RFC 5280 verifier objects; its reason becomes invalid_chain.
    not_ca_key = certs.generate_key("ec")
    not_ca = certs.new_leaf(["not-a-ca.test"], not_ca_key, issuer=pki.root, issuer_key=pki.root_key,
                            not_before=NOW - DAY, not_after=NOW + 90 * DAY)
    leaf = certs.new_leaf(["bar.test"], certs.generate_key("ec"), issuer=not_ca,
                          issuer_key=not_ca_key, not_before=NOW - DAY, not_after=NOW + 90 * DAY)
    check = pki.check([leaf, not_ca])
    assert check.codes == ("invalid_chain",)
    assert check.verdicts[0].message.startswith("the chain fails strict verification: ")
    assert not check.verified


def test_unparsable_peer_certificate_is_a_tls_error() -> None:
    from wirekit.errors import TLSError
    from wirekit.tls.inspect import Trust, inspect_chain

    with pytest.raises(TLSError, match="certificate #0 sent by the peer cannot be parsed"):
        inspect_chain([b"\x30\x03garbage"], "x.test", Trust((), "no roots"), now=NOW)
