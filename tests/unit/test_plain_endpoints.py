"""``plain_endpoints``: the plaintext leg of a TLS connection never shares the TLS leg's
addresses and ports (tshark would join the two), and stays recognisably the same."""

from __future__ import annotations

import ipaddress

import pytest

from wirekit.capture.tls_record import plain_endpoints


@pytest.mark.parametrize(("client", "server", "plain"), [
    (("127.0.0.1", 40000), ("127.0.0.1", 8443),
     (("::ffff:127.0.0.1", 40000), ("::ffff:127.0.0.1", 8443))),
    (("::ffff:10.0.0.2", 50000), ("::ffff:10.0.0.1", 443),
     (("10.0.0.2", 50000), ("10.0.0.1", 443))),
    (("::1", 40000), ("::1", 443), (("::1", 40000 ^ 0x8000), ("::1", 443))),
    (("2001:db8::2", 1025), ("2001:db8::1", 443), (("2001:db8::2", 1025 ^ 0x8000),
                                                   ("2001:db8::1", 443))),
])
def test_plain_endpoints(client: tuple[str, int], server: tuple[str, int],
                         plain: tuple[tuple[str, int], tuple[str, int]]) -> None:
    assert plain_endpoints(client, server) == plain
    key = {(ipaddress.ip_address(h).packed, p) for h, p in (client, server)}
    plain_key = {(ipaddress.ip_address(h).packed, p) for h, p in plain}
    assert key != plain_key  # what tshark tells connections apart by
    assert plain[1][1] == server[1]  # tcp.port == SERVER finds both legs


@pytest.mark.parametrize(("host", "mss"), [
    ("127.0.0.1", 65495), ("10.0.0.1", 1460), ("::1", 65475),
    ("::ffff:127.0.0.1", 65475),  # the plaintext leg of a loopback TLS connection
    ("::ffff:10.0.0.1", 1440), ("2001:db8::1", 1440),
])
def test_segment_size_follows_the_interface_the_address_is_on(host: str, mss: int) -> None:
    from wirekit.capture.flows import TcpLeg, segments

    events: list = []
    leg = TcpLeg(events.append, (host, 40000), (host, 8443), isn=1)
    leg.open(1)
    leg.data("c", b"x" * (2 * mss + 1), 2)
    sizes = [len(payload) for event in events for _, payload in segments(event, 0)]
    assert [n for n in sizes if n] == [mss, mss, 1]
