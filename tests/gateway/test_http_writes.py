"""One socket write per response: the gateway sends a response's head together with its body.

Aspects:

- ``HeadJoiningTransport`` holds a final response head until the next write and hands both to
  the transport in one call; other writes, and interim ``100 Continue`` answers, go straight
  through; the end of a response, closing and ``write_eof`` send a held head; nothing is written
  to a transport that is closing; everything else reaches the transport unchanged;
- over real HTTP on loopback, each response of a keep-alive connection reaches the socket's
  transport in exactly one write, and what joining could break still works: pipelined
  requests answered in order, a large body, ``Expect: 100-continue``, ``Connection: close``, a
  HEAD request (a head with no body) followed by another request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.gateway import http_protocol
from pipeserve.gateway.http_protocol import HeadJoiningTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n"
BODY = b'{"err_no": 0}'


class RecordingTransport:
    """What reaches the socket: each write (or writelines) call, and whether it was closed."""

    def __init__(self, wrapped: Any = None) -> None:
        self.wrapped = wrapped
        self.calls: list[list[bytes]] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append([bytes(data)])
        if self.wrapped is not None:
            self.wrapped.write(data)

    def writelines(self, list_of_data: list[bytes]) -> None:
        self.calls.append([bytes(d) for d in list_of_data])
        if self.wrapped is not None:
            self.wrapped.writelines(list_of_data)

    def is_closing(self) -> bool:
        return self.closed if self.wrapped is None else self.wrapped.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.wrapped is not None:
            self.wrapped.close()

    def write_eof(self) -> None:
        self.calls.append([b"<eof>"])

    def __getattr__(self, name: str) -> Any:
        if self.wrapped is None:
            if name == "get_extra_info":
                return lambda key, default=None: ("127.0.0.1", 1234) if key == "peername" else default
            raise AttributeError(name)
        return getattr(self.wrapped, name)


def joining() -> tuple[HeadJoiningTransport, RecordingTransport]:
    transport = RecordingTransport()
    return HeadJoiningTransport(transport), transport  # type: ignore[arg-type]


# --- HeadJoiningTransport ----------------------------------------------------------------


def test_a_head_waits_for_its_body_and_both_reach_the_transport_in_one_call() -> None:
    joined, transport = joining()
    joined.write(HEAD)
    assert transport.calls == []
    joined.write(BODY)
    assert transport.calls == [[HEAD, BODY]]
    joined.write(b"more of a streamed body")
    assert transport.calls[1:] == [[b"more of a streamed body"]]


def test_writes_that_are_not_a_final_head_go_straight_through() -> None:
    joined, transport = joining()
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    joined.write(interim)
    joined.write(b"a body chunk")
    joined.write(HEAD[:20])  # a head is written whole, with its blank line: this is not one
    assert transport.calls == [[interim], [b"a body chunk"], [HEAD[:20]]]


def test_a_held_head_leaves_at_flush_close_and_write_eof() -> None:
    joined, transport = joining()
    joined.write(HEAD)
    joined.flush()  # the response ended without a body (an answer to HEAD)
    joined.flush()
    assert transport.calls == [[HEAD]]
    joined.write(HEAD)
    joined.write_eof()
    assert transport.calls[1:] == [[HEAD], [b"<eof>"]]
    joined.write(HEAD)
    joined.close()
    assert transport.calls[3:] == [[HEAD]] and transport.closed


def test_a_closing_transport_gets_no_held_head_and_other_calls_reach_the_transport() -> None:
    joined, transport = joining()
    joined.write(HEAD)
    transport.closed = True
    joined.flush()
    assert transport.calls == []
    assert joined.get_extra_info("peername") == ("127.0.0.1", 1234)


# --- the gateway over loopback -----------------------------------------------------------


class Echo(Op):
    """Answers the request's values as they came."""


@pytest.fixture
def socket_writes(monkeypatch: pytest.MonkeyPatch) -> list[RecordingTransport]:
    """The socket transport of every HTTP connection the gateway accepts, recorded."""
    recorded: list[RecordingTransport] = []
    connection_made = http_protocol.OneWriteProtocol.connection_made

    def recording_connection_made(self: Any, transport: Any) -> None:
        recorder = RecordingTransport(transport)
        recorded.append(recorder)
        connection_made(self, recorder)

    monkeypatch.setattr(http_protocol.OneWriteProtocol, "connection_made", recording_connection_made)
    return recorded


async def start_echo(serve: Any) -> Any:
    echo = Echo(name="echo", input_ops=[RequestOp()])
    return await serve(ResponseOp(input_ops=[echo]), {"max_request_bytes": 1 << 20}, name="t")


@contextlib.asynccontextmanager
async def connected(running: Any) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP connection to the gateway's HTTP port, closed afterwards."""
    reader, writer = await asyncio.open_connection("127.0.0.1", running.endpoints.http_port)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


def http_request(body: bytes, *extra_headers: str) -> bytes:
    head = ["POST /t/prediction HTTP/1.1", "Host: localhost", "Content-Type: application/json"]
    head += [f"Content-Length: {len(body)}", *extra_headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One HTTP/1.1 response: its status line, headers and body (by Content-Length)."""
    status = (await reader.readline()).strip()
    headers: dict[str, str] = {}
    while (line := (await reader.readline()).strip()) != b"":
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def words_body(text: str) -> bytes:
    return orjson.dumps({"key": ["words"], "value": [text]})


async def test_each_response_reaches_the_socket_in_one_write(serve: Any, socket_writes: list[RecordingTransport]) -> None:
    running = await start_echo(serve)
    async with connected(running) as (reader, writer):
        for i in range(5):
            writer.write(http_request(words_body(f"request {i}")))
            status, _, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert orjson.loads(body)["value"] == [f"request {i}"]
    (connection,) = socket_writes
    assert len(connection.calls) == 5, [len(c) for c in connection.calls]
    for i, call in enumerate(connection.calls):
        response = b"".join(call)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response
        assert response.endswith(b'"value":["request %d"],"tensors":{}}' % i), response


async def test_pipelined_requests_are_answered_in_order(serve: Any, socket_writes: list[RecordingTransport]) -> None:
    running = await start_echo(serve)
    async with connected(running) as (reader, writer):
        writer.write(b"".join(http_request(words_body(f"piped {i}")) for i in range(3)))
        answers = [orjson.loads((await read_response(reader))[2])["value"] for _ in range(3)]
    assert answers == [["piped 0"], ["piped 1"], ["piped 2"]]


async def test_a_large_body_arrives_whole(serve: Any, socket_writes: list[RecordingTransport]) -> None:
    running = await start_echo(serve)
    array = np.arange(64 * 1024, dtype=np.float32)  # 256 KiB: more than one socket write takes
    tensor = {"dtype": "float32", "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode()}
    async with running.http() as http:
        reply = await http.post("/t/prediction", content=orjson.dumps({"tensors": {"x": tensor}}))
    assert reply.status_code == 200, reply.text[:200]
    answer = reply.json()["tensors"]["x"]
    assert np.array_equal(np.frombuffer(base64.b64decode(answer["data"]), np.float32), array)


async def test_expect_100_continue_gets_the_interim_answer_then_the_response(
    serve: Any, socket_writes: list[RecordingTransport]
) -> None:
    running = await start_echo(serve)
    body = words_body("after continue")
    async with connected(running) as (reader, writer):
        request = http_request(body, "Expect: 100-continue")
        writer.write(request[: -len(body)])  # the head alone: the server must invite the body
        assert (await reader.readline()).strip() == b"HTTP/1.1 100 Continue"
        assert (await reader.readline()).strip() == b""
        writer.write(body)
        status, _, answer = await read_response(reader)
    assert status == b"HTTP/1.1 200 OK" and orjson.loads(answer)["value"] == ["after continue"]


async def test_connection_close_gets_the_whole_response_then_the_close(
    serve: Any, socket_writes: list[RecordingTransport]
) -> None:
    running = await start_echo(serve)
    async with connected(running) as (reader, writer):
        writer.write(http_request(words_body("goodbye"), "Connection: close"))
        status, headers, answer = await read_response(reader)
        assert await reader.read() == b""  # then the server closes the connection
    assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert orjson.loads(answer)["value"] == ["goodbye"]


async def test_a_head_request_gets_its_head_and_the_connection_serves_on(
    serve: Any, socket_writes: list[RecordingTransport]
) -> None:
    running = await start_echo(serve)
    async with connected(running) as (reader, writer):
        writer.write(b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        async with asyncio.timeout(10):  # a head left waiting for a body would never come
            status = (await reader.readline()).strip()
            while (await reader.readline()).strip() != b"":
                pass  # the headers; a HEAD answer has no body to read
        writer.write(http_request(words_body("after head")))
        _, _, answer = await read_response(reader)
    assert status.startswith(b"HTTP/1.1 ") and status[9:10] in (b"2", b"4"), status
    assert orjson.loads(answer)["value"] == ["after head"]
