"""Large values between the gateway and op services travel through the payload store.

Aspects, each against a real valkey server:

- a big output of one op service reaches the next op service as a reference (the
  gateway never reads it) and the answer is right; a big request value is written once by
  the gateway; a big value the response needs is read back by the gateway; an op in the
  gateway reads the references it consumes;
- no key is left after a run of successes, op errors and timeouts mixed;
- a value over max_value_bytes fails its request with an error naming the value;
- Redis down: the request fails with an error naming the payload store, quickly, and
  service resumes by itself when Redis is back;
- a reference whose value is gone fails with an error naming the op and the key.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from pipeserve import Op, RequestOp, ResponseOp, codec
from pipeserve.opservice.server import OpServer, Settings
from pipeserve.pipeline import config as config_mod

ROWS = 128  # 128 x 128 float32 = 64 KiB, over the 16 KiB threshold below
THRESHOLD = 16 * 1024
DEADLINE_S = 10


class MakeOp(Op):
    """Op A: a big array derived from the request's seed."""

    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        (inputs,) = input_dicts.values()
        seed = int(inputs["seed"])
        if seed < 0:
            raise ValueError("negative seed")
        return {"image": np.full((ROWS, ROWS), seed, np.float32), "seed": seed}


class SumOp(Op):
    """Op B: the sum of A's array; waits for ``gate`` when the seed asks it to."""

    gate = threading.Event()

    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        make = input_dicts["make"]
        if make["seed"] == 7:
            self.gate.wait(DEADLINE_S)
        return {"total": np.float32(make["image"].sum())}


def payload_config(redis_url: str, **ops: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "w3",
        "dag": {"timeout": 3000},
        "payload": {"store": "redis", "redis_url": redis_url, "threshold_bytes": THRESHOLD, "timeout_ms": 500},
        "op": {name: dict(settings) for name, settings in ops.items()},
    }


async def start_service(started: list[OpServer], op: Op, config: dict[str, Any]) -> str:
    server = OpServer(op, config_mod.load({"http_port": 0, **config}), Settings(host="127.0.0.1", grace_s=1))
    started.append(server)
    return f"127.0.0.1:{await server.start()}"


@pytest.fixture
async def services() -> Any:
    started: list[OpServer] = []
    yield started
    SumOp.gate.set()
    for server in started:
        await server.stop(grace_s=1)
    SumOp.gate.clear()


async def post(running: Any, seed: int) -> dict[str, Any]:
    async with running.http() as http:
        reply = await http.post(running.url(), json={"key": ["seed"], "value": [str(seed)]})
    return dict(reply.json())


def keys_left(redis_server: Any) -> list[bytes]:
    return sorted(redis_server.client().keys("*"))


async def remote_pair(serve: Any, services: list[OpServer], redis_url: str, **sum_settings: Any) -> Any:
    config = payload_config(redis_url, make={}, sum={"timeout": 2000, **sum_settings})
    make = await start_service(services, MakeOp(name="make"), config)
    total = await start_service(services, SumOp(name="sum"), config)
    config["op"]["make"]["server_endpoints"] = [make]
    config["op"]["sum"]["server_endpoints"] = [total]
    read = RequestOp()
    dag = SumOp(name="sum", input_ops=[MakeOp(name="make", input_ops=[read])])
    return await serve(ResponseOp(input_ops=[dag]), config, name="w3")


async def test_a_big_value_goes_from_op_service_to_op_service_by_reference(
    serve: Any, services: list[OpServer], redis_server: Any
) -> None:
    running = await remote_pair(serve, services, redis_server.url)
    monitor = redis_server.client()
    before = monitor.info("stats")["total_commands_processed"]

    bodies = await asyncio.gather(*(post(running, seed) for seed in (1, 2, 3)))

    assert [codec.values_from_response(codec.response_from_json(_json(b)))["total"] for b in bodies] == [
        np.float32(seed * ROWS * ROWS) for seed in (1, 2, 3)
    ]
    assert monitor.info("stats")["total_commands_processed"] > before  # the store was used
    assert keys_left(redis_server) == []


async def test_the_response_and_ops_in_the_gateway_read_the_references_they_need(
    serve: Any, services: list[OpServer], redis_server: Any
) -> None:
    config = payload_config(redis_url=redis_server.url, make={})
    make = await start_service(services, MakeOp(name="make"), config)
    config["op"]["make"]["server_endpoints"] = [make]
    config["op"]["total"] = {"inline": True}
    read = RequestOp()
    made = MakeOp(name="make", input_ops=[read])
    local_sum = SumOp(name="total", input_ops=[made])

    class Both(Op):
        def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
            return {"image": input_dicts["make"]["image"], "total": input_dicts["total"]["total"]}

    config["op"]["both"] = {"inline": True}
    running = await serve(ResponseOp(input_ops=[Both(name="both", input_ops=[made, local_sum])]), config, name="w3")

    body = await post(running, 2)

    values = codec.values_from_response(codec.response_from_json(_json(body)))
    np.testing.assert_array_equal(values["image"], np.full((ROWS, ROWS), 2, np.float32))
    assert values["total"] == np.float32(2 * ROWS * ROWS)
    assert keys_left(redis_server) == []


class Measure(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        (inputs,) = input_dicts.values()
        return {"total": np.float32(inputs["x"].sum())}


class Add(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        return {"total": np.float32(input_dicts["one"]["total"] + input_dicts["two"]["total"])}


async def test_a_big_request_value_read_by_two_op_services_is_written_once_by_the_gateway(
    serve: Any, services: list[OpServer], redis_server: Any
) -> None:
    config = payload_config(redis_server.url, one={}, two={}, add={"inline": True})
    for name in ("one", "two"):
        endpoint = await start_service(services, Measure(name=name), config)
        config["op"][name]["server_endpoints"] = [endpoint]
    read = RequestOp()
    add = Add(name="add", input_ops=[Measure(name="one", input_ops=[read]), Measure(name="two", input_ops=[read])])
    running = await serve(ResponseOp(input_ops=[add]), config, name="w3")
    x = np.ones(THRESHOLD, np.float32)  # 64 KiB
    monitor = redis_server.client()
    writes_before = monitor.info("commandstats").get("cmdstat_set", {}).get("calls", 0)

    async with running.http() as http:
        reply = await http.post(running.url(), content=codec.request_to_json(codec.request_from_values({"x": x})))

    assert codec.values_from_response(codec.response_from_json(reply.content))["total"] == np.float32(2 * THRESHOLD)
    assert monitor.info("commandstats")["cmdstat_set"]["calls"] - writes_before == 1
    assert keys_left(redis_server) == []


async def test_no_key_is_left_after_successes_errors_and_timeouts(
    serve: Any, services: list[OpServer], redis_server: Any
) -> None:
    running = await remote_pair(serve, services, redis_server.url, timeout=300, concurrency=4)

    bodies = await asyncio.gather(*(post(running, seed) for seed in (1, -1, 7, 2, -2, 7, 3)))
    SumOp.gate.set()

    assert [b["err_no"] for b in bodies] == [0, 8, 1, 0, 8, 1, 0]
    deadline = time.monotonic() + DEADLINE_S
    while keys_left(redis_server) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # sync-ok: the late batches' keys are deleted as they end
    assert keys_left(redis_server) == []


async def test_redis_down_fails_clearly_and_service_resumes_when_it_is_back(
    serve: Any, services: list[OpServer], redis_server: Any
) -> None:
    running = await remote_pair(serve, services, redis_server.url)
    assert (await post(running, 1))["err_no"] == 0
    redis_server.stop()

    started = time.monotonic()
    down = await post(running, 2)

    assert down["err_no"] != 0
    assert f"redis at {redis_server.url}" in down["err_msg"]
    assert time.monotonic() - started < 3
    redis_server.start()
    deadline = time.monotonic() + DEADLINE_S
    body = await post(running, 3)
    while body["err_no"] != 0 and time.monotonic() < deadline:  # sync-ok: the pool reconnects
        body = await post(running, 3)
    assert body["err_no"] == 0
    assert keys_left(redis_server) == []


async def test_a_reference_whose_value_is_gone_names_the_op_and_the_key(
    serve: Any, services: list[OpServer], redis_server: Any
) -> None:
    class Gate(Op):
        def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
            SumOp.gate.wait(DEADLINE_S)
            return {"ok": True}

    class Late(Op):
        def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
            return {"total": np.float32(input_dicts["make"]["image"].sum())}

    config = payload_config(redis_server.url, make={}, late={}, gate={})
    make = await start_service(services, MakeOp(name="make"), config)
    late = await start_service(services, Late(name="late"), config)
    config["op"]["make"]["server_endpoints"] = [make]
    config["op"]["late"]["server_endpoints"] = [late]
    read = RequestOp()
    dag = Late(name="late", input_ops=[MakeOp(name="make", input_ops=[read]), Gate(name="gate", input_ops=[read])])
    running = await serve(ResponseOp(input_ops=[dag]), config, name="w3")

    reply = asyncio.ensure_future(post(running, 1))
    deadline = time.monotonic() + DEADLINE_S
    client = redis_server.client()
    while not client.keys("*:make:*") and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # sync-ok: waits for make's value to be stored
    gone = client.keys("*:make:*")
    client.delete(*gone)
    SumOp.gate.set()
    body = await reply

    assert body["err_no"] == 1
    assert f"payload value '{gone[0].decode()}' of op 'late' is no longer in" in body["err_msg"]


def _json(body: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(body)


async def test_a_value_over_max_value_bytes_fails_its_request_with_a_clear_error(
    serve: Any, services: list[OpServer], redis_server: Any
) -> None:
    config = payload_config(redis_server.url, make={}, sum={})
    config["payload"]["max_value_bytes"] = 2 * THRESHOLD  # A's 64 KiB array is over it
    make = await start_service(services, MakeOp(name="make"), config)
    total = await start_service(services, SumOp(name="sum"), config)
    config["op"]["make"]["server_endpoints"] = [make]
    config["op"]["sum"]["server_endpoints"] = [total]
    dag = SumOp(name="sum", input_ops=[MakeOp(name="make", input_ops=[RequestOp()])])
    running = await serve(ResponseOp(input_ops=[dag]), config, name="w3")

    body = await post(running, 1)

    assert body["err_no"] == 9
    assert body["err_msg"].startswith("payload value 'pipeserve:w3:")
    assert ":make:output%5B%27image%27%5D' is 65536 bytes, over payload.max_value_bytes (32768)" in body["err_msg"]
    assert keys_left(redis_server) == []
