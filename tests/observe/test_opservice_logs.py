"""An op service writes the gateway's log files in its own directory: ``<log_dir>/<op>/``.

Aspects covered (one ``pipeserve opservice`` process, stopped with SIGTERM):
- pipeline.log has a line per batch it ran at DEBUG, with every data_id and log_id, and
  says how many start-up objects it froze for the garbage collector once ready;
- pipeline.log.wf has the traceback of the op's failure, naming the request;
- at DEBUG, a batch of two gets one line listing both requests in the gateway and one in
  the op service (an op service in this process);
- pipeline.tracer has the service's own figures for its op (written on drain at the
  latest), counting the samples it ran.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from pipeserve import Op, RequestOp, ResponseOp

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import StartOpService


SHOUT_MODULE = '''
from pipeserve import Op


class ShoutOp(Op):
    def preprocess(self, input_dicts):
        (inputs,) = input_dicts.values()
        return {"text": inputs["text"]}

    def process(self, feed_list, typical_logid):
        for feed in feed_list:
            if feed["text"] == "explode":
                raise RuntimeError("shout cannot take explode")
        return [{"text": feed["text"].upper()} for feed in feed_list]
'''


class ShoutStandIn(Op):
    """The gateway's stand-in for the remote ShoutOp (its hooks never run here)."""


async def test_an_op_service_writes_its_own_log_files(serve: Any, tmp_path: Path, op_service: StartOpService) -> None:
    (tmp_path / "shout.py").write_text(SHOUT_MODULE)
    log_dir = tmp_path / "service-logs"
    shout = {"class": "shout:ShoutOp", "batch_size": 2, "auto_batching_timeout": 1}
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.safe_dump({
        "http_port": 0, "log_dir": str(log_dir), "log": {"level": "DEBUG"},
        "dag": {"tracer": {"interval_s": 3600}}, "op": {"shout": shout},
    }))  # fmt: skip
    service = op_service(config_path, "shout", "--grace", "1", cwd=tmp_path)
    running = await serve(
        ResponseOp(input_ops=[ShoutStandIn(name="shout", input_ops=[RequestOp()])]),
        {"op": {"shout": {**shout, "server_endpoints": [f"127.0.0.1:{service.port}"]}}},
    )

    async with running.http() as http:
        bodies = [
            (await http.post(running.url(), json={"key": ["text"], "value": [text], "logid": 70 + i})).json()
            for i, text in enumerate(["hi", "explode", "yo"])
        ]
    assert service.process.terminate() == 0

    assert [b["err_no"] == 0 for b in bodies] == [True, False, True]
    own = log_dir / "shout"
    log_lines = [line for line in (own / "pipeline.log").read_text().splitlines() if " ran " in line]
    assert sorted(re.search(r"log_id=(\d+)", line).group(1) for line in log_lines) == ["70", "71", "72"]  # type: ignore[union-attr]
    assert all(re.search(r"data_id=\d+ log_id=7\d", line) for line in log_lines)
    wf = (own / "pipeline.log.wf").read_text()
    assert "log_id=71" in wf and "Traceback (most recent call last):" in wf
    assert "RuntimeError: shout cannot take explode" in wf
    frozen = re.search(r"op service 'shout': (\d+) start-up objects frozen", (own / "pipeline.log").read_text())
    assert frozen and int(frozen.group(1)) > 10000
    tracer = (own / "pipeline.tracer").read_text()
    (op_line,) = [line for line in tracer.splitlines() if "Op(shout):" in line]
    assert "query[3]" in op_line and "error[1]" in op_line


class Shout(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        (inputs,) = input_dicts.values()
        return {"text": inputs["text"]}


async def test_at_debug_a_batch_gets_one_line_in_the_gateway_and_one_in_the_op_service(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeserve.opservice.server import OpServer, Settings
    from pipeserve.pipeline import config as config_mod

    batched = {"batch_size": 2, "auto_batching_timeout": 60_000}
    debug = {"log": {"level": "DEBUG"}}
    service_config = config_mod.load({"http_port": 0, **debug, "op": {"shout": batched}})
    service = OpServer(Shout(name="shout"), service_config, Settings(host="127.0.0.1", grace_s=1))
    port = await service.start()
    try:
        running = await serve(
            ResponseOp(input_ops=[Shout(name="shout", input_ops=[RequestOp()])]),
            {**debug, "op": {"shout": {**batched, "server_endpoints": [f"127.0.0.1:{port}"]}}},
        )
        with caplog.at_level(logging.DEBUG, logger="pipeserve.requests"):
            async with running.http() as http:
                replies = await asyncio.gather(*(
                    http.post(running.url(), json={"key": ["text"], "value": [t], "logid": 80 + i})
                    for i, t in enumerate(["a", "b"])
                ))  # fmt: skip
    finally:
        await service.stop(grace_s=1)

    assert [reply.json()["err_no"] for reply in replies] == [0, 0]
    lines = [r.getMessage() for r in caplog.records if "op 'shout' ran batch of 2" in r.getMessage()]
    gateway = [line for line in lines if "@remote:" in line]  # the gateway's line holds the remote stages
    assert len(lines) == 2 and len(gateway) == 1, lines
    for line in lines:
        assert sorted(re.findall(r"log_id=(\d+)", line)) == ["80", "81"], line
        assert len(set(re.findall(r"data_id=(\d+)", line))) == 2, line
