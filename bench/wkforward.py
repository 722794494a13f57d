"""``python -m bench.wkforward LISTEN_PORT TARGET_PORT [--loop uvloop|asyncio]``.

Runs ``wirekit.forward()`` (the library API the CLI calls) on the event loop asked for, so
the benchmark can compare uvloop with the stdlib loop whether or not the CLI has a switch.
Loopback only; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys


async def _main(listen_port: int, target_port: int, max_conns: int) -> None:
    import wirekit
    from wirekit.net.gate import Limits

    fwd = await wirekit.forward(f"tcp://127.0.0.1:{listen_port}", f"tcp://127.0.0.1:{target_port}",
                                limits=Limits(max_conns=max_conns))
    loop = asyncio.get_running_loop()
    print(f"{type(loop).__module__}: listening on tcp://127.0.0.1:{listen_port}",
          file=sys.stderr, flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fwd.aclose(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.wkforward")
    ap.add_argument("listen_port", type=int)
    ap.add_argument("target_port", type=int)
    ap.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    ap.add_argument("--max-conns", type=int, default=20000)
    a = ap.parse_args(argv)
    from wirekit.net.runtime import run

    run(_main(a.listen_port, a.target_port, a.max_conns), use_uvloop=a.loop == "uvloop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
