"""ServerState.admit_or_refuse / admit_peer: the one admission decision of serve()'s listeners.

The service protocols, the handler protocol and the TLS listener all call it; these tests pin
what it does: refused connections are closed at once and reported as one ``refused`` event
with the reason; admitted ones count toward --max-conns and the drain and join the live set.
"""

from __future__ import annotations

from typing import Any

from wirekit.net._served import ServerState
from wirekit.net.acl import AccessList
from wirekit.net.gate import Gate, Limits

PEER = ("127.0.0.1", 40000)


class _Transport:
    def __init__(self) -> None:
        self.closed = 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return PEER if name == "peername" else default

    def close(self) -> None:
        self.closed += 1


class _Conn:
    """The attributes the live set and the idle sweeper use."""

    seen = 0
    quiet_since = 0.0
    wk_preadmitted: Any = None

    def activity(self) -> int:
        return 0

    def idle_expired(self) -> None:
        pass


def _state(limits: Limits | None = None, events: list | None = None) -> ServerState:
    return ServerState("echo", Gate(limits or Limits()), events.append if events is not None
                       else None)


async def test_admitted_connection_counts_and_joins_the_live_set() -> None:
    events: list = []
    state = _state(events=events)
    conn, tr = _Conn(), _Transport()
    admitted = state.admit_or_refuse(conn, tr)
    assert admitted is not None
    peer, started = admitted
    assert peer == PEER and started <= state.loop.time()
    assert tr.closed == 0 and conn in state.live and events == []
    assert (state.gate.active, state.gate.accepted, state.gate.refused) == (1, 1, 0)


async def test_peer_is_not_looked_up_when_nothing_needs_it() -> None:
    state = _state()  # no ACL, no event callback
    admitted = state.admit_or_refuse(_Conn(), _Transport())
    assert admitted is not None and admitted[0] is None


async def test_max_conns_refusal_closes_at_once_and_reports_the_reason() -> None:
    events: list = []
    state = _state(Limits(max_conns=1), events)
    assert state.admit_or_refuse(_Conn(), _Transport()) is not None
    conn, tr = _Conn(), _Transport()
    assert state.admit_or_refuse(conn, tr) is None
    assert tr.closed == 1 and conn not in state.live
    assert [(e.ended, e.detail, e.peer.hostport) for e in events] == [
        ("refused", "at --max-conns 1", "127.0.0.1:40000")]
    assert (state.gate.active, state.gate.accepted, state.gate.refused) == (1, 1, 1)


async def test_acl_refusal_and_shutting_down() -> None:
    events: list = []
    state = _state(Limits(acl=AccessList.from_strings(deny=["127.0.0.0/8"])), events)
    assert state.admit_or_refuse(_Conn(), _Transport()) is None
    state = _state(events=events)
    state.closing = True
    tr = _Transport()
    assert state.admit_peer(_Conn(), PEER, tr) is None  # the TLS listener's entry: a socket
    assert tr.closed == 1 and state.gate.active == 0
    assert [(e.ended, e.detail) for e in events] == [
        ("refused", "denied by --deny 127.0.0.0/8"), ("refused", "shutting down")]


async def test_a_tls_preadmitted_connection_takes_its_stand_ins_place() -> None:
    state = _state(events=[])
    stand_in = _Conn()
    started = state.admit_peer(stand_in, PEER, _Transport())
    assert started is not None
    stand_in.peer, stand_in.started = PEER, started  # type: ignore[attr-defined]
    state.closing = True  # shutdown began during the handshake: still admitted, once
    conn, tr = _Conn(), _Transport()
    conn.wk_preadmitted = stand_in
    assert state.admit_or_refuse(conn, tr) == (PEER, started)
    assert conn.wk_preadmitted is None and state.live == {conn} and tr.closed == 0
    assert (state.gate.active, state.gate.accepted, state.gate.refused) == (1, 1, 0)
