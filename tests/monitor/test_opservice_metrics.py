"""An op service serves its own Prometheus metrics, and the gateway counts its remote stages.

Aspects, with a real op service on loopback behind a real gateway:
- the op service's ``/metrics`` (its own port) counts every sample by err_no, its batches
  and stages, and the sample its op failed, in families that follow Prometheus' conventions;
- the gateway counts the stages the op service ran under ``where="remote:<endpoint>"``;
- its queue depth counts the samples waiting for its busy workers, its in-flight gauge the
  samples inside, and both drain to zero;
- without a metrics port nothing listens to the op service and no port is opened;
- ``pipeserve opservice --metrics-port 0`` prints where its metrics are and serves them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prom_checks import check_conventions, scrape
from prometheus_client.parser import text_string_to_metric_families

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.opservice.server import OpServer, Settings
from pipeserve.pipeline import config as config_mod

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import StartOpService

GOOD = 10

OPS_MODULE = '''
from pipeserve import Op


class TagOp(Op):
    def preprocess(self, input_dicts, data_id, log_id):
        ((_, values),) = input_dicts.items()
        return {"x": values["x"]}, False, None, ""
'''


class TagOp(Op):
    def preprocess(self, input_dicts, data_id, log_id):
        ((_, values),) = input_dicts.items()
        if values["x"] == "boom":
            raise ValueError("cannot tag")
        return {"x": values["x"]}, False, None, ""


@pytest.fixture
async def op_servers() -> AsyncIterator[list[OpServer]]:
    started: list[OpServer] = []
    yield started
    for server in started:
        await server.stop(grace_s=1)


def tag_config(endpoint: str | None = None) -> dict[str, Any]:
    tag: dict[str, Any] = {"batch_size": 4, "auto_batching_timeout": 20, "timeout": 2000}
    if endpoint:
        tag["server_endpoints"] = [endpoint]
    return {"metrics": True, "op": {"tag": tag}}


async def test_an_op_service_counts_its_samples_batches_and_errors_on_its_own_port(
    serve: Any, op_servers: list[OpServer]
) -> None:
    settings = Settings(host="127.0.0.1", grace_s=1, metrics_port=0)
    server = OpServer(TagOp(name="tag"), config_mod.load({"http_port": 0, **tag_config()}), settings)
    port = await server.start()
    op_servers.append(server)
    assert server.metrics is not None and server.handler.observers.active
    assert server.metrics_port not in (None, 0, port)
    endpoint = f"127.0.0.1:{port}"
    running = await serve(ResponseOp(input_ops=[TagOp(name="tag", input_ops=[RequestOp()])]), tag_config(endpoint))

    async with running.http() as http:
        replies = await asyncio.gather(
            *(http.post(running.url(), json={"key": ["x"], "value": [str(i)]}) for i in range(GOOD))
        )
        assert [reply.json()["err_no"] for reply in replies] == [0] * GOOD
        failed = (await http.post(running.url(), json={"key": ["x"], "value": ["boom"]})).json()
        err_no = failed["err_no"]
        assert err_no != 0
        gateway = scrape((await http.get("/metrics")).text)
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{server.metrics_port}/metrics")
    assert reply.status_code == 200
    remote = scrape(reply.text)
    check_conventions(reply.text)

    assert remote[("pipeserve_requests_total", (("err_no", "0"), ("service", "tag")))] == GOOD
    assert remote[("pipeserve_requests_total", (("err_no", str(err_no)), ("service", "tag")))] == 1
    assert remote[("pipeserve_op_errors_total", (("err_no", str(err_no)), ("op", "tag")))] == 1
    assert remote[("pipeserve_op_batch_size_sum", (("op", "tag"),))] == GOOD + 1
    batches = remote[("pipeserve_op_batch_size_count", (("op", "tag"),))]
    assert batches == gateway[("pipeserve_op_batch_size_count", (("op", "tag"),))]
    for stage in ("in", "prep", "out"):
        key = ("pipeserve_op_stage_duration_seconds_count", (("op", "tag"), ("stage", stage), ("where", "local")))
        assert remote[key] == batches, stage
    assert remote[("pipeserve_op_duration_seconds_count", (("op", "tag"),))] == GOOD + 1
    assert remote[("pipeserve_requests_in_flight", ())] == 0

    where = ("where", f"remote:{endpoint}")
    for stage in ("in", "prep", "out"):
        assert gateway[("pipeserve_op_stage_duration_seconds_count", (("op", "tag"), ("stage", stage), where))] == batches
    assert gateway[("pipeserve_op_duration_seconds_count", (("op", "tag"),))] == GOOD + 1
    assert gateway[("pipeserve_requests_total", (("err_no", "0"), ("service", "t")))] == GOOD


async def test_without_a_metrics_port_nothing_listens_to_an_op_service(op_servers: list[OpServer]) -> None:
    server = OpServer(TagOp(name="tag"), config_mod.load({"http_port": 0, **tag_config()}), Settings(host="127.0.0.1"))
    await server.start()
    op_servers.append(server)
    assert not server.handler.observers.active
    assert server.metrics is None and server.metrics_port is None


def test_the_opservice_command_serves_metrics_on_the_port_it_prints(tmp_path: Path, op_service: StartOpService) -> None:
    (tmp_path / "tagops.py").write_text(OPS_MODULE)
    (tmp_path / "config.yml").write_text("http_port: 0\nop:\n  tag:\n    class: tagops:TagOp\n")
    service = op_service(tmp_path / "config.yml", "tag", "--metrics-port", "0", "--grace", "1", cwd=tmp_path)
    assert service.metrics_url is not None, service.process.output
    reply = httpx.get(service.metrics_url, timeout=10)
    assert reply.status_code == 200
    names = {family.name for family in text_string_to_metric_families(reply.text)}
    assert {"pipeserve_requests", "pipeserve_op_batch_size", "pipeserve_payload_reads"} <= names
    assert service.process.terminate() == 0


class GatedTagOp(TagOp):
    """Holds every batch until the test opens the gate."""

    gate = threading.Event()

    def process(self, feed_list, typical_logid):  # type: ignore[no-untyped-def]
        self.gate.wait(10)
        return feed_list


async def test_an_op_services_queue_depth_and_in_flight_follow_its_blocked_workers(
    serve: Any, op_servers: list[OpServer]
) -> None:
    GatedTagOp.gate.clear()
    one_thread = {"metrics": True, "op": {"tag": {"concurrency": 1}}}
    settings = Settings(host="127.0.0.1", grace_s=1, metrics_port=0)
    server = OpServer(GatedTagOp(name="tag"), config_mod.load({"http_port": 0, **one_thread}), settings)
    port = await server.start()
    op_servers.append(server)
    # The gateway sends each request alone and all five at once.
    gateway = {"op": {"tag": {"concurrency": 5, "timeout": 10_000, "server_endpoints": [f"127.0.0.1:{port}"]}}}
    running = await serve(ResponseOp(input_ops=[TagOp(name="tag", input_ops=[RequestOp()])]), gateway)
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    sent = 5
    holding = server.workers.in_flight  # one batch runs, one waits in the thread's queue

    async def gauges(client: httpx.AsyncClient, want: tuple[float, float]) -> tuple[float, float]:
        deadline = time.monotonic() + 10
        while True:
            got = scrape((await client.get(url)).text)
            figures = (got[("pipeserve_op_queue_depth", (("op", "tag"),))], got[("pipeserve_requests_in_flight", ())])
            if figures == want or time.monotonic() > deadline:
                return figures
            await asyncio.sleep(0.02)  # sync-ok: polling interval of a deadline-bounded wait

    async with running.http() as http, httpx.AsyncClient() as client:
        try:
            posts = [asyncio.create_task(http.post(running.url(), json={"key": ["x"], "value": [str(i)]})) for i in range(sent)]
            assert await gauges(client, (sent - holding, sent)) == (sent - holding, sent)
        finally:
            GatedTagOp.gate.set()
        assert [(await p).json()["err_no"] for p in posts] == [0] * sent
        assert await gauges(client, (0, 0)) == (0, 0)
