import pytest

from wirekit import errors


def test_builtin_bases_let_users_catch_ours() -> None:
    with pytest.raises(TimeoutError):
        raise errors.ConnectTimeout("timed out", host="h", port=1)
    with pytest.raises(ConnectionRefusedError):
        raise errors.ConnectRefused("refused", host="h", port=1)
    with pytest.raises(OSError):
        raise errors.ResolveError("could not resolve 'x.invalid'", host="x.invalid")
    with pytest.raises(EOFError):
        raise errors.PeerClosed("closed", partial=b"ab")


def test_messages_and_fields() -> None:
    exc = errors.ConnectRefused("connection refused by 127.0.0.1:9", host="127.0.0.1", port=9)
    assert str(exc) == "connection refused by 127.0.0.1:9"
    assert (exc.host, exc.port, exc.exit_code) == ("127.0.0.1", 9, 1)
    assert errors.AddressError("bad").exit_code == 2
    assert str(errors.ParseError("bad length", offset=12)) == "bad length (at offset 12)"
    assert isinstance(errors.ParseError("x"), ValueError)
