"""The examples run as a user runs them: ``python server.py`` in a copy, on free ports (STYLE R14).

Aspects:

- ``examples/imdb_ensemble``: the server prints where it listens; an HTTP request with the
  sample words answers ``models.EXPECTED``; the example's ``client.py`` (seed §3.5) exits 0
  and prints the prediction; SIGTERM stops the server gracefully with exit code 0; once
  ready, the server froze its start-up objects for the garbage collector (pipeline.log);
- ``build_dag_each_worker: True, worker_num: 2``: the same answer over HTTP and gRPC, from
  two different worker processes, and SIGTERM on the parent stops every one of them.

Each server is a subprocess stopped by its PID in ``finally``; waits poll an observable
state (a banner line, an answer, a PID gone) with a deadline.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
import yaml

from pipeserve import PipelineClient, codec

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import ChildProcess, StartChild

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
START_DEADLINE_S = 60
STOP_DEADLINE_S = 15

HTTP_LINE = r"^  HTTP  (http://\S+)$"
GRPC_LINE = r"^  gRPC  (\S+)  \("

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM and fork are POSIX")


def wait_for_banner(server: ChildProcess) -> tuple[str, str]:
    """The HTTP URL and the gRPC target the server prints once it serves."""
    http_url = server.wait_for(HTTP_LINE).group(1)
    return http_url, server.wait_for(GRPC_LINE).group(1)


def write_config(path: Path, log_dir: Path, **changes: Any) -> None:
    """Rewrite config.yml for a test: loopback, free ports, logs under tmp_path."""
    config = yaml.safe_load(path.read_text())
    config.update(host="127.0.0.1", http_port=0, rpc_port=0, log_dir=str(log_dir), **changes)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def imdb(tmp_path: Path) -> Path:
    """A copy of examples/imdb_ensemble with a config for this test."""
    copy = tmp_path / "imdb_ensemble"
    shutil.copytree(
        EXAMPLES / "imdb_ensemble", copy, ignore=shutil.ignore_patterns("PipelineServingLogs", "__pycache__")
    )
    write_config(copy / "config.yml", tmp_path / "logs")
    return copy


def test_imdb_example_answers_expected_over_http_and_its_client_and_stops_on_sigterm(imdb: Path, child: StartChild):
    models = load_module(imdb / "models.py", "imdb_example_models")
    expected = float(models.EXPECTED["prediction"])
    server = child(["server.py"], imdb)
    try:
        http_url, grpc_target = wait_for_banner(server)
        assert http_url.endswith("/imdb/prediction")

        reply = httpx.post(http_url, json={"key": ["words"], "value": [models.SAMPLE_WORDS]}, timeout=30)
        assert reply.status_code == 200, reply.text
        values = codec.values_from_response(codec.response_from_json(reply.content))
        assert reply.json()["err_no"] == 0
        assert float(values["prediction"]) == pytest.approx(expected, abs=1e-6)

        client = subprocess.run(
            [sys.executable, "client.py", grpc_target],
            cwd=imdb, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert client.returncode == 0, client.stdout + client.stderr
        printed = [line for line in client.stdout.splitlines() if line.startswith("prediction:")]
        assert len(printed) == 3, client.stdout
        for line in printed:
            got, want = re.fullmatch(r"prediction: (\S+) expected: (\S+)", line).groups()
            assert float(got) == pytest.approx(expected, abs=1e-6)
            assert float(want) == pytest.approx(expected, abs=1e-6)

        assert server.terminate() == 0, server.captured()
    finally:
        server.kill()
    log = (imdb.parent / "logs" / "pipeline.log").read_text()
    frozen = re.search(r"(\d+) start-up objects frozen for the garbage collector", log)
    assert frozen and int(frozen.group(1)) > 10000, log[-2000:]


IMDB_GRAPH = """\
request: {class: "ops:ImdbRequestOp"}
ops:
  - {name: bow, class: "ops:BowOp"}
  - {name: cnn, class: "ops:CnnOp"}
  - {name: combine, class: "ops:CombineOp", inputs: [bow, cnn]}
"""


def test_imdb_example_served_by_pipeserve_gateway_from_a_graph_file_answers_like_server_py(
    imdb: Path, child: StartChild
):
    """What a PipelineService's gateway runs: no server.py, the DAG in graph.yml."""
    models = load_module(imdb / "models.py", "imdb_example_models")
    (imdb / "graph.yml").write_text(IMDB_GRAPH)
    server = child(["-m", "pipeserve.cli", "gateway", "--config", "config.yml", "--graph", "graph.yml"], imdb)
    try:
        http_url, _ = wait_for_banner(server)
        reply = httpx.post(http_url, json={"key": ["words"], "value": [models.SAMPLE_WORDS]}, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["err_no"] == 0, reply.text
        values = codec.values_from_response(codec.response_from_json(reply.content))
        assert float(values["prediction"]) == pytest.approx(float(models.EXPECTED["prediction"]), abs=1e-6)
        assert server.terminate() == 0, server.captured()
    finally:
        server.kill()


def test_pipeserve_gateway_names_the_key_of_a_bad_graph_file(imdb: Path):
    (imdb / "graph.yml").write_text(IMDB_GRAPH.replace("inputs: [bow, cnn]", "inputs: [bow, cnm]"))
    done = subprocess.run(
        [sys.executable, "-m", "pipeserve.cli", "gateway", "--config", "config.yml", "--graph", "graph.yml"],
        cwd=imdb, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == "error: graph.yml: ops[2].inputs: unknown op 'cnm' (ops: bow, cnn, combine)"


PID_PIPELINE = '''\
"""A pipeline whose answer says which process computed it."""

import os

from pipeserve import Op, PipelineServer, RequestOp, ResponseOp


class Pid(Op):
    def preprocess(self, input_dicts):
        ((_, values),) = input_dicts.items()
        return {"pid": str(os.getpid()), "upper": values["words"].upper()}


read_op = RequestOp()
pid_op = Pid(name="pid", input_ops=[read_op])
server = PipelineServer(name="pids")
server.set_response_op(ResponseOp(input_ops=[pid_op]))
server.prepare_server("config.yml")
server.run_server()
'''


#: err_no of "server is starting" (ClosedError): a worker listens before its ops are ready.
STARTING = 6


def answers_until_two_pids(ask, deadline_s: float = START_DEADLINE_S, attempts: int = 2000) -> set[str]:
    """Ask on fresh connections until two processes have answered (workers start a bit after
    the banner, so early connections may be refused)."""
    pids: set[str] = set()
    deadline = time.monotonic() + deadline_s
    for _ in range(attempts):
        if len(pids) >= 2 or time.monotonic() > deadline:
            break
        answer = ask()
        if answer is not None:
            assert answer["upper"] == "HELLO WORKERS"
            pids.add(answer["pid"])
    return pids


def test_two_worker_processes_answer_over_http_and_grpc_and_all_stop_on_sigterm(tmp_path: Path, child: StartChild):
    (tmp_path / "server.py").write_text(PID_PIPELINE)
    (tmp_path / "config.yml").write_text("{}")
    write_config(tmp_path / "config.yml", tmp_path / "logs", worker_num=2, build_dag_each_worker=True)
    server = child(["server.py"], tmp_path)
    alive: set[int] = set()  # worker PIDs not yet seen gone
    try:
        http_url, grpc_target = wait_for_banner(server)
        feed = {"words": "hello workers"}

        def ask_http() -> dict[str, Any] | None:
            try:  # a fresh connection each time: the kernel picks a worker per connection
                reply = httpx.post(http_url, json={"key": ["words"], "value": [feed["words"]]}, timeout=10)
            except httpx.TransportError:
                return None
            body = reply.json()
            if body["err_no"] == STARTING:
                return None
            assert reply.status_code == 200, reply.text
            assert body["err_no"] == 0, body
            return dict(zip(body["key"], body["value"]))

        def ask_grpc() -> dict[str, Any] | None:
            with PipelineClient(timeout_s=10) as client:  # a fresh channel each time
                client.connect([grpc_target])
                res = client.predict(feed)
            if res.err_no == STARTING or (res.err_no == 5 and "UNAVAILABLE" in res.err_msg):
                return None
            assert res.err_no == 0, res
            return dict(res.outputs)

        http_pids = answers_until_two_pids(ask_http)
        grpc_pids = answers_until_two_pids(ask_grpc)
        pids = http_pids | grpc_pids
        alive = {int(p) for p in pids}
        assert len(http_pids) == 2, f"one process answered every HTTP connection: {http_pids}"
        assert len(grpc_pids) == 2, f"one process answered every gRPC connection: {grpc_pids}"
        assert http_pids == grpc_pids, "HTTP and gRPC are served by the same two workers"
        assert str(server.pid) not in pids, "the parent only supervises"

        assert server.terminate() == 0, server.captured()
        deadline = time.monotonic() + STOP_DEADLINE_S
        while alive and time.monotonic() < deadline:
            for pid in list(alive):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    alive.discard(pid)
            if alive:
                time.sleep(0.05)  # sync-ok: polling for the workers' exit, with a deadline
        assert not alive, f"worker processes left running after the parent exited: {alive}"
    finally:
        server.kill()
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_example_exports_what_its_test_checks():
    models = load_module(EXAMPLES / "imdb_ensemble" / "models.py", "imdb_example_models_exports")
    assert set(models.EXPECTED) == {"prediction"}
    assert np.isfinite(models.EXPECTED["prediction"])
    assert models.SAMPLE_WORDS



def test_worker_processes_answer_the_first_request_after_the_banner(tmp_path: Path, child: StartChild):
    # The banner says "serving": a user (or this file's own tests) sends the sample request
    # as soon as it appears, as with one process, where the banner follows start().
    (tmp_path / "server.py").write_text(PID_PIPELINE)
    (tmp_path / "config.yml").write_text("{}")
    write_config(tmp_path / "config.yml", tmp_path / "logs", worker_num=2, build_dag_each_worker=True)
    server = child(["server.py"], tmp_path)
    try:
        http_url, _ = wait_for_banner(server)
        try:
            reply = httpx.post(http_url, json={"key": ["words"], "value": ["first"]}, timeout=10)
        except httpx.ConnectError as exc:
            pytest.fail(f"the banner was printed before any worker listened: {exc!r}")
        assert (reply.status_code, reply.json()["err_no"]) == (200, 0), reply.text
        assert server.terminate() == 0, server.captured()
    finally:
        server.kill()
