"""The HTTP front door: every bad request gets a clear answer, and the next one is served.

Aspects, all over real HTTP on loopback:

- a malformed body, a field of the wrong type, an unknown field, unpaired key/value, a bad
  tensor, an unsupported dtype or a body over ``max_request_bytes`` each answer their own
  status, ``err_no`` and exact message (seed §1.1.1 fields; STYLE R5, R6, R9);
- unknown service names and methods answer 404 naming what is served; a ``method`` list in
  the config adds routes (seed §4.4);
- binary tensors travel as base64 and come back bit for bit;
- health, readiness and the OpenAPI document;
- an op output that cannot be sent, or an op that raises, answers a clean error: never a
  traceback or the exception's text;
- with the default RequestOp and ResponseOp the body goes straight to values and back, with
  the same answers, byte for byte, as through the protobuf messages that overrides get.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from pipeserve import Op, RequestOp, ResponseOp, codec
from pipeserve.pipeline import errors

LIMIT = 2048
ALLOWED = ", ".join(codec.ALLOWED_DTYPES)
SECRET = "db password is hunter2"


class Echo(Op):
    """Answers the request's values as they came, unless ``do`` asks for a failure."""

    def preprocess(self, input_dicts):
        ((_, values),) = input_dicts.items()
        action = values.get("do")
        if action == "nest":
            return {"label": "ok", "meta": {"inner": 1}}
        if action == "raise":
            raise ValueError(SECRET)
        return values


class OwnUnpacking(RequestOp):
    """The default unpacking, overridden: the gateway must build the protobuf Request."""

    def unpack_request_package(self, request):
        return super().unpack_request_package(request)


class OwnPacking(ResponseOp):
    """The default packing, overridden: the gateway must go through the protobuf Response."""

    def pack_response_package(self, channeldata):
        return super().pack_response_package(channeldata)


async def start_echo(serve, read_op=RequestOp, response_op=ResponseOp):
    read = read_op()
    echo = Echo(name="echo", input_ops=[read])
    config = {"method": ["prediction", "infer"], "max_request_bytes": LIMIT}
    return await serve(response_op(input_ops=[echo]), config, name="t")


def decode(body: bytes) -> dict[str, Any]:
    obj = orjson.loads(body)
    assert "Traceback" not in body.decode(), body
    return obj


async def assert_serves_next_request(http) -> None:
    """A good request right after a bad one, on the same client, gets its answer."""
    reply = await http.post("/t/prediction", json={"key": ["words"], "value": ["still here"]})
    assert reply.status_code == 200, reply.text
    assert decode(reply.content) == {
        "err_no": 0, "err_msg": "", "key": ["words"], "value": ["still here"], "tensors": {},
    }  # fmt: skip


def tensor(dtype: str, shape: list[int], data: bytes) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data": base64.b64encode(data).decode()}


BAD_REQUESTS = {
    "malformed JSON": (
        b'{"key": ["a"], "value": [',
        400, 9, None,  # orjson's own wording follows the prefix
    ),
    "a body that is not an object": (
        b'["a", "b"]', 400, 9, "request body: must be a JSON object, got array",
    ),
    "value that is not a list": (
        {"key": ["a"], "value": "b"}, 400, 9, "value: must be an array of strings, got string",
    ),
    "key holding a number": (
        {"key": [1], "value": ["b"]}, 400, 9, "key[0]: must be a string, got int",
    ),
    "logid that is a string": (
        {"key": [], "value": [], "logid": "7"}, 400, 9, "logid: must be an integer, got string",
    ),
    "batch that is a number": (
        {"batch": 1}, 400, 9, "batch: must be true or false, got int",
    ),
    "an unknown top-level field": (
        {"keys": ["a"]}, 400, 9,
        "request body: unknown field 'keys'; use only key, value, name, method, logid, clientip,"
        " tensors, batch, profile",
    ),
    "more keys than values": (
        {"key": ["a", "b"], "value": ["1"]}, 400, 9, "key/value: 2 keys but 1 values",
    ),
    "a key sent twice": (
        {"key": ["a", "a"], "value": ["1", "2"]}, 400, 9, "key: 'a' appears twice; send each key once",
    ),
    "a key both in key and in tensors": (
        {"key": ["x"], "value": ["1"], "tensors": {"x": tensor("int8", [1], b"\x01")}}, 400, 9,
        "tensors.x: 'x' is also in key; send each key once, in key or in tensors",
    ),
    "tensor bytes that do not match dtype x shape": (
        {"tensors": {"x": tensor("float32", [2, 2], bytes(12))}}, 400, 9,
        "tensors.x: 12 bytes do not match float32 x [2, 2] (16 bytes)",
    ),
    "an unsupported dtype": (
        {"tensors": {"x": tensor("complex64", [1], bytes(8))}}, 400, 9,
        f"tensors.x.dtype: unsupported dtype 'complex64'; use one of {ALLOWED}",
    ),
    "a negative dimension": (
        {"tensors": {"x": tensor("int8", [-1], b"")}}, 400, 9,
        "tensors.x.shape[0]: must be an integer >= 0, got -1",
    ),
    "a tensor without data": (
        {"tensors": {"x": {"dtype": "int8", "shape": [1]}}}, 400, 9, "tensors.x: missing field 'data'",
    ),
}  # fmt: skip


@pytest.mark.parametrize("body, status, err_no, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_bad_request_gets_its_status_and_message_and_the_next_is_served(
    serve, body, status, err_no, message
):
    running = await start_echo(serve)
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    async with running.http() as http:
        reply = await http.post("/t/prediction", content=content)
        assert reply.status_code == status
        assert reply.headers["content-type"] == "application/json"
        answer = decode(reply.content)
        assert answer["err_no"] == err_no
        if message is None:
            assert answer["err_msg"].startswith("request body: not valid JSON ("), answer
        else:
            assert answer["err_msg"] == message
        assert answer["key"] == answer["value"] == [] and answer["tensors"] == {}
        await assert_serves_next_request(http)


async def test_unknown_service_name_answers_404_naming_the_served_url(serve):
    running = await start_echo(serve)
    async with running.http() as http:
        reply = await http.post("/other/prediction", json={"key": [], "value": []})
        assert reply.status_code == 404
        assert decode(reply.content)["err_no"] == errors.ErrCode.NO_SERVICE == 7
        assert reply.json()["err_msg"] == (
            "unknown service name 'other': this server serves 't' at /t/prediction"
        )
        await assert_serves_next_request(http)


async def test_unknown_method_answers_404_listing_the_configured_methods(serve):
    running = await start_echo(serve)
    async with running.http() as http:
        reply = await http.post("/t/nope", json={"key": [], "value": []})
        assert reply.status_code == 404
        answer = decode(reply.content)
        assert answer["err_no"] == 7
        assert answer["err_msg"] == "unknown method 'nope' for service 't': use one of prediction, infer"
        await assert_serves_next_request(http)


async def test_a_method_listed_in_the_config_is_served(serve):
    running = await start_echo(serve)
    async with running.http() as http:
        reply = await http.post("/t/infer", json={"key": ["a"], "value": ["b"]})
    assert reply.status_code == 200
    assert decode(reply.content)["value"] == ["b"]


async def test_body_over_max_request_bytes_answers_413_before_reading_it(serve):
    running = await start_echo(serve)
    content = orjson.dumps({"key": ["a"], "value": ["x" * LIMIT]})
    async with running.http() as http:
        reply = await http.post("/t/prediction", content=content)
        assert reply.status_code == 413
        answer = decode(reply.content)
        assert answer["err_no"] == 9
        assert answer["err_msg"] == f"request body: {len(content)} bytes is over the limit of {LIMIT}"
        await assert_serves_next_request(http)


async def test_chunked_body_over_max_request_bytes_answers_413(serve):
    running = await start_echo(serve)

    async def chunks():
        # No Content-Length: the limit is found while reading.
        for _ in range(4):
            yield b" " * 1000

    async with running.http() as http:
        reply = await http.post("/t/prediction", content=chunks())
        assert reply.status_code == 413
        answer = decode(reply.content)
        assert answer["err_no"] == 9
        assert answer["err_msg"] == f"request body: more than {LIMIT} bytes is over the limit"
        await assert_serves_next_request(http)


async def test_body_just_under_the_limit_is_served(serve):
    running = await start_echo(serve)
    filler = "x" * (LIMIT - len(orjson.dumps({"key": ["a"], "value": [""]})))
    content = orjson.dumps({"key": ["a"], "value": [filler]})
    assert len(content) == LIMIT
    async with running.http() as http:
        reply = await http.post("/t/prediction", content=content)
    assert reply.status_code == 200
    assert decode(reply.content)["value"] == [filler]


@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype=np.float16).reshape(3, 2),
        np.array([0, 2**64 - 1], dtype=np.uint64),
        np.array([[True, False]]),
        np.array(-7, dtype=np.int32),
        np.zeros((0, 3), dtype=np.float64),
    ],
    ids=["float16 3x2", "uint64 extremes", "bool 1x2", "int32 0-d", "float64 empty"],
)
async def test_binary_tensor_comes_back_as_the_same_base64_bytes(serve, array):
    running = await start_echo(serve)
    sent = tensor(array.dtype.name, list(array.shape), array.astype(array.dtype.newbyteorder("<")).tobytes())
    async with running.http() as http:
        reply = await http.post("/t/prediction", json={"tensors": {"x": sent}})
    assert reply.status_code == 200
    answer = decode(reply.content)
    assert answer["err_no"] == 0
    assert answer["tensors"] == {"x": sent}
    values = codec.values_from_response(codec.response_from_json(reply.content))
    np.testing.assert_array_equal(values["x"], array)
    assert values["x"].dtype == array.dtype


async def test_healthz_answers_200_alive(serve):
    running = await start_echo(serve)
    async with running.http() as http:
        reply = await http.get("/healthz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "alive"}


async def test_readyz_answers_200_once_started(serve):
    running = await start_echo(serve)
    async with running.http() as http:
        reply = await http.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ready"}


async def test_readyz_answers_503_draining_once_stopping(serve):
    running = await start_echo(serve)
    running.server.gateway.draining = True  # what stop() sets first
    async with running.http() as http:
        reply = await http.get("/readyz")
        assert reply.status_code == 503
        assert reply.json() == {"status": "not ready", "reason": "draining"}
        refused = await http.post("/t/prediction", json={"key": [], "value": []})
    assert refused.status_code == 503
    assert decode(refused.content) == {
        "err_no": 6, "err_msg": "server is shutting down; retry on another replica",
        "key": [], "value": [], "tensors": {},
    }  # fmt: skip


async def test_openapi_document_lists_the_prediction_route(serve):
    running = await start_echo(serve)
    async with running.http() as http:
        reply = await http.get("/openapi.json")
    assert reply.status_code == 200
    paths = reply.json()["paths"]
    assert "post" in paths["/{name}/{method}"]
    assert {"/healthz", "/readyz"} <= paths.keys()


async def test_op_output_that_cannot_be_sent_answers_err_no_3_naming_the_key(serve):
    running = await start_echo(serve)
    async with running.http() as http:
        reply = await http.post("/t/prediction", json={"key": ["do"], "value": ["nest"]})
        assert reply.status_code == 500
        assert decode(reply.content) == {
            "err_no": errors.ErrCode.TYPE_ERROR,
            "err_msg": "meta: cannot send a value of type dict; return a str or a numpy array",
            "key": [], "value": [], "tensors": {},
        }  # fmt: skip
        await assert_serves_next_request(http)


async def test_op_that_raises_answers_internal_error_without_its_text(serve):
    running = await start_echo(serve)
    async with running.http() as http:
        reply = await http.post("/t/prediction", json={"key": ["do"], "value": ["raise"]})
        assert reply.status_code == 500
        assert SECRET not in reply.text
        answer = decode(reply.content)
        assert answer["err_no"] == errors.ErrCode.UNKNOW
        assert answer["err_msg"] == "internal error in op 'echo': ValueError (see pipeline.log.wf)"
        await assert_serves_next_request(http)


SAME_EITHER_WAY = {
    **{name: ("/t/prediction", body) for name, (body, *_) in BAD_REQUESTS.items()},
    "strings": ("/t/prediction", {"key": ["a", "b"], "value": ["1", "2"], "logid": 7}),
    "a tensor": ("/t/infer", {"tensors": {"x": tensor("float16", [3, 2], bytes(12))}}),
    "strings and a tensor": (
        "/t/prediction", {"key": ["a"], "value": ["1"], "tensors": {"x": tensor("int8", [1], b"\x01")}},
    ),
    "an output that cannot be sent": ("/t/prediction", {"key": ["do"], "value": ["nest"]}),
    "an op that raises": ("/t/prediction", {"key": ["do"], "value": ["raise"]}),
    "an unknown name": ("/other/prediction", {"key": ["a"], "value": ["1"]}),
    "an unknown name and unpaired keys": ("/other/prediction", {"key": ["a"], "value": []}),
}


@pytest.mark.parametrize("path, body", SAME_EITHER_WAY.values(), ids=SAME_EITHER_WAY.keys())
async def test_default_ops_answer_byte_for_byte_as_overridden_ones_that_do_the_same(serve, path, body):
    direct = await start_echo(serve)
    via_protobuf = await start_echo(serve, OwnUnpacking, OwnPacking)
    assert direct.server.gateway.plain_request and direct.server.gateway.plain_response
    assert not via_protobuf.server.gateway.plain_request and not via_protobuf.server.gateway.plain_response
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    async with direct.http() as a, via_protobuf.http() as b:
        got, want = await a.post(path, content=content), await b.post(path, content=content)
    assert (got.status_code, got.content) == (want.status_code, want.content)


class WhoAsked(RequestOp):
    def unpack_request_package(self, request):
        return {"route": f"{request.name}/{request.method}", "clientip": request.clientip}


async def test_an_overridden_unpack_sees_the_route_and_the_client_address(serve):
    running = await start_echo(serve, read_op=WhoAsked)
    async with running.http() as http:
        reply = await http.post("/t/infer", json={})
    assert decode(reply.content) == {
        "err_no": 0, "err_msg": "", "key": ["route", "clientip"], "value": ["t/infer", "127.0.0.1"],
        "tensors": {},
    }  # fmt: skip


class Signed(ResponseOp):
    def pack_response_package(self, channeldata):
        response = super().pack_response_package(channeldata)
        response.key.append("signed")
        response.value.append("yes")
        return response


async def test_an_overridden_pack_is_what_goes_out(serve):
    running = await start_echo(serve, response_op=Signed)
    async with running.http() as http:
        reply = await http.post("/t/prediction", json={"key": ["a"], "value": ["1"]})
    assert decode(reply.content) == {
        "err_no": 0, "err_msg": "", "key": ["a", "signed"], "value": ["1", "yes"], "tensors": {},
    }  # fmt: skip
