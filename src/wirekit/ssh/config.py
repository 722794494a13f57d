"""What ``~/.ssh/config`` (or ``-F FILE``) says about a host: HostName, User, Port,
IdentityFile, ProxyJump.  asyncssh's own parser reads the file; we only ask it questions,
so the same answers drive the main connection and every jump host.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

from wirekit.errors import UsageError
from wirekit.ssh.spec import SSHTarget, parse_target

__all__ = ["DEFAULT_CONFIG", "HostConfig", "resolve_host"]

DEFAULT_CONFIG = Path("~/.ssh/config")


@dataclass(frozen=True, slots=True)
class HostConfig:
    """Where to connect and as whom, after the command line and ssh_config had their say."""

    alias: str                     # the name the user typed (known_hosts is keyed on it)
    host: str                      # HostName, or the alias
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    proxy_jump: tuple[SSHTarget, ...] = ()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ssh://{self.user}@{host}:{self.port}"


def resolve_host(target: SSHTarget, config_file: str | Path | None = None) -> HostConfig:
    """Apply ssh_config to ``target``.  ``config_file=None`` reads ``~/.ssh/config`` if any."""
    local_user = getpass.getuser()
    paths: list[Path] = []
    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise UsageError(f"ssh config file {str(config_file)!r} does not exist")
        paths.append(path)
    elif DEFAULT_CONFIG.expanduser().is_file():
        paths.append(DEFAULT_CONFIG.expanduser())
    options: dict[str, object] = {}
    if paths:
        from asyncssh.config import SSHClientConfig

        try:
            config = SSHClientConfig.load(None, paths, False, False, False, local_user,
                                          target.user or (), target.host, target.port or ())
        except Exception as exc:  # asyncssh raises ConfigParseError/ValueError variants
            raise UsageError(f"cannot read ssh config: {exc}") from exc
        for name in ("Hostname", "User", "Port", "IdentityFile", "ProxyJump"):
            value = config.get(name)
            if value is not None:
                options[name] = value
    jumps: tuple[SSHTarget, ...] = ()
    proxy = options.get("ProxyJump")
    if isinstance(proxy, str) and proxy.lower() != "none":
        jumps = tuple(parse_target(part) for part in proxy.split(","))
    identity = options.get("IdentityFile") or ()
    return HostConfig(
        alias=target.host,
        host=str(options.get("Hostname") or target.host),
        port=int(target.port or options.get("Port") or 22),  # type: ignore[call-overload]
        user=str(target.user or options.get("User") or local_user),
        identity_files=tuple(str(Path(p).expanduser()) for p in identity),  # type: ignore[attr-defined]
        proxy_jump=jumps,
    )
