"""Runs the tour's sections in order, each bounded in time, and tallies the result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from wirekit.errors import WirekitError
from wirekit.tour.narrator import Narrator, SectionSkipped, TourResult

__all__ = ["SECTIONS", "Section", "run_tour"]

Section = Callable[[Narrator], Awaitable[None]]
SECTION_TIMEOUT = 30.0


def _sections() -> list[tuple[str, Section]]:
    # Imported here so each section's dependencies load only when the tour runs.
    from wirekit.tour import basics, forwarding, inspection, ssh, tls

    return [
        ("TCP: the time server and its client", basics.tcp_time),
        ("HTTP: a raw GET / HTTP/1.0", basics.raw_http),
        ("UDP: datagrams, no connection", basics.udp_time),
        ("Forwarding: a service behind wirekit forward, and what a forwarder sees",
         forwarding.forwarded_time),
        ("TLS: a CA, a TLS time server, the chain, the handshake, a refusal", tls.tls_time),
        ("SSH: wirekit sshd, a -L tunnel to the time service, encrypted vs plaintext legs",
         ssh.ssh_tunnel),
        ("Inspection: what went over the wire", inspection.inspect_recording),
    ]


SECTIONS = _sections


async def run_tour(narrator: Narrator, only: str | None = None) -> TourResult:
    result = TourResult()
    for title, section in SECTIONS():
        if only and only.lower() not in title.lower():
            continue
        narrator.section(title)
        try:
            await asyncio.wait_for(section(narrator), SECTION_TIMEOUT)
        except SectionSkipped as exc:
            narrator.skip(str(exc))
            result.skipped.append((title, str(exc)))
        except TimeoutError:
            narrator.fail(f"section did not finish within {SECTION_TIMEOUT:g}s")
            result.failed.append((title, "timed out"))
        except (WirekitError, OSError, AssertionError) as exc:
            narrator.fail(str(exc) or type(exc).__name__)
            result.failed.append((title, str(exc)))
        except Exception as exc:  # a bug in a section fails it; the other sections still run
            reason = f"{type(exc).__name__}: {exc}"
            narrator.fail(f"unexpected error: {reason}")
            result.failed.append((title, reason))
        else:
            result.passed.append(title)
    return result
