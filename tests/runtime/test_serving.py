"""Ops with a local model, end to end: requests over HTTP reach an op whose default
``process`` runs the model named by ``local_service_conf``.

Aspects covered:
- an ONNX op and a Paddle op answer each request as numpy or the eager net would, with
  batches of 4 formed from concurrent requests (the model runs once per batch);
- single samples, a client batch (``batch=True``) and a request bringing rows of its own
  share one batch and each get back exactly their rows;
- a request that does not fit the model fails alone, naming the tensor and both shapes,
  while its batchmates are answered;
- a process op loads its model in its own process;
- an ONNX op and a Paddle op in an op service, called by the gateway as remote ops, answer
  as the framework's own computation does;
- a missing model stops the server from starting, naming the op and the path.

Batches form deterministically: the number of requests is a multiple of batch_size and
auto_batching_timeout is far longer than the test, so every batch closes by count.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import httpx
import numpy as np
import pytest

from pipeserve import Op, PipelineServer, RequestOp, ResponseOp, codec
from pipeserve.opservice.server import OpServer, Settings
from pipeserve.pipeline import errors
from pipeserve.pipeline.config import load as load_config
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb

LONG_WAIT_MS = 60_000
"""auto_batching_timeout: batches close by count, never by time."""


class Model(Op):
    """An op with the default process: it runs the local model. Records each batch's size."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sizes: list[int] = []

    def init_op(self) -> None:
        predictor = self.local_predictor
        assert predictor is not None, "the worker loads the model before init_op"
        run_batch = predictor.run_batch

        def counted(feed_list: Any) -> Any:
            self.sizes.append(len(feed_list))
            return run_batch(feed_list)

        predictor.run_batch = counted  # type: ignore[method-assign]


def model_config(runtime: str, path: pathlib.Path, **op: Any) -> dict[str, Any]:
    local = {"runtime": runtime, "model_config": str(path), "thread_num": 1}
    return {"op": {"clf": {"batch_size": 4, "auto_batching_timeout": LONG_WAIT_MS, **op, "local_service_conf": local}}}


async def predict(http: httpx.AsyncClient, feed: dict[str, Any], batch: bool = False) -> tuple[int, pb.Response]:
    request = codec.request_from_values(feed, batch=batch)
    reply = await http.post("/t/prediction", content=codec.request_to_json(request))
    return reply.status_code, codec.response_from_json(reply.content)


def answer(reply: tuple[int, pb.Response]) -> np.ndarray:
    status, response = reply
    assert (status, response.err_no) == (200, 0), response.err_msg
    (value,) = codec.values_from_response(response).values()
    assert isinstance(value, np.ndarray)
    return value


async def test_an_onnx_op_answers_each_request_with_its_own_rows(
    serve: Any, onnx_model: pathlib.Path, onnx_reference: Any
) -> None:
    clf = Model(name="clf", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[clf]), model_config("onnx", onnx_model))
    x = np.random.default_rng(5).standard_normal((11, 4)).astype(np.float32)
    # (feed, batch flag, rows of x it carries): 6 single samples, a client batch of 3, 2 rows.
    sent = [({"x": x[i]}, False, slice(i, i + 1)) for i in range(6)]
    sent += [({"x": x[6:9]}, True, slice(6, 9)), ({"x": x[9:11]}, False, slice(9, 11))]

    async with running.http() as http:
        replies = await asyncio.gather(*(predict(http, feed, batch) for feed, batch, _ in sent))

    expected = onnx_reference(x)
    for (feed, _, rows), reply in zip(sent, replies):
        want = expected[rows] if feed["x"].ndim == 2 else expected[rows][0]
        np.testing.assert_allclose(answer(reply), want, rtol=1e-6, atol=1e-7)
    assert clf.sizes == [4, 4]


async def test_a_request_that_does_not_fit_fails_alone(
    serve: Any, onnx_model: pathlib.Path, onnx_reference: Any
) -> None:
    clf = Model(name="clf", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[clf]), model_config("onnx", onnx_model))
    x = np.random.default_rng(6).standard_normal((3, 4)).astype(np.float32)
    feeds = [{"x": x[0]}, {"x": np.ones(5, np.float32)}, {"x": x[1]}, {"x": x[2]}]

    async with running.http() as http:
        replies = await asyncio.gather(*(predict(http, feed) for feed in feeds))

    status, response = replies[1]
    assert (status, response.err_no) == (400, errors.ErrCode.INPUT_PARAMS_ERROR)
    assert response.err_msg == "op 'clf': feed 'x': shape (5,) does not fit the model's (-1, 4)"
    expected = onnx_reference(x)
    for reply, want in zip([replies[0], replies[2], replies[3]], expected):
        np.testing.assert_allclose(answer(reply), want, rtol=1e-6, atol=1e-7)
    assert clf.sizes == [3]


async def test_a_paddle_op_answers_each_request_as_the_eager_net(serve: Any, paddle_model: Any) -> None:
    clf = Model(name="clf", input_ops=[RequestOp()])
    config = model_config("paddle", paddle_model.prefix)
    config["op"]["clf"]["local_service_conf"].update(use_mkldnn=True, ir_optim=True)
    running = await serve(ResponseOp(input_ops=[clf]), config)
    x = np.random.default_rng(7).standard_normal((8, 3, 8, 8)).astype(np.float32)

    async with running.http() as http:
        replies = await asyncio.gather(*(predict(http, {"x": sample}) for sample in x))

    expected = paddle_model.eager(x)
    for reply, want in zip(replies, expected):
        np.testing.assert_allclose(answer(reply), want, rtol=1e-5, atol=1e-6)
    assert clf.sizes == [4, 4]


async def test_a_process_op_loads_its_model_in_its_own_process(
    serve: Any, onnx_model: pathlib.Path, onnx_reference: Any
) -> None:
    clf = Op(name="clf", input_ops=[RequestOp()])
    config = model_config("onnx", onnx_model, is_thread_op=False, batch_size=2)
    running = await serve(ResponseOp(input_ops=[clf]), config)
    x = np.random.default_rng(8).standard_normal((4, 4)).astype(np.float32)

    async with running.http() as http:
        replies = await asyncio.gather(*(predict(http, {"x": sample}) for sample in x))

    assert clf.local_predictor is None  # the server's own copy of the op never loads it
    for reply, want in zip(replies, onnx_reference(x)):
        np.testing.assert_allclose(answer(reply), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["onnx", "paddle"])
async def test_a_model_op_in_an_op_service_answers_as_the_framework_does(
    serve: Any, onnx_model: pathlib.Path, onnx_reference: Any, paddle_model: Any, kind: str
) -> None:
    if kind == "onnx":
        path, reference, x = onnx_model, onnx_reference, np.random.default_rng(9).standard_normal((8, 4))
    else:
        path, reference, x = paddle_model.prefix, paddle_model.eager, np.random.default_rng(9).standard_normal((8, 3, 8, 8))
    x = x.astype(np.float32)
    config = model_config(kind, path)
    service = OpServer(Op(name="clf"), load_config({"http_port": 0, **config}), Settings(host="127.0.0.1", grace_s=1))
    port = await service.start()
    try:
        config["op"]["clf"]["server_endpoints"] = [f"127.0.0.1:{port}"]
        running = await serve(ResponseOp(input_ops=[Op(name="clf", input_ops=[RequestOp()])]), config)
        async with running.http() as http:
            replies = await asyncio.gather(*(predict(http, {"x": sample}) for sample in x))
    finally:
        await service.stop(grace_s=1)

    for reply, want in zip(replies, reference(x)):
        np.testing.assert_allclose(answer(reply), want, rtol=1e-5, atol=1e-6)


async def test_a_missing_model_stops_the_server_naming_the_op_and_the_path(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.onnx"
    server = PipelineServer(name="t")
    server.set_response_op(ResponseOp(input_ops=[Op(name="clf", input_ops=[RequestOp()])]))
    config = {"host": "127.0.0.1", "http_port": 0, "rpc_port": 0, "log_dir": str(tmp_path / "logs")}
    server.prepare_server(yml_dict={**config, **model_config("onnx", missing)})
    try:
        with pytest.raises(errors.ConfigError) as caught:
            await server.start()
    finally:
        await server.stop(grace_s=0)

    assert str(caught.value) == f"op 'clf': local_service_conf.model_config: no model at '{missing}'"
