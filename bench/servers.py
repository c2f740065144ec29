"""Servers under test as child processes: free ports, start, readiness, answer check, stop.

A server is started in its own session, so a Ctrl-C in the terminal reaches only the runner,
which then stops every server it started: SIGTERM to the server's PID, then SIGKILL to it and
to the worker processes it had forked (recorded by PID before the SIGTERM) if they are still
there after the grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench import workloads

STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.1


class ServerError(RuntimeError):
    """A server could not be started, did not get ready, or answered wrongly."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(
    argv: Sequence[str], cwd: Path, log_path: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs ``argv`` for the duration of the ``with`` block, output to ``log_path``."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after ``STOP_GRACE_S`` to the server and its forked workers."""
    workers = _descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and (process.poll() is None or any(map(_alive, workers))):
        time.sleep(POLL_INTERVAL_S)
    if process.poll() is None:
        process.kill()
    for pid in filter(_alive, workers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait()


def _descendants(root: int) -> list[int]:
    """PIDs of every process below ``root`` (Linux /proc), read once."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                # The command name (field 2) may hold spaces; the fields after ')' do not.
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


def tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    return [root, *_descendants(root)]


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (Linux /proc; gone ones count 0)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def listening_sockets(port: int) -> int:
    """How many TCP sockets listen on ``port`` (one per SO_REUSEPORT worker), from /proc."""
    listening_state = "0A"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                count += local_port == port and fields[3] == listening_state
    return count


# --- Readiness and the answer check ---------------------------------------------------------


def http_post(port: int, workload: str, timeout_s: float = 2.0) -> tuple[int, dict[str, object]]:
    """POSTs the workload's request; returns the status and the decoded JSON body."""
    body = json.dumps(workloads.request_json(workload)).encode()
    url = f"http://127.0.0.1:{port}{workloads.HTTP_PATH[workload]}"
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def _http_status(url: str, timeout_s: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def http_ready(port: int, workload: str) -> bool:
    """``GET /healthz`` answers 200, and so does ``GET /readyz`` where the server has one.

    A server without /healthz (404) is ready once its prediction route answers 200.
    """
    base = f"http://127.0.0.1:{port}"
    try:
        status = _http_status(f"{base}/healthz")
        if status == 404:
            return http_post(port, workload)[0] == 200
        return status == 200 and _http_status(f"{base}/readyz") in (200, 404)
    except (OSError, ValueError):  # refused, reset, timed out, or half-started
        return False


def http_answer(port: int, workload: str) -> float:
    """The workload's answer from one HTTP request; raises ``ServerError`` on any error."""
    status, payload = http_post(port, workload, timeout_s=10.0)
    if status != 200 or payload.get("err_no") != 0:
        raise ServerError(f"HTTP {status}, err_no {payload.get('err_no')}: {payload.get('err_msg')}")
    try:
        tensor = payload["tensors"][workloads.ANSWER_TENSOR[workload]]  # type: ignore[index]
        return float(workloads.tensor_from_json(tensor).reshape(()))
    except (KeyError, TypeError, ValueError) as error:
        raise ServerError(
            f"answer has no scalar tensor {workloads.ANSWER_TENSOR[workload]!r}: {payload}"
        ) from error


def grpc_answer(port: int, workload: str, timeout_s: float = 10.0) -> float:
    """The workload's answer from one gRPC call; raises ``ServerError`` on any error."""
    import grpc  # only the gRPC cases pay for it

    from bench import grpc_wire
    from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            response = pb_grpc.PipelineServiceStub(channel).inference(
                grpc_wire.request(workload), timeout=timeout_s
            )
            return grpc_wire.answer(workload, response)
        except (grpc.RpcError, ValueError) as error:
            raise ServerError(f"gRPC call failed: {error}") from error


def grpc_ready(port: int, workload: str) -> bool:
    """A call succeeds."""
    try:
        grpc_answer(port, workload, timeout_s=1.0)
    except ServerError:
        return False
    return True


def wait_ready(
    process: subprocess.Popen[bytes], transport: str, port: int, workload: str, timeout_s: float
) -> None:
    """Polls until the server answers, it exits, or ``timeout_s`` passes."""
    ready = http_ready if transport == "http" else grpc_ready
    deadline = time.monotonic() + timeout_s
    while not ready(port, workload):
        if process.poll() is not None:
            raise ServerError(f"exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise ServerError(f"not ready on port {port} after {timeout_s:g} s")
        time.sleep(POLL_INTERVAL_S)


def wait_banner(process: subprocess.Popen[bytes], log_path: Path, banner: str, timeout_s: float) -> None:
    """Polls until ``banner`` appears in the process's log, it exits, or ``timeout_s`` passes.

    For servers that print a line once they serve (``pipeserve opservice`` does, after its
    health turns SERVING) and have no HTTP route to poll.
    """
    deadline = time.monotonic() + timeout_s
    while banner not in log_path.read_text(errors="replace"):
        if process.poll() is not None:
            raise ServerError(f"exited with code {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise ServerError(f"did not print {banner!r} within {timeout_s:g} s")
        time.sleep(POLL_INTERVAL_S)


def wait_listening(port: int, count: int, timeout_s: float) -> int:
    """Waits (at most ``timeout_s``) for ``count`` sockets to listen on ``port``; returns how many do."""
    deadline = time.monotonic() + timeout_s
    while (found := listening_sockets(port)) < count and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    return found
