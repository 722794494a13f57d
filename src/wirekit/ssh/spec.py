"""OpenSSH's spellings, parsed: ``-L``/``-R``/``-D`` forward specs and ``[USER@]HOST[:PORT]``.

    -L [BIND:]PORT:HOST:HOSTPORT   local listener -> HOST:HOSTPORT as seen from the server
    -R [BIND:]PORT:HOST:HOSTPORT   listener on the server -> HOST:HOSTPORT as seen from here
    -D [BIND:]PORT                 local SOCKS4/4a/5 proxy whose connections leave the server

IPv6 literals go in brackets; ``*`` as BIND means every interface.  Parsing is pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wirekit.errors import UsageError

__all__ = ["Forward", "SSHTarget", "parse_forward", "parse_target"]

LOOPBACK = "127.0.0.1"
_TOKEN = re.compile(r"\[[^\]]*\]|[^:]*")


@dataclass(frozen=True, slots=True)
class Forward:
    """One forward.  ``kind`` is ``"L"``, ``"R"`` or ``"D"``; D has no host/host_port."""

    kind: str
    bind_host: str
    bind_port: int
    host: str = ""
    host_port: int = 0

    @property
    def target(self) -> str:
        if self.kind == "D":
            return "socks"
        return _join(self.host, self.host_port)

    @property
    def spec(self) -> str:
        """Back in OpenSSH's spelling (with the bind address made explicit)."""
        head = f"{_join(self.bind_host, self.bind_port)}"
        return head if self.kind == "D" else f"{head}:{self.target}"


@dataclass(frozen=True, slots=True)
class SSHTarget:
    """``[USER@]HOST[:PORT]``; ``user``/``port`` are None when not given (ssh_config decides)."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{_join(self.host, self.port) if self.port else _bracket(self.host)}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _join(host: str, port: int | None) -> str:
    return f"{_bracket(host)}:{port}"


def _split(text: str) -> list[str]:
    parts: list[str] = []
    pos = 0
    while True:
        m = _TOKEN.match(text, pos)
        assert m is not None  # the pattern matches the empty string
        parts.append(m.group(0))
        pos = m.end()
        if pos >= len(text):
            return parts
        if text[pos] != ":":
            raise UsageError(f"unexpected {text[pos]!r} in {text!r}")
        pos += 1
        if pos == len(text):
            parts.append("")
            return parts


def _host(token: str, what: str, original: str) -> str:
    host = token[1:-1] if token.startswith("[") and token.endswith("]") else token
    if not host or any(c in host for c in " /@[]"):
        raise UsageError(f"bad {what} {token!r} in {original!r}")
    return host


def _port(token: str, what: str, original: str, *, allow_zero: bool = True) -> int:
    if not token.isascii() or not token.isdigit() or int(token) > 65535:
        raise UsageError(f"bad {what} {token!r} in {original!r} (a number 0-65535)")
    port = int(token)
    if port == 0 and not allow_zero:
        raise UsageError(f"{what} cannot be 0 in {original!r}")
    return port


def _bind(token: str | None, default: str, original: str) -> str:
    if token is None or token == "":
        return default
    if token == "*":
        return "0.0.0.0"
    return _host(token, "bind address", original)


def parse_forward(kind: str, text: str) -> Forward:
    """Parse the argument of ``-L``, ``-R`` or ``-D`` (raises UsageError, exit code 2)."""
    kind = kind.lstrip("-").upper()
    if kind not in ("L", "R", "D"):
        raise UsageError(f"unknown forward kind {kind!r} (use L, R or D)")
    parts = _split(text.strip())
    if kind == "D":
        if len(parts) not in (1, 2):
            raise UsageError(f"-D wants [BIND:]PORT, got {text!r}")
        bind = _bind(parts[0] if len(parts) == 2 else None, LOOPBACK, text)
        return Forward("D", bind, _port(parts[-1], "port", text))
    if len(parts) not in (3, 4):
        raise UsageError(f"-{kind} wants [BIND:]PORT:HOST:HOSTPORT, got {text!r}")
    bind = _bind(parts[0] if len(parts) == 4 else None, LOOPBACK, text)
    port = _port(parts[-3], "port", text)
    host = _host(parts[-2], "host", text)
    host_port = _port(parts[-1], "host port", text, allow_zero=False)
    return Forward(kind, bind, port, host, host_port)


def parse_target(text: str) -> SSHTarget:
    """Parse ``[ssh://][USER@]HOST[:PORT]``."""
    original = text
    text = text.strip()
    if text.startswith("ssh://"):
        text = text[len("ssh://"):]
    user = None
    if "@" in text:
        user, text = text.rsplit("@", 1)
        if not user:
            raise UsageError(f"empty user name in {original!r}")
    port = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"unclosed '[' in {original!r}")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"unexpected {rest!r} in {original!r}")
            port = _port(rest[1:], "port", original, allow_zero=False)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, "port", original, allow_zero=False)
    else:
        host = text
    if not host or any(c in host for c in " /@[]"):
        raise UsageError(f"bad SSH host in {original!r} (write [USER@]HOST[:PORT])")
    return SSHTarget(host, user, port)
