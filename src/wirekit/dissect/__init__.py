"""Sans-IO parsers: bytes in, events out.  No sockets, no asyncio, no clock."""
