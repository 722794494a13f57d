"""The SOCKS4 / SOCKS4a / SOCKS5 server handshake for ``-D``, sans I/O.

Theory of operation::

    start --4--> request4 ----------------------------> ready (host, port)
          --5--> greeting --reply 05 00--> request5 --> ready (host, port)

Feed bytes with :meth:`SocksHandshake.feed`; it returns the bytes to send back now (the
SOCKS5 method choice) and, once the CONNECT request is complete, ``request`` holds
``(host, port)`` and ``rest`` any bytes that followed it.  After the tunnel tried the target,
:meth:`reply` gives the success or failure answer in the client's dialect.  Garbage raises
:class:`SocksError`, whose ``reply`` (possibly empty) should be sent before closing.
"""

from __future__ import annotations

import ipaddress

from wirekit.errors import ParseError

__all__ = ["SocksError", "SocksHandshake"]

# SOCKS5 reply codes
SUCCEEDED, FAILURE, NOT_ALLOWED, HOST_UNREACHABLE, REFUSED = 0, 1, 2, 4, 5
COMMAND_UNSUPPORTED, ATYP_UNSUPPORTED = 7, 8


class SocksError(ParseError):
    def __init__(self, message: str, reply: bytes = b"") -> None:
        super().__init__(message)
        self.reply = reply


class SocksHandshake:
    def __init__(self) -> None:
        self.version = 0
        self.request: tuple[str, int] | None = None
        self.rest = b""
        self._buf = b""
        self._greeted = False

    def feed(self, data: bytes) -> bytes:
        """Take more client bytes; return what to send to the client now."""
        if self.request is not None:
            self.rest += data
            return b""
        self._buf += data
        if not self._buf:
            return b""
        if self.version == 0:
            self.version = self._buf[0]
            if self.version not in (4, 5):
                raise SocksError(f"not a SOCKS request (first byte {self.version:#04x})")
        return self._feed4() if self.version == 4 else self._feed5()

    def reply(self, ok: bool, code: int = FAILURE) -> bytes:
        if self.version == 4:
            return bytes([0, 0x5A if ok else 0x5B]) + b"\0" * 6
        return bytes([5, SUCCEEDED if ok else code, 0, 1]) + b"\0" * 6

    def _feed4(self) -> bytes:
        buf = self._buf
        if len(buf) < 9:
            return b""
        if buf[1] != 1:
            raise SocksError(f"SOCKS4 command {buf[1]} is not CONNECT", self.reply(False))
        end = buf.find(b"\0", 8)
        if end < 0:
            return self._too_long(buf)
        port = int.from_bytes(buf[2:4], "big")
        ip = bytes(buf[4:8])
        if ip[:3] == b"\0\0\0" and ip[3]:  # SOCKS4a: the name follows the user id
            name_end = buf.find(b"\0", end + 1)
            if name_end < 0:
                return self._too_long(buf)
            host = _decode_name(buf[end + 1:name_end], self.reply(False))
            end = name_end
        else:
            host = str(ipaddress.IPv4Address(ip))
        self._done(host, port, end + 1)
        return b""

    def _feed5(self) -> bytes:
        buf = self._buf
        if not self._greeted:
            if len(buf) < 2 or len(buf) < 2 + buf[1]:
                return b""
            methods = buf[2:2 + buf[1]]
            self._buf = buf = buf[2 + buf[1]:]
            self._greeted = True
            if 0 not in methods:
                raise SocksError("SOCKS5 client offers no 'no authentication' method",
                                 b"\x05\xff")
            return b"\x05\x00" + (self._feed5() if buf else b"")
        if len(buf) < 5:
            return b""
        if buf[0] != 5:
            raise SocksError(f"bad SOCKS5 request version {buf[0]}")
        if buf[1] != 1:
            raise SocksError(f"SOCKS5 command {buf[1]} is not CONNECT",
                             self.reply(False, COMMAND_UNSUPPORTED))
        atyp = buf[3]
        if atyp == 1:
            end = 4 + 4
            host_bytes = buf[4:end]
        elif atyp == 4:
            end = 4 + 16
            host_bytes = buf[4:end]
        elif atyp == 3:
            end = 5 + buf[4]
            host_bytes = buf[5:end]
        else:
            raise SocksError(f"SOCKS5 address type {atyp} unknown",
                             self.reply(False, ATYP_UNSUPPORTED))
        if len(buf) < end + 2:
            return b""
        if atyp == 1:
            host = str(ipaddress.IPv4Address(bytes(host_bytes)))
        elif atyp == 4:
            host = str(ipaddress.IPv6Address(bytes(host_bytes)))
        else:
            host = _decode_name(host_bytes, self.reply(False))
        self._done(host, int.from_bytes(buf[end:end + 2], "big"), end + 2)
        return b""

    def _done(self, host: str, port: int, consumed: int) -> None:
        self.request = (host, port)
        self.rest = self._buf[consumed:]
        self._buf = b""

    def _too_long(self, buf: bytes) -> bytes:
        if len(buf) > 1024:
            raise SocksError("SOCKS4 request too long", self.reply(False))
        return b""


def _decode_name(raw: bytes, reply: bytes) -> str:
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise SocksError("SOCKS host name is not ASCII", reply) from None
    if not name:
        raise SocksError("empty SOCKS host name", reply)
    return name
