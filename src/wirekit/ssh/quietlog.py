"""Skip asyncssh's log formatting when nothing would be logged.

asyncssh formats every log call's arguments (and describes every packet it sends or
receives for its level-3 packet trace) before the logging module decides the record is
disabled.  Profiling a tunnel opening many short connections put that at about 15 % of its
CPU time.  These wrappers ask ``isEnabledFor`` (and the packet-trace level) first and
otherwise call asyncssh's own code unchanged, so enabling asyncssh's logging still works.
Installed once, on first use of :mod:`wirekit.ssh`; if asyncssh's internals move, nothing
is patched.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["install"]

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    try:
        from asyncssh.logging import SSHLogger
        from asyncssh.packet import SSHPacketLogger
    except ImportError:
        return
    log = getattr(SSHLogger, "log", None)
    log_packet = getattr(SSHPacketLogger, "_log_packet", None)
    if log is None or log_packet is None:
        return

    def quiet_log(self: Any, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            log(self, level, msg, *args, **kwargs)

    def quiet_log_packet(self: Any, *args: Any) -> None:
        logger = self.logger
        if logger._debug_level >= 3 and logger.isEnabledFor(logging.DEBUG):
            log_packet(self, *args)

    SSHLogger.log = quiet_log  # type: ignore[method-assign]
    SSHPacketLogger._log_packet = quiet_log_packet  # type: ignore[method-assign,assignment]
