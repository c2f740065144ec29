"""One socket write per response: the gateway's HTTP connections batch their small writes.

Aspects:

- ``BatchedWrites`` holds the writes made during one loop iteration and hands them to the
  transport as one ``writelines``, in order; a write that brings the held bytes to
  ``FLUSH_AT_BYTES`` goes at once; closing sends what is held first; nothing is written to a
  transport that is closing; everything else reaches the transport unchanged;
- over real HTTP on loopback, each response of a keep-alive connection reaches the socket's
  transport in exactly one write, and what batching could break still works: pipelined
  requests answered in order, a body larger than the flush threshold, ``Expect:
  100-continue``, ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import orjson
import pytest

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.gateway import http_protocol
from pipeserve.gateway.http_protocol import FLUSH_AT_BYTES, BatchedWrites


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


async def next_iteration() -> None:
    """Let the loop finish the callbacks scheduled so far (the flush is one of them)."""
    await asyncio.sleep(0)  # sync-ok: one loop iteration, not a wait for time to pass


# --- BatchedWrites ---------------------------------------------------------------------


async def test_writes_of_one_iteration_reach_the_transport_as_one_call_in_order() -> None:
    transport = RecordingTransport()
    batched = BatchedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    batched.write(b"HTTP/1.1 200 OK\r\n\r\n")
    batched.write(b'{"err_no": 0}')
    assert transport.calls == []
    await next_iteration()
    assert transport.calls == [[b"HTTP/1.1 200 OK\r\n\r\n", b'{"err_no": 0}']]
    batched.write(b"next")
    await next_iteration()
    assert transport.calls[1:] == [[b"next"]]


async def test_reaching_the_flush_threshold_writes_at_once_keeping_the_order() -> None:
    transport = RecordingTransport()
    batched = BatchedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    big = b"x" * FLUSH_AT_BYTES
    batched.write(big)  # nothing held: straight through
    assert transport.calls == [[big]]
    batched.write(b"head")
    batched.write(b"y" * (FLUSH_AT_BYTES - 4))  # brings the held bytes to the threshold
    assert transport.calls[1:] == [[b"head", b"y" * (FLUSH_AT_BYTES - 4)]]
    await next_iteration()
    assert len(transport.calls) == 2  # the scheduled flush found nothing left


async def test_close_sends_what_is_held_first_and_a_closing_transport_gets_nothing() -> None:
    transport = RecordingTransport()
    batched = BatchedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    batched.write(b"last words")
    batched.close()
    assert transport.calls == [[b"last words"]] and transport.closed
    batched.write(b"too late")
    await next_iteration()
    assert transport.calls == [[b"last words"]]


async def test_write_eof_sends_what_is_held_first_and_other_calls_reach_the_transport() -> None:
    transport = RecordingTransport()
    batched = BatchedWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
    batched.writelines([b"a", b"b"])
    batched.write_eof()
    assert transport.calls == [[b"a", b"b"], [b"<eof>"]]
    assert batched.get_extra_info("peername") == ("127.0.0.1", 1234)


# --- the gateway over loopback -----------------------------------------------------------


class Echo(Op):
    """Answers the request's values as they came."""


@pytest.fixture
def socket_writes(monkeypatch: pytest.MonkeyPatch) -> list[RecordingTransport]:
    """The socket transport of every HTTP connection the gateway accepts, recorded."""
    recorded: list[RecordingTransport] = []
    connection_made = http_protocol.BatchedWritesProtocol.connection_made

    def recording_connection_made(self: Any, transport: Any) -> None:
        recorder = RecordingTransport(transport)
        recorded.append(recorder)
        connection_made(self, recorder)

    monkeypatch.setattr(http_protocol.BatchedWritesProtocol, "connection_made", recording_connection_made)
    return recorded


async def start_echo(serve: Any) -> Any:
    echo = Echo(name="echo", input_ops=[RequestOp()])
    return await serve(ResponseOp(input_ops=[echo]), {"max_request_bytes": 4 * FLUSH_AT_BYTES}, name="t")


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
    reader, writer = await asyncio.open_connection("127.0.0.1", running.endpoints.http_port)
    try:
        for i in range(5):
            writer.write(http_request(words_body(f"request {i}")))
            status, _, body = await read_response(reader)
            assert status == b"HTTP/1.1 200 OK"
            assert orjson.loads(body)["value"] == [f"request {i}"]
    finally:
        writer.close()
        await writer.wait_closed()
    (connection,) = socket_writes
    assert len(connection.calls) == 5, [len(c) for c in connection.calls]
    for i, call in enumerate(connection.calls):
        response = b"".join(call)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n"), response
        assert response.endswith(b'"value":["request %d"],"tensors":{}}' % i), response


async def test_pipelined_requests_are_answered_in_order(serve: Any, socket_writes: list[RecordingTransport]) -> None:
    running = await start_echo(serve)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.endpoints.http_port)
    try:
        writer.write(b"".join(http_request(words_body(f"piped {i}")) for i in range(3)))
        answers = [orjson.loads((await read_response(reader))[2])["value"] for _ in range(3)]
    finally:
        writer.close()
        await writer.wait_closed()
    assert answers == [["piped 0"], ["piped 1"], ["piped 2"]]


async def test_a_body_larger_than_the_flush_threshold_arrives_whole(serve: Any, socket_writes: list[RecordingTransport]) -> None:
    running = await start_echo(serve)
    array = np.arange(2 * FLUSH_AT_BYTES // 4, dtype=np.float32)
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
    reader, writer = await asyncio.open_connection("127.0.0.1", running.endpoints.http_port)
    body = words_body("after continue")
    try:
        request = http_request(body, "Expect: 100-continue")
        writer.write(request[: -len(body)])  # the head alone: the server must invite the body
        assert (await reader.readline()).strip() == b"HTTP/1.1 100 Continue"
        assert (await reader.readline()).strip() == b""
        writer.write(body)
        status, _, answer = await read_response(reader)
    finally:
        writer.close()
        await writer.wait_closed()
    assert status == b"HTTP/1.1 200 OK" and orjson.loads(answer)["value"] == ["after continue"]


async def test_connection_close_gets_the_whole_response_then_the_close(
    serve: Any, socket_writes: list[RecordingTransport]
) -> None:
    running = await start_echo(serve)
    reader, writer = await asyncio.open_connection("127.0.0.1", running.endpoints.http_port)
    try:
        writer.write(http_request(words_body("goodbye"), "Connection: close"))
        status, headers, answer = await read_response(reader)
        assert await reader.read() == b""  # then the server closes the connection
    finally:
        writer.close()
        await writer.wait_closed()
    assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert orjson.loads(answer)["value"] == ["goodbye"]
