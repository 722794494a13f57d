"""Forwarding rules: -f LISTEN=TARGET, the TOML config, and Rule.parse."""

from __future__ import annotations

import pytest

from wirekit.errors import UsageError
from wirekit.net.forward import Rule
from wirekit.net.forward_config import parse_rule_option, rules_from_toml
from wirekit.net.gate import Limits

DEFAULTS = Limits(max_conns=50, idle_timeout=300, grace=5)


def test_rule_parse_defaults_loopback_and_scheme() -> None:
    rule = Rule.parse(":8080", "example.org:80")
    assert (rule.listen.host, rule.listen.port, rule.listen.scheme) == ("127.0.0.1", 8080, "tcp")
    assert (rule.target.host, rule.target.port) == ("example.org", 80)
    udp = Rule.parse("udp://:5353", "127.0.0.1:53")  # the target takes the listen scheme
    assert udp.target.scheme == "udp"
    tls = Rule.parse("tls://:8443", ":80")  # a tls:// listener forwards to plain TCP
    assert (tls.listen.scheme, tls.target.scheme) == ("tls", "tcp")


@pytest.mark.parametrize(
    ("listen", "target", "message"),
    [
        (":1", "udp://h:2", "both sides must be tcp:// or both udp://"),
        (":1", "h:0", "port other than 0"),
        ("tls://:1", "udp://h:2", "both sides must be tcp:// or both udp://"),
        ("unix:/tmp/x", "h:2", "unix:// is not supported here"),
        (":1", "h", "has no port"),
    ],
)
def test_rule_parse_errors(listen: str, target: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Rule.parse(listen, target)


def test_parse_rule_option() -> None:
    rule = parse_rule_option(":8080=[::1]:80")
    assert rule.target.host == "::1" and rule.target.port == 80
    with pytest.raises(UsageError, match="LISTEN=TARGET"):
        parse_rule_option(":8080")


def test_toml_rules_with_per_rule_settings() -> None:
    rules = rules_from_toml(
        """
        [[forward]]
        listen = ":8080"
        target = "example.org:80"

        [[forward]]
        listen = ":8081"
        target = "10.0.0.5:81"
        max_conns = 7
        idle_timeout = 9.5
        connect_timeout = 2
        allow = ["10.0.0.0/8"]
        deny = "10.1.0.0/16"

        [[forward]]
        listen = "udp://:5353"
        target = "udp://127.0.0.1:53"
        udp_idle = 30
        """,
        DEFAULTS,
    )
    plain, tuned, udp = rules
    assert plain.limits is None and plain.connect_timeout is None
    assert tuned.limits is not None
    assert (tuned.limits.max_conns, tuned.limits.idle_timeout, tuned.limits.grace) == (7, 9.5, 5)
    assert tuned.connect_timeout == 2
    assert tuned.limits.acl.refusal("10.2.3.4") is None
    assert "deny" in (tuned.limits.acl.refusal("10.1.2.3") or "")
    assert "allow" in (tuned.limits.acl.refusal("192.168.1.1") or "")
    assert udp.udp_idle == 30 and udp.listen.scheme == "udp"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no \\[\\[forward\\]\\] rules"),
        ("[forward\n", "not valid TOML"),
        ("x = 1\n", "unknown top-level key"),
        ('[[forward]]\nlisten = ":1"\n', "target must be a string"),
        ('[[forward]]\nlisten = ":1"\ntarget = "h:2"\nmax_conns = 0\n', "positive integer"),
        ('[[forward]]\nlisten = ":1"\ntarget = "h:2"\nmax_conns = 1.5\n', "positive integer"),
        ('[[forward]]\nlisten = ":1"\ntarget = "h:2"\nidle_timeout = true\n', "positive number"),
        ('[[forward]]\nlisten = ":1"\ntarget = "h:2"\nallow = [1]\n', "list of networks"),
        ('[[forward]]\nlisten = ":1"\ntarget = "h:2"\nallow = ["nope"]\n', "not an IP network"),
        ('[[forward]]\nlisten = ":1"\ntarget = "h:2"\ncolour = 1\n', "unknown key"),
    ],
)
def test_toml_errors_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        rules_from_toml(text, DEFAULTS)
