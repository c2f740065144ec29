"""What the operator renders really serves: the imdb PipelineService's ConfigMap (config.yml
and graph.yml) started as a real gateway with real op services on loopback.

Aspects:

- the rendered config.yml loads with ``pipeserve.pipeline.config.load`` and the rendered
  graph.yml builds the example's DAG;
- bow and cnn run in ``OpServer`` instances built from the rendered config, the gateway
  reaches them through the rendered ``server_endpoints`` (only their DNS names are replaced
  by the loopback ports, as cluster DNS would resolve them), and the payload store is a real
  Redis in place of the managed one;
- HTTP and gRPC answers equal the embedded example's (``models.predict_inline``).

Only addresses are rewritten; every other rendered setting is used as rendered.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml

from pipeserve import PipelineClient
from pipeserve.gateway import graph_file
from pipeserve.opservice.server import OpServer, Settings, load_op
from pipeserve.pipeline import config as config_mod
from pipeserve.operator import render

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import ImdbExample

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "imdb_ensemble"
SENTENCES = [
    "this movie was not good at all",
    "a wonderful film with a great cast",
    "the plot was bad but the music was fine",
    "great",
]


@pytest.fixture
def imdb(imdb_example: ImdbExample) -> Any:
    """The example's models module, with the example's folder importable (ops:BowOp, ...)."""
    return imdb_example.models


@pytest.fixture
async def op_servers() -> AsyncIterator[list[OpServer]]:
    started: list[OpServer] = []
    yield started
    for server in started:
        await server.stop(grace_s=1)


def rendered_files() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    parent = yaml.safe_load((EXAMPLE / "pipelineservice.yaml").read_text())
    parent["metadata"].update(namespace="ml", uid="uid-1", generation=1)
    (config_map,) = [c for c in render.render_children(parent) if c["kind"] == "ConfigMap"]
    config = yaml.safe_load(config_map["data"]["config.yml"])
    graph = yaml.safe_load(config_map["data"]["graph.yml"])
    assert config == render.render_pipeline_config(parent)
    return parent, config, graph


def on_loopback(config: dict[str, Any], redis_url: str, tmp_path: Path, endpoints: dict[str, str]) -> dict[str, Any]:
    """The rendered config with cluster addresses replaced by loopback ones."""
    config = {**config, "host": "127.0.0.1", "http_port": 0, "rpc_port": 0, "log_dir": str(tmp_path / "logs")}
    assert config["payload"]["redis_url"] == "redis://imdb-redis.ml.svc.cluster.local:6379/0"
    config["payload"] = {**config["payload"], "redis_url": redis_url}
    ops = {name: dict(section) for name, section in config["op"].items()}
    for name, address in endpoints.items():
        assert ops[name]["server_endpoints"] == [f"dns:///imdb-{name}.ml.svc.cluster.local:9000"]
        ops[name]["server_endpoints"] = [address]
    config["op"] = ops
    return config


def test_the_rendered_config_loads_and_places_bow_and_cnn_in_op_services() -> None:
    _, config, _ = rendered_files()
    loaded = config_mod.load(config)
    assert loaded.name == "imdb"
    assert (loaded.http_port, loaded.rpc_port, loaded.worker_num) == (18070, 18071, 32)
    assert loaded.ops["bow"].server_endpoints == ("dns:///imdb-bow.ml.svc.cluster.local:9000",)
    assert loaded.ops["cnn"].server_endpoints == ("dns:///imdb-cnn.ml.svc.cluster.local:9000",)
    assert loaded.ops["combine"].server_endpoints == ()
    assert loaded.ops["combine"].inline is True
    assert loaded.ops["bow"].runtime.device_type == config_mod.DeviceType.GPU
    assert loaded.ops["bow"].runtime.devices == (0,)
    assert (loaded.ops["bow"].batch_size, loaded.ops["bow"].auto_batching_timeout_ms) == (8, 2.0)
    assert loaded.payload.store == "redis"


async def test_rendered_gateway_and_op_services_answer_like_the_embedded_example(
    imdb: Any, serve: Any, op_servers: list[OpServer], redis_server: Any, tmp_path: Path
) -> None:
    _, config, graph = rendered_files()
    endpoints = {}
    for name in ("bow", "cnn"):
        # What `pipeserve opservice --config /etc/pipeserve/config.yml --op NAME` builds.
        op_config = config_mod.load(on_loopback(config, redis_server.url, tmp_path, {}))
        server = OpServer(load_op(op_config, name), op_config, Settings(host="127.0.0.1", port=0, grace_s=1))
        op_servers.append(server)
        endpoints[name] = f"127.0.0.1:{await server.start()}"

    response_op = graph_file.build(graph, "graph.yml")
    running = await serve(response_op, on_loopback(config, redis_server.url, tmp_path, endpoints))

    want = [float(imdb.predict_inline(sentence)) for sentence in SENTENCES]
    async with running.http() as http:
        replies = await asyncio.gather(
            *(http.post(running.url(), json={"key": ["words"], "value": [s]}) for s in SENTENCES)
        )
    got = []
    for reply in replies:
        body = reply.json()
        assert body["err_no"] == 0, body
        tensor = body["tensors"]["prediction"]
        got.append(float(np.frombuffer(base64.b64decode(tensor["data"]), dtype=np.float32)[0]))
    assert got == pytest.approx(want, rel=1e-6)
    assert running.url() == f"{running.http_url}/imdb/prediction"

    client = PipelineClient()
    client.connect([running.grpc_target])
    result = await asyncio.to_thread(client.predict, feed_dict={"words": imdb.SAMPLE_WORDS}, fetch=["prediction"])
    assert result.err_no == 0
    assert float(result["prediction"]) == pytest.approx(float(imdb.EXPECTED["prediction"]), rel=1e-6)

    # bow really runs in its op service: without it the gateway answers with an error naming it.
    await op_servers[0].stop(grace_s=0)
    async with running.http() as http:
        body = (await http.post(running.url(), json={"key": ["words"], "value": ["great"]})).json()
    assert body["err_no"] != 0
    assert "bow" in body["err_msg"]
