"""Payload store metrics count what each process wrote to and read from the store.

Aspects:
- a big value made by one op service and read by the next: the maker's metrics count one
  write of its bytes per request, the reader's one hit of the same bytes, the gateway none;
- a missing value counts as a miss, and the error still reaches the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.monitor import metered_store, metrics
from pipeserve.opservice.server import OpServer, Settings
from pipeserve.payload import PayloadExpiredError, memory
from pipeserve.pipeline import config as config_mod

ROWS = 128
BYTES = ROWS * ROWS * 4  # one float32 image, over the threshold below
REQUESTS = 3


class MakeOp(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        (inputs,) = input_dicts.values()
        return {"image": np.full((ROWS, ROWS), int(inputs["seed"]), np.float32)}


class SumOp(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        return {"total": np.float32(input_dicts["make"]["image"].sum())}


def payload_samples(text: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("pipeserve_payload_"):
                label = sample.labels.get("result")
                found[sample.name + (f"[{label}]" if label else "")] = sample.value
    return found


@pytest.fixture
async def services() -> AsyncIterator[list[OpServer]]:
    started: list[OpServer] = []
    yield started
    for server in started:
        await server.stop(grace_s=1)


async def test_each_process_counts_its_own_payload_writes_and_reads(
    serve: Any, services: list[OpServer], redis_server: Any
) -> None:
    config: dict[str, Any] = {
        "name": "big",
        "metrics": True,
        "payload": {"store": "redis", "redis_url": redis_server.url, "threshold_bytes": 16 * 1024},
        "op": {"make": {}, "sum": {"timeout": 2000}},
    }
    for op in (MakeOp(name="make"), SumOp(name="sum")):
        settings = Settings(host="127.0.0.1", grace_s=1, metrics_port=0)
        server = OpServer(op, config_mod.load({"http_port": 0, **config}), settings)
        config["op"][op.name]["server_endpoints"] = [f"127.0.0.1:{await server.start()}"]
        services.append(server)
    read = RequestOp()
    running = await serve(ResponseOp(input_ops=[SumOp(name="sum", input_ops=[MakeOp(name="make", input_ops=[read])])]), config, name="big")

    async with running.http() as http:
        replies = await asyncio.gather(
            *(http.post(running.url(), json={"key": ["seed"], "value": [str(seed)]}) for seed in range(REQUESTS))
        )
        assert [reply.json()["err_no"] for reply in replies] == [0] * REQUESTS
        gateway = payload_samples((await http.get("/metrics")).text)
    async with httpx.AsyncClient() as client:
        maker, reader = [
            payload_samples((await client.get(f"http://127.0.0.1:{server.metrics_port}/metrics")).text)
            for server in services
        ]

    nothing = {
        "pipeserve_payload_reads_total[hit]": 0, "pipeserve_payload_reads_total[miss]": 0,
        "pipeserve_payload_read_bytes_total": 0, "pipeserve_payload_writes_total": 0,
        "pipeserve_payload_written_bytes_total": 0,
    }  # fmt: skip
    assert maker == {**nothing, "pipeserve_payload_writes_total": REQUESTS, "pipeserve_payload_written_bytes_total": REQUESTS * BYTES}
    assert reader == {**nothing, "pipeserve_payload_reads_total[hit]": REQUESTS, "pipeserve_payload_read_bytes_total": REQUESTS * BYTES}
    assert gateway == nothing


async def test_a_missing_value_counts_as_a_miss() -> None:
    counted = metrics.PipelineMetrics("t")
    store = metered_store.metered(memory.MemoryStore(config_mod.PayloadConfig(), "t"), counted)
    assert store is not None
    key = store.keys.request_prefix("1") + "make:image"
    await store.put(key, b"x" * 2048, store.keys.request_set("1"))
    assert await store.get(key) == b"x" * 2048
    with pytest.raises(PayloadExpiredError):
        await store.get(key + "-gone", op="make", value="image")
    assert counted.payload == {"hits": 1, "misses": 1, "read_bytes": 2048, "writes": 1, "written_bytes": 2048}
    await store.close()
