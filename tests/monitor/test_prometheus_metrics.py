"""Prometheus ``/metrics`` and ``/status.json`` count exactly what the gateway served.

Aspects, over real HTTP on loopback:
- N good requests and one failing: ``pipeserve_requests_total`` by err_no, the request
  histogram, per-op sample histograms and error counters all match what was sent;
- batches: the batch size histogram sums to the samples, one stage timing per stage per batch;
- the queue depth and in-flight gauges follow a queue that grows behind a blocked op and drains;
- the live figures name every op with its count, QPS, percentiles and errors;
- every family follows Prometheus' conventions (``pipeserve_`` prefix, ``_seconds``,
  ``_bytes``, ``_total``, label names, cumulative buckets ending at +Inf), checked on the
  text as prometheus_client's parser reads it;
- with metrics off nothing listens to the engine and ``/metrics`` says how to turn it on.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
from prom_checks import check_conventions, scrape

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.monitor import metrics

GOOD = 12
STAGES = ("in", "prep", "midp", "postp", "out")


class Tokens(Op):
    def preprocess(self, input_dicts, data_id, log_id):
        ((_, values),) = input_dicts.items()
        return {"words": values["words"]}, False, None, ""


class Judge(Op):
    def preprocess(self, input_dicts, data_id, log_id):
        ((_, values),) = input_dicts.items()
        if values["words"] == "boom":
            raise ValueError("cannot judge")
        return {"label": str(len(values["words"]))}, False, None, ""


async def start(serve, metrics_on: bool):
    read = RequestOp()
    tokens = Tokens(name="tokens", input_ops=[read])
    judge = Judge(name="judge", input_ops=[tokens])
    config = {
        "metrics": metrics_on,
        "op": {"tokens": {"batch_size": 4, "auto_batching_timeout": 20}, "judge": {"concurrency": 2}},
    }
    return await serve(ResponseOp(input_ops=[judge]), config, name="t")


async def post(http: httpx.AsyncClient, words: str) -> dict:
    reply = await http.post("/t/prediction", json={"key": ["words"], "value": [words]})
    return reply.json()


async def test_metrics_count_every_request_by_err_no_and_every_sample_per_op(serve) -> None:
    running = await start(serve, metrics_on=True)
    async with running.http() as http:
        answers = await asyncio.gather(*(post(http, "w" * (i + 1)) for i in range(GOOD)))
        assert [a["err_no"] for a in answers] == [0] * GOOD
        failed = await post(http, "boom")
        err_no = failed["err_no"]
        assert err_no != 0
        reply = await http.get("/metrics")
        assert reply.status_code == 200
        assert reply.headers["content-type"] == metrics.CONTENT_TYPE
        got = scrape(reply.text)
        check_conventions(reply.text)
        status = (await http.get("/status.json")).json()

    assert got[("pipeserve_requests_total", (("err_no", "0"), ("service", "t")))] == GOOD
    assert got[("pipeserve_requests_total", (("err_no", str(err_no)), ("service", "t")))] == 1
    assert got[("pipeserve_request_duration_seconds_count", (("service", "t"),))] == GOOD + 1
    for op in ("tokens", "judge"):
        assert got[("pipeserve_op_duration_seconds_count", (("op", op),))] == GOOD + 1
        assert got[("pipeserve_op_batch_size_sum", (("op", op),))] == GOOD + 1
        batches = got[("pipeserve_op_batch_size_count", (("op", op),))]
        for stage in STAGES:
            key = ("pipeserve_op_stage_duration_seconds_count", (("op", op), ("stage", stage), ("where", "local")))
            # The failing request ran alone through judge: its preprocess failed, so no process
            # and no postprocess ran for that batch.
            skipped = 1 if op == "judge" and stage in ("midp", "postp") else 0
            assert got[key] == batches - skipped, (op, stage)
        assert got[("pipeserve_op_queue_depth", (("op", op),))] == 0
    # Four at a time at most: the first request's batch may leave alone, the others fill up.
    assert got[("pipeserve_op_batch_size_count", (("op", "tokens"),))] < GOOD + 1
    assert got[("pipeserve_op_errors_total", (("err_no", str(err_no)), ("op", "judge")))] == 1
    assert ("pipeserve_op_errors_total", (("err_no", str(err_no)), ("op", "tokens"))) not in got
    assert got[("pipeserve_requests_in_flight", ())] == 0
    assert got[("pipeserve_payload_reads_total", (("result", "hit"),))] == 0

    assert status["metrics"] is True and status["service"] == "t"
    assert status["requests"]["requests"] == GOOD + 1 and status["requests"]["errors"] == 1
    assert set(status["ops"]) == {"tokens", "judge"}
    for op, figures in status["ops"].items():
        assert figures["count"] == GOOD + 1
        assert figures["qps"] > 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        assert figures["queue"] == 0
        assert figures["errors"] == (1 if op == "judge" else 0)


async def test_with_metrics_off_nothing_listens_and_metrics_says_how_to_turn_them_on(serve) -> None:
    running = await start(serve, metrics_on=False)
    assert not running.server._serving.executor.observers.active
    async with running.http() as http:
        assert (await post(http, "fine"))["err_no"] == 0
        reply = await http.get("/metrics")
        assert reply.status_code == 404
        assert reply.text == "metrics are off: set metrics: true in config.yml\n"
        status = (await http.get("/status.json")).json()
    assert status == {
        "service": "t", "metrics": False, "reason": "metrics are off: set metrics: true in config.yml",
    }  # fmt: skip


class Gated(Op):
    """Holds every batch until the test opens the gate."""

    gate = threading.Event()

    def process(self, feed_list, typical_logid):
        self.gate.wait(10)
        return feed_list


async def gauges(http: httpx.AsyncClient) -> tuple[float, ...]:
    """Queue depth and requests in flight, by /metrics then by /status.json, and the op's count."""
    got = scrape((await http.get("/metrics")).text)
    status = (await http.get("/status.json")).json()
    return (
        got[("pipeserve_op_queue_depth", (("op", "gated"),))], status["ops"]["gated"]["queue"],
        got[("pipeserve_requests_in_flight", ())], status["requests"]["in_flight"], status["ops"]["gated"]["count"],
    )  # fmt: skip


async def wait_for_gauges(http: httpx.AsyncClient, ok) -> tuple[float, ...]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while True:
        figures = await gauges(http)
        if ok(*figures) or time.monotonic() > deadline:
            return figures
        await asyncio.sleep(0.02)  # sync-ok: polls the gauges until they match, with a deadline


async def test_queue_depth_and_in_flight_follow_a_blocked_op(serve) -> None:
    Gated.gate.clear()
    running = await serve(ResponseOp(input_ops=[Gated(name="gated", input_ops=[RequestOp()])]), {"metrics": True})
    executor = running.server._serving.executor
    sent = 5
    async with running.http() as http:
        try:
            posts = [asyncio.create_task(post(http, str(i))) for i in range(sent)]
            queue, queue_shown, in_flight, in_flight_shown, _ = await wait_for_gauges(
                http, lambda q, qs, f, fs, c: q == qs > 0 and f == fs == sent
            )
            assert in_flight == in_flight_shown == sent
            # Of the five, the worker holds one and may have taken the next; the rest wait.
            assert 0 < queue == queue_shown == executor.queue_depths()["gated"] <= sent - 1
        finally:
            Gated.gate.set()
        assert [answer["err_no"] for answer in await asyncio.gather(*posts)] == [0] * sent
        drained = await wait_for_gauges(http, lambda *figures: figures == (0, 0, 0, 0, sent))
        assert drained == (0, 0, 0, 0, sent)
