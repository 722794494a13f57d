"""Access control by peer address: ``--allow CIDR`` / ``--deny CIDR`` (deny wins)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from wirekit.errors import UsageError

__all__ = ["AccessList", "parse_network"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """``10.0.0.0/8``, ``::1``, ``127.0.0.1`` (a bare address is a /32 or /128)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(
            f"{text!r} is not an IP network (write e.g. 10.0.0.0/8 or ::1/128)"
        ) from None


@dataclass(frozen=True, slots=True)
class AccessList:
    """Empty ``allow`` admits everyone not denied; a non-empty one admits only its members."""

    allow: tuple[Network, ...] = field(default=())
    deny: tuple[Network, ...] = field(default=())

    @classmethod
    def from_strings(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> AccessList:
        return cls(tuple(map(parse_network, allow)), tuple(map(parse_network, deny)))

    def __bool__(self) -> bool:
        return bool(self.allow or self.deny)

    def refusal(self, host: str) -> str | None:
        """Why ``host`` is refused, or None when it is admitted."""
        if not self:
            return None
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return f"peer {host!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for net in self.deny:
            if ip.version == net.version and ip in net:
                return f"denied by --deny {net}"
        if self.allow and not any(ip.version == n.version and ip in n for n in self.allow):
            return "not in any --allow network"
        return None
