"""PipelineClient (seed §3.5) against a real server, over gRPC and over HTTP.

Aspects: answers come back with ``err_no`` 0 and arrays as arrays of the same dtype;
``fetch`` filters keys; ``asyn=True`` returns futures; ``batch=True`` sends one request of
many rows (seed §4.5); ``log_id`` reaches the ops; an endpoint nobody listens on answers
``err_no`` 5 (CLIENT_ERROR) with the reason instead of raising; ``res["ecode"]`` is the
seeds' alias of ``err_no``. The client is blocking, so it runs in a thread beside the
server's event loop.
"""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from pipeserve import Op, PipelineClient, RequestOp, ResponseOp
from pipeserve.pipeline import errors


class Double(Op):
    """Doubles ``x``, tags the answer and records the log_id of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.log_ids: list[int] = []

    def preprocess(self, input_dicts, data_id, log_id):
        self.log_ids.append(log_id)
        ((_, values),) = input_dicts.items()
        return values, False, None, ""

    def process(self, feed_list, typical_logid):
        return [{"y": feed["x"] * 2, "tag": "doubled"} for feed in feed_list]


class BatchDouble(Op):
    """A model that takes a batch: one dict of arrays whose first axis runs over samples."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.shapes: list[tuple[int, ...]] = []

    def process(self, feed_list, typical_logid):
        self.shapes.extend(feed["x"].shape for feed in feed_list)
        return {"y": np.concatenate([feed["x"] for feed in feed_list]) * 2}


async def start_double(serve):
    double = Double(name="double", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[double]), name="t")
    return running, double


def grpc_client(running) -> PipelineClient:
    client = PipelineClient(timeout_s=30)
    client.connect([running.grpc_target])
    return client


def http_client(running) -> PipelineClient:
    client = PipelineClient("http", name="t", timeout_s=30)
    client.connect([f"127.0.0.1:{running.endpoints.http_port}"])
    return client


CLIENTS = {"grpc": grpc_client, "http": http_client}


def free_port() -> int:
    """A loopback port that nobody listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("connect", CLIENTS.values(), ids=CLIENTS.keys())
async def test_predict_answers_arrays_with_their_dtype_and_strings(serve, connect):
    running, _ = await start_double(serve)
    x = np.arange(6, dtype=np.int16).reshape(2, 3)
    with connect(running) as client:
        res = await asyncio.to_thread(client.predict, {"x": x, "words": "hi"})
    assert (res.err_no, res.err_msg) == (0, "")
    assert isinstance(res["y"], np.ndarray)
    assert res["y"].dtype == np.int16
    np.testing.assert_array_equal(res["y"], x * 2)
    assert res["tag"] == "doubled"
    assert set(res) == {"err_no", "err_msg", "y", "tag"}


@pytest.mark.parametrize("connect", CLIENTS.values(), ids=CLIENTS.keys())
async def test_fetch_keeps_only_the_listed_keys(serve, connect):
    running, _ = await start_double(serve)
    with connect(running) as client:
        res = await asyncio.to_thread(client.predict, {"x": np.ones(2, np.float32)}, fetch=["y"])
    assert res.err_no == 0
    assert set(res.outputs) == {"y"}
    np.testing.assert_array_equal(res["y"], np.full(2, 2, np.float32))


@pytest.mark.parametrize("connect", CLIENTS.values(), ids=CLIENTS.keys())
async def test_asyn_returns_futures_whose_results_are_the_answers(serve, connect):
    running, _ = await start_double(serve)
    with connect(running) as client:

        def seed_client() -> list[float]:
            # seed §3.5: three asynchronous requests, then each result checked.
            futures = [
                client.predict(feed_dict={"x": np.float64(i)}, fetch=["y"], asyn=True) for i in range(3)
            ]
            results = [f.result(timeout=30) for f in futures]
            assert [res["ecode"] for res in results] == [0, 0, 0]
            return [float(res["y"]) for res in results]

        assert await asyncio.to_thread(seed_client) == [0.0, 2.0, 4.0]


@pytest.mark.parametrize("connect", CLIENTS.values(), ids=CLIENTS.keys())
async def test_batch_sends_one_request_of_many_rows(serve, connect):
    op = BatchDouble(name="batch_double", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[op]), name="t")
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with connect(running) as client:
        res = await asyncio.to_thread(client.predict, {"x": x}, batch=True)
    assert (res.err_no, res.err_msg) == (0, "")
    assert op.shapes == [(3, 4)]  # one feed of three rows, not three requests
    assert res["y"].shape == (3, 4)
    np.testing.assert_array_equal(res["y"], x * 2)


@pytest.mark.parametrize("connect", CLIENTS.values(), ids=CLIENTS.keys())
async def test_log_id_reaches_the_ops(serve, connect):
    running, double = await start_double(serve)
    with connect(running) as client:
        res = await asyncio.to_thread(client.predict, {"x": np.zeros(1)}, log_id=123456789012)
    assert res.err_no == 0
    assert double.log_ids == [123456789012]


@pytest.mark.parametrize("connect", CLIENTS.values(), ids=CLIENTS.keys())
async def test_server_error_comes_back_as_err_no_and_err_msg(serve, connect):
    running, _ = await start_double(serve)
    with connect(running) as client:
        # Double reads feed["x"]: without it, process raises KeyError.
        res = await asyncio.to_thread(client.predict, {"words": "no x"})
    assert res["ecode"] == res["err_no"] == res.err_no == errors.ErrCode.UNKNOW
    assert res["err_msg"] == "internal error in op 'double': KeyError (see pipeline.log.wf)"
    assert res.outputs == {}


async def test_unreachable_grpc_endpoint_answers_client_error():
    client = PipelineClient(timeout_s=5)
    client.connect([f"127.0.0.1:{free_port()}"])
    with client:
        res = await asyncio.to_thread(client.predict, {"words": "hello"})
    assert res.err_no == res["ecode"] == errors.ErrCode.CLIENT_ERROR == 5
    assert res.err_msg.startswith("gRPC call failed: UNAVAILABLE: "), res.err_msg


async def test_unreachable_http_endpoint_answers_client_error():
    endpoint = f"127.0.0.1:{free_port()}"
    client = PipelineClient("http", name="t", timeout_s=5)
    client.connect([endpoint])
    with client:
        res = await asyncio.to_thread(client.predict, {"words": "hello"})
    assert res.err_no == res["ecode"] == 5
    assert res.err_msg.startswith(f"cannot reach {endpoint}: "), res.err_msg


async def test_client_reconnects_after_an_unreachable_endpoint(serve):
    running, _ = await start_double(serve)
    client = PipelineClient(timeout_s=5)
    with client:
        client.connect([f"127.0.0.1:{free_port()}"])
        failed = await asyncio.to_thread(client.predict, {"x": np.zeros(1)})
        client.connect([running.grpc_target])
        res = await asyncio.to_thread(client.predict, {"x": np.ones(1)})
    assert failed.err_no == 5
    assert res.err_no == 0
    np.testing.assert_array_equal(res["y"], [2.0])
