"""The one address syntax every wirekit command accepts.

    HOST:PORT          example.org:80, 127.0.0.1:8080
    :PORT              127.0.0.1:PORT (loopback, never "all interfaces")
    [V6]:PORT          [::1]:8080
    SCHEME://...       tcp:// (default), udp://, tls://
    unix:/PATH         a Unix domain socket

Parsing is pure: no name resolution happens here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from wirekit.errors import AddressError

__all__ = ["SCHEMES", "Address", "parse_address"]

SCHEMES = ("tcp", "udp", "tls", "unix")
LOOPBACK = "127.0.0.1"

# RFC 1123 labels, plus "_" which real-world names (SRV, docker) use.
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed address.  ``host`` holds an IPv6 literal without brackets."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return self.scheme == "unix"

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an IP address, or None when it is a name."""
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    @property
    def is_loopback(self) -> bool:
        if self.is_unix:
            return True
        ip = self.ip
        if ip is None:
            return self.host.lower() in ("localhost", "localhost.")
        return ip.is_loopback

    @property
    def hostport(self) -> str:
        """``host:port`` with IPv6 in brackets, without the scheme."""
        if self.is_unix:
            return self.path
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"{host}:{self.port}"

    def with_port(self, port: int) -> Address:
        return Address(self.scheme, self.host, port, self.path)

    def with_scheme(self, scheme: str) -> Address:
        return Address(scheme, self.host, self.port, self.path)

    def __str__(self) -> str:
        if self.is_unix:
            return f"unix:{self.path}"
        return f"{self.scheme}://{self.hostport}"


def parse_address(
    text: str,
    *,
    default_scheme: str = "tcp",
    default_port: int | None = None,
    schemes: tuple[str, ...] = SCHEMES,
) -> Address:
    """Parse ``text`` into an :class:`Address`.

    ``default_port`` is used when the text names no port (``wirekit tls example.org``);
    without it a missing port is an error.  ``schemes`` restricts what a command accepts.
    Raises :class:`~wirekit.errors.AddressError` with a one-line reason.
    """
    original = text
    text = text.strip()
    if not text:
        raise AddressError("empty address", text=original)

    scheme = default_scheme
    if text.startswith("unix:"):
        scheme, rest = "unix", text[5:]
        if rest.startswith("//"):
            rest = rest[2:]
        if not rest:
            raise AddressError(f"address {original!r} names no socket path", text=original)
        _check_scheme(scheme, schemes, original)
        return Address("unix", path=rest)
    if "://" in text:
        scheme, text = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            known = ", ".join(f"{s}://" for s in SCHEMES if s != "unix")
            raise AddressError(
                f"unknown scheme {scheme + '://'!r} in {original!r} (use {known} or unix:)",
                text=original,
            )
    _check_scheme(scheme, schemes, original)

    host, port_text = _split_host_port(text, original)
    if port_text is None:
        if default_port is None:
            raise AddressError(
                f"address {original!r} has no port (write HOST:PORT, or :PORT for loopback)",
                text=original,
            )
        port = default_port
    else:
        port = _parse_port(port_text, original)
    if not host:
        host = LOOPBACK
    return Address(scheme, host, port)


def _check_scheme(scheme: str, allowed: tuple[str, ...], original: str) -> None:
    if scheme not in allowed:
        wanted = ", ".join("unix:" if s == "unix" else f"{s}://" for s in allowed)
        raise AddressError(
            f"{scheme}:// is not supported here in {original!r} (use {wanted})", text=original
        )


def _split_host_port(text: str, original: str) -> tuple[str, str | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise AddressError(f"unclosed '[' in address {original!r}", text=original)
        host = text[1:end]
        rest = text[end + 1 :]
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise AddressError(
                f"{host!r} in {original!r} is not an IPv6 address", text=original
            ) from None
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise AddressError(
                f"unexpected {rest!r} after ']' in address {original!r}", text=original
            )
        return host, rest[1:]
    if text.count(":") > 1:
        raise AddressError(
            f"IPv6 addresses need brackets: write [{text.rsplit(':', 1)[0]}]:PORT "
            f"instead of {original!r}",
            text=original,
        )
    if ":" in text:
        host, port_text = text.split(":", 1)
    else:
        host, port_text = text, None
    if host and not _is_valid_host(host):
        raise AddressError(f"{host!r} in {original!r} is not a valid host name", text=original)
    return host, port_text


def _is_valid_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host):
        return False  # looks numeric but is not a valid IPv4 address (e.g. 1.2.3.999)
    return bool(_HOSTNAME.match(host))


def _parse_port(port_text: str, original: str) -> int:
    if not port_text:
        raise AddressError(f"address {original!r} has an empty port", text=original)
    if not port_text.isascii() or not port_text.isdigit():
        raise AddressError(f"port {port_text!r} in {original!r} is not a number", text=original)
    port = int(port_text)
    if port > 65535:
        raise AddressError(
            f"port {port} in {original!r} is out of range (0-65535)", text=original
        )
    return port
