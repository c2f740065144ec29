"""The profile: per request and op the start and end of each stage, turned into a Chrome trace.

Aspects covered:
- with ``dag.use_profile``, each request writes one PROFILE line (standard output and
  pipeline.profile) and the Analyst makes of it one complete event per stage per op per
  request, plus the request's own ``call``, in non-decreasing time order;
- every trace written is checked strictly against the JSON Trace Event Format that
  chrome://tracing and Perfetto import (types, microsecond wall-clock timestamps, named
  processes and threads, time order, slices that nest on each thread);
- a batch's stages appear in the timeline of every request of the batch;
- ``pipeserve analyze`` writes the same trace, and names a missing or malformed file;
- an op run in an op service: the request's timeline holds the service's stages
  (``where="remote:<endpoint>"``) between the gateway's own ``in`` and ``out``, and
  ``PipelineClient.predict(..., profile=True)`` returns that timeline and prints its line;
- a profile line of the seeds' own Timeline form is read too, and ours has the seeds'
  layout (events third, one ``:`` in each of a stage run here), the ids after them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pipeserve import Op, PipelineClient, RequestOp, ResponseOp
from pipeserve.cli import main as cli_main
from pipeserve.opservice.server import OpServer, Settings
from pipeserve.pipeline import Analyst, observe, profile
from pipeserve.pipeline import config as config_mod

DEADLINE_S = 10.0


class Upper(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        (inputs,) = input_dicts.values()
        return {"text": inputs.get("text", inputs.get("upper", ""))}

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        return [{"upper": feed["text"].upper()} for feed in feed_list]


class Gated(Upper):
    def __init__(self, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        self.gate.wait(DEADLINE_S)
        return super().process(feed_list, typical_logid)


def dag() -> ResponseOp:
    read = RequestOp()
    first = Upper(name="first", input_ops=[read])
    second = Upper(name="second", input_ops=[first])
    return ResponseOp(input_ops=[second])


async def send(running: Any, texts: list[str]) -> list[dict[str, Any]]:
    async with running.http() as http:
        replies = await asyncio.gather(
            *(http.post(running.url(), json={"key": ["text"], "value": [t], "logid": 500 + i}) for i, t in enumerate(texts))
        )
    return [reply.json() for reply in replies]


METADATA = {"process_name": ("name", str), "thread_name": ("name", str),
            "process_sort_index": ("sort_index", int), "thread_sort_index": ("sort_index", int)}  # fmt: skip


def reject_constant(name: str) -> None:
    raise AssertionError(f"{name} is not JSON: trace viewers refuse it")


def check_chrome_trace(text: str) -> dict[str, Any]:
    """The trace in ``text``, checked strictly against the JSON Trace Event Format as
    chrome://tracing and Perfetto import it: JSON object with ``traceEvents``; complete
    (``X``) events with a name, integer pid/tid, ``ts``/``dur`` in microseconds of the
    wall clock; metadata (``M``) naming every process and thread used; events in time
    order; and on each thread, slices that nest (Perfetto drops slices that overlap
    partially)."""
    trace = json.loads(text, parse_constant=reject_constant)
    assert isinstance(trace, dict) and set(trace) <= {"traceEvents", "displayTimeUnit"}, list(trace)
    assert trace.get("displayTimeUnit", "ms") in ("ms", "ns")
    events = trace["traceEvents"]
    assert isinstance(events, list) and events
    now_us = time.time() * 1e6
    named_processes, named_threads = set(), set()
    slices: list[dict[str, Any]] = []
    for event in events:
        assert isinstance(event, dict) and event.get("ph") in ("X", "M"), event
        assert isinstance(event.get("name"), str) and event["name"], event
        assert type(event.get("pid")) is int and type(event.get("tid")) is int, event
        if event["ph"] == "M":
            key, kind = METADATA[event["name"]]
            assert isinstance(event["args"][key], kind), event
            if event["name"] == "process_name":
                named_processes.add(event["pid"])
            elif event["name"] == "thread_name":
                named_threads.add((event["pid"], event["tid"]))
            continue
        assert set(event) <= {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"}, event
        assert type(event["ts"]) in (int, float) and type(event["dur"]) in (int, float), event
        assert now_us - 86_400e6 < event["ts"] <= event["ts"] + event["dur"] < now_us + 60e6, "ts is not epoch µs"
        assert isinstance(event.get("cat", ""), str) and isinstance(event.get("args", {}), dict), event
        slices.append(event)
    assert slices, "no complete events"
    assert [e["ts"] for e in slices] == sorted(e["ts"] for e in slices), "events out of time order"
    threads: dict[tuple[int, int], list[dict[str, Any]]] = collections.defaultdict(list)
    for event in slices:
        assert event["pid"] in named_processes and (event["pid"], event["tid"]) in named_threads, event
        threads[(event["pid"], event["tid"])].append(event)
    for thread, mine in threads.items():
        open_ends: list[float] = []
        for event in sorted(mine, key=lambda e: (e["ts"], -e["dur"])):
            while open_ends and open_ends[-1] <= event["ts"]:
                open_ends.pop()
            end = event["ts"] + event["dur"]
            assert not open_ends or end <= open_ends[-1], f"slices overlap on {thread}: {event}"
            open_ends.append(end)
    return trace


def stage_events(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [event for event in trace["traceEvents"] if event["ph"] == "X"]


def thread_names(trace: dict[str, Any]) -> dict[tuple[int, int], str]:
    return {
        (e["pid"], e["tid"]): e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"
    }


async def test_each_request_gets_one_event_per_stage_per_op(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    running = await serve(dag(), {"dag": {"use_profile": True}, "op": {"second": {"inline": True}}})

    bodies = await send(running, ["a", "b", "c"])

    assert [b["value"] for b in bodies] == [["A"], ["B"], ["C"]]
    profile_file = running.log_dir / "pipeline.profile"
    lines = profile_file.read_text().splitlines()
    assert len(lines) == 3 and all(line.startswith("PROFILE\tpid:") for line in lines)
    assert capsys.readouterr().out.count("PROFILE\t") == 3  # the seeds print it to standard output
    trace_file = tmp_path / "trace.json"
    events = Analyst(profile_file).save_trace(trace_file)
    trace = check_chrome_trace(trace_file.read_text())
    stages = stage_events(trace)
    assert events == len(stages) == 3 * (2 * 5 + 1)
    timestamps = [e["ts"] for e in stages]
    assert timestamps == sorted(timestamps)
    names = thread_names(trace)
    per_request: dict[int, collections.Counter[tuple[str, str]]] = collections.defaultdict(collections.Counter)
    for event in stages:
        per_request[event["pid"]][(names[(event["pid"], event["tid"])], event["name"])] += 1
    log_ids = sorted(e["args"]["log_id"] for e in stages if e["name"] == "call")
    assert log_ids == [500, 501, 502]
    want = {(op, stage): 1 for op in ("first", "second") for stage in observe.STAGES} | {("DAG", "call"): 1}
    assert len(per_request) == 3 and all(dict(counts) == want for counts in per_request.values())
    for pid in per_request:  # each request's stages lie within its call
        mine = [e for e in stages if e["pid"] == pid]
        (call,) = [e for e in mine if e["name"] == "call"]
        assert all(call["ts"] <= e["ts"] and e["ts"] + e["dur"] <= call["ts"] + call["dur"] + 1 for e in mine)


async def test_a_batch_shows_in_the_timeline_of_every_request_of_it(serve: Any) -> None:
    gate = threading.Event()
    read = RequestOp()
    gated = Gated(gate, name="gated", input_ops=[read])
    running = await serve(
        ResponseOp(input_ops=[gated]),
        {"dag": {"use_profile": True}, "op": {"gated": {"batch_size": 2, "auto_batching_timeout": 60_000, "concurrency": 1}}},
    )

    sent = asyncio.ensure_future(send(running, ["x", "y"]))
    gate.set()
    await asyncio.wait_for(sent, DEADLINE_S)

    spans = list(profile.parse((running.log_dir / "pipeline.profile").read_text().splitlines()))
    midps = [s for s in spans if s.op == "gated" and s.stage == "midp"]
    assert len(midps) == 2 and {s.data_id for s in midps} == {s.data_id for s in spans}
    assert midps[0].start_us == midps[1].start_us and midps[0].end_us == midps[1].end_us
    trace = check_chrome_trace(json.dumps(Analyst(running.log_dir / "pipeline.profile").trace()))
    assert len(stage_events(trace)) == 2 * (1 + 5)


def test_the_analyze_command_writes_the_trace_and_names_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timeline = [
        observe.StageTiming("DAG", "call", (4,), (9,), 1_000_000, 9_000_000),
        *(
            observe.StageTiming("bow", stage, (4,), (9,), 2_000_000 + i * 1_000_000, 2_500_000 + i * 1_000_000)
            for i, stage in enumerate(observe.STAGES)
        ),
    ]
    log = tmp_path / "server.out"
    log.write_text("pipeserve: serving 'imdb'\n" + profile.format_line(4, 9, timeline, pid=77) + "\nother output\n")
    trace_file = tmp_path / "trace.json"

    assert cli_main(["analyze", str(log), str(trace_file)]) == 0

    trace = json.loads(trace_file.read_text())
    stages = stage_events(trace)
    assert [(e["name"], e["ts"], e["dur"]) for e in stages] == [
        ("call", 1000, 8000), ("in", 2000, 500), ("prep", 3000, 500), ("midp", 4000, 500),
        ("postp", 5000, 500), ("out", 6000, 500),
    ]  # fmt: skip
    assert "6 stage events of 1 requests" in capsys.readouterr().out

    assert cli_main(["analyze", str(tmp_path / "missing.txt"), str(trace_file)]) == 2
    assert "missing.txt" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("line one\nPROFILE\tpid:1\tdata_id:x\tprep#bow_0:12\n")
    assert cli_main(["analyze", str(bad), str(trace_file)]) == 2
    assert f"{bad}:2" in capsys.readouterr().err


@pytest.mark.parametrize("protocol", ["http", "grpc"])
async def test_the_client_gets_its_requests_timeline_without_use_profile(
    serve: Any, protocol: str, capsys: pytest.CaptureFixture[str]
) -> None:
    running = await serve(dag(), {"op": {"second": {"inline": True}}}, name="upper")
    client = PipelineClient(protocol, name="upper") if protocol == "http" else PipelineClient()
    client.connect([running.http_url.removeprefix("http://") if protocol == "http" else running.grpc_target])
    try:
        result = await asyncio.to_thread(client.predict, feed_dict={"text": "abc"}, profile=True, log_id=8)
        plain = await asyncio.to_thread(client.predict, feed_dict={"text": "abc"})
    finally:
        client.close()

    assert result.err_no == 0 and result["upper"] == "ABC" and plain["upper"] == "ABC"
    assert plain.timeline == []
    assert [(t.op, t.stage) for t in result.timeline] == [("DAG", "call")] + [
        (op, stage) for op in ("first", "second") for stage in observe.STAGES
    ]
    call = result.timeline[0]
    assert all(call.start_ns <= t.start_ns <= t.end_ns <= call.end_ns for t in result.timeline)
    assert {t.log_ids for t in result.timeline} == {(8,)}
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("PROFILE")]
    assert len(printed) == 1 and "log_id:8" in printed[0]  # seed §6.3: the client prints it
    assert not (running.log_dir / "pipeline.profile").exists()  # the server profiles nothing else


class Keys(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        (inputs,) = input_dicts.values()
        return {"keys": ",".join(sorted(inputs))}


async def test_a_seed_client_asking_with_the_profile_key_gets_the_profile_line(serve: Any) -> None:
    import grpc

    from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
    from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc

    running = await serve(ResponseOp(input_ops=[Keys(name="keys", input_ops=[RequestOp()])]), name="keys")
    request = pb.Request(key=["text", "pipeline.profile"], value=["hi", "1"], name="keys", logid=6)
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        response = await pb_grpc.PipelineServiceStub(channel).inference(request, timeout=DEADLINE_S)

    assert response.err_no == 0
    values = dict(zip(response.key, response.value))
    assert values["keys"] == "text"  # the profile key never reached the ops
    (span,) = [s for s in profile.parse([values["pipeline.profile"]]) if s.op == "keys" and s.stage == "midp"]
    assert span.log_id == 6


def test_the_seeds_own_timeline_lines_are_read() -> None:
    line = "PROFILE\tpid:3177\tprep#[bow|0]_0:1600000000000100 prep#[bow|0]_1:1600000000000350 "
    (span,) = profile.parse([line])
    assert (span.stage, span.op, span.start_us, span.end_us) == ("prep", "[bow|0]", 1600000000000100, 1600000000000350)


async def test_the_timeline_of_a_request_includes_the_op_services_stages(serve: Any, tmp_path: Path) -> None:
    service = OpServer(Upper(name="first"), config_mod.load({"http_port": 0}), Settings(host="127.0.0.1", grace_s=1))
    port = await service.start()
    endpoint = f"127.0.0.1:{port}"
    try:
        running = await serve(
            dag(), {"dag": {"use_profile": True}, "op": {"first": {"server_endpoints": [endpoint]}}}
        )
        client = PipelineClient()
        client.connect([running.grpc_target])
        try:
            result = await asyncio.to_thread(client.predict, feed_dict={"text": "hi"}, profile=True, log_id=31)
            plain = await asyncio.to_thread(client.predict, feed_dict={"text": "ho"})
        finally:
            client.close()
    finally:
        await service.stop(grace_s=1)

    assert result.err_no == 0 and result["upper"] == "HI"
    assert plain.timeline == []  # only a request that asks gets its timeline back
    timeline = result.timeline
    assert (timeline[0].op, timeline[0].stage, timeline[0].log_ids) == ("DAG", "call", (31,))
    assert all(t.log_ids == (31,) for t in timeline)
    first = [(t.stage, t.where) for t in timeline if t.op == "first"]
    remote = f"remote:{endpoint}"
    assert first == [
        ("in", ""), ("in", remote), ("prep", remote), ("midp", remote), ("postp", remote), ("out", remote), ("out", ""),
    ]
    ours = [t for t in timeline if t.op == "first" and not t.where]
    theirs = [t for t in timeline if t.where]
    assert ours[0].end_ns <= theirs[0].start_ns and theirs[-1].end_ns <= ours[1].start_ns  # one clock here
    spans = list(profile.parse((running.log_dir / "pipeline.profile").read_text().splitlines()))
    assert {s.where for s in spans if s.op == "first"} == {"", remote}
    Analyst(running.log_dir / "pipeline.profile").save_trace(tmp_path / "trace.json")
    trace = check_chrome_trace((tmp_path / "trace.json").read_text())
    assert f"first @ {remote}" in thread_names(trace).values()
    assert len(stage_events(trace)) == 2 * (1 + 5 + 5 + 2)  # two requests: call, first (2 here, 5 there), second


def test_a_profile_line_reads_as_the_seeds_timeline_with_the_events_third() -> None:
    remote = "remote:127.0.0.1:9000"
    timeline = [
        observe.StageTiming("DAG", "call", (4,), (9,), 1_000_000, 9_000_000),
        observe.StageTiming("bow", "in", (4,), (9,), 2_000_000, 2_500_000),
        observe.StageTiming("bow", "midp", (4,), (9,), 3_000_000, 4_000_000, remote),
    ]
    line = profile.format_line(4, 9, timeline, pid=77)

    # The seeds' Timeline is read as: tab fields PROFILE, pid:<pid>, then the events, each
    # <stage>#<track>_<0|1>:<us>, a stage run here with a single ':'.
    fields = line.strip().split("\t")
    assert fields[:2] == ["PROFILE", "pid:77"] and fields[3:] == ["data_id:4", "log_id:9"]
    events = []
    for event in fields[2].split(" "):
        name, stamp = event.rsplit(":", 1)
        label, edge = name.rsplit("_", 1)
        stage, track = label.split("#")
        assert ":" not in name or track.startswith("bow@remote:"), event
        events.append((stage, track, edge, int(stamp)))
    assert events == [
        ("call", "DAG", "0", 1000), ("call", "DAG", "1", 9000),
        ("in", "bow", "0", 2000), ("in", "bow", "1", 2500),
        ("midp", f"bow@{remote}", "0", 3000), ("midp", f"bow@{remote}", "1", 4000),
    ]  # fmt: skip

    spans = list(profile.parse([line]))
    assert [(s.op, s.stage, s.where, s.start_us, s.end_us) for s in spans] == [
        ("DAG", "call", "", 1000, 9000), ("bow", "in", "", 2000, 2500), ("bow", "midp", remote, 3000, 4000),
    ]  # fmt: skip
    assert {(s.pid, s.data_id, s.log_id) for s in spans} == {(77, 4, 9)}
    events_last = "\t".join([fields[0], fields[1], fields[3], fields[4], fields[2]])
    assert list(profile.parse([events_last])) == spans  # lines with the ids first read the same
