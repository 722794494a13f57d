"""Host key policy: known_hosts lookups, trust on first use, and the verdict when it fails.

asyncssh trusts the keys we hand it from the known_hosts file and calls back for any other
key.  The callback decides: a host with *no* entry is unknown (refused with the fingerprint,
or recorded and trusted with ``accept_new``); a host with a *different* entry has changed
(always refused).  The verdict is kept so the connect error can say which it was.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from wirekit.errors import HostKeyChanged, HostKeyError, HostKeyUnknown

__all__ = ["DEFAULT_KNOWN_HOSTS", "HostKeyPolicy", "fingerprint", "known_hosts_name"]

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
_write_lock = threading.Lock()


def fingerprint(key: Any) -> str:
    """``SHA256:...`` as OpenSSH prints it."""
    return str(key.get_fingerprint("sha256"))


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH names ``host:port`` in known_hosts."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(slots=True)
class HostKeyPolicy:
    """known_hosts file + ``accept_new``.  One per connection attempt (it keeps the verdict)."""

    path: Path
    accept_new: bool = False
    failure: HostKeyError | None = None
    accepted: str | None = None  # fingerprint recorded by trust on first use

    def load(self) -> asyncssh.SSHKnownHosts:
        text = self.path.read_text() if self.path.is_file() else ""
        return asyncssh.import_known_hosts(text)

    def check(self, host: str, addr: str, port: int, key: Any) -> bool:
        """Called by asyncssh for a key not already trusted by the file."""
        fp = fingerprint(key)
        name = known_hosts_name(host, port)
        matched = self.load().match(host, addr, port)[0]
        if matched:
            self.failure = HostKeyChanged(
                f"HOST KEY CHANGED for {name}: the server offered {key.get_algorithm()} key "
                f"{fp}, but {self.path} holds a different key; someone may be intercepting "
                f"the connection (if the change is expected, remove the old line with "
                f"`ssh-keygen -R '{name}' -f {self.path}`)",
                fingerprint=fp, host=host, port=port)
            return False
        if not self.accept_new:
            self.failure = HostKeyUnknown(
                f"host key for {name} is unknown ({key.get_algorithm()} {fp}); "
                f"verify the fingerprint, then rerun with --accept-new to trust and record it "
                f"in {self.path}",
                fingerprint=fp, host=host, port=port)
            return False
        self._record(name, key)
        self.accepted = fp
        return True

    def _record(self, name: str, key: Any) -> None:
        algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
        line = f"{name} {algorithm} {blob}\n"
        with _write_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            existing = self.path.read_text() if self.path.is_file() else ""
            with self.path.open("a") as f:
                if existing and not existing.endswith("\n"):
                    f.write("\n")
                f.write(line)
