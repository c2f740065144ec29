"""Remote ops: the gateway runs an op in op services over gRPC, chosen by config alone.

Aspects:

- the imdb example answers the same, bit for bit, with bow and cnn embedded or remote;
- a batch formed by the gateway's auto-batching travels as one call;
- calls spread over every replica: a list of endpoints, and one target that resolves to
  several addresses (gRPC round robin);
- killing one of two replica processes under load loses no request: every request is
  answered, by the other replica (retry on UNAVAILABLE);
- an op service closes connections older than its max connection age (clients re-resolve);
- an op service that is down gives a clear error naming the op and the endpoint, fast,
  and the gateway keeps serving; a remote timeout gives err_no 1 after ``retry`` attempts;
  a product error and a per-sample error come back for their own sample only.
"""

from __future__ import annotations

import asyncio
import logging
import base64
import os
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import yaml

from pipeserve import Op, PipelineClient, ProductErrCode, RequestOp, ResponseOp
from pipeserve.opservice import values
from pipeserve.opservice.server import OpServer, Settings
from pipeserve.pipeline import config as config_mod
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as op_pb

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import ImdbExample, StartOpService


SENTENCES = [
    "this movie was not good at all",
    "a wonderful film with a great cast",
    "i will never watch it again",
    "the plot was bad but the music was fine",
    "great",
]


@pytest.fixture
def imdb(imdb_example: ImdbExample) -> Any:
    """The example's ops module, imported from the example's folder."""
    return imdb_example.ops


@pytest.fixture
async def op_servers() -> AsyncIterator[list[OpServer]]:
    """Op services started in the test's loop; stopped at teardown."""
    started: list[OpServer] = []
    yield started
    for server in started:
        await server.stop(grace_s=1)


def imdb_config(**ops: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "dag": {"timeout": 5000},
        "op": {
            "bow": {"class": "ops:BowOp", "batch_size": 8, "auto_batching_timeout": 2, "timeout": 2000},
            "cnn": {"class": "ops:CnnOp", "batch_size": 8, "auto_batching_timeout": 2, "timeout": 2000},
            "combine": {"inline": True},
        },
    }
    for name, extra in ops.items():
        base["op"][name].update(extra)
    return base


def imdb_dag(ops: Any) -> ResponseOp:
    read = ops.ImdbRequestOp()
    bow = ops.BowOp(name="bow", input_ops=[read])
    cnn = ops.CnnOp(name="cnn", input_ops=[read])
    combine = ops.CombineOp(name="combine", input_ops=[bow, cnn])
    return ResponseOp(input_ops=[combine])


async def start_op(started: list[OpServer], op: Op, config: dict[str, Any]) -> str:
    server = OpServer(op, config_mod.load({"http_port": 0, **config}), Settings(host="127.0.0.1", grace_s=1))
    port = await server.start()
    started.append(server)
    return f"127.0.0.1:{port}"


async def predictions(running: Any, sentences: list[str]) -> list[bytes]:
    async with running.http() as http:
        replies = await asyncio.gather(
            *(http.post(running.url(), json={"key": ["words"], "value": [s]}) for s in sentences)
        )
    out = []
    for reply in replies:
        body = reply.json()
        assert body["err_no"] == 0, body
        out.append(body["tensors"]["prediction"]["data"].encode())
    return out


async def test_the_imdb_example_answers_the_same_embedded_and_remote(
    imdb: Any, serve: Any, op_servers: list[OpServer]
) -> None:
    embedded = await serve(imdb_dag(imdb), imdb_config(), name="imdb")
    want = await predictions(embedded, SENTENCES)
    bow = await start_op(op_servers, imdb.BowOp(name="bow"), imdb_config())
    cnn = await start_op(op_servers, imdb.CnnOp(name="cnn"), imdb_config())

    remote = await serve(
        imdb_dag(imdb), imdb_config(bow={"server_endpoints": [bow]}, cnn={"server_endpoints": [cnn]}), name="imdb"
    )

    assert await predictions(remote, SENTENCES) == want
    client = PipelineClient()
    client.connect([remote.grpc_target])
    result = await asyncio.to_thread(client.predict, feed_dict={"words": SENTENCES[0]}, fetch=["prediction"])
    assert result.err_no == 0
    assert result["prediction"].tobytes() == base64.b64decode(want[0])


class TagOp(Op):
    """Answers which op instance ran it and how big the batch it ran in was."""

    def init_op(self) -> None:
        self.tag = f"{os.getpid()}-{id(self)}"

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, Any]]:
        return [{"tag": self.tag, "batch": str(len(feed_list)), "x": feed["x"]} for feed in feed_list]


def tag_dag() -> ResponseOp:
    return ResponseOp(input_ops=[TagOp(name="tag", input_ops=[RequestOp()])])


def tag_config(**tag: Any) -> dict[str, Any]:
    return {"op": {"tag": {"batch_size": 4, "auto_batching_timeout": 50, "timeout": 2000, **tag}}}


async def tags(running: Any, count: int) -> list[dict[str, Any]]:
    async with running.http() as http:
        replies = await asyncio.gather(
            *(http.post(running.url(), json={"key": ["x"], "value": [str(i)]}) for i in range(count))
        )
    bodies = [reply.json() for reply in replies]
    assert all(body["err_no"] == 0 for body in bodies), bodies
    return [dict(zip(body["key"], body["value"])) for body in bodies]


async def test_a_gateway_batch_travels_as_one_call(serve: Any, op_servers: list[OpServer]) -> None:
    endpoint = await start_op(op_servers, TagOp(name="tag"), tag_config())
    running = await serve(tag_dag(), tag_config(server_endpoints=[endpoint]))

    answers = await tags(running, 8)

    assert [a["x"] for a in answers] == [str(i) for i in range(8)]
    assert max(int(a["batch"]) for a in answers) > 1


async def test_a_host_name_endpoint_is_resolved_through_dns(serve: Any, op_servers: list[OpServer]) -> None:
    endpoint = await start_op(op_servers, TagOp(name="tag"), tag_config())
    port = endpoint.rpartition(":")[2]
    running = await serve(tag_dag(), tag_config(server_endpoints=[f"localhost:{port}"], retry=2))

    assert [answer["x"] for answer in await tags(running, 4)] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("form", ["endpoint list", "one target with two addresses"])
async def test_calls_spread_over_every_replica(serve: Any, op_servers: list[OpServer], form: str) -> None:
    one = await start_op(op_servers, TagOp(name="tag"), tag_config())
    two = await start_op(op_servers, TagOp(name="tag"), tag_config())
    endpoints = [one, two] if form == "endpoint list" else [f"ipv4:{one},{two}"]
    running = await serve(tag_dag(), tag_config(server_endpoints=endpoints, batch_size=1))

    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:  # sync-ok: round robin needs both connected
        seen.update(answer["tag"] for answer in await tags(running, 8))

    assert len(seen) == 2


async def test_an_op_service_that_is_down_gives_a_clear_error_and_the_gateway_keeps_serving(
    serve: Any, op_servers: list[OpServer]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    config = tag_config(server_endpoints=[dead], retry=2)
    running = await serve(tag_dag(), config)

    started = time.monotonic()
    async with running.http() as http:
        reply = (await http.post(running.url(), json={"key": ["x"], "value": ["1"]})).json()

    assert reply["err_no"] == 5
    assert reply["err_msg"].startswith(f"op 'tag': op service at {dead}: UNAVAILABLE")
    assert reply["err_msg"].endswith("(2 attempts)")
    assert time.monotonic() - started < 5
    live = await start_op(op_servers, TagOp(name="tag"), tag_config())
    other = await serve(tag_dag(), tag_config(server_endpoints=[live]))
    assert (await tags(other, 1))[0]["x"] == "0"


class SlowOp(Op):
    def init_op(self) -> None:
        self.release = threading.Event()

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, Any]]:
        self.release.wait(10)
        return feed_list


async def test_a_remote_op_past_its_timeout_fails_after_its_attempts(serve: Any, op_servers: list[OpServer]) -> None:
    slow = SlowOp(name="tag")
    config = {"op": {"tag": {"timeout": 100, "retry": 2}}}
    endpoint = await start_op(op_servers, slow, config)
    running = await serve(ResponseOp(input_ops=[SlowOp(name="tag", input_ops=[RequestOp()])]), {
        "op": {"tag": {"timeout": 100, "retry": 2, "server_endpoints": [endpoint]}}
    })
    try:
        async with running.http() as http:
            reply = (await http.post(running.url(), json={"key": ["x"], "value": ["1"]})).json()
    finally:
        slow.release.set()

    assert reply["err_no"] == 1
    assert reply["err_msg"] == "op 'tag' timed out after 100 ms (2 attempts)"


class Refuse(ProductErrCode):
    NEGATIVE = 1001


class PickyOp(Op):
    def postprocess(
        self, input_dicts: dict[str, Any], fetch_dict: Any, data_id: int, log_id: int
    ) -> tuple[Any, Any, str]:
        if fetch_dict["x"].startswith("-"):
            return None, Refuse.NEGATIVE, f"negative: {fetch_dict['x']}"
        if fetch_dict["x"] == "boom":
            raise RuntimeError("boom")
        return fetch_dict, None, ""


async def test_remote_errors_stay_with_their_own_sample(serve: Any, op_servers: list[OpServer]) -> None:
    config = {"op": {"picky": {"batch_size": 3, "auto_batching_timeout": 200}}}
    endpoint = await start_op(op_servers, PickyOp(name="picky"), config)
    config["op"]["picky"]["server_endpoints"] = [endpoint]
    running = await serve(ResponseOp(input_ops=[PickyOp(name="picky", input_ops=[RequestOp()])]), config)

    async with running.http() as http:
        replies = await asyncio.gather(
            *(http.post(running.url(), json={"key": ["x"], "value": [v]}) for v in ("1", "-2", "boom"))
        )

    ok, refused, failed = (reply.json() for reply in replies)
    assert ok["err_no"] == 0 and ok["value"] == ["1"]
    assert (refused["err_no"], refused["err_msg"]) == (1001, "negative: -2")
    assert failed["err_no"] == 8
    assert failed["err_msg"] == "internal error in op 'picky': RuntimeError (see pipeline.log.wf)"


# --- replicas as processes ---------------------------------------------------------------


WORK_MODULE = """
import os
import time

from pipeserve import Op

HERE = os.path.dirname(os.path.abspath(__file__))


class WorkOp(Op):
    calls = 0

    def process(self, feed_list, typical_logid):
        self.calls += 1
        if self.calls == 10:  # hold this batch and say so: the test kills the replica now
            open(os.path.join(HERE, f"busy-{os.getpid()}"), "w").close()
            time.sleep(1)  # sync-ok: the op holds this batch (its work) while the test kills the process
        return [{"x": feed["x"], "pid": str(os.getpid())} for feed in feed_list]
"""


class WorkDagOp(Op):
    """The gateway's stand-in for the remote WorkOp (its hooks never run here)."""


async def test_killing_one_of_two_replicas_under_load_loses_no_request(
    serve: Any, tmp_path: Path, op_service: StartOpService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "pipeserve")
    (tmp_path / "work.py").write_text(WORK_MODULE)
    work = {"class": "work:WorkOp", "batch_size": 4, "auto_batching_timeout": 1, "timeout": 2000}
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.safe_dump({"http_port": 0, "op": {"work": work}}))
    replicas = [op_service(config_path, "work", "--grace", "2") for _ in range(2)]
    endpoints = [f"127.0.0.1:{replica.port}" for replica in replicas]
    config = {"op": {"work": {**work, "server_endpoints": endpoints, "retry": 3}}}
    running = await serve(ResponseOp(input_ops=[WorkDagOp(name="work", input_ops=[RequestOp()])]), config)
    total, victim = 400, replicas[0]
    busy = tmp_path / f"busy-{victim.process.pid}"

    async with running.http() as http:
        limit = asyncio.Semaphore(32)

        async def one(i: int) -> dict[str, Any]:
            async with limit:
                reply = await http.post(running.url(), json={"key": ["x"], "value": [str(i)]})
                return dict(reply.json())

        load = asyncio.gather(*(one(i) for i in range(total)))
        deadline = time.monotonic() + 30
        while not busy.exists() and not load.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)  # sync-ok: polls the replica's "batch in hand" marker
        assert busy.exists(), "the replica never reached its 10th batch"
        victim.process.kill()
        bodies = await load

    assert victim.process.proc.poll() is not None
    assert [body for body in bodies if body["err_no"] != 0] == []
    answers = [dict(zip(body["key"], body["value"])) for body in bodies]
    assert [answer["x"] for answer in answers] == [str(i) for i in range(total)]
    assert {answer["pid"] for answer in answers} == {str(r.process.pid) for r in replicas}
    retried = [r.getMessage() for r in caplog.records if "UNAVAILABLE" in r.getMessage()]
    assert any(f"op service at {endpoints[0]}: UNAVAILABLE" in m for m in retried)  # it hit calls in flight


async def test_an_op_service_closes_old_connections_so_clients_re_resolve() -> None:
    config = config_mod.load({"http_port": 0, "op": {"tag": {}}})
    server = OpServer(TagOp(name="tag"), config, Settings(host="127.0.0.1", grace_s=1, max_connection_age_s=0.3))
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                "/pipeserve.v1.OpService/Process",
                request_serializer=op_pb.OpBatch.SerializeToString,
                response_deserializer=op_pb.ResultBatch.FromString,
            )
            batch = op_pb.OpBatch(op="tag")
            values.fill_map(batch.samples.add().input_dicts, {"r": {"x": "1"}}, "input_dicts")
            assert (await call(batch, timeout=5)).results[0].err_no == 0
            assert channel.get_state() is grpc.ChannelConnectivity.READY
            deadline = time.monotonic() + 10
            while channel.get_state() is grpc.ChannelConnectivity.READY and time.monotonic() < deadline:
                await asyncio.sleep(0.05)  # sync-ok: polls the connection's state for the server's GOAWAY
            assert channel.get_state() is not grpc.ChannelConnectivity.READY
            assert (await call(batch, timeout=5)).results[0].err_no == 0  # a new connection serves
    finally:
        await server.stop(grace_s=1)
