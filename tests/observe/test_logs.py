"""PipelineServingLogs: pipeline.log, pipeline.log.wf and pipeline.tracer, rotating (seed §5).

Aspects covered:
- an op that raises: pipeline.log.wf holds the line with the request's data_id and
  log_id and the traceback, and so does pipeline.log (INFO and up);
- so does an op that raises in a worker process (``is_thread_op: false``), and an answer
  the ResponseOp cannot pack;
- an error the framework raises (a PipelineError, logged as a warning) has its traceback
  in pipeline.log.wf too;
- at INFO nothing is written for a request that went well; the error line of a failing
  batch lists every data_id and log_id of it in one line;
- ``log: {level: DEBUG}``: one line per op run of each request, every one carrying its
  data_id and log_id; a batch's line lists every data_id of the batch;
- a file rotates at its configured ``max_bytes`` and keeps ``backup_count`` old files;
- the ``log:`` section is checked, errors naming the key.
"""

from __future__ import annotations

import asyncio
import re
import threading
from typing import Any

import pytest

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.pipeline import config, errors, logs

DEADLINE_S = 10.0


class Echo(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        (inputs,) = input_dicts.values()
        return {"text": inputs.get("text", "")}

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        for feed in feed_list:
            if feed["text"] == "explode":
                raise_deep(feed["text"])
        return [{"text": feed["text"]} for feed in feed_list]


def raise_deep(text: str) -> None:
    raise RuntimeError(f"echo cannot take {text!r}")


class Gated(Echo):
    def __init__(self, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        self.gate.wait(DEADLINE_S)
        return super().process(feed_list, typical_logid)


def echo_dag() -> ResponseOp:
    read = RequestOp()
    return ResponseOp(input_ops=[Echo(name="echo", input_ops=[read])])


async def post(running: Any, text: str, log_id: int) -> dict[str, Any]:
    async with running.http() as http:
        reply = await http.post(running.url(), json={"key": ["text"], "value": [text], "logid": log_id})
    body: dict[str, Any] = reply.json()
    return body


async def test_the_wf_file_has_the_traceback_of_a_failing_op_with_its_ids(serve: Any) -> None:
    running = await serve(echo_dag())

    body = await post(running, "explode", 4242)

    assert body["err_no"] != 0
    wf = (running.log_dir / "pipeline.log.wf").read_text()
    (line,) = [line for line in wf.splitlines() if "op 'echo'" in line]
    assert line.startswith("ERROR ") and "log_id=4242" in line and re.search(r"data_id=\d+", line)
    assert "Traceback (most recent call last):" in wf
    assert "in raise_deep" in wf and "RuntimeError: echo cannot take 'explode'" in wf
    assert "RuntimeError: echo cannot take 'explode'" in (running.log_dir / "pipeline.log").read_text()


async def test_at_debug_every_line_of_a_request_carries_its_data_id_and_log_id(serve: Any) -> None:
    gate = threading.Event()
    read = RequestOp()
    gated = Gated(gate, name="gated", input_ops=[read])
    last = Echo(name="last", input_ops=[gated])
    running = await serve(
        ResponseOp(input_ops=[last]),
        {
            "log": {"level": "DEBUG"},
            "op": {"gated": {"batch_size": 3, "auto_batching_timeout": 60_000, "concurrency": 1}},
        },
    )

    sent = asyncio.ensure_future(asyncio.gather(*(post(running, f"t{i}", 900 + i) for i in range(3))))
    gate.set()
    bodies = await asyncio.wait_for(sent, DEADLINE_S)

    assert [b["err_no"] for b in bodies] == [0, 0, 0]
    lines = [line for line in (running.log_dir / "pipeline.log").read_text().splitlines() if " ran " in line]
    assert lines, "no request lines at DEBUG"
    for line in lines:
        assert line.startswith("DEBUG ") and re.search(r"data_id=\d+ log_id=9\d\d", line), line
    (batch,) = [line for line in lines if "op 'gated'" in line]
    assert "batch of 3" in batch
    assert sorted(re.findall(r"log_id=(\d+)", batch)) == ["900", "901", "902"]
    assert len(set(re.findall(r"data_id=(\d+)", batch))) == 3
    for stage in ("in", "prep", "midp", "postp", "out"):
        assert re.search(rf"\b{stage}\[\d+\.\d+ ms\]", batch), batch
    singles = [line for line in lines if "op 'last'" in line]
    assert sorted(re.search(r"log_id=(\d+)", line).group(1) for line in singles) == ["900", "901", "902"]  # type: ignore[union-attr]
    assert not (running.log_dir / "pipeline.log.wf").read_text()


async def test_a_log_file_rotates_at_its_configured_size(serve: Any) -> None:
    running = await serve(
        echo_dag(),
        {"log": {"level": "DEBUG", "pipeline.log": {"max_bytes": 3000, "backup_count": 2}}},
    )

    for i in range(40):
        assert (await post(running, f"request number {i}", i))["err_no"] == 0

    names = sorted(path.name for path in running.log_dir.iterdir() if path.name.startswith("pipeline.log"))
    assert names == ["pipeline.log", "pipeline.log.1", "pipeline.log.2", "pipeline.log.wf"]
    for name in ("pipeline.log", "pipeline.log.1", "pipeline.log.2"):
        assert 0 < (running.log_dir / name).stat().st_size <= 3000
    newest = (running.log_dir / "pipeline.log").read_text()
    assert "log_id=39" in newest  # the current file has the latest lines


def test_the_log_section_defaults_to_the_seeds_and_is_checked() -> None:
    loaded = config.load({"http_port": 0})
    assert loaded.log.level == "INFO"
    assert loaded.log.rotation == {
        "pipeline.log": logs.Rotation(512_000_000, 20),
        "pipeline.log.wf": logs.Rotation(512_000_000, 10),
        "pipeline.tracer": logs.Rotation(512_000_000, 5),
    }
    custom = config.load({"http_port": 0, "log": {"pipeline.tracer": {"backup_count": 1}}})
    assert custom.log.rotation["pipeline.tracer"] == logs.Rotation(512_000_000, 1)

    with pytest.raises(errors.ConfigError) as info:
        config.load({"http_port": 0, "log": {"pipeline.log": {"max_bytes": -1}}})
    assert "log.pipeline.log.max_bytes" in str(info.value)
    with pytest.raises(errors.ConfigError) as info:
        config.load({"http_port": 0, "log": {"level": "LOUD"}})
    assert "log.level" in str(info.value) and "DEBUG, INFO" in str(info.value)


async def test_at_info_a_batch_costs_no_line_and_its_error_line_lists_all_of_its_data_ids(serve: Any) -> None:
    gate = threading.Event()
    read = RequestOp()
    gated = Gated(gate, name="gated", input_ops=[read])
    running = await serve(
        ResponseOp(input_ops=[gated]),
        {"op": {"gated": {"batch_size": 3, "auto_batching_timeout": 60_000, "concurrency": 1}}},
    )

    good = asyncio.ensure_future(asyncio.gather(*(post(running, f"t{i}", 700 + i) for i in range(3))))
    gate.set()
    assert [b["err_no"] for b in await asyncio.wait_for(good, DEADLINE_S)] == [0, 0, 0]
    assert "data_id" not in (running.log_dir / "pipeline.log").read_text()  # serving at INFO writes nothing
    bad = asyncio.ensure_future(asyncio.gather(*(post(running, t, 710 + i) for i, t in enumerate(["a", "explode", "b"]))))
    bodies = await asyncio.wait_for(bad, DEADLINE_S)

    assert all(b["err_no"] != 0 for b in bodies)  # one bad feed fails its whole batch
    wf = (running.log_dir / "pipeline.log.wf").read_text()
    (line,) = [line for line in wf.splitlines() if line.startswith("ERROR ") and "op 'gated'" in line]
    assert sorted(re.findall(r"log_id=(\d+)", line)) == ["710", "711", "712"]
    assert len(set(re.findall(r"data_id=(\d+)", line))) == 3


class Miscount(Echo):
    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        return [{"text": "one"}, {"text": "too many"}]


async def test_an_error_the_framework_raises_is_in_the_wf_file_with_its_traceback(serve: Any) -> None:
    running = await serve(ResponseOp(input_ops=[Miscount(name="miscount", input_ops=[RequestOp()])]))

    body = await post(running, "x", 4343)

    assert body["err_no"] != 0
    wf = (running.log_dir / "pipeline.log.wf").read_text()
    (line,) = [line for line in wf.splitlines() if line.startswith(("WARNING ", "ERROR ")) and "'miscount'" in line]
    assert "log_id=4343" in line and "process returned 2 results for 1 feeds" in line
    after = wf[wf.index(line) :]
    assert after.splitlines()[1] == "Traceback (most recent call last):"
    assert "in split_batch" in after and "OpOutputError: op 'miscount': process returned 2 results" in after


class Doomed(Echo):
    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        raise RuntimeError("no luck in a worker process")


async def test_an_op_in_a_worker_process_writes_its_traceback_to_the_same_wf_file(serve: Any) -> None:
    running = await serve(
        ResponseOp(input_ops=[Doomed(name="doomed", input_ops=[RequestOp()])]), {"dag": {"is_thread_op": False}}
    )

    body = await post(running, "x", 5151)

    assert body["err_no"] != 0
    wf = (running.log_dir / "pipeline.log.wf").read_text()
    (line,) = [line for line in wf.splitlines() if line.startswith("ERROR ") and "op 'doomed'" in line]
    assert "log_id=5151" in line
    after = wf[wf.index(line) :].splitlines()
    assert after[1] == "Traceback (most recent call last):" and after[-1] == "RuntimeError: no luck in a worker process"


class Unsendable(Echo):
    def postprocess(self, input_dicts: dict[str, Any], fetch_dict: Any, data_id: int, log_id: int) -> Any:
        return {"text": object()}, None, ""


async def test_an_answer_that_cannot_be_packed_is_in_the_wf_file_with_its_traceback(serve: Any) -> None:
    running = await serve(ResponseOp(input_ops=[Unsendable(name="unsendable", input_ops=[RequestOp()])]))

    body = await post(running, "x", 6262)

    assert body["err_no"] != 0
    wf = (running.log_dir / "pipeline.log.wf").read_text()
    (line,) = [line for line in wf.splitlines() if line.startswith("WARNING ") and "cannot send" in line]
    assert "log_id=6262" in line and re.search(r"data_id=\d+", line)
    after = wf[wf.index(line) :].splitlines()
    assert after[1] == "Traceback (most recent call last):"
    assert after[-1].startswith("pipeserve.pipeline.errors.OpOutputError: text: cannot send a value of type object")
