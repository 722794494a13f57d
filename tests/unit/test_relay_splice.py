"""The splice (zero-copy) relay must keep the same TCP semantics as the protocol relay:
the scenarios of test_relay.py, run again with ``forward(..., splice=True)``."""

from __future__ import annotations

import asyncio
import functools
import os
import socket

import pytest
import test_relay as base

from conftest import async_wait_for, require
from wirekit.errors import UsageError
from wirekit.net.forward import forward
from wirekit.net.splice_relay import PipePool, splice_available


@pytest.fixture(autouse=True)
def _splice_capability() -> None:
    require(splice_available(), "os.splice needs Linux (CI runs Linux)")


SCENARIOS = [
    base.test_bytes_both_ways_and_events,
    base.test_half_close_keeps_other_direction_flowing,
    base.test_refused_target_resets_client_and_keeps_listening,
    base.test_idle_timeout_and_max_conns,
    base.test_client_gone_while_connecting,
    base.test_idle_timeout_ends_a_pair_stuck_on_a_target_that_never_reads,
]


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "forward", functools.partial(forward, splice=True))


@pytest.mark.parametrize("loop_name", base.LOOPS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__[5:])
def test_splice_scenario(scenario, loop_name: str, spliced: None) -> None:
    scenario(loop_name)


@pytest.mark.parametrize("loop_name", base.LOOPS)
@pytest.mark.parametrize("who", ["target", "client"])
def test_splice_reset_becomes_reset(loop_name: str, who: str, spliced: None) -> None:
    base.test_reset_becomes_reset(loop_name, who)


@pytest.mark.parametrize("loop_name", base.LOOPS)
def test_splice_bulk_byte_exact_and_pipes_pooled(loop_name: str) -> None:
    payload = os.urandom(24 << 20)

    async def scenario() -> None:
        target = base.Target()
        fwd = await forward(":0", f"127.0.0.1:{target.port}", splice=True)
        loop = asyncio.get_running_loop()
        client = await base.sock_client(fwd.address.port)
        conn = await target.accept()

        async def up() -> None:
            await loop.sock_sendall(client, payload)
            client.shutdown(socket.SHUT_WR)

        async def echo() -> None:
            while chunk := await loop.sock_recv(conn, 1 << 20):
                await loop.sock_sendall(conn, chunk)
            conn.shutdown(socket.SHUT_WR)

        sender = asyncio.create_task(up())
        echoer = asyncio.create_task(echo())
        got = await base.recv_all(client)
        await sender
        await echoer
        assert got == payload
        client.close()
        conn.close()
        await async_wait_for(lambda: fwd.open == 0, 10, "the pair to close")
        assert fwd.bytes_up == fwd.bytes_down == len(payload)
        assert len(fwd._pool._free) <= fwd._pool.keep  # type: ignore[attr-defined]
        await fwd.aclose()
        target.close()

    base.run_on(loop_name, scenario)


def test_splice_refuses_a_tap() -> None:
    with pytest.raises(UsageError, match="cannot tap"):
        asyncio.run(forward(":0", "127.0.0.1:9", splice=True, tap=lambda info: None))


def test_pipe_pool_reuses_and_bounds() -> None:
    pool = PipePool(keep=1)
    a, b = pool.get(), pool.get()
    pool.put(a, clean=True)
    pool.put(b, clean=True)  # over the bound: closed
    assert pool.get() == a
    with pytest.raises(OSError):
        os.fstat(b[0])
    pool.put(a, clean=False)  # dirty: closed
    pool.close()
