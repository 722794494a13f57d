"""Generating SSH keys for labs, tests and the tour."""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh

__all__ = ["new_client_key"]


def new_client_key(path: Path) -> bytes:
    """Write a new ed25519 private key to ``path`` (0600, never overwriting) and return
    its public half in OpenSSH form, ready for an authorized_keys file."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    public: bytes = key.export_public_key()
    return public
