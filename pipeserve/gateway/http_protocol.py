"""uvicorn's httptools protocol, sending a response's head and its body in one write.

uvicorn writes a response's head and its body separately, and the event loop sends each
write to the socket at once: two system calls per response, the most expensive thing a small
prediction does on its way out (the load generator pays twice too). Here a connection holds
a response's head until the next write, its body, and hands both to the transport in one
``writelines`` (a single vectored write). A head is never held longer than that: the end of
the response (one without a body, such as an answer to HEAD), closing the connection or
``write_eof`` send it too. Interim ``100 Continue`` answers and everything else go straight
through; a streaming response's head leaves with its first chunk.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class OneWriteProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` whose requests write through :class:`HeadJoiningTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # flow control keeps the socket's own transport
        self.transport = HeadJoiningTransport(transport)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]  # a head whose response had no body
        super().on_response_complete()


class HeadJoiningTransport:
    """A transport that holds a response's head until the next write and sends both together.

    Everything but writing and closing goes straight to the wrapped transport.
    """

    __slots__ = ("_transport", "_head")

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        """Send ``data``, joined to the head held before it; hold it if it is a response head."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines([head, data])
        elif _is_final_head(data):
            self._head = bytes(data)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def flush(self) -> None:
        """Send the head held, if any."""
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _is_final_head(data: bytes) -> bool:
    """A response's status line and headers, not an interim 1xx answer (uvicorn writes a head
    in one piece, ending with the blank line)."""
    return data[:9] == b"HTTP/1.1 " and data[9:10] != b"1" and data[-4:] == b"\r\n\r\n"
