"""``--workers N``: N processes sharing listening ports with SO_REUSEPORT.

The parent binds every listener first (so ``:0`` becomes a real port everyone shares),
then forks N-1 children before any event loop exists.  Each child binds its own socket
to the same address with SO_REUSEPORT, so the kernel spreads new connections over the
processes; the parent keeps serving on its own sockets.  Children run in their own
process group (a terminal's Ctrl-C reaches only the parent, which then stops them with
SIGTERM so they drain like it does) and get SIGTERM if the parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time

from wirekit.address import Address
from wirekit.net._errors import bind_errors

__all__ = ["bind", "fork_workers", "reap", "rebind", "stop_workers"]

_PR_SET_PDEATHSIG = 1


def bind(address: Address) -> socket.socket:
    """A bound (and for TCP listening) socket with SO_REUSEPORT set."""
    kind = socket.SOCK_DGRAM if address.scheme == "udp" else socket.SOCK_STREAM
    with bind_errors(address.host, address.port):
        infos = socket.getaddrinfo(address.host, address.port, type=kind,
                                   flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(sockaddr)
            if kind == socket.SOCK_STREAM:
                sock.listen(1024)
        except BaseException:
            sock.close()
            raise
    sock.setblocking(False)
    return sock


def rebind(sock: socket.socket, scheme: str) -> socket.socket:
    """A new socket on ``sock``'s address (port included) for this process."""
    name = sock.getsockname()
    host, port = str(name[0]), int(name[1])
    return bind(Address(scheme, host, port))


def fork_workers(count: int) -> tuple[int, list[int]]:
    """Fork ``count - 1`` children.  Returns (worker index, child pids): index 0 and the
    pids in the parent, index >= 1 and [] in a child."""
    pids: list[int] = []
    for index in range(1, count):
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
            return index, []
        pids.append(pid)
    return 0, pids


def stop_workers(pids: list[int], sig: int = signal.SIGTERM) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def reap(pids: list[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for the children; kill the ones still running."""
    left = set(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.discard(pid)
        if left:
            time.sleep(0.02)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    return sorted(left)
