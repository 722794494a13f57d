"""Socket I/O: the only layer that touches asyncio transports."""
