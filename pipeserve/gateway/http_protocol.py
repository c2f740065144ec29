"""uvicorn's httptools protocol, with the small writes of one loop iteration sent together.

uvicorn writes a response's head and its body separately, and the event loop sends each
write to the socket at once: two system calls per response, the most expensive thing a small
prediction does on its way out (the load generator pays twice too). Here the writes a
connection makes while the loop runs its callbacks are held and go out as one ``writelines``
(a single vectored write) when those callbacks are done, so a head and its body leave in one
system call. Nothing waits past the current loop iteration; once ``FLUSH_AT_BYTES`` are held
they go at once, so large bodies meet the transport's flow control as before; closing the
connection sends what is held first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

FLUSH_AT_BYTES = 64 * 1024
"""Held bytes that are written at once instead of at the end of the loop iteration."""


class BatchedWritesProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` whose requests write through :class:`BatchedWrites`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # flow control keeps the socket's own transport
        self.transport = BatchedWrites(transport, self.loop)  # type: ignore[assignment]


class BatchedWrites:
    """A transport that holds the small writes of one loop iteration and sends them as one.

    Everything but writing and closing goes straight to the wrapped transport.
    """

    __slots__ = ("_transport", "_loop", "_held", "_held_bytes")

    def __init__(self, transport: asyncio.WriteTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._held_bytes = 0

    def write(self, data: bytes) -> None:
        """Hold ``data`` until the end of the loop iteration (or send it, when enough is held)."""
        held = self._held
        if held is None:
            if len(data) >= FLUSH_AT_BYTES:
                self._transport.write(data)
                return
            self._held = [data]
            self._held_bytes = len(data)
            self._loop.call_soon(self.flush)
            return
        held.append(data)
        self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_AT_BYTES:
            self.flush()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send what is held, in one write."""
        held = self._held
        if held is None:
            return
        self._held = None
        if self._transport.is_closing():
            return
        if len(held) == 1:
            self._transport.write(held[0])
        else:
            self._transport.writelines(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
