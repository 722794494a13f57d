import asyncio

import pytest

from conftest import require
from wirekit.net.runtime import loop_factory, uvloop_available


def test_wirekit_uvloop_0_chooses_the_stdlib_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WIREKIT_UVLOOP", "0")
    assert loop_factory() is asyncio.new_event_loop


def test_uvloop_by_default_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WIREKIT_UVLOOP", raising=False)
    require(uvloop_available(), "uvloop is not installed (make installs the [fast] extra)")
    import uvloop

    assert loop_factory() is uvloop.new_event_loop
