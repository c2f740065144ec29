"""``pipeserve run examples/imdb_ensemble/pipelineservice.yaml``: the imdb PipelineService as
processes wired as the operator wires them on a cluster (Redis, two replicas each of the bow and
cnn op services, the gateway from the rendered config.yml and graph.yml).

Aspects: the table of components and both URLs are printed; HTTP and gRPC answers equal the
embedded example's computation; both replicas of an op serve (each request's profile names the
replica that ran its bow stage); killing one op service replica under load is reported, every
request is answered (success, or an error naming the op), the replica is restarted and serves
again; Ctrl-C stops every process with exit code 0.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import itertools
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import httpx
import pytest

from pipeserve import PipelineClient, codec

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "imdb_ensemble"
START_DEADLINE_S = 120
RESTART_DEADLINE_S = 60
STOP_DEADLINE_S = 40
ROW = re.compile(r"^(redis|gateway|op \w+(?: #\d+)?)\s+(\d+)\s+(\d+)\s+(\S+)")
SENTENCES = [
    "this movie was not good at all",
    "a wonderful film with a great plot",
    "i will never watch it again",
    "the actors were fine and the music was good",
]

PROFILE_KEY = "pipeline.profile"
#: In the profile line a request asks for: a stage the bow op service ran, and that replica's port.
BOW_STAGE = re.compile(r"#bow@remote:127\.0\.0\.1:(\d+)_0:")
SERVED_DEADLINE_S = 15


class Answer(NamedTuple):
    err_no: int
    err_msg: str
    bow_port: int | None


pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals and process groups are POSIX")


def load_models() -> ModuleType:
    spec = importlib.util.spec_from_file_location("imdb_e2e_models", EXAMPLE / "models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Run:
    """The ``pipeserve run`` process, its output read line by line by a thread."""

    def __init__(self, workdir: Path) -> None:
        argv = [sys.executable, "-u", "-m", "pipeserve.cli", "run", str(EXAMPLE / "pipelineservice.yaml"),
                "--http-port", "0", "--grpc-port", "0", "--cpu", "--workdir", str(workdir)]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for_line(self, pattern: str, deadline_s: float) -> re.Match[str]:
        """Read output until a line matches ``pattern``; fail with the output otherwise."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} within {deadline_s} s:\n" + "\n".join(self.output))
            if line is None:
                pytest.fail(f"pipeserve run exited ({self.proc.wait()}):\n" + "\n".join(self.output))
            self.output.append(line)
            if match := re.search(pattern, line):
                return match

    def pids(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for line in self.output if (m := ROW.match(line))}

    def ports(self) -> dict[str, int]:
        return {m.group(1): int(m.group(3)) for line in self.output if (m := ROW.match(line))}

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_DEADLINE_S)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_imdb_pipelineservice_runs_locally_recovers_from_a_killed_replica_and_stops(tmp_path: Path) -> None:
    models = load_models()
    run = Run(tmp_path / "run")
    try:
        http_url = run.wait_for_line(r"^  HTTP  (http://\S+)$", START_DEADLINE_S).group(1)
        grpc_target = run.wait_for_line(r"^  gRPC  (\S+)$", START_DEADLINE_S).group(1)
        pids, ports = run.pids(), run.ports()
        assert set(pids) == {"redis", "op bow #1", "op bow #2", "op cnn #1", "op cnn #2", "gateway"}, run.output
        assert all(alive(pid) for pid in pids.values())

        client = PipelineClient()
        client.connect([grpc_target])
        with httpx.Client(timeout=30) as http, contextlib.closing(client):
            for words in SENTENCES:
                expected = float(models.predict_inline(words))
                reply = http.post(http_url, json={"key": ["words"], "value": [words]})
                assert reply.status_code == 200 and reply.json()["err_no"] == 0, reply.text
                got = codec.values_from_response(codec.response_from_json(reply.content))["prediction"]
                assert float(got) == pytest.approx(expected, abs=1e-6)
                answer = client.predict(feed_dict={"words": words}, fetch=["prediction"])
                assert answer.err_no == 0, answer.err_msg
                assert float(answer["prediction"]) == pytest.approx(expected, abs=1e-6)

            def ask(index: int) -> Answer:
                """One HTTP request; its answer, checked, and which bow replica (port) served it."""
                words = SENTENCES[index % len(SENTENCES)]
                reply = http.post(http_url, json={"key": ["words", PROFILE_KEY], "value": [words, "1"]})
                body = reply.json()
                if body["err_no"] != 0:
                    return Answer(body["err_no"], body["err_msg"], None)
                values = codec.values_from_response(codec.response_from_json(reply.content))
                assert float(values["prediction"]) == pytest.approx(float(models.predict_inline(words)), abs=1e-6)
                (bow_port,) = set(BOW_STAGE.findall(str(values[PROFILE_KEY])))
                return Answer(0, "", int(bow_port))

            def served_by(port: int, what: str) -> None:
                """Send requests until one is answered by the bow replica on ``port``, for at most
                SERVED_DEADLINE_S (a reconnecting gRPC channel backs off up to 2 s)."""
                answers: collections.Counter[Answer] = collections.Counter()
                deadline = time.monotonic() + SERVED_DEADLINE_S
                for index in itertools.count():
                    answer = ask(index)
                    if answer.bow_port == port:
                        return
                    answers[answer] += 1
                    if time.monotonic() > deadline:
                        pytest.fail(f"{what}: no answer from the bow replica on port {port}: {dict(answers)}")

            # Both replicas take requests: the gateway spreads batches over the op's endpoints.
            served_by(ports["op bow #1"], "before the kill")
            served_by(ports["op bow #2"], "before the kill")

            victim = pids["op bow #1"]
            with ThreadPoolExecutor(8) as pool:
                answers = [pool.submit(ask, i) for i in range(300)]
                # The load is flowing once one of the first answers is in.
                wait(answers[:20], timeout=60, return_when=FIRST_COMPLETED)
                os.kill(victim, signal.SIGKILL)
                pending_at_kill = sum(not a.done() for a in answers)
                results = [a.result(timeout=60) for a in answers]
            assert pending_at_kill > 100, "the kill came after the load"
            assert len(results) == 300
            failures = [(a.err_no, a.err_msg) for a in results if a.err_no != 0]
            # a failure says what happened: the op and the replica it lost
            assert all("op 'bow'" in msg for _, msg in failures), failures
            assert len(failures) < len(results) // 2, failures  # the other replica answered
            assert {a.bow_port for a in results if a.err_no == 0} <= set(ports.values())

            run.wait_for_line(rf"^op bow #1 \(pid {victim}\) exited with code -9; restarting in", RESTART_DEADLINE_S)
            new_pid = int(run.wait_for_line(r"^op bow #1 ready again \(pid (\d+)\)", RESTART_DEADLINE_S).group(1))
            assert new_pid != victim and alive(new_pid)
            # The restarted replica serves again, on its port, and so does the other one.
            served_by(ports["op bow #1"], "after the restart")
            served_by(ports["op bow #2"], "after the restart")

        os.kill(run.proc.pid, signal.SIGINT)
        assert run.proc.wait(STOP_DEADLINE_S) == 0, "\n".join(run.output)
        run.wait_for_line(r"^pipeserve run: stopped$", STOP_DEADLINE_S)
        others = [pid for name, pid in pids.items() if name != "op bow #1"] + [new_pid]
        deadline = time.monotonic() + STOP_DEADLINE_S
        while any(alive(pid) for pid in others) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in others if alive(pid)]
    finally:
        run.kill()
