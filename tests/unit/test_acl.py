import pytest

from wirekit.errors import UsageError
from wirekit.net.acl import AccessList


def test_empty_admits_all() -> None:
    assert AccessList().refusal("203.0.113.9") is None


def test_allow_and_deny_deny_wins() -> None:
    acl = AccessList.from_strings(allow=["127.0.0.0/8", "::1"], deny=["127.0.0.2"])
    assert acl.refusal("127.0.0.1") is None
    assert acl.refusal("::1") is None
    assert acl.refusal("::ffff:127.0.0.1") is None
    assert "deny" in (acl.refusal("127.0.0.2") or "")
    assert "allow" in (acl.refusal("10.1.1.1") or "")


def test_deny_only() -> None:
    acl = AccessList.from_strings(deny=["::/0"])
    assert acl.refusal("::1") is not None
    assert acl.refusal("127.0.0.1") is None


def test_bad_network() -> None:
    with pytest.raises(UsageError, match="not an IP network"):
        AccessList.from_strings(allow=["nope"])
