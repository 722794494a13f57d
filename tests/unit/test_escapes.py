import pytest
from hypothesis import given
from hypothesis import strategies as st

from wirekit.errors import UsageError
from wirekit.escapes import unescape


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET TIME", b"GET TIME"),
        (r"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.0\r\n\r\n"),
        (r"a\tb\\c", b"a\tb\\c"),
        (r"\x00\xff\x41", b"\x00\xffA"),
        (r"\0", b"\0"),
        ("héllo", "héllo".encode()),
        ("", b""),
    ],
)
def test_unescape(text: str, expected: bytes) -> None:
    assert unescape(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [("abc\\", "dangling backslash"), (r"\q", "unknown escape"), (r"\x4", "two hex digits"),
     (r"\xZZ", "two hex digits")],
)
def test_bad_escapes(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason):
        unescape(text)


@given(st.binary())
def test_round_trip_any_bytes(data: bytes) -> None:
    escaped = "".join(f"\\x{b:02x}" for b in data)
    assert unescape(escaped) == data
